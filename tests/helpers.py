"""Small builders shared by tests (tiny models, audio files)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from soundsearch.model import DualEncoder, ModelConfig
from soundsearch.text import TextConfig

TINY_PASST = {"depth": 2, "embed_dim": 64, "num_heads": 4}


def tiny_config(**kw) -> ModelConfig:
    base = {
        "audio_encoder": "passt-n",
        "audio_overrides": dict(TINY_PASST),
        "text": TextConfig(name="minilm", hidden_dropout=None, attention_dropout=None),
        "embed_dim": 32,
    }
    base.update(kw)
    return ModelConfig(**base)


def tiny_model(seed: int = 0, **kw) -> DualEncoder:
    import torch

    torch.manual_seed(seed)
    return DualEncoder(tiny_config(**kw)).eval()


def write_tone(
    path: Path, seconds: float, freq: float = 440.0, sr: int = 32000, seed: int = 0
) -> Path:
    t = np.arange(int(seconds * sr)) / sr
    rng = np.random.default_rng(seed)
    x = 0.3 * np.sin(2 * np.pi * freq * t) + 0.01 * rng.standard_normal(t.shape)
    sf.write(path, x.astype(np.float32), sr)
    return path
