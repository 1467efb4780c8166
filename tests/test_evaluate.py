"""Evaluation end to end with a tiny dual encoder: embedding, metrics, output files, the CLI."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import soundfile as sf
import torch
from helpers import tiny_model, write_tone

from soundsearch.audio import load_audio
from soundsearch.checkpoints import save_model
from soundsearch.cli import main
from soundsearch.data import read_clotho
from soundsearch.data.records import AudioCaption
from soundsearch.errors import DataError
from soundsearch.evaluate import embed_audio, evaluate, score
from soundsearch.metrics import audio_to_text_metrics, text_to_audio_metrics
from soundsearch.synth import SynthConfig, write_synth


@pytest.fixture(scope="module")
def model():
    torch.set_num_threads(1)
    return tiny_model(seed=0)


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    write_synth(root, SynthConfig(clips=2, val_clips=2, eval_clips=5, min_seconds=1, max_seconds=2))
    return root


def test_long_files_embed_like_encode_audio(model, tmp_path):
    paths = [
        write_tone(tmp_path / "long.wav", 23.0, 300.0),  # three 10 s segments, the last partial
        write_tone(tmp_path / "short.wav", 1.5, 900.0),
        write_tone(tmp_path / "ten.wav", 10.0, 2000.0),
    ]
    emb, failed = embed_audio(model, paths, batch_size=2, progress=False)
    assert not failed and emb.shape == (3, 32)
    with torch.inference_mode():
        for i, p in enumerate(paths):
            wave = torch.from_numpy(load_audio(p))[None]
            ref = model.encode_audio(wave, torch.tensor([wave.shape[1]]))[0].numpy()
            np.testing.assert_allclose(emb[i], ref, atol=2e-5)
    again, _ = embed_audio(model, paths, batch_size=5, progress=False)
    np.testing.assert_allclose(again, emb, atol=1e-6)  # segment batching does not matter


def test_evaluate_matches_direct_computation_and_writes_files(model, synth_root, tmp_path):
    records = read_clotho(synth_root, "evaluation", on_missing="raise")
    out = {
        "json_path": tmp_path / "r.json",
        "submission_path": tmp_path / "sub.csv",
        "similarity_path": tmp_path / "sim.npy",
    }
    results = evaluate(model, records, batch_size=4, progress=False, **out)
    assert results["n_audio"] == 5 and results["n_captions"] == 25
    with torch.inference_mode():
        waves = [torch.from_numpy(load_audio(r.path)) for r in records]
        batch = torch.nn.utils.rnn.pad_sequence(waves, batch_first=True)
        audio = model.encode_audio(batch, torch.tensor([len(w) for w in waves])).numpy()
        text = model.encode_text([c for r in records for c in r.captions]).numpy()
    sim = text @ audio.T
    gt = np.repeat(np.arange(5), 5)
    np.testing.assert_allclose(np.load(out["similarity_path"]), sim, atol=1e-4)
    assert results["text_to_audio"] == pytest.approx(text_to_audio_metrics(sim, gt), abs=1e-6)
    assert results["audio_to_text"] == pytest.approx(audio_to_text_metrics(sim, gt), abs=1e-6)
    assert json.loads(out["json_path"].read_text())["text_to_audio"] == results["text_to_audio"]
    rows = list(csv.reader(out["submission_path"].open(encoding="utf-8")))
    assert rows[0] == ["caption"] + [f"fname_{k}" for k in range(1, 6)]  # 5 clips: top 5
    assert rows[1][0] == records[0].captions[0]
    assert rows[1][1:] == [records[j].path.name for j in np.argsort(-sim[0], kind="stable")]
    again = evaluate(model, records, batch_size=2, progress=False)
    assert again["text_to_audio"] == results["text_to_audio"]  # deterministic


def test_unreadable_audio_raises_or_is_left_out(model, synth_root, tmp_path):
    records = read_clotho(synth_root, "validation")
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"not audio at all")
    bad = AudioCaption("x/broken", broken, ("a broken file",), source="pairs")
    with pytest.raises(DataError, match="broken.wav"):
        score(model, records + [bad], progress=False)
    results = evaluate(model, [bad] + records, on_error="skip", progress=False)
    assert list(results["skipped_files"]) == [str(broken)]
    assert results["n_audio"] == 2 and results["n_captions"] == 10


def test_cli_evaluate_in_process(model, synth_root, tmp_path, capsys):
    ckpt = save_model(model, tmp_path / "tiny.safetensors")
    sub, sim = tmp_path / "sub.csv", tmp_path / "sim.npy"
    base = ["evaluate", str(ckpt), "--data", f"clotho:{synth_root}", "--no-progress"]
    options = f"--split evaluation --json --submission {sub} --similarity {sim}"
    assert main(base + options.split()) == 0
    printed = json.loads(capsys.readouterr().out)
    direct = evaluate(model, read_clotho(synth_root, "evaluation"), progress=False)
    assert printed["text_to_audio"] == pytest.approx(direct["text_to_audio"], abs=1e-5)
    assert np.load(sim).shape == (25, 5) and sub.read_text().startswith("caption,fname_1,")
    assert main(base + ["--split", "validation"]) == 0
    table = capsys.readouterr().out
    assert "text->audio (DCASE)" in table and "mAP@10" in table and "2 clips" in table


def test_cli_reports_missing_audio(model, synth_root, tmp_path, capsys):
    ckpt = save_model(model, tmp_path / "tiny.safetensors")
    root = tmp_path / "copy"
    root.mkdir()
    for name in ("clotho_captions_validation.csv", "clotho_metadata_validation.csv"):
        (root / name).write_bytes((synth_root / name).read_bytes())
    (root / "validation").mkdir()
    first = read_clotho(synth_root, "validation")[0].path
    sf.write(root / "validation" / first.name, sf.read(first)[0], 32000)
    args = [
        "evaluate",
        str(ckpt),
        "--data",
        f"clotho:{root}",
        "--split",
        "validation",
        "--no-progress",
    ]
    assert main(args) == 2
    assert "1 audio files not found" in capsys.readouterr().err
    assert main(args + ["--skip-unreadable", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["n_audio"] == 1 and printed["missing_files"] == 1
