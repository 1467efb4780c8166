"""PaSST, the Patchout faSt Spectrogram Transformer (Koutini et al., Interspeech 2022).

A ViT-B shaped transformer over 16x16 patches of the log-mel "image", with separate frequency
and time positional embeddings, a cls and a dist token, and structured patchout in training
(REFERENCE.md section 2). Parameter names and shapes are exactly those of the authors' released
checkpoints, so those files load strictly into :class:`PaSST`.

Speed without changing the function: the retrieval features are ``(token0 + token1) / 2``
after the final norm, so the last block computes its queries, projection and MLP for the two
class tokens only (keys and values still see every patch). Attention runs through
``scaled_dot_product_attention``; CPU inference uses oneDNN's fused linear kernels on weights
packed once (see "CPU inference kernels" and benchmarks/README.md).

Contents: config and variant table, modules, the audio-encoder wrapper and its builder
(the ``passt-*`` rows of :data:`soundsearch.encoders.AUDIO_ENCODERS`).
"""

from __future__ import annotations

import platform
import weakref
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from soundsearch.errors import UserError
from soundsearch.frontend import MelConfig, MelFrontend


@dataclass
class PaSSTConfig:
    """Architecture and training-time regularisation of one PaSST."""

    img_size: tuple[int, int] = (128, 998)  # (mel bins, frames) the positional grid is made for
    patch_size: int = 16  # square patches
    stride: int | tuple[int, int] = 10  # patch stride (freq, time); 16 = no overlap (PaSST-N)
    depth: int = 12  # transformer blocks
    embed_dim: int = 768  # token width = feature size
    num_heads: int = 12
    mlp_ratio: float = 4.0  # MLP hidden width = mlp_ratio * embed_dim
    qkv_bias: bool = True
    distilled: bool = True  # cls + dist tokens (all released PaSSTs); False: cls only
    num_classes: int = 527  # AudioSet classes of the classification head
    layer_norm_eps: float = 1e-6  # blocks and final norm (the head's LayerNorm uses 1e-5)
    s_patchout_t: int = 0  # training: time columns dropped (structured patchout)
    s_patchout_f: int = 0  # training: frequency rows dropped (structured patchout)
    u_patchout: int = 0  # training: patches dropped at random after flattening
    drop_rate: float = 0.0  # dropout after the embeddings, in the MLP and after attention
    attn_drop_rate: float = 0.0  # dropout on attention weights
    drop_path_rate: float = 0.0  # stochastic depth, increasing linearly to this over the blocks

    def __post_init__(self) -> None:
        self.img_size = tuple(int(v) for v in self.img_size)  # JSON gives lists
        if not isinstance(self.stride, int):
            self.stride = tuple(int(v) for v in self.stride)
        if self.depth < 1:
            raise ValueError(f"depth must be at least 1, got {self.depth}")
        if self.embed_dim % self.num_heads:
            raise ValueError(
                f"embed_dim {self.embed_dim} is not divisible by {self.num_heads} heads"
            )

    @property
    def strides(self) -> tuple[int, int]:
        """(frequency stride, time stride)."""
        return (self.stride, self.stride) if isinstance(self.stride, int) else self.stride

    @property
    def grid(self) -> tuple[int, int]:
        """Positional grid (frequency rows, time columns): ``img_size // stride``, as released."""
        sf, st = self.strides
        return self.img_size[0] // sf, self.img_size[1] // st

    @property
    def num_tokens(self) -> int:
        """Class tokens in front of the patches: 2 (cls, dist) or 1."""
        return 2 if self.distilled else 1

    @property
    def max_frames(self) -> int:
        """Longest input (mel frames) whose patches all have a time position."""
        st = self.strides[1]
        return (self.grid[1] - 1) * st + self.patch_size + st - 1

    def patch_grid(self, n_mels: int, n_frames: int) -> tuple[int, int]:
        """Patches (rows, columns) the patch convolution makes of an [n_mels, n_frames] input."""
        sf, st = self.strides
        return (n_mels - self.patch_size) // sf + 1, (n_frames - self.patch_size) // st + 1

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PaSSTConfig:
        """Build from a dict such as a fixture's ``config`` JSON, naming any unknown key."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown PaSST settings {unknown}; known: {sorted(known)}")
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_10S: dict[str, Any] = {"img_size": (128, 998), "stride": 10, "s_patchout_f": 3, "s_patchout_t": 50}
# One row per name users pick. Patchout values are the retrieval-training ones of the paper
# (Table 2); PaSST-S20 used 11/27/53/80 time columns for 2/5/10/15 s snippets: the row keeps
# the 15 s value. Released checkpoints: soundsearch.hub.
PASST_VARIANTS: dict[str, PaSSTConfig] = {
    "passt-n": PaSSTConfig(img_size=(128, 1000), stride=16, s_patchout_f=2, s_patchout_t=15),
    "passt-s": PaSSTConfig(**_10S),
    "passt-l": PaSSTConfig(**_10S, depth=7),
    "passt-s20": PaSSTConfig(img_size=(128, 2000), stride=10, s_patchout_f=3, s_patchout_t=80),
    "passt-s30": PaSSTConfig(img_size=(128, 3000), stride=10, s_patchout_f=3, s_patchout_t=0),
}


# ----------------------------------------------------------------------------------------------
# CPU inference kernels
# ----------------------------------------------------------------------------------------------
# In CPU inference (no autograd) the linear layers run through oneDNN's fused kernel on weights
# packed once in the compute dtype: on an AVX-512 (Zen 4) CPU it is ~1.2x faster than PyTorch's
# float32 MKL path and ~1.1x faster than autocast's per-call bfloat16 weight casts, and fuses the
# GELU. Everything else (training, GPUs, float16) uses the standard ops. See benchmarks/.
def _has_onednn_linear() -> bool:
    if platform.machine().lower() not in ("x86_64", "amd64"):  # measured on x86 only
        return False
    try:
        return torch.backends.mkldnn.is_available() and hasattr(
            torch.ops.mkldnn, "_linear_pointwise"
        )
    except (AttributeError, RuntimeError):
        return False


_HAS_ONEDNN_LINEAR = _has_onednn_linear()
# id(weight) -> {(rows, dtype): (data_ptr, version, packed weight)}. An entry is dropped when
# its weight is freed and rebuilt when the weight is changed in place or moved.
_PACKED: dict[int, dict] = {}


def _onednn_dtype(x: Tensor) -> torch.dtype | None:
    """Dtype for the oneDNN path, or None for the standard one (the oneDNN op has no autograd)."""
    if x.device.type != "cpu" or torch.is_grad_enabled() or not _HAS_ONEDNN_LINEAR:
        return None
    if torch.compiler.is_compiling():  # torch.compile makes its own kernels
        return None
    if torch.is_autocast_enabled("cpu"):
        dt = torch.get_autocast_dtype("cpu")
        return dt if dt == torch.bfloat16 else None
    return x.dtype if x.dtype in (torch.float32, torch.bfloat16) else None


def _packed(weight: Tensor, rows: tuple[int, int] | None, dtype: torch.dtype) -> Tensor:
    """``weight[rows]`` in ``dtype`` and oneDNN's blocked layout, cached while unchanged."""
    if weight.is_inference():  # no version counter to tell a change: no cache
        w = weight if rows is None else weight[rows[0] : rows[1]]
        return w.to(dtype)
    slots = _PACKED.get(id(weight))
    if slots is None:
        slots = _PACKED[id(weight)] = {}
        weakref.finalize(weight, _PACKED.pop, id(weight), None)
    stamp = (weight.data_ptr(), weight._version)
    hit = slots.get((rows, dtype))
    if hit is None or hit[:2] != stamp:
        w = weight if rows is None else weight[rows[0] : rows[1]]
        hit = (*stamp, torch.ops.mkldnn._reorder_linear_weight(w.detach().to(dtype), None))
        slots[(rows, dtype)] = hit
    return hit[2]


