"""Researcher's path end to end: synthetic data -> train (interrupted, resumed) -> evaluate, via the CLI.

Also: malformed rows, missing and corrupt audio give clear messages naming the file (and line), and the
run continues or stops as the user chose, without losing finished epochs.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from soundsearch.cli import main

RECIPE = "tiny-ci"


def _synth(root: Path, clips: int, eval_clips: int = 40) -> Path:
    assert (
        main(
            [
                "-q",
                "synth",
                str(root),
                "--clips",
                str(clips),
                "--val-clips",
                "24",
                "--eval-clips",
                str(eval_clips),
                "--max-seconds",
                "4",
            ]
        )
        == 0
    )
    return root


def _epochs(out: Path) -> list[int]:
    path = out / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line)["epoch"] for line in path.read_text().splitlines() if line.strip()]


def _train_cmd(data: Path, out: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "soundsearch",
        "-q",
        "train",
        RECIPE,
        "--data",
        f"clotho:{data}",
        "--out",
        str(out),
        *extra,
    ]


def test_train_interrupt_resume_evaluate(tmp_path, capsys):
    data = _synth(tmp_path / "synth", clips=400)
    out = tmp_path / "run"
    proc = subprocess.Popen(
        _train_cmd(data, out),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    deadline = time.time() + 600
    while not _epochs(out) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    assert proc.poll() is None, "the run ended before it could be interrupted"
    assert _epochs(out) == [1]
    time.sleep(1.0)  # somewhere inside epoch 2
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=120)
    assert proc.returncode != 0
    assert (out / "best.safetensors").exists() and _epochs(out) == [1]  # epoch 1 is kept
    assert (out / "interrupted.ckpt").exists() or (out / "last.ckpt").exists()

    # continuing without --resume is refused; with --resume it finishes the remaining epochs
    assert main(["-q", "train", RECIPE, "--data", f"clotho:{data}", "--out", str(out)]) == 2
    assert "--resume" in capsys.readouterr().err
    assert (
        main(["-q", "train", RECIPE, "--data", f"clotho:{data}", "--out", str(out), "--resume"])
        == 0
    )
    epochs = _epochs(out)
    assert epochs == sorted(set(epochs)) and epochs[0] == 1 and epochs[-1] >= 2  # no epoch twice

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
    n = results["n_audio"]
    chance = sum(1.0 / r for r in range(1, 11)) / n  # expected mAP@10 of a random ranking
    assert results["text_to_audio"]["mAP@10"] > 4 * chance, results["text_to_audio"]
    assert results["text_to_audio"]["R@10"] > 3 * 10 / n


def _break_data(data: Path) -> tuple[Path, Path, Path]:
    dev = data / "development"
    files = sorted(dev.iterdir())
    corrupt, missing = files[3], files[5]
    corrupt.write_bytes(os.urandom(3000))  # a .wav that is not audio
    missing.unlink()
    csv_path = data / "clotho_captions_development.csv"
    with open(csv_path, "a", encoding="utf-8") as f:
        f.write('broken row.wav,"unterminated quote\n')
    return csv_path, corrupt, missing


def test_bad_data_stops_or_continues_as_chosen(tmp_path, capsys, caplog):
    data = _synth(tmp_path / "synth", clips=16, eval_clips=8)
    csv_path, corrupt, missing = _break_data(data)

    out = tmp_path / "strict"
    assert (
        main(
            [
                "train",
                RECIPE,
                "--data",
                f"clotho:{data}",
                "--out",
                str(out),
                "--set",
                "on_error='raise'",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert str(csv_path.name) in err and "line" in err  # names the file and the line

    out = tmp_path / "lenient"
    rc = main(
        [
            "train",
            RECIPE,
            "--data",
            f"clotho:{data}",
            "--out",
            str(out),
            "--set",
            "epochs=1",
            "--set",
            "batch_size=8",
            "--set",
            "limit_train_batches=1.0",
        ]
    )
    assert rc == 0 and (out / "best.safetensors").exists()
    logged = caplog.text
    assert csv_path.name in logged and missing.name in logged and corrupt.name in logged


def test_failure_mid_run_keeps_finished_epochs(tmp_path, capsys):
    """A file that becomes unreadable after epoch 1 stops a strict run; epoch 1 stays usable."""
    data = _synth(tmp_path / "synth", clips=32, eval_clips=8)
    out = tmp_path / "run"
    proc = subprocess.Popen(
        _train_cmd(
            data,
            out,
            "--set",
            "on_error='raise'",
            "--set",
            "epochs=4",
            "--set",
            "batch_size=8",
            "--set",
            "limit_train_batches=1.0",
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.time() + 600
    while not _epochs(out) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.1)
    for wav in (data / "development").glob("*.wav"):
        wav.write_bytes(b"RIFF....WAVEfmt garbage")  # every file now unreadable
    _, err = proc.communicate(timeout=300)
    assert proc.returncode != 0
    assert "unreadable audio" in err.decode() and ".wav" in err.decode()
    assert _epochs(out)[0] == 1
    assert main(["models", "info", str(out / "best.safetensors")]) == 0  # finished epoch intact
    assert '"epoch": 1' in capsys.readouterr().out
