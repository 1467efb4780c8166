"""The acoustic channel: the dual encoder embeds every 10 s segment of every file.

A file's acoustic score for a query is the score of its best segment, and that segment's start
time is shown. Queries are texts (``encode_text``) or a sound (query by example). The model is
whatever ``soundsearch.checkpoints.load_model`` builds from the spec recorded in the index; its
identity (a hash of config and weights) is recorded too, so a different model is refused instead of
silently mixing two embedding spaces.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import time
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import numpy as np

from soundsearch.audio import iter_segments
from soundsearch.errors import UserError

if TYPE_CHECKING:
    from soundsearch.model import DualEncoder

log = logging.getLogger(__name__)

NO_MODEL = ("", "none", "off")  # specs that mean "metadata only"


def normalise_spec(spec: str | None) -> str | None:
    """A model spec as recorded in the index: absolute path for files, the name otherwise."""
    if spec is None or spec.strip().lower() in NO_MODEL:
        return None
    p = Path(spec).expanduser()
    return str(p.resolve()) if p.exists() else spec


def cpu_has_native_bf16() -> bool:
    """True when the CPU computes bfloat16 natively (AVX512-BF16 or AMX): there bf16 autocast
    indexes PaSST-N about 1.6x faster than float32; elsewhere it emulates bf16 and is slower."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            flags = f.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


class AcousticModel:
    """A loaded dual encoder with the calls the index needs, numpy in and out."""

    def __init__(
        self,
        model: DualEncoder,
        spec: str,
        identity: str,
        device: str = "cpu",
        precision: str = "auto",
    ):
        import torch

        self.model = model.to(device).eval()
        self.spec = spec
        self.identity = identity
        self.device = torch.device(device)
        if precision == "auto":
            native = self.device.type == "cuda" or cpu_has_native_bf16()
            precision = "bf16" if native else "fp32"
        if precision not in ("fp32", "bf16"):
            raise UserError(f"precision must be fp32, bf16 or auto, not {precision!r}")
        self.precision = precision
        self.dim = int(model.config.embed_dim)
        self.segment_samples = int(model.audio_encoder.segment_samples)

    def _autocast(self) -> contextlib.AbstractContextManager:
        import torch

        return torch.autocast(self.device.type, torch.bfloat16, enabled=self.precision == "bf16")

    def segment_features(self, waves: list[np.ndarray]) -> np.ndarray:
        """Segments (each <= segment_samples, 32 kHz) -> features [N, F] float32."""
        import torch

        n = len(waves)
        longest = max(w.shape[0] for w in waves)
        batch = np.zeros((n, longest), dtype=np.float32)  # [N, L] zero-padded
        for i, w in enumerate(waves):
            batch[i, : w.shape[0]] = w
        lengths = torch.tensor([w.shape[0] for w in waves], device=self.device)
        with torch.inference_mode(), self._autocast():
            feats = self.model.encode_segments(torch.from_numpy(batch).to(self.device), lengths)
        return feats.float().cpu().numpy()

    def project(self, features: np.ndarray) -> np.ndarray:
        """Features [N, F] -> normalised embeddings [N, D] float32."""
        import torch

        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(features, np.float32)).to(self.device)
            return self.model.project_audio(x).float().cpu().numpy()

    def embed_segments(self, waves: list[np.ndarray]) -> np.ndarray:
        """Segments -> normalised embeddings [N, D] float32 (one per segment)."""
        return self.project(self.segment_features(waves))

    def embed_text(self, texts: list[str]) -> np.ndarray:
        """Queries -> normalised [B, D] float32."""
        import torch

        with torch.inference_mode(), self._autocast():
            return self.model.encode_text(list(texts)).float().cpu().numpy()

    def embed_file(self, path: str | Path, batch: int = 8) -> np.ndarray:
        """A whole file as one query: mean of its segment features, then projected -> [D]."""
        total, count, chunk = None, 0, []
        for seg in iter_segments(path, self.segment_samples):
            chunk.append(seg)
            if len(chunk) == batch:
                total, count = _accumulate(total, count, self.segment_features(chunk))
                chunk = []
        if chunk:
            total, count = _accumulate(total, count, self.segment_features(chunk))
        return self.project(total[None] / count)[0]


def _accumulate(total: np.ndarray | None, count: int, feats: np.ndarray) -> tuple[np.ndarray, int]:
    s = feats.sum(axis=0)
    return (s if total is None else total + s), count + feats.shape[0]


def _checkpoints() -> ModuleType:
    try:
        from soundsearch import checkpoints
    except ImportError as e:
        raise UserError(
            f"acoustic search needs soundsearch.checkpoints, which is not available ({e}); "
            "use --model none for metadata-only indexing"
        ) from e
    return checkpoints


@functools.lru_cache(maxsize=2)
def load_acoustic(spec: str, device: str = "cpu", precision: str = "auto") -> AcousticModel:
    """Load (once per process) the dual encoder named by ``spec`` (a file or a registry name)."""
    ckpt = _checkpoints()
    t0 = time.perf_counter()
    model = ckpt.load_model(spec)
    identity = ckpt.model_identity(model)
    log.info("loaded acoustic model %s (%s) in %.1f s", spec, identity, time.perf_counter() - t0)
    return AcousticModel(model, spec, identity, device=device, precision=precision)