def linear(
    x: Tensor, layer: nn.Linear, rows: tuple[int, int] | None = None, gelu: bool = False
) -> Tensor:
    """``layer(x)`` restricted to output ``rows`` (start, stop), then exact GELU if asked."""
    w, b = layer.weight, layer.bias
    if rows is not None and b is not None:
        b = b[rows[0] : rows[1]]
    dt = _onednn_dtype(x)
    if dt is None:
        y = F.linear(x, w if rows is None else w[rows[0] : rows[1]], b)
        return F.gelu(y) if gelu else y
    op, wp = torch.ops.mkldnn._linear_pointwise, _packed(w, rows, dt)
    return op(x.to(dt), wp, b, "gelu", [], "none") if gelu else op(x.to(dt), wp, b, "none", [], "")


def attention(q: Tensor, k: Tensor, v: Tensor, dropout_p: float) -> Tensor:
    """softmax(q k^T / sqrt(d)) v for q [B, H, Q, d], k and v [B, H, N, d] -> [B, H, Q, d].

    ``scaled_dot_product_attention``, except in bfloat16 CPU inference, where PyTorch's CPU
    flash kernel is slower than two oneDNN batched matmuls (measured on AVX-512-BF16 Zen 4).
    """
    cpu_bf16 = q.device.type == "cpu" and q.dtype == torch.bfloat16 and dropout_p == 0.0
    if cpu_bf16 and not torch.is_grad_enabled() and not torch.compiler.is_compiling():
        scores = torch.matmul(q * q.shape[-1] ** -0.5, k.transpose(-2, -1))  # [B, H, Q, N]
        torch.ops.aten._softmax.out(scores, -1, False, out=scores)  # in place: no new buffer
        return torch.matmul(scores, v)
    return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p)


