"""The PaSST log-mel front-end: waveform at 32 kHz -> normalised log-mel "image" [B, 1, 128, T].

Exactly the recipe of the PaSST authors (REFERENCE.md section 1): pre-emphasis, STFT with an
800-sample symmetric Hann window inside a 1024-point FFT, power spectrum, Kaldi-style mel
filterbank (built here in float64), ``log(x + 1e-5)`` and ``(x + 4.5) / 5``. A 10 s clip gives
1000 frames.

Evaluation is deterministic (fmin 0 Hz, fmax 15 kHz, one cached filterbank). In ``train()`` mode
the filterbank edges are jittered once per batch and optional SpecAugment masks are applied per
example; all randomness comes from torch's global CPU generator, so ``torch.manual_seed`` makes
it reproducible.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

PREEMPHASIS = 0.97  # y[n] = x[n+1] - 0.97 x[n]
LOG_OFFSET = 1e-5  # log(mel + 1e-5)
NORM_SHIFT, NORM_SCALE = 4.5, 5.0  # (log_mel + 4.5) / 5: the authors' fixed normalisation


@dataclass
class MelConfig:
    """Front-end settings; the defaults are those of every released PaSST checkpoint."""

    sr: int = 32000  # sample rate of the input waveform (Hz)
    n_fft: int = 1024  # FFT size; 513 frequency bins
    win_length: int = 800  # symmetric Hann window, zero-padded (centred) to n_fft
    hop: int = 320  # 10 ms at 32 kHz: 100 frames per second
    n_mels: int = 128  # mel bands (the PaSST input height)
    fmin: float = 0.0  # lowest filterbank edge (Hz) in evaluation
    fmax: float = 15000.0  # highest filterbank edge (Hz) in evaluation
    fmin_aug_range: int = 10  # training: fmin + randint(0..range-1); 1 switches the jitter off
    fmax_aug_range: int = 2000  # training: fmax + range//2 - randint(0..range-1); 1 = off
    freqm: int = 0  # training: frequency mask of up to this many mel bins per example (2023: 48)
    timem: int = 0  # training: time mask of up to this many frames per example (2023: 192)

    def __post_init__(self) -> None:
        if not 0 <= self.fmin < self.fmax <= self.sr / 2:
            raise ValueError(
                f"need 0 <= fmin < fmax <= sr/2, got fmin={self.fmin} fmax={self.fmax}"
            )
        if self.win_length > self.n_fft:
            raise ValueError(f"win_length {self.win_length} is longer than n_fft {self.n_fft}")
        if self.fmin_aug_range < 1 or self.fmax_aug_range < 1:
            raise ValueError("fmin_aug_range and fmax_aug_range must be >= 1 (1 = no jitter)")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MelConfig:
        """Build from a dict (e.g. ``{"freqm": 48}``), naming any unknown key."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown mel settings {unknown}; known: {sorted(known)}")
        return cls(**d)

    def num_frames(self, n_samples: int) -> int:
        """Frames the front-end gives for ``n_samples`` samples (pre-emphasis drops one)."""
        return 1 + (int(n_samples) - 1) // self.hop


def _mel(f: Tensor) -> Tensor:
    return 1127.0 * torch.log1p(f / 700.0)


