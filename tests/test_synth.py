"""The synthetic ClothoV2-style data set: layout, determinism, truthful captions, the CLI."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from soundsearch.cli import main
from soundsearch.data import read_clotho
from soundsearch.data.clotho import read_clotho_metadata
from soundsearch.synth import (
    KINDS,
    LOUD_ADJ,
    LOUD_ADV,
    NOUNS,
    PITCH_WORDS,
    ClipSpec,
    SynthConfig,
    captions_for,
    render_clip,
    write_synth,
)

SMALL = SynthConfig(clips=12, val_clips=3, eval_clips=4, seed=5, min_seconds=1.0, max_seconds=2.0)


def digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_layout_read_back_by_clotho_reader(tmp_path):
    summary = write_synth(tmp_path, SMALL)
    assert summary["clips"] == {"development": 12, "validation": 3, "evaluation": 4}
    for split, n in summary["clips"].items():
        recs = read_clotho(tmp_path, split, on_missing="raise")
        assert len(recs) == n
        for r in recs:
            assert len(r.captions) == 5 and len(set(r.captions)) == 5
            assert r.keywords and r.meta["freesound_id"].isdigit()
            info = sf.info(r.path)
            assert info.samplerate == 32000 and info.channels == 1
            assert 1.0 <= info.duration <= 2.0 + 1e-3
    meta = read_clotho_metadata(tmp_path, "evaluation")
    assert len(meta) == 4
    ids = [
        r.meta["sound_id"] for s in ("development", "evaluation") for r in read_clotho(tmp_path, s)
    ]
    assert len(set(ids)) == len(ids)  # unique across splits


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    write_synth(tmp_path / "a", SMALL)
    write_synth(tmp_path / "b", SMALL)
    assert digest(tmp_path / "a") == digest(tmp_path / "b")
    write_synth(tmp_path / "c", SynthConfig(**{**SMALL.__dict__, "seed": 6}))
    a, c = digest(tmp_path / "a"), digest(tmp_path / "c")
    assert a["clotho_captions_development.csv"] != c["clotho_captions_development.csv"]
    first = "development/synth development 00000.wav"
    assert a[first] != c[first]


def test_descriptions_unique_within_a_split(tmp_path):
    write_synth(
        tmp_path, SynthConfig(clips=60, val_clips=1, eval_clips=1, min_seconds=1, max_seconds=1)
    )
    keys = [(r.keywords, r.captions) for r in read_clotho(tmp_path, "development")]
    assert len({k for k, _ in keys}) > 50  # keyword sets collapse synonyms; nearly all distinct


def _mentions(caption: str, words) -> bool:
    return any(re.search(rf"\b{re.escape(w)}\b", caption) for w in words)


@pytest.mark.parametrize("seed", range(5))
def test_every_caption_names_every_attribute(seed):
    rng = np.random.default_rng(seed)
    spec = ClipSpec((("chirp_up", "high", 2), ("hum", "low", 1)), "quiet")
    for caption in captions_for(spec, rng):
        text = caption.lower()
        assert _mentions(text, [n for pair in NOUNS["chirp_up"] for n in pair])
        assert _mentions(text, [n for pair in NOUNS["hum"] for n in pair])
        assert _mentions(text, PITCH_WORDS["high"]) and _mentions(text, PITCH_WORDS["low"])
        assert _mentions(text, ("two", "pair")) and _mentions(text, ("a", "one", "single"))
        assert _mentions(text, LOUD_ADJ["quiet"] + LOUD_ADV["quiet"])
        assert not _mentions(text, LOUD_ADJ["loud"] + LOUD_ADV["loud"])
        # order: the chirps come first in every template
        first = min(text.find(n) for pair in NOUNS["chirp_up"] for n in pair if n in text)
        second = min(text.find(n) for pair in NOUNS["hum"] for n in pair if n in text)
        assert (first < second) != (" after " in text)


def centroid(x: np.ndarray, sr: int = 32000) -> float:
    mag = np.abs(np.fft.rfft(x)) ** 2  # power-weighted: the events dominate the noise floor
    return float((np.fft.rfftfreq(x.size, 1 / sr) * mag).sum() / mag.sum())


@pytest.mark.parametrize("kind", KINDS)
def test_attributes_are_audible(kind):
    def clip(pitch, loud="loud", count=1):
        spec = ClipSpec(((kind, pitch, count),), loud)
        return render_clip(spec, np.random.default_rng(0), 32000, 3.0, 3.0)

    assert centroid(clip("high")) > 2.5 * centroid(clip("low"))
    assert np.abs(clip("low", "loud")).max() > 5 * np.abs(clip("low", "quiet")).max()

    # three events hold more sound than one (onsets above the floor)
    def active(x):
        env = np.abs(x).reshape(-1, 320).max(axis=1) > 0.1
        return int((env[1:] & ~env[:-1]).sum())

    assert active(clip("high", count=3)) > active(clip("high", count=1))


def test_cli_writes_and_refuses_to_overwrite(tmp_path, capsys):
    out = tmp_path / "synth"
    options = "--clips 4 --eval-clips 2 --val-clips 2 --max-seconds 1.5 --min-seconds 1 --seed 3"
    assert main(["synth", str(out), *options.split()]) == 0
    printed = capsys.readouterr().out
    assert "wrote 8 clips" in printed and f"clotho:{out}" in printed
    assert len(read_clotho(out, "evaluation", on_missing="raise")) == 2
    assert main(["synth", str(out), "--clips", "4"]) == 2
    assert "--force" in capsys.readouterr().err
    assert main(["synth", str(out), "--force", "--max-seconds", "1"]) == 2  # min 2 s > max
    assert "--min-seconds" in capsys.readouterr().err
    options = "--clips 3 --force --min-seconds 1 --max-seconds 1"
    assert main(["synth", str(out), *options.split()]) == 0
    assert len(read_clotho(out, "development", on_missing="raise")) == 3
    # the earlier run's fourth clip is gone
    assert len(list((out / "development").glob("*.wav"))) == 3
