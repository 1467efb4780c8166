"""Acoustic search with a tiny model trained on synthetic data finds the right clips, end to end
through the CLI: `soundsearch synth` -> `soundsearch train tiny` -> `soundsearch index --model` ->
`soundsearch search --mode acoustic` with each evaluation clip's caption as the query.

Slow (CPU minutes: the training run dominates). The clips' file names say nothing about them
("synth evaluation 00042.wav"), and only the acoustic channel is asked, so the names cannot help.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from soundsearch.cli import main

pytestmark = pytest.mark.slow

pytest.importorskip("soundsearch.train", reason="soundsearch.train (the recipe) is missing")
pytest.importorskip("soundsearch.synth", reason="soundsearch.synth (synthetic data) is missing")
pytest.importorskip("lightning", reason="training needs the 'train' extra (lightning)")

EVAL_CLIPS = 40


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict:
    base = tmp_path_factory.mktemp("trained")
    data, run, idx = base / "synth", base / "run", base / "idx"
    # The data size the tiny recipe is tuned for (see recipes/tiny.toml), small validation split.
    synth = ["synth", str(data), "--clips", "2000", "--val-clips", "50"]
    assert main([*synth, "--eval-clips", str(EVAL_CLIPS)]) == 0
    # Two of the recipe's eight epochs (300 steps) already reach validation mAP@10 ~0.5 here.
    train = ["train", "tiny", "--data", f"clotho:{data}", "--out", str(run), "--set", "epochs=2"]
    assert main(train) == 0
    ckpt = run / "best.safetensors"
    assert ckpt.is_file(), f"training wrote no {ckpt}"
    rc = main(["index", str(data / "evaluation"), "--index", str(idx), "--model", str(ckpt),
               "--no-progress"])  # fmt: skip
    assert rc == 0
    return {"data": data, "run": run, "idx": idx}


def _captions(data: Path) -> dict[str, str]:
    with open(data / "clotho_captions_evaluation.csv", newline="", encoding="utf-8") as f:
        return {row["file_name"]: row["caption_1"] for row in csv.DictReader(f)}


def test_acoustic_search_finds_the_described_clips(trained, capsys):
    ranks = []
    for name, caption in _captions(trained["data"]).items():
        capsys.readouterr()
        args = ["search", caption, "--index", str(trained["idx"]), "--mode", "acoustic"]
        assert main([*args, "-k", str(EVAL_CLIPS), "--json"]) == 0
        names = [r["name"] for r in json.loads(capsys.readouterr().out)["results"]]
        ranks.append(names.index(name) + 1)
    r1 = sum(r == 1 for r in ranks) / len(ranks)
    r5 = sum(r <= 5 for r in ranks) / len(ranks)
    chance5 = 5 / EVAL_CLIPS
    assert r5 >= 3 * chance5, f"R@5 {r5:.2f} (chance {chance5:.2f}), R@1 {r1:.2f}, ranks {ranks}"


def _keywords(data: Path, split: str) -> dict[str, set[str]]:
    with open(data / f"clotho_metadata_{split}.csv", newline="", encoding="ISO-8859-1") as f:
        return {row["file_name"]: set(row["keywords"].split(";")) for row in csv.DictReader(f)}


def _overlap(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b)


def test_query_by_example_prefers_clips_that_sound_alike(trained, capsys):
    """Development clips as examples: the evaluation clips found share more of the example's
    keywords (event kinds, pitch, count, loudness) than evaluation clips do on average. (Measured
    with 30 examples: Jaccard overlap 0.49 for the top result, 0.41 for the top 5, 0.29 for all.)"""
    dev_kw = _keywords(trained["data"], "development")
    eval_kw = _keywords(trained["data"], "evaluation")
    top, top1, base = [], [], []
    for dev in sorted((trained["data"] / "development").glob("*.wav"))[:20]:
        capsys.readouterr()
        rc = main(["similar", str(dev), "--index", str(trained["idx"]), "-k", "5", "--json"])
        out = json.loads(capsys.readouterr().out)
        assert rc == 0 and out["mode"] == "acoustic" and len(out["results"]) == 5
        top += [_overlap(dev_kw[dev.name], eval_kw[r["name"]]) for r in out["results"]]
        top1.append(top[-5])
        base += [_overlap(dev_kw[dev.name], kw) for kw in eval_kw.values()]
    mean_top, mean_1, mean_all = (sum(x) / len(x) for x in (top, top1, base))
    msg = f"keyword overlap: top-1 {mean_1:.3f}, top-5 {mean_top:.3f}, all {mean_all:.3f}"
    assert mean_top > 1.2 * mean_all and mean_1 > 1.4 * mean_all, msg
