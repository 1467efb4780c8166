"""The dual encoder: audio tower + text tower, linear projections into a shared space, temperature.

Audio longer than one segment is cut into consecutive segments of ``audio_encoder.segment_samples``;
the last partial segment is zero-padded to a full segment; the features of every segment that holds
real audio are averaged, and only then projected (REFERENCE.md section 4). Embeddings are
L2-normalised; similarity = A @ T.T / |tau|.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from soundsearch.encoders import build_audio_encoder
from soundsearch.text import TextConfig, TextEncoder


@dataclass
class ModelConfig:
    """Everything needed to rebuild a :class:`DualEncoder` (weights aside). Stored in checkpoints."""

    audio_encoder: str = "passt-n"  # a row of soundsearch.encoders.AUDIO_ENCODERS
    audio_overrides: dict[str, Any] = field(default_factory=dict)  # e.g. tiny test models
    text: TextConfig = field(default_factory=TextConfig)
    embed_dim: int = 1024  # shared space
    tau_init: float = 0.01  # the 2023 scripts; the successors fix 0.05
    tau_learnable: bool = True

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        d = dict(d)
        d["text"] = TextConfig(**d.get("text", {}))
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in d.items() if k in known})


def split_segments(wave: Tensor, lengths: Tensor, seg: int) -> tuple[Tensor, Tensor, Tensor]:
    """Cut a padded batch into the segments that hold real audio.

    wave [B, L], lengths [B] -> segments [M, seg] (zero-padded), segment lengths [M],
    owner [M] (index of the batch item each segment belongs to). Items of length 0 get one
    all-zero segment so that every item has an embedding.
    """
    B, L = wave.shape
    S = max(1, -(-L // seg))
    if S * seg != L:
        wave = F.pad(wave, (0, S * seg - L))
    segs = wave.view(B, S, seg)
    starts = torch.arange(S, device=wave.device) * seg  # [S]
    lengths = lengths.to(wave.device).clamp(0, L)
    keep = starts[None, :] < lengths[:, None]  # [B, S]
    keep[:, 0] = True
    seg_len = (lengths[:, None] - starts[None, :]).clamp(0, seg)  # [B, S]
    owner = torch.arange(B, device=wave.device)[:, None].expand(B, S)
    return segs[keep], seg_len[keep], owner[keep]


class DualEncoder(nn.Module):
    """Audio and text towers mapped into one normalised space."""

    def __init__(self, config: ModelConfig, text_encoder: TextEncoder | None = None):
        super().__init__()
        self.config = config
        self.audio_encoder = build_audio_encoder(config.audio_encoder, **config.audio_overrides)
        # The AudioSet classification heads take no part in retrieval: frozen, so that training
        # (DDP especially) sees no parameter without a gradient.
        for head in self.audio_encoder.classifier_modules():
            head.requires_grad_(False)
        self.text_encoder = text_encoder or TextEncoder.from_pretrained(config.text)
        self.audio_proj = nn.Linear(self.audio_encoder.embed_dim, config.embed_dim)
        self.text_proj = nn.Linear(self.text_encoder.embed_dim, config.embed_dim)
        tau = torch.tensor(float(config.tau_init))
        if config.tau_learnable:
            self.tau = nn.Parameter(tau)
        else:
            self.register_buffer("tau", tau)

    @property
    def segment_samples(self) -> int:
        return int(self.audio_encoder.segment_samples)

    @property
    def logit_scale(self) -> Tensor:
        return 1.0 / self.tau.abs()

    # audio ---------------------------------------------------------------------------------
    def encode_segments(self, wave: Tensor, lengths: Tensor | None = None) -> Tensor:
        """Per-segment features before projection: wave [N, L <= seg] -> [N, F]."""
        seg = self.segment_samples
        if wave.shape[-1] > seg:
            raise ValueError(f"segment of {wave.shape[-1]} samples is longer than {seg}")
        if lengths is None:
            lengths = torch.full((wave.shape[0],), wave.shape[-1], device=wave.device)
        if wave.shape[-1] < seg:
            wave = F.pad(wave, (0, seg - wave.shape[-1]))
        return self.audio_encoder(wave, lengths)

    def project_audio(self, features: Tensor) -> Tensor:
        """Features [N, F] -> normalised embeddings [N, D]."""
        return F.normalize(self.audio_proj(features).float(), dim=-1)

    def audio_features(self, wave: Tensor, lengths: Tensor | None = None) -> Tensor:
        """Mean of the features of each item's real segments: wave [B, L] -> [B, F]."""
        B = wave.shape[0]
        if lengths is None:
            lengths = torch.full((B,), wave.shape[-1], device=wave.device)
        segs, seg_len, owner = split_segments(wave, lengths, self.segment_samples)
        feats = self.audio_encoder(segs, seg_len)  # [M, F]
        summed = torch.zeros(B, feats.shape[-1], device=feats.device, dtype=feats.dtype)
        summed.index_add_(0, owner, feats)
        counts = torch.bincount(owner, minlength=B).clamp_min(1).to(feats.dtype)
        return summed / counts[:, None]

    def encode_audio(self, wave: Tensor, lengths: Tensor | None = None) -> Tensor:
        """Waveforms [B, L] (32 kHz, zero-padded) + real lengths [B] -> normalised [B, D]."""
        return self.project_audio(self.audio_features(wave, lengths))

    # text ----------------------------------------------------------------------------------
    def encode_text(self, captions: list[str]) -> Tensor:
        """Captions -> normalised [B, D]."""
        return self.project_text(self.text_encoder.encode(captions))

    def project_text(self, features: Tensor) -> Tensor:
        """Sentence features [B, T] -> normalised embeddings [B, D]."""
        return F.normalize(self.text_proj(features).float(), dim=-1)

    def forward(self, wave: Tensor, lengths: Tensor, captions: list[str]) -> tuple[Tensor, Tensor]:
        """Training pass: (audio embeddings [B, D], text embeddings [B, D]), both normalised."""
        return self.encode_audio(wave, lengths), self.encode_text(captions)
