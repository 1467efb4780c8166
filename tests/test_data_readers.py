"""Readers of ClothoV2, AudioCaps, WavCaps, pairs.csv and ClothoV2_GPT, on files the tests write."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from soundsearch.data import (
    AudioCaption,
    ReadStats,
    filter_freesound_ids,
    freesound_ids,
    load_source,
    load_sources,
    read_audiocaps,
    read_clotho,
    read_id_list,
    read_pairs,
    read_variations,
    read_wavcaps,
    write_id_list,
    write_variations,
)
from soundsearch.errors import DataError, UserError


def wav(path: Path, seconds: float = 0.1, sr: int = 16000) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.zeros(int(seconds * sr), dtype=np.float32), sr)
    return path


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode(encoding))
    return path


CAPTIONS_HEADER = "file_name,caption_1,caption_2,caption_3,caption_4,caption_5\n"
META_HEADER = "file_name,keywords,sound_id,sound_link,start_end_samples,manufacturer,license\n"


def clotho_root(tmp_path: Path, rows: list[str], split: str = "development") -> Path:
    write(tmp_path / f"clotho_captions_{split}.csv", CAPTIONS_HEADER + "".join(rows))
    return tmp_path


# -- ClothoV2 ------------------------------------------------------------------------------------
def test_clotho_reads_captions_keywords_and_ids(tmp_path):
    root = clotho_root(
        tmp_path,
        [
            'Rain on roof.wav,rain falls,"rain, steady",water drops,a storm,wet weather\n',
            "Café door.wav,a door,door creaks,someone enters,hinges squeak,a shop door\n",
        ],
    )
    # metadata in ISO-8859-1 (as distributed): "é" is one byte there, invalid as UTF-8
    write(
        root / "clotho_metadata_development.csv",
        META_HEADER
        + 'Rain on roof.wav,rain;roof;water,12345,https://x/12345,"[0, 10]",bob,CC0\n'
        + "Café door.wav,door;café,678,https://x/678,,ann,CC-BY\n",
        encoding="ISO-8859-1",
    )
    wav(root / "development" / "Rain on roof.wav")
    wav(root / "development" / "Café door.wav")
    recs = read_clotho(root, "train", on_missing="raise")  # alias of development
    assert [r.path.name for r in recs] == ["Rain on roof.wav", "Café door.wav"]
    assert recs[0].captions == (
        "rain falls",
        "rain, steady",
        "water drops",
        "a storm",
        "wet weather",
    )
    assert recs[1].keywords == ("door", "café")
    assert recs[0].meta["row"] == 0 and recs[1].meta["row"] == 1
    assert recs[0].meta["freesound_id"] == "12345"
    assert recs[0].audio_id == "clotho/development/Rain on roof.wav"
    assert recs[0].source == "clotho"


def test_clotho_malformed_row_names_file_and_line(tmp_path):
    root = clotho_root(
        tmp_path,
        [
            "a.wav,1,2,3,4,5\n",
            "b.wav,1,2,3\n",  # line 3: too few fields
            "c.wav,1,2,,4,5\n",  # line 4: empty caption
        ],
    )
    with pytest.raises(DataError, match=r"clotho_captions_development\.csv, line 3: 4 fields"):
        read_clotho(root, "development")
    stats = ReadStats()
    recs = read_clotho(root, "development", on_error="skip", stats=stats)
    assert [r.path.name for r in recs] == ["a.wav"]
    assert stats.bad_rows == 2 and stats.rows == 3
    assert "line 4: empty caption(s): caption_3" in stats.problems[1]


def test_clotho_rows_keep_file_position_after_skipped_rows(tmp_path):
    # the GPT index is row * 5 + k of the file: a skipped row must not shift the rows after it
    root = clotho_root(tmp_path, ["a.wav,1,2,3,4,5\n", "bad\n", "c.wav,1,2,3,4,5\n"])
    recs = read_clotho(root, "development", on_error="skip")
    assert [r.meta["row"] for r in recs] == [0, 2]


def test_clotho_missing_audio_policies(tmp_path):
    root = clotho_root(tmp_path, ["a.wav,1,2,3,4,5\n", "b.wav,1,2,3,4,5\n"])
    wav(root / "development" / "a.wav")
    assert len(read_clotho(root, "development")) == 2  # default: captions only, disk not read
    stats = ReadStats()
    recs = read_clotho(root, "development", on_missing="skip", stats=stats)
    assert [r.path.name for r in recs] == ["a.wav"]
    assert stats.missing_audio == 1 and stats.missing_examples[0].endswith("b.wav")
    with pytest.raises(DataError, match=r"1 audio files not found.*b\.wav"):
        read_clotho(root, "development", on_missing="raise")


def test_clotho_errors_for_user(tmp_path):
    with pytest.raises(UserError, match="clotho_captions_evaluation.csv not found"):
        read_clotho(tmp_path, "evaluation")
    with pytest.raises(UserError, match="unknown ClothoV2 split 'dev'"):
        read_clotho(tmp_path, "dev")
    write(tmp_path / "clotho_captions_validation.csv", "file_name,caption_1\nx.wav,a\n")
    with pytest.raises(DataError, match="line 1: missing column.*caption_2"):
        read_clotho(tmp_path, "validation")
    write(
        tmp_path / "clotho_captions_development.csv",
        CAPTIONS_HEADER + "x.wav,\xff,2,3,4,5\n",
        "latin-1",
    )
    with pytest.raises(DataError, match="line 2: not valid utf-8"):
        read_clotho(tmp_path, "development")


# -- AudioCaps -----------------------------------------------------------------------------------
AC_HEADER = "audiocap_id,youtube_id,start_time,caption\n"


def test_audiocaps_finds_clips_in_any_layout_and_counts_missing(tmp_path, caplog):
    rows = [
        "1,abcdefghijk,30,a dog barks",
        "2,abcdefghijk,30,barking dog",  # same clip: grouped
        "3,Yxyzxyzxyz1,0,a car passes",  # id starting with Y, file Y-prefixed
        "4,timed_clip1,40,wind blows",
        "5,notthere123,0,missing clip",
        "6,alsomissing,10,another missing clip",
    ]
    write(tmp_path / "test.csv", AC_HEADER + "\n".join(rows) + "\n")
    audio = tmp_path / "clips"
    wav(audio / "abcdefghijk.wav")
    wav(audio / "sub" / "YYxyzxyzxyz1.flac")
    wav(audio / "timed_clip1_10.000_20.000.ogg")  # other start time: fallback
    wav(audio / "timed_clip1_40.000_50.000.wav")  # matching start time: preferred
    stats = ReadStats()
    with caplog.at_level(logging.WARNING, logger="soundsearch"):
        recs = read_audiocaps(tmp_path, "test", audio, stats=stats)
    assert [r.meta["youtube_id"] for r in recs] == ["abcdefghijk", "Yxyzxyzxyz1", "timed_clip1"]
    assert recs[0].captions == ("a dog barks", "barking dog")
    assert recs[1].path.name == "YYxyzxyzxyz1.flac"
    assert recs[2].path.name == "timed_clip1_40.000_50.000.wav"
    assert stats.missing_audio == 2 and stats.records == 3 and stats.captions == 4
    assert "2 audio files not found" in caplog.text and "notthere123" in caplog.text
    with pytest.raises(DataError, match="2 audio files not found"):
        read_audiocaps(tmp_path, "test", audio, on_missing="raise")


def test_audiocaps_bad_start_time(tmp_path):
    write(tmp_path / "val.csv", AC_HEADER + "1,abcdefghijk,soon,a dog\n")
    wav(tmp_path / "abcdefghijk.wav")
    with pytest.raises(DataError, match=r"val\.csv, line 2: start_time 'soon' is not a number"):
        read_audiocaps(tmp_path, "validation")
    assert read_audiocaps(tmp_path, "val", on_error="skip") == []


# -- WavCaps -------------------------------------------------------------------------------------
def wavcaps_root(tmp_path: Path) -> Path:
    data = {
        "num_captions_per_audio": 1,
        "data": [
            {"id": "180913", "caption": "Birds sing.", "audio": "180913.flac", "duration": 3.5},
            {"id": "555", "caption": "A bell rings.", "audio": "wav_path"},  # placeholder field
            {"id": "777", "caption": "", "audio": "777.flac"},  # malformed: empty caption
            {"id": "999", "caption": "Gone.", "audio": "999"},  # audio missing
        ],
    }
    write(tmp_path / "json_files" / "FreeSound" / "fsd_final.json", json.dumps(data))
    write(tmp_path / "json_files" / "blacklist" / "blacklist.json", "{}")
    wav(tmp_path / "audio" / "FreeSound" / "part1" / "180913.flac")
    wav(tmp_path / "audio" / "FreeSound" / "555.wav")
    return tmp_path


def test_wavcaps_json_and_audio_without_extension(tmp_path):
    root = wavcaps_root(tmp_path)
    with pytest.raises(DataError, match=r"fsd_final\.json, entry data\[2\]: 'caption'"):
        read_wavcaps(root, on_missing="skip")
    stats = ReadStats()
    recs = read_wavcaps(root, on_error="skip", stats=stats)
    assert [r.meta["id"] for r in recs] == ["180913", "555"]
    assert recs[1].path.name == "555.wav"
    assert recs[0].source == "wavcaps/FreeSound" and recs[0].meta["freesound_id"] == "180913"
    assert recs[0].meta["duration"] == 3.5
    assert stats.bad_rows == 1 and stats.missing_audio == 1 and stats.rows == 4


def test_wavcaps_invalid_json_names_line(tmp_path):
    write(tmp_path / "json_files" / "SoundBible" / "sb_final.json", '{"data": [\n{"id": 1,}\n]}')
    with pytest.raises(DataError, match=r"sb_final\.json, line 2 column \d+: invalid JSON"):
        read_wavcaps(tmp_path, ["SoundBible"])


# -- pairs.csv -----------------------------------------------------------------------------------
def test_pairs_relative_paths_and_multiple_captions(tmp_path):
    wav(tmp_path / "sounds" / "a.wav")
    wav(tmp_path / "b.wav")
    csv_path = write(
        tmp_path / "meta" / "pairs.csv",
        "path,caption\n"
        "../sounds/a.wav,first caption\n"
        f"{tmp_path / 'b.wav'},absolute path\n"
        "../sounds/a.wav,second caption\n"
        "../sounds/missing.wav,nothing\n"
        ",no path\n",
    )
    stats = ReadStats()
    recs = read_pairs(csv_path, on_error="skip", stats=stats)
    assert [r.path for r in recs] == [tmp_path / "sounds" / "a.wav", tmp_path / "b.wav"]
    assert recs[0].captions == ("first caption", "second caption")
    assert stats.missing_audio == 1 and stats.bad_rows == 1
    with pytest.raises(DataError, match=r"pairs\.csv, line 6: empty path"):
        read_pairs(csv_path, on_missing="skip")


# -- leakage filter, load_source ------------------------------------------------------------------
def test_leakage_filter_counts(tmp_path):
    root = wavcaps_root(tmp_path / "wc")
    clotho = clotho_root(tmp_path / "clotho", ["a.wav,1,2,3,4,5\n", "b.wav,1,2,3,4,5\n"])
    write(
        clotho / "clotho_metadata_development.csv",
        META_HEADER + "a.wav,x,180913,,,,\nb.wav,y,42,,,,\n",
    )
    wav(clotho / "development" / "a.wav")
    wav(clotho / "development" / "b.wav")
    ids = write(tmp_path / "exclude.csv", "sound_id\n180913\n0042\n")
    assert read_id_list(ids) == {"180913", "42"}
    stats = ReadStats()
    recs = load_sources(
        [f"wavcaps:{root}", f"clotho:{clotho}"],
        "train",
        on_error="skip",
        exclude_freesound_ids=str(ids),
        stats=stats,
    )
    assert [r.audio_id for r in recs] == ["wavcaps/FreeSound/555"]
    assert stats.filtered == 3 and stats.records == 1
    assert filter_freesound_ids(recs, {"555"}) == []
    no_id = AudioCaption("pairs/x", Path("x.wav"), ("c",), source="pairs", meta={"id": "555"})
    assert filter_freesound_ids([no_id], {"555"}) == [no_id]  # only Freesound ids count
    # the exclusion list made from the evaluation records themselves
    write_id_list(tmp_path / "made.csv", freesound_ids(read_clotho(clotho, "development")))
    assert read_id_list(tmp_path / "made.csv") == {"42", "180913"}
    bad = write(tmp_path / "bad.csv", "id\n12\nabc\n")
    with pytest.raises(DataError, match=r"bad\.csv, line 3: 'abc' is not a Freesound id"):
        read_id_list(bad)


def test_load_source_specs(tmp_path):
    root = clotho_root(tmp_path, ["a.wav,1,2,3,4,5\n"], split="validation")
    clotho_root(tmp_path, ["b.wav,1,2,3,4,5\n"], split="evaluation")
    both = load_source(f"clotho:{root}", "val+test", on_missing="keep")
    assert [r.path.name for r in both] == ["a.wav", "b.wav"]
    with pytest.raises(DataError, match="1 audio files not found"):
        load_source(f"clotho:{root}", "validation")  # training/evaluation check the audio
    with pytest.raises(UserError, match="not understood"):
        load_source(str(root))
    write(tmp_path / "ac" / "train.csv", AC_HEADER + "1,abcdefghijk,0,a dog\n")
    write(tmp_path / "ac" / "val.csv", AC_HEADER + "2,zyxwvutsrqp,0,a cat\n")
    wav(tmp_path / "clips" / "Yabcdefghijk.wav")
    wav(tmp_path / "clips" / "zyxwvutsrqp.wav")
    recs = load_source(f"audiocaps:{tmp_path / 'ac'}:{tmp_path / 'clips'}", "train+val")
    assert [r.meta["youtube_id"] for r in recs] == ["abcdefghijk", "zyxwvutsrqp"]
    pairs = write(tmp_path / "pairs.csv", "path,caption\nclips/zyxwvutsrqp.wav,a cat\n")
    assert load_source(f"pairs:{pairs}", "anything")[0].captions == ("a cat",)


# -- ClothoV2_GPT variations -------------------------------------------------------------------
def test_variations_round_trip_and_errors(tmp_path):
    records = [
        {
            "idx": 7,
            "path": "x.wav",
            "caption": "a dog",
            "query": "q",
            "response": "r",
            "variations": ["v1", "v2", "v3", "v4", "v5"],
        },
        {"idx": 0, "caption": "rain", "variations": ["é1", "w2"]},
    ]
    path = tmp_path / "out" / "gpt.json"
    write_variations(path, records)
    assert json.loads(path.read_text(encoding="utf-8")) == records  # other fields kept
    assert read_variations(path) == {7: ["v1", "v2", "v3", "v4", "v5"], 0: ["é1", "w2"]}
    assert not list(path.parent.glob("*.tmp"))
    with pytest.raises(DataError, match=r"record \[0\].*'variations'"):
        write_variations(tmp_path / "bad.json", [{"idx": 1, "variations": "not a list"}])
    assert not (tmp_path / "bad.json").exists()
    lines = write(
        tmp_path / "v.jsonl",
        '{"idx": 1, "variations": ["a"]}\n{"idx": 1, "variations": ["b"]}\n{oops\n',
    )
    with pytest.raises(DataError, match=r"v\.jsonl, line 2: idx 1 appears more than once"):
        read_variations(lines)
    stats = ReadStats()
    assert read_variations(lines, on_error="skip", stats=stats) == {1: ["a"]}
    assert stats.bad_rows == 2
