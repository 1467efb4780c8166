"""A dual encoder with a CNN10 audio tower trains through the normal CLI (issue: PANNs encoders)."""

from __future__ import annotations

import json

import torch

from soundsearch.checkpoints import load_model
from soundsearch.cli import main

TINY_CNN = "{channels=[8, 16], pool_sizes=[[2, 2], [2, 2]], segment_samples=64000}"


def test_cnn10_dual_encoder_trains_and_evaluates(tmp_path, capsys):
    data = tmp_path / "synth"
    assert (
        main(
            [
                "-q",
                "synth",
                str(data),
                "--clips",
                "16",
                "--val-clips",
                "8",
                "--eval-clips",
                "8",
                "--max-seconds",
                "3",
            ]
        )
        == 0
    )
    out = tmp_path / "run"
    rc = main(
        [
            "-q",
            "train",
            "tiny",
            "--data",
            f"clotho:{data}",
            "--out",
            str(out),
            "--set",
            "model.audio_encoder=cnn10",
            "--set",
            f"model.audio_overrides={TINY_CNN}",
            "--set",
            "epochs=2",
            "--set",
            "batch_size=8",
            "--set",
            "limit_train_batches=3",
            "--set",
            "max_seconds=3.0",
        ]
    )
    assert rc == 0
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [x["epoch"] for x in lines] == [1, 2]
    model = load_model(out / "last.safetensors")
    assert model.config.audio_encoder == "cnn10" and model.segment_samples == 64000
    assert model.audio_encoder.embed_dim == 16
    # the CNN's weights moved away from their initialisation (the run really trained it)
    torch.manual_seed(0)
    fresh = type(model.audio_encoder.net)(model.audio_encoder.net.config)
    trained = model.audio_encoder.net.state_dict()
    moved = [
        k
        for k, v in fresh.state_dict().items()
        if v.is_floating_point() and not torch.equal(v, trained[k])
    ]
    assert any(k.startswith("conv_block1.conv1") for k in moved)
    capsys.readouterr()
    assert (
        main(
            [
                "evaluate",
                str(out / "best.safetensors"),
                "--data",
                f"clotho:{data}",
                "--split",
                "evaluation",
                "--json",
            ]
        )
        == 0
    )
    results = json.loads(capsys.readouterr().out)
    assert results["n_audio"] == 8 and 0.0 <= results["text_to_audio"]["mAP@10"] <= 1.0
