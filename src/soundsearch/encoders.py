"""The audio-encoder table: one row per name users pick, no branches elsewhere.

Every builder returns an ``nn.Module`` with the same interface (see docs/ARCHITECTURE.md):

- ``embed_dim``: feature size before the projection into the shared space;
- ``segment_samples``: how many 32 kHz samples one forward pass takes (10 s PaSST, 30 s CNNs);
- ``forward(wave [N, L], lengths [N] | None) -> [N, embed_dim]`` with the front-end inside.

Builders take keyword overrides (e.g. ``depth=2, embed_dim=64`` for tiny test models); the dual
encoder stores the name and the overrides in its config so a checkpoint rebuilds its model alone.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from torch import nn

from soundsearch.errors import UserError


@dataclass(frozen=True)
class EncoderRow:
    module: str  # where the builder lives (imported lazily)
    builder: str  # callable(name, **overrides) -> nn.Module
    description: str


AUDIO_ENCODERS: dict[str, EncoderRow] = {
    "passt-n": EncoderRow(
        "soundsearch.passt", "build_passt_encoder", "PaSST 16x16 no overlap, 10 s (paper's best)"
    ),
    "passt-s": EncoderRow("soundsearch.passt", "build_passt_encoder", "PaSST stride 10, 10 s"),
    "passt-l": EncoderRow(
        "soundsearch.passt", "build_passt_encoder", "PaSST light (7 blocks), stride 10, 10 s"
    ),
    "passt-s20": EncoderRow(
        "soundsearch.passt", "build_passt_encoder", "PaSST stride 10, 20 s positional grid"
    ),
    "passt-s30": EncoderRow(
        "soundsearch.passt", "build_passt_encoder", "PaSST stride 10, 30 s positional grid"
    ),
    "cnn10": EncoderRow("soundsearch.panns", "build_cnn_encoder", "PANNs CNN10, 30 s input"),
    "cnn14": EncoderRow("soundsearch.panns", "build_cnn_encoder", "PANNs CNN14, 30 s input"),
}


def build_audio_encoder(name: str, **overrides: Any) -> nn.Module:
    """Build the audio encoder ``name`` (a key of :data:`AUDIO_ENCODERS`) with random weights."""
    row = AUDIO_ENCODERS.get(name)
    if row is None:
        known = ", ".join(AUDIO_ENCODERS)
        raise UserError(f"unknown audio encoder {name!r}; choose one of: {known}")
    builder = getattr(importlib.import_module(row.module), row.builder)
    return builder(name, **overrides)
