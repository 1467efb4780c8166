"""PANNs CNN10 / CNN14 (Kong et al. 2020): the paper's CNN audio encoders (Table 3).

Written from the facts in REFERENCE_PANNS.md. Module names give exactly the state-dict keys of the
published checkpoints (``Cnn10_mAP=0.380.pth``, ``Cnn14_mAP=0.431.pth``), so those files load
strictly, the fixed front-end tensors included:

- ``spectrogram_extractor.stft.conv_real.weight`` / ``conv_imag.weight`` [513, 1, 1024]: windowed
  DFT kernels, and ``logmel_extractor.melW`` [513, 64]: the Slaney mel matrix. Frozen parameters
  (``requires_grad=False``), as in the reference, so they are part of every state dict.
- ``bn0`` (per mel bin), ``conv_block{i}.{conv1,conv2,bn1,bn2}``, ``fc1``, ``fc_audioset``.

Layout of feature maps: [B, C, T, F] with F the mel axis. The front-end always runs in float32 (a
full-scale tone has power 65536, above the float16 maximum), with autocast disabled around it.

Pooling: ``"reference"`` pools over every frame, padding included (the retrieval code pads every
clip to 30 s with zeros, so padding frames at -100 dB take part in max + mean); ``"masked"`` pools
only the frames a standalone run of the real audio would have (``1 + length // hop`` frames, then
floored by every pooling stage).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from soundsearch.errors import UserError

Pooling = Literal["reference", "masked"]
StftMode = Literal["fft", "conv"]

CNN_SEGMENT_SAMPLES = 960_000  # 30 s at 32 kHz: the retrieval code's one segment per clip


@dataclass(frozen=True)
class PannsConfig:
    """Everything that defines a CNN10/CNN14-style network (defaults: the 32 kHz checkpoints)."""

    sample_rate: int = 32000
    window_size: int = 1024  # n_fft = win_length; periodic Hann
    hop_size: int = 320  # 10 ms frames
    mel_bins: int = 64
    fmin: float = 50.0
    fmax: float = 14000.0
    classes_num: int = 527  # AudioSet head (fc_audioset), kept for strict loading
    channels: tuple[int, ...] = (64, 128, 256, 512)  # output channels of conv_block1..N
    pool_sizes: tuple[tuple[int, int], ...] = ((2, 2),) * 4  # (time, mel) avg pool per block
    block_dropout: float = 0.2  # after every conv block (training only)
    fc_dropout: float = 0.5  # before fc1 and on the embedding (training only)
    spec_augment: bool = False  # SpecAugment after bn0 in training mode (off in the retrieval code)
    time_drop_width: int = 64  # stripe widths are drawn from 0..width-1
    time_stripes: int = 2
    freq_drop_width: int = 8
    freq_stripes: int = 2
    pooling: Pooling = "reference"
    stft: StftMode = "fft"  # "fft": torch.stft; "conv": the stored kernels as a strided conv

    def __post_init__(self) -> None:
        if len(self.channels) != len(self.pool_sizes):
            raise ValueError(
                f"channels {self.channels} and pool_sizes {self.pool_sizes} differ in length"
            )
        if self.pooling not in ("reference", "masked"):
            raise ValueError(f"pooling must be 'reference' or 'masked', not {self.pooling!r}")
        if self.stft not in ("fft", "conv"):
            raise ValueError(f"stft must be 'fft' or 'conv', not {self.stft!r}")

    @property
    def embed_dim(self) -> int:
        return self.channels[-1]

    @property
    def min_samples(self) -> int:
        """Shortest input: reflect padding needs > n_fft/2 samples; pooling needs >= 1 frame."""
        frames = math.prod(t for t, _ in self.pool_sizes)
        return max(self.window_size // 2 + 1, (frames - 1) * self.hop_size)


PANNS_VARIANTS: dict[str, PannsConfig] = {
    "cnn10": PannsConfig(channels=(64, 128, 256, 512), pool_sizes=((2, 2),) * 4),
    "cnn14": PannsConfig(
        channels=(64, 128, 256, 512, 1024, 2048), pool_sizes=((2, 2),) * 5 + ((1, 1),)
    ),
}


# ----------------------------------------------------------------------------------------------
# front-end constants (built in float64)
# ----------------------------------------------------------------------------------------------
_MIN_LOG_HZ = 1000.0
_MIN_LOG_MEL = 15.0  # 1000 Hz / (200/3 Hz per mel)
_LOG_STEP = math.log(6.4) / 27.0


def hz_to_mel(f: Tensor) -> Tensor:
    """Slaney mel scale: linear (200/3 Hz per mel) below 1 kHz, logarithmic above."""
    lin = f / (200.0 / 3.0)
    log = _MIN_LOG_MEL + torch.log(torch.clamp(f, min=_MIN_LOG_HZ) / _MIN_LOG_HZ) / _LOG_STEP
    return torch.where(f >= _MIN_LOG_HZ, log, lin)


def mel_to_hz(m: Tensor) -> Tensor:
    lin = m * (200.0 / 3.0)
    log = _MIN_LOG_HZ * torch.exp(_LOG_STEP * (m - _MIN_LOG_MEL))
    return torch.where(m >= _MIN_LOG_MEL, log, lin)


def slaney_mel_matrix(sr: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> Tensor:
    """[n_fft // 2 + 1, n_mels] float64: area-normalised triangles on the Slaney mel scale."""
    f64, cpu = (
        torch.float64,
        "cpu",
    )  # explicit device: also works inside `with torch.device("meta")`
    lo_hi = hz_to_mel(torch.tensor([fmin, fmax], dtype=f64, device=cpu))
    mels = torch.linspace(float(lo_hi[0]), float(lo_hi[1]), n_mels + 2, dtype=f64, device=cpu)
    edges = mel_to_hz(mels)  # [n_mels + 2] Hz
    freqs = torch.linspace(0.0, sr / 2.0, n_fft // 2 + 1, dtype=f64, device=cpu)  # [K]
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]  # [n_mels, 1]
    rising = (freqs - lo) / (mid - lo)
    falling = (hi - freqs) / (hi - mid)
    tri = torch.clamp(torch.minimum(rising, falling), min=0.0)  # [n_mels, K]
    return (tri * (2.0 / (hi - lo))).T.contiguous()


def dft_kernels(n_fft: int) -> tuple[Tensor, Tensor]:
    """(real, imag) [n_fft // 2 + 1, 1, n_fft] float64: periodic-Hann-windowed DFT rows."""
    n = torch.arange(n_fft, dtype=torch.int64, device="cpu")
    k = torch.arange(n_fft // 2 + 1, dtype=torch.int64, device="cpu")
    window = torch.hann_window(n_fft, periodic=True, dtype=torch.float64, device="cpu")
    angle = 2.0 * math.pi * ((k[:, None] * n[None, :]) % n_fft).double() / n_fft  # exact phase
    real = window * torch.cos(angle)
    imag = -window * torch.sin(angle)
    return real[:, None, :], imag[:, None, :]


# ----------------------------------------------------------------------------------------------
# modules (names fixed by the official state dict)
# ----------------------------------------------------------------------------------------------
class _DftKernels(nn.Module):
    """Holds ``conv_real`` / ``conv_imag``: frozen strided-conv DFT kernels (stride = hop)."""

    def __init__(self, n_fft: int, hop: int):
        super().__init__()
        bins = n_fft // 2 + 1
        self.conv_real = nn.Conv1d(1, bins, n_fft, stride=hop, bias=False)
        self.conv_imag = nn.Conv1d(1, bins, n_fft, stride=hop, bias=False)
        real, imag = dft_kernels(n_fft)
        with torch.no_grad():
            self.conv_real.weight.copy_(real)
            self.conv_imag.weight.copy_(imag)
        self.conv_real.weight.requires_grad_(False)
        self.conv_imag.weight.requires_grad_(False)


class Spectrogram(nn.Module):
    """waveform [B, N] -> power spectrogram [B, T, n_fft/2 + 1], T = 1 + N // hop (centered)."""

    def __init__(self, n_fft: int, hop: int, mode: StftMode):
        super().__init__()
        self.n_fft, self.hop, self.mode = n_fft, hop, mode
        self.stft = _DftKernels(n_fft, hop)
        window = torch.hann_window(n_fft, periodic=True, dtype=torch.float64).float()
        self.register_buffer("window", window, persistent=False)  # not an official key

    def forward(self, wave: Tensor) -> Tensor:
        if self.mode == "conv":
            x = F.pad(wave[:, None, :], (self.n_fft // 2, self.n_fft // 2), mode="reflect")
            real = F.conv1d(x, self.stft.conv_real.weight.float(), stride=self.hop)  # [B, K, T]
            imag = F.conv1d(x, self.stft.conv_imag.weight.float(), stride=self.hop)
            return (real.square() + imag.square()).transpose(1, 2)
        spec = torch.stft(
            wave,
            self.n_fft,
            self.hop,
            self.n_fft,
            self.window.float(),
            center=True,
            pad_mode="reflect",
            return_complex=True,
        )  # [B, K, T]
        spec = torch.view_as_real(spec)
        return spec.square().sum(-1).transpose(1, 2)


class LogmelFilterBank(nn.Module):
    """power [B, T, K] -> log-mel [B, T, M] in dB (amin 1e-10, ref 1, no top_db clipping)."""

    def __init__(self, sr: int, n_fft: int, n_mels: int, fmin: float, fmax: float):
        super().__init__()
        self.melW = nn.Parameter(torch.empty(n_fft // 2 + 1, n_mels), requires_grad=False)
        with torch.no_grad():
            self.melW.copy_(slaney_mel_matrix(sr, n_fft, n_mels, fmin, fmax))

    def forward(self, power: Tensor) -> Tensor:
        mel = torch.matmul(power, self.melW.float())
        return 10.0 * torch.log10(torch.clamp(mel, min=1e-10))


class ConvBlock(nn.Module):
    """(3x3 conv, BN, ReLU) x 2, then average pooling. Registration order = official key order."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.bn2 = nn.BatchNorm2d(c_out)

    def forward(self, x: Tensor, pool: tuple[int, int]) -> Tensor:
        x = F.relu_(self.bn1(self.conv1(x)))
        x = F.relu_(self.bn2(self.conv2(x)))
        return F.avg_pool2d(x, pool) if pool != (1, 1) else x


@dataclass
class PannsFeatures:
    """Intermediate tensors of one forward pass (what parity tests and analyses need)."""

    logmel: Tensor  # [B, 1, T, M] float32 dB, before bn0
    feature_map: Tensor  # [B, C, T', M'] output of the last conv block
    pooled: Tensor  # [B, C] max + mean over (valid) time of the mel-averaged feature map
    hidden: Tensor  # [B, C] relu(fc1(pooled)): the embedding before its training-time dropout
    frames: Tensor | None = None  # [B] valid frames of feature_map (masked pooling)


def spec_augment(x: Tensor, cfg: PannsConfig, generator: torch.Generator | None = None) -> Tensor:
    """Zero random time and mel stripes of x [B, C, T, M], independently per example."""
    b = x.shape[0]
    for axis, width, stripes in (
        (2, cfg.time_drop_width, cfg.time_stripes),
        (3, cfg.freq_drop_width, cfg.freq_stripes),
    ):
        size = x.shape[axis]
        if stripes == 0 or width <= 0 or size < 2:
            continue
        w = torch.randint(0, min(width, size), (b, stripes), generator=generator)  # [B, S]
        start = (torch.rand(b, stripes, generator=generator) * (size - w)).long()
        pos = torch.arange(size, device="cpu")
        hit = ((pos >= start[..., None]) & (pos < (start + w)[..., None])).any(1)  # [B, size]
        shape = [b, 1, 1, 1]
        shape[axis] = size
        x = x.masked_fill(hit.to(x.device).view(shape), 0.0)
    return x


class Panns(nn.Module):
    """CNN10 / CNN14 network with its own front-end. ``forward`` returns the embedding [B, C]."""

    def __init__(self, config: PannsConfig):
        super().__init__()
        c = self.config = config
        self.spectrogram_extractor = Spectrogram(c.window_size, c.hop_size, c.stft)
        self.logmel_extractor = LogmelFilterBank(
            c.sample_rate, c.window_size, c.mel_bins, c.fmin, c.fmax
        )
        self.bn0 = nn.BatchNorm2d(c.mel_bins)
        c_in = 1
        for i, c_out in enumerate(c.channels, start=1):
            self.add_module(f"conv_block{i}", ConvBlock(c_in, c_out))
            c_in = c_out
        self.fc1 = nn.Linear(c_in, c_in)
        self.fc_audioset = nn.Linear(c_in, c.classes_num)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def blocks(self) -> list[ConvBlock]:
        return [getattr(self, f"conv_block{i}") for i in range(1, len(self.config.channels) + 1)]

    def logmel(self, wave: Tensor) -> Tensor:
        """wave [B, N] -> log-mel [B, 1, T, M] dB, always computed in float32."""
        if wave.shape[-1] < self.config.min_samples:
            raise ValueError(
                f"input of {wave.shape[-1]} samples is shorter than the minimum "
                f"{self.config.min_samples} for this network; zero-pad it first"
            )
        with torch.autocast(device_type=wave.device.type, enabled=False):
            power = self.spectrogram_extractor(wave.float())  # [B, T, K]
            return self.logmel_extractor(power)[:, None]  # [B, 1, T, M]

    def valid_frames(self, lengths: Tensor, total: int) -> list[Tensor]:
        """Frames holding real audio: after the front-end, then after every conv block."""
        v = torch.clamp(1 + lengths.long() // self.config.hop_size, 1, total)
        out = [v]
        for t_pool, _ in self.config.pool_sizes:
            total //= t_pool
            v = torch.clamp(v // t_pool, 1, total)
            out.append(v)
        return out

    def forward_features(self, wave: Tensor, lengths: Tensor | None = None) -> PannsFeatures:
        """All intermediate tensors; ``lengths`` [B] (samples) is used by masked pooling only."""
        logmel = self.logmel(wave)  # [B, 1, T, M]
        x = self.bn0(logmel.transpose(1, 3)).transpose(1, 3)  # normalise per mel bin
        if self.training and self.config.spec_augment:
            x = spec_augment(x, self.config)
        for block, pool in zip(self.blocks(), self.config.pool_sizes):
            x = block(x, pool)
            x = F.dropout(x, self.config.block_dropout, self.training)
        frames = None
        if self.config.pooling == "masked" and lengths is not None:
            frames = self.valid_frames(lengths.to(x.device), logmel.shape[2])[-1]
        pooled = self.pool(x, frames)  # [B, C]
        h = F.dropout(pooled, self.config.fc_dropout, self.training)
        hidden = F.relu_(self.fc1(h))
        return PannsFeatures(logmel, x, pooled, hidden, frames)

    @staticmethod
    def pool(feature_map: Tensor, frames: Tensor | None = None) -> Tensor:
        """Mean over mel, then max + mean over time (only the first ``frames[b]`` if given)."""
        x = feature_map.mean(dim=3)  # [B, C, T']
        if frames is None:
            return x.amax(dim=2) + x.mean(dim=2)
        valid = torch.arange(x.shape[2], device=x.device)[None, :] < frames[:, None]  # [B, T']
        valid = valid[:, None, :]
        peak = x.masked_fill(~valid, float("-inf")).amax(dim=2)
        mean = (x * valid).sum(dim=2) / frames[:, None].to(x.dtype)
        return peak + mean

    def embed(self, features: PannsFeatures) -> Tensor:
        """The reference's ``embedding`` output: dropout(hidden) (identity in eval)."""
        return F.dropout(features.hidden, self.config.fc_dropout, self.training)

    def classify(self, features: PannsFeatures) -> Tensor:
        """The reference's ``clipwise_output``: sigmoid(fc_audioset(hidden)) [B, classes]."""
        return torch.sigmoid(self.fc_audioset(features.hidden))

    def forward(self, wave: Tensor, lengths: Tensor | None = None) -> Tensor:
        return self.embed(self.forward_features(wave, lengths))

    def clipwise(self, wave: Tensor, lengths: Tensor | None = None) -> Tensor:
        return self.classify(self.forward_features(wave, lengths))


# ----------------------------------------------------------------------------------------------
# audio-encoder wrapper (the interface of soundsearch.encoders)
# ----------------------------------------------------------------------------------------------
class CnnAudioEncoder(nn.Module):
    """Zero-pads every clip to ``segment_samples`` (30 s, as the retrieval code) and embeds it.

    ``net`` holds the official keys. With ``pad_to_segment=False`` clips are only padded to the
    batch length (at least the network minimum): faster for short sounds, not the paper's numbers.
    """

    def __init__(
        self,
        config: PannsConfig,
        segment_samples: int = CNN_SEGMENT_SAMPLES,
        pad_to_segment: bool = True,
    ):
        super().__init__()
        self.net = Panns(config)
        self.embed_dim = config.embed_dim
        self.segment_samples = int(segment_samples)
        self.pad_to_segment = pad_to_segment

    def classifier_modules(self) -> list[nn.Module]:
        """The AudioSet head (``fc_audioset``): kept for strict loading, unused by the embedding."""
        return [self.net.fc_audioset]

    def forward(self, wave: Tensor, lengths: Tensor | None = None) -> Tensor:
        """wave [N, L] float32 32 kHz, L <= segment_samples; lengths [N] -> [N, embed_dim]."""
        n, length = wave.shape
        if length > self.segment_samples:
            raise ValueError(
                f"input of {length} samples exceeds one segment "
                f"({self.segment_samples}); cut it into segments first"
            )
        if lengths is None:
            lengths = torch.full((n,), length, dtype=torch.long, device=wave.device)
        else:  # samples past a clip's length are padding: make them exact zeros
            keep = torch.arange(length, device=wave.device)[None, :] < lengths[:, None]
            wave = wave * keep
        target = self.segment_samples if self.pad_to_segment else length
        target = max(target, self.net.config.min_samples)
        wave = F.pad(wave, (0, target - length))  # [N, target]
        return self.net(wave, lengths).float()  # [N, embed_dim]; float32 like PaSST


_ENCODER_KEYS = ("segment_samples", "pad_to_segment")


def build_cnn_encoder(name: str, **overrides: Any) -> CnnAudioEncoder:
    """CNN10 / CNN14 encoder with random weights; overrides change config fields (tiny tests)."""
    base = PANNS_VARIANTS.get(name)
    if base is None:
        raise UserError(f"unknown CNN encoder {name!r}; choose one of: {', '.join(PANNS_VARIANTS)}")
    valid = {f.name for f in dataclasses.fields(PannsConfig)} | set(_ENCODER_KEYS)
    unknown = sorted(set(overrides) - valid)
    if unknown:
        raise UserError(
            f"unknown option(s) {unknown} for audio encoder {name!r}; "
            f"valid: {', '.join(sorted(valid))}"
        )
    enc_args = {k: overrides.pop(k) for k in _ENCODER_KEYS if k in overrides}
    if "channels" in overrides:
        overrides["channels"] = tuple(int(c) for c in overrides["channels"])
    if "pool_sizes" in overrides:
        overrides["pool_sizes"] = tuple(tuple(int(v) for v in p) for p in overrides["pool_sizes"])
    config = dataclasses.replace(base, **overrides)
    return CnnAudioEncoder(config, **enc_args)