def kaldi_mel_banks(n_mels: int, n_fft: int, sr: float, fmin: float, fmax: float) -> Tensor:
    """Kaldi-style triangular mel filterbank, float64 [n_mels, n_fft // 2 + 1].

    ``n_mels + 2`` edges equally spaced on mel(f) = 1127 ln(1 + f / 700) between fmin and fmax;
    triangles peak at 1 (no area normalisation) and are evaluated on the ``n_fft // 2`` bins
    k * sr / n_fft; the Nyquist bin gets a zero column, as in the PaSST authors' code.
    """
    lo = 1127.0 * math.log1p(fmin / 700.0)
    delta = (1127.0 * math.log1p(fmax / 700.0) - lo) / (n_mels + 1)
    band = torch.arange(n_mels, dtype=torch.float64)[:, None]  # [M, 1]
    left = lo + band * delta
    center = lo + (band + 1.0) * delta
    right = lo + (band + 2.0) * delta
    bins = torch.arange(n_fft // 2, dtype=torch.float64) * (sr / n_fft)  # [K]
    m = _mel(bins)[None, :]  # [1, K]
    up = (m - left) / (center - left)
    down = (right - m) / (right - center)
    banks = torch.clamp(torch.minimum(up, down), min=0.0)  # [M, K]
    return F.pad(banks, (0, 1))  # [M, K + 1]: zero Nyquist column


def _band_mask(x: Tensor, max_width: int, dim: int) -> Tensor:
    """Zero one random band of up to ``max_width`` entries along ``dim`` (1 = mel, 2 = time) of
    each example of ``x`` [B, M, T]; the width and start are drawn per example."""
    B, size = x.shape[0], x.shape[dim]
    width = torch.rand(B) * min(max_width, size)  # [B], CPU generator: seedable on any device
    start = torch.rand(B) * (size - width)
    lo = start.floor().long()
    hi = (start + width).floor().long()
    pos = torch.arange(size)
    band = (pos[None, :] >= lo[:, None]) & (pos[None, :] < hi[:, None])  # [B, size]
    band = band.to(x.device)
    band = band[:, :, None] if dim == 1 else band[:, None, :]
    return x.masked_fill(band, 0.0)


class MelFrontend(nn.Module):
    """wave [B, N] float32 at ``config.sr`` -> normalised log-mel [B, 1, n_mels, T].

    The whole front-end runs in float32 even under autocast (the log of a low-precision mel
    would lose the quiet parts of the spectrum).
    """

    def __init__(self, config: MelConfig | None = None):
        super().__init__()
        self.config = config or MelConfig()
        c = self.config
        # The window and the evaluation filterbank are derived constants: not saved in checkpoints.
        window = torch.hann_window(c.win_length, periodic=False, dtype=torch.float64)
        self.register_buffer("window", window.float(), persistent=False)
        banks = kaldi_mel_banks(c.n_mels, c.n_fft, c.sr, c.fmin, c.fmax)
        self.register_buffer("mel_banks", banks.float(), persistent=False)

    def power_spectrogram(self, wave: Tensor) -> Tensor:
        """wave [B, N] -> |STFT|^2 [B, n_fft // 2 + 1, T] after pre-emphasis."""
        c = self.config
        x = torch.sub(wave[:, 1:], wave[:, :-1], alpha=PREEMPHASIS)  # [B, N - 1], one pass
        spec = torch.stft(
            x,
            c.n_fft,
            hop_length=c.hop,
            win_length=c.win_length,
            window=self.window.float(),  # float32 even if the module was cast
            center=True,
            pad_mode="reflect",
            normalized=False,
            onesided=True,
            return_complex=True,
        )  # [B, K, T] complex
        return spec.real.square() + spec.imag.square()  # [B, K, T]

    def current_banks(self) -> Tensor:
        """The cached evaluation filterbank, or in training one with jittered edges."""
        c = self.config
        if not self.training or (c.fmin_aug_range == 1 and c.fmax_aug_range == 1):
            return self.mel_banks
        fmin = c.fmin + int(torch.randint(c.fmin_aug_range, (1,)))
        fmax = c.fmax + c.fmax_aug_range // 2 - int(torch.randint(c.fmax_aug_range, (1,)))
        fmax = min(fmax, c.sr / 2)
        banks = kaldi_mel_banks(c.n_mels, c.n_fft, c.sr, fmin, fmax)
        return banks.to(device=self.mel_banks.device, dtype=torch.float32)

    def forward(self, wave: Tensor) -> Tensor:
        if wave.dim() != 2:
            raise ValueError(f"expected a waveform batch [B, N], got shape {tuple(wave.shape)}")
        shortest = self.config.n_fft // 2 + 2  # reflect padding needs more than n_fft / 2
        if wave.shape[-1] < shortest:
            raise ValueError(
                f"waveform of {wave.shape[-1]} samples is too short for the mel front-end "
                f"(at least {shortest}); zero-pad short clips"
            )
        with torch.autocast(device_type=wave.device.type, enabled=False):
            power = self.power_spectrogram(wave.float())  # [B, K, T]
            mel = torch.matmul(self.current_banks().float(), power)  # [B, M, T]
            mel = torch.log(mel + LOG_OFFSET)
            if self.training and self.config.freqm > 0:
                mel = _band_mask(mel, self.config.freqm, dim=1)
            if self.training and self.config.timem > 0:
                mel = _band_mask(mel, self.config.timem, dim=2)
            mel = (mel + NORM_SHIFT) / NORM_SCALE
        return mel.unsqueeze(1)  # [B, 1, M, T]
