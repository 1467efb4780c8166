"""End to end through the CLI: index a real sound collection (minetest) plus generated, tagged and
broken files, then search it by text, by example, and read its status. No audio model: this is
what a fresh machine does offline."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_index_collection import BROKEN, MINETEST_SOUNDS, TAGGED, build_collection

from soundsearch.cli import main


@pytest.fixture(scope="module")
def library(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("library")
    good = build_collection(root)
    index = root / "index"
    rc = main(["index", str(root), "--index", str(index), "--workers", "1", "--no-progress"])
    assert rc == 0
    return {"root": root, "index": index, "good": good}


def search(capsys, library: dict, *args: str) -> dict:
    capsys.readouterr()
    rc = main(["search", *args, "--index", str(library["index"]), "--json"])
    out = capsys.readouterr().out
    assert rc == 0, out
    return json.loads(out)


def names(response: dict) -> list[str]:
    return [r["name"] for r in response["results"]]


def test_breaking_glass_finds_default_break_glass_in_top3(library, capsys):
    top = names(search(capsys, library, "breaking glass", "-k", "3"))
    assert len(top) == 3
    assert all(n.startswith("default_break_glass") for n in top), top


@pytest.mark.parametrize(
    "query, prefix",
    [
        ("footsteps on snow", "default_snow_footstep"),
        ("walking on gravel", "default_gravel_footstep"),
        ("fire crackling", "fire_"),
        ("opening a chest", "default_chest_open"),
        ("lava", "default_cool_lava"),
    ],
)
def test_metadata_queries_on_minetest(library, capsys, query, prefix):
    top = names(search(capsys, library, query, "-k", "3"))
    assert top and top[0].startswith(prefix), top


def test_explosion_finds_tnt(library, capsys):
    assert names(search(capsys, library, "explosion", "-k", "1")) == ["tnt_explode.ogg"]


@pytest.mark.parametrize("query, name", sorted(TAGGED.items()))
def test_embedded_tags_are_searchable(library, capsys, query, name):
    """These files have meaningless names: only their embedded description can find them."""
    assert names(search(capsys, library, query, "-k", "1")) == [name]


def test_ucs_and_unicode_names(library, capsys):
    top = search(capsys, library, "a heavy wooden door creaking open slowly", "-k", "1")
    assert names(top) == ["DOORWood_Creak Open Slow_JD_Lib.wav"]
    assert names(search(capsys, library, "knarrt", "-k", "1", "--mode", "metadata")) == [
        "Tür_knarrt_犬.wav"
    ]


def test_result_fields_and_channels(library, capsys):
    r = search(capsys, library, "breaking glass", "-k", "2", "--mode", "metadata")
    assert r["mode"] == "metadata" and r["channels"] == ["keyword", "text"]
    first = r["results"][0]
    assert Path(first["path"]).is_file() and first["path"].endswith(first["name"])
    assert first["folder"] == "minetest/games/minetest_game/mods/default/sounds"
    assert first["channels"]["keyword"]["rank"] >= 1 and first["time"] == 0.0
    assert first["duration"] > 0
    assert r["results"][0]["score"] >= r["results"][1]["score"]


def test_hybrid_without_model_says_so(library, capsys):
    r = search(capsys, library, "breaking glass")
    assert r["channels"] == ["keyword", "text"]
    assert any("no acoustic model" in n for n in r["notes"])


def test_table_output(library, capsys):
    capsys.readouterr()
    assert main(["search", "breaking glass", "-k", "2", "--index", str(library["index"])]) == 0
    lines = [ln for ln in capsys.readouterr().out.splitlines() if not ln.startswith("note:")]
    assert len(lines) == 2 and lines[0].split()[0] == "1"
    assert lines[0].split()[-1].endswith(".ogg") and "default_break_glass" in lines[0]


def test_weights_change_the_ranking(library, capsys):
    """keyword=0 removes the keyword channel's influence: the scores change."""
    both = search(capsys, library, "metal", "-k", "5", "--mode", "metadata")
    text_only = search(capsys, library, "metal", "-k", "5", "--mode", "metadata",
                       "--weights", "keyword=0,text=1")  # fmt: skip
    assert [r["score"] for r in both["results"]] != [r["score"] for r in text_only["results"]]
    t = [r["channels"]["text"]["rank"] for r in text_only["results"]]
    assert t == sorted(t)  # with keyword weight 0 the order is the text channel's order


