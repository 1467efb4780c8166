"""Multi-process training (DDP, two CPU processes with gloo) through the CLI: the loss sees the global
batch, validation runs once, and both ranks finish."""

from __future__ import annotations

import json
import subprocess
import sys

from soundsearch.cli import main


def test_two_process_ddp_run(tmp_path):
    data = tmp_path / "synth"
    assert (
        main(
            [
                "-q",
                "synth",
                str(data),
                "--clips",
                "32",
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
    cmd = [
        sys.executable,
        "-m",
        "soundsearch",
        "-q",
        "train",
        "tiny-ci",
        "--data",
        f"clotho:{data}",
        "--out",
        str(out),
        "--set",
        "accelerator='cpu'",
        "--set",
        "devices=2",
        "--set",
        "strategy='ddp'",
        "--set",
        "epochs=2",
        "--set",
        "batch_size=8",
        "--set",
        "limit_train_batches=2",
    ]
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("done:") == 1  # reported once, by rank 0
    epochs = [json.loads(x)["epoch"] for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [1, 2]  # validated once per epoch, not once per process
    assert (out / "best.safetensors").exists() and (out / "last.ckpt").exists()
