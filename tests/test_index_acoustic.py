"""The acoustic channel through the CLI, with a tiny dual encoder (random weights: these tests check
the mechanics that do not depend on training: per-segment vectors, best-segment times, query by
example, model identity). Retrieval quality with a trained tiny model is test_index_trained.py."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from soundsearch.cli import main

pytest.importorskip("soundsearch.model", reason="soundsearch.model (the dual encoder) is missing")
pytest.importorskip("soundsearch.checkpoints", reason="soundsearch.checkpoints is missing")

SR = 32000


def _tone(seconds: float, freq: float) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _noise(seconds: float, seed: int, sr: int = SR) -> np.ndarray:
    return (0.1 * np.random.default_rng(seed).standard_normal(int(seconds * sr))).astype(np.float32)


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> dict:
    from helpers import tiny_model

    from soundsearch.checkpoints import save_model

    base = tmp_path_factory.mktemp("acoustic")
    ckpt = save_model(tiny_model(seed=0), base / "tiny.safetensors")
    other = save_model(tiny_model(seed=1), base / "other.safetensors")
    lib = base / "lib"
    lib.mkdir()
    # 25 s: noise, then the 440 Hz tone in segment 1 (10-20 s), then a different noise.
    sf.write(lib / "noise_then_tone.wav", np.concatenate(
        [_noise(10, 1), _tone(10, 440), _noise(5, 2)]), SR, subtype="FLOAT")  # fmt: skip
    sf.write(lib / "rumble.wav", _noise(3, 3), SR, subtype="FLOAT")
    sf.write(lib / "rumble_copy.wav", _noise(3, 3), SR, subtype="FLOAT")
    sf.write(lib / "long_take.wav", _noise(65, 4, 16000), 16000, subtype="PCM_16")  # resampled
    for i in range(4):
        sf.write(lib / f"other_{i}.wav", _tone(2 + i, 200 + 150 * i), SR, subtype="FLOAT")
    query = base / "query_tone.wav"
    sf.write(query, _tone(10, 440), SR, subtype="FLOAT")
    idx = base / "idx"
    rc = main(["index", str(lib), "--index", str(idx), "--model", str(ckpt), "--workers", "1",
               "--no-progress", "--batch-size", "4"])  # fmt: skip
    assert rc == 0
    return {"base": base, "ckpt": ckpt, "other": other, "lib": lib, "idx": idx, "query": query}


def run_json(capsys, *args: str) -> dict:
    capsys.readouterr()
    rc = main([*args, "--json"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    return json.loads(out.out)


def test_segments_and_model_identity_are_recorded(setup, capsys):
    from soundsearch.checkpoints import load_model, model_identity

    st = run_json(capsys, "status", "--index", str(setup["idx"]))
    assert st["files"] == 8
    assert st["segments"] == 3 + 1 + 1 + 7 + 4  # ceil(duration / 10 s) per file
    capsys.readouterr()
    assert main(["search", "take", "--index", str(setup["idx"]), "--mode", "metadata",
                 "--json"]) == 0  # fmt: skip
    take = json.loads(capsys.readouterr().out)["results"][0]
    assert take["name"] == "long_take.wav" and abs(take["duration"] - 65.0) < 1e-3
    assert st["acoustic_model"] == str(setup["ckpt"])
    assert st["acoustic_model_identity"] == model_identity(load_model(setup["ckpt"]))


def test_query_by_example_finds_the_best_segment(setup, capsys):
    r = run_json(capsys, "similar", str(setup["query"]), "--index", str(setup["idx"]), "-k", "3")
    assert r["mode"] == "acoustic" and r["channels"] == ["acoustic"]
    best = r["results"][0]
    assert best["name"] == "noise_then_tone.wav"
    assert best["time"] == 10.0  # the tone is the file's second segment
    assert best["score"] > 0.99  # identical samples: same vector up to float16 storage


def test_similar_indexed_file_uses_stored_vectors(setup, capsys):
    r = run_json(capsys, "similar", str(setup["lib"] / "rumble.wav"), "--index",
                 str(setup["idx"]), "-k", "2")  # fmt: skip
    names = [x["name"] for x in r["results"]]
    assert names[0] == "rumble_copy.wav" and "rumble.wav" not in names
    assert r["results"][0]["score"] > 0.99


def test_text_query_uses_all_channels(setup, capsys):
    idx = str(setup["idx"])
    r = run_json(capsys, "search", "deep rumble", "--index", idx, "-k", "8", "--mode", "acoustic")
    assert r["channels"] == ["acoustic"] and len(r["results"]) == 8
    long_take = next(x for x in r["results"] if x["name"] == "long_take.wav")
    assert long_take["time"] in {0.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0}
    hybrid = run_json(capsys, "search", "deep rumble", "--index", idx)
    assert hybrid["channels"] == ["keyword", "text", "acoustic"] and not hybrid["notes"]
    rumble = next(x for x in hybrid["results"] if x["name"] == "rumble.wav")
    assert set(rumble["channels"]) == {"keyword", "text", "acoustic"}


def test_a_different_model_is_refused_then_reindexed(setup, capsys, tmp_path):
    idx = tmp_path / "idx"
    shutil.copytree(setup["idx"], idx)
    args = ["index", str(setup["lib"]), "--index", str(idx), "--workers", "0", "--no-progress"]
    capsys.readouterr()
    assert main([*args, "--model", str(setup["other"])]) == 2
    err = capsys.readouterr().err
    assert "was built with acoustic model" in err and "--reindex" in err
    r = run_json(capsys, *args, "--model", str(setup["other"]), "--reindex")
    assert r["changed"] == 8 and r["segments"] == 16
    st = run_json(capsys, "status", "--index", str(idx))
    assert st["acoustic_model"] == str(setup["other"]) and st["segments"] == 16
    again = run_json(capsys, *args)  # the recorded model is reused: nothing to do
    assert again["unchanged"] == 8 and again["new"] + again["changed"] == 0


def test_missing_checkpoint_degrades_to_metadata(setup, capsys, tmp_path):
    idx = tmp_path / "idx"
    shutil.copytree(setup["idx"], idx)
    moved = Path(str(setup["ckpt"]) + ".away")
    setup["ckpt"].rename(moved)
    try:
        from soundsearch.index.acoustic import load_acoustic

        load_acoustic.cache_clear()
        r = run_json(capsys, "search", "rumble", "--index", str(idx))
        assert r["channels"] == ["keyword", "text"]
        assert any("not available" in n for n in r["notes"])
        capsys.readouterr()
        assert main(["search", "rumble", "--index", str(idx), "--mode", "acoustic"]) == 2
        assert "not available" in capsys.readouterr().err
    finally:
        moved.rename(setup["ckpt"])


def test_ann_option_gives_the_exact_answers_on_a_small_index(setup, capsys, tmp_path):
    pytest.importorskip("faiss", reason="the ann extra (faiss-cpu) is not installed")
    idx = tmp_path / "idx"
    shutil.copytree(setup["idx"], idx)
    exact = run_json(capsys, "similar", str(setup["query"]), "--index", str(idx), "-k", "5")
    r = run_json(capsys, "index", "--index", str(idx), "--ann", "faiss", "--no-progress")
    assert r["unchanged"] == 8
    assert len(list((idx / "cache").glob("ann-*.faiss"))) == 1
    approx = run_json(capsys, "similar", str(setup["query"]), "--index", str(idx), "-k", "5")
    assert [x["name"] for x in approx["results"]] == [x["name"] for x in exact["results"]]
    assert approx["results"][0]["score"] == exact["results"][0]["score"]  # re-scored exactly