# ----------------------------------------------------------------------------------------------
# modules
# ----------------------------------------------------------------------------------------------
class DropPath(nn.Module):
    """Stochastic depth: drop a residual branch for whole examples in training."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(1.0 - self.p)
        return x * keep / (1.0 - self.p)


class Attention(nn.Module):
    """Multi-head self-attention with one fused qkv projection (official ``attn.*`` keys)."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool, attn_drop: float, drop: float):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.attn_drop = attn_drop
        self.proj_drop = nn.Dropout(drop)

    def forward(self, x: Tensor, n_queries: int | None = None) -> Tensor:
        """x [B, N, C] -> [B, Q, C]; Q = N, or the first ``n_queries`` tokens only."""
        B, N, C = x.shape
        H = self.num_heads
        if n_queries is None:
            qkv = linear(x, self.qkv).view(B, N, 3, H, C // H).permute(2, 0, 3, 1, 4)
            q, k, v = qkv.unbind(0)  # [B, H, N, d] each
        else:  # queries of the first tokens only; keys and values of all
            q = linear(x[:, :n_queries], self.qkv, rows=(0, C))
            q = q.view(B, n_queries, H, C // H).transpose(1, 2)  # [B, H, Q, d]
            kv = linear(x, self.qkv, rows=(C, 3 * C)).view(B, N, 2, H, C // H)
            k, v = kv.permute(2, 0, 3, 1, 4).unbind(0)  # [B, H, N, d] each
        out = attention(q, k, v, self.attn_drop if self.training else 0.0)  # [B, H, Q, d]
        out = out.transpose(1, 2).reshape(B, q.shape[2], C)  # [B, Q, C]
        return self.proj_drop(linear(out, self.proj))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int, drop: float):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()  # exact (erf) GELU, fused into fc1 by ``linear``
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x: Tensor) -> Tensor:
        h = self.drop(linear(x, self.fc1, gelu=True))
        return self.drop(linear(h, self.fc2))


class Block(nn.Module):
    """Pre-norm transformer block."""

    def __init__(self, cfg: PaSSTConfig, drop_path: float):
        super().__init__()
        dim = cfg.embed_dim
        self.norm1 = nn.LayerNorm(dim, eps=cfg.layer_norm_eps)
        self.attn = Attention(dim, cfg.num_heads, cfg.qkv_bias, cfg.attn_drop_rate, cfg.drop_rate)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=cfg.layer_norm_eps)
        self.mlp = Mlp(dim, int(dim * cfg.mlp_ratio), cfg.drop_rate)

    def forward(self, x: Tensor, n_queries: int | None = None) -> Tensor:
        """x [B, N, C] -> [B, N, C], or only the first ``n_queries`` tokens' outputs."""
        h = self.attn(self.norm1(x), n_queries)
        if n_queries is not None:
            x = x[:, :n_queries]
        x = x + self.drop_path(h)
        return x + self.drop_path(self.mlp(self.norm2(x)))