def test_user_errors_exit_2(library, capsys):
    idx = str(library["index"])
    assert main(["search", "glass", "--index", idx, "--mode", "acoustic"]) == 2
    assert "no acoustic model" in capsys.readouterr().err
    assert main(["search", "glass", "--index", idx, "--weights", "loud=2"]) == 2
    assert "bad weight" in capsys.readouterr().err
    assert main(["search", "  ", "--index", idx]) == 2
    assert "empty query" in capsys.readouterr().err
    assert main(["search", "glass", "--index", str(library["root"] / "nothing")]) == 2
    assert "no index at" in capsys.readouterr().err
    assert main(["index", str(library["root"] / "missing"), "--index", idx]) == 2
    assert "not a folder" in capsys.readouterr().err


def test_similar_falls_back_to_metadata(library, capsys):
    glass = next(library["root"].rglob("default_break_glass.1.ogg"))
    capsys.readouterr()
    rc = main(["similar", str(glass), "--index", str(library["index"]), "-k", "2", "--json"])
    r = json.loads(capsys.readouterr().out)
    assert rc == 0 and r["mode"] == "metadata"
    assert any("metadata similarity" in n for n in r["notes"])
    assert glass.name not in names(r)  # the example itself is not a result
    assert all(n.startswith("default_break_glass") for n in names(r))


def test_status_counts_and_errors(library, capsys):
    capsys.readouterr()
    assert main(["status", "--index", str(library["index"]), "--json"]) == 0
    st = json.loads(capsys.readouterr().out)
    n_good = len(MINETEST_SOUNDS) + len(library["good"])  # minetest + generated good files
    assert st["files"] == n_good  # the symlinked duplicate and the loop add nothing
    assert st["segments"] == 0 and st["acoustic_model"] is None
    assert st["text_model_identity"].startswith("all-MiniLM-L6-v2@")
    by_name = {Path(e["path"]).name: e for e in st["error_list"]}
    for name, kind in BROKEN.items():
        assert by_name[name]["kind"] == kind, by_name[name]
        assert by_name[name]["reason"]
    assert "loop" in by_name["selfloop.wav"]["reason"]
    assert st["errors"] == len(BROKEN)
    assert st["errors_by_kind"]["corrupt"] == 2


def test_status_text(library, capsys):
    capsys.readouterr()
    assert main(["status", "--index", str(library["index"])]) == 0
    out = capsys.readouterr().out
    assert "acoustic  none (metadata only)" in out
    assert "[empty]" in out and "empty.wav" in out and "[corrupt]" in out


def test_text_channel_off_when_the_text_model_changed(library, capsys, tmp_path):
    import shutil
    import sqlite3

    idx = tmp_path / "idx"
    shutil.copytree(library["index"], idx)
    con = sqlite3.connect(idx / "index.db")
    with con:
        con.execute("UPDATE meta SET value = 'other-model@0' WHERE key = 'text_model_identity'")
    con.close()
    r = search(capsys, {"index": idx}, "breaking glass", "-k", "3")
    assert r["channels"] == ["keyword"] and any("other-model@0" in n for n in r["notes"])
    assert all(n.startswith("default_break_glass") for n in names(r))
    assert main(["index", "--index", str(idx), "--workers", "0", "--no-progress"]) == 0
    r = search(capsys, {"index": idx}, "breaking glass", "-k", "3")  # re-embedded: back on
    assert r["channels"] == ["keyword", "text"]


def test_a_broken_index_file_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "index.db").write_bytes(b"this is not sqlite" * 100)
    assert main(["status", "--index", str(tmp_path)]) == 2
    assert "is not a usable soundsearch index" in capsys.readouterr().err


def test_non_audio_files_are_counted_apart_from_errors(tmp_path, capsys):
    import numpy as np
    import soundfile as sf

    (tmp_path / "notes.txt").write_text("not a sound")
    (tmp_path / "cover.png").write_bytes(b"\x89PNG....")
    sf.write(tmp_path / "beep.wav", np.zeros(3200, dtype=np.float32), 32000)
    (tmp_path / "broken.wav").write_bytes(b"RIFF garbage")
    index = tmp_path / "idx"
    capsys.readouterr()
    assert main(["index", str(tmp_path), "--index", str(index), "--no-progress", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["not_audio"], report["errors"], report["new"]) == (2, 1, 1)
    assert main(["index", str(tmp_path), "--index", str(index), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "2 files are not audio" in out