class PatchEmbed(nn.Module):
    def __init__(self, cfg: PaSSTConfig):
        super().__init__()
        self.proj = nn.Conv2d(1, cfg.embed_dim, kernel_size=cfg.patch_size, stride=cfg.strides)


class PaSST(nn.Module):
    """mel [B, 1, 128, T] -> features [B, embed_dim]; ``classify`` turns features into logits."""

    def __init__(self, config: PaSSTConfig):
        super().__init__()
        self.config = cfg = config
        D, (gf, gt), nt = cfg.embed_dim, cfg.grid, cfg.num_tokens
        self.cls_token = nn.Parameter(torch.zeros(1, 1, D))
        self.dist_token = nn.Parameter(torch.zeros(1, 1, D)) if cfg.distilled else None
        self.new_pos_embed = nn.Parameter(torch.zeros(1, nt, D))
        self.freq_new_pos_embed = nn.Parameter(torch.zeros(1, D, gf, 1))
        self.time_new_pos_embed = nn.Parameter(torch.zeros(1, D, 1, gt))
        self.patch_embed = PatchEmbed(cfg)
        self.pos_drop = nn.Dropout(cfg.drop_rate)
        rates = [cfg.drop_path_rate * i / max(1, cfg.depth - 1) for i in range(cfg.depth)]
        self.blocks = nn.Sequential(*[Block(cfg, r) for r in rates])
        self.norm = nn.LayerNorm(D, eps=cfg.layer_norm_eps)
        self.head = nn.Sequential(nn.LayerNorm(D), nn.Linear(D, cfg.num_classes))
        self.head_dist = nn.Linear(D, cfg.num_classes) if cfg.distilled else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """ViT initialisation (truncated normal 0.02); real use loads released weights."""
        for p in (
            self.cls_token,
            self.dist_token,
            self.new_pos_embed,
            self.freq_new_pos_embed,
            self.time_new_pos_embed,
        ):
            if p is not None:
                nn.init.trunc_normal_(p, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def embed_patches(self, mel: Tensor) -> Tensor:
        """mel [B, 1, F, T] -> patch tokens with positions [B, D, F', T'], after patchout."""
        cfg = self.config
        if mel.dim() != 4 or mel.shape[1] != 1 or mel.shape[2] != cfg.img_size[0]:
            raise ValueError(f"expected mel [B, 1, {cfg.img_size[0]}, T], got {tuple(mel.shape)}")
        if mel.shape[3] > cfg.max_frames:
            raise ValueError(
                f"input of {mel.shape[3]} frames is longer than this PaSST's positional grid "
                f"(at most {cfg.max_frames} frames); cut long audio into segments of at most "
                f"that length and average their features"
            )
        x = self.patch_embed.proj(mel)  # [B, D, F', T']
        x = x + self.time_new_pos_embed[..., : x.shape[3]] + self.freq_new_pos_embed
        if self.training and cfg.s_patchout_t:
            x = x[:, :, :, _keep_sorted(x.shape[3], cfg.s_patchout_t, x.device)]
        if self.training and cfg.s_patchout_f:
            x = x[:, :, _keep_sorted(x.shape[2], cfg.s_patchout_f, x.device), :]
        return x

    def tokens(self, mel: Tensor) -> Tensor:
        """mel -> the input sequence of the blocks [B, num_tokens + patches, D]."""
        x = self.embed_patches(mel).flatten(2).transpose(1, 2)  # [B, F'T', D], frequency-major
        if self.training and self.config.u_patchout:
            x = x[:, _keep_sorted(x.shape[1], self.config.u_patchout, x.device)]
        B = x.shape[0]
        lead = [self.cls_token + self.new_pos_embed[:, :1]]
        if self.dist_token is not None:
            lead.append(self.dist_token + self.new_pos_embed[:, 1:])
        lead = [t.expand(B, -1, -1).to(x.dtype) for t in lead]
        return self.pos_drop(torch.cat(lead + [x], dim=1))

    def forward(self, mel: Tensor) -> Tensor:
        """mel [B, 1, 128, T] -> features [B, D] = mean of the class tokens after the norm."""
        x = self.tokens(mel)  # [B, N, D]
        nt = self.config.num_tokens
        *body, last = self.blocks
        for blk in body:
            x = blk(x)
        x = self.norm(last(x, n_queries=nt))  # [B, nt, D]: nothing else reaches the output
        return x.mean(dim=1) if nt == 2 else x[:, 0]

    def classify(self, features: Tensor) -> Tensor:
        """features [B, D] -> AudioSet logits [B, num_classes] (the released ``head``)."""
        return self.head(features)


def _keep_sorted(n: int, drop: int, device: torch.device) -> Tensor:
    """Sorted random subset of ``n - drop`` indices (at least one), from torch's CPU generator."""
    keep = max(1, n - drop)
    return torch.randperm(n)[:keep].sort().values.to(device)


# ----------------------------------------------------------------------------------------------
# audio-encoder wrapper
# ----------------------------------------------------------------------------------------------
class PaSSTAudioEncoder(nn.Module):
    """wave [N, L] (32 kHz) -> features [N, embed_dim]: mel front-end (float32) then PaSST.

    Implements the audio-encoder interface of docs/ARCHITECTURE.md; the PaSST weights live under
    ``net.`` with their official names. Under autocast only the transformer runs in low precision.
    """

    def __init__(self, config: PaSSTConfig, mel: MelConfig | None = None):
        super().__init__()
        self.frontend = MelFrontend(mel)
        self.net = PaSST(config)
        self.embed_dim = config.embed_dim
        mc = self.frontend.config
        if mc.n_mels != config.img_size[0]:
            raise ValueError(f"{mc.n_mels} mel bands do not fit a PaSST for {config.img_size[0]}")
        seconds = max(1, round(config.img_size[1] * mc.hop / mc.sr))
        self.segment_samples = seconds * mc.sr  # the grid's length in whole seconds
        if mc.num_frames(self.segment_samples) > config.max_frames:
            raise ValueError(
                f"{seconds} s segments do not fit a grid of {config.max_frames} frames"
            )

    def classifier_modules(self) -> list[nn.Module]:
        """The AudioSet heads: kept for strict loading, unused by the retrieval features."""
        return [m for m in (self.net.head, self.net.head_dist) if m is not None]

    def forward(self, wave: Tensor, lengths: Tensor | None = None) -> Tensor:
        """``lengths`` is accepted for the common interface; PaSST sees the zero-padded segment."""
        mel = self.frontend(wave)  # [N, 1, 128, T], float32
        return self.net(mel).float()  # [N, D]


def build_passt_encoder(name: str, **overrides: Any) -> PaSSTAudioEncoder:
    """The PaSST variant ``name`` (a key of :data:`PASST_VARIANTS`) with random weights.

    ``overrides`` may set any :class:`PaSSTConfig` field (``depth=2, embed_dim=64,
    num_heads=2`` for tiny test models) and ``mel`` (a dict of :class:`MelConfig` fields,
    e.g. ``mel={"freqm": 48, "timem": 192}`` for the 2023 SpecAugment settings).
    """
    if name not in PASST_VARIANTS:
        raise UserError(
            f"unknown PaSST variant {name!r}; choose one of: {', '.join(PASST_VARIANTS)}"
        )
    overrides = dict(overrides)
    mel = overrides.pop("mel", None)
    known = {f.name for f in fields(PaSSTConfig)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise UserError(f"unknown PaSST settings {unknown}; known: mel, {', '.join(sorted(known))}")
    config = replace(PASST_VARIANTS[name], **overrides)
    mel_config = mel if isinstance(mel, MelConfig) else MelConfig.from_dict(mel or {})
    return PaSSTAudioEncoder(config, mel_config)
