"""Optional approximate nearest-neighbour search for the acoustic channel (FAISS, the ``ann`` extra).

Exact search (one matrix product) answers 1M segments in well under a second on two cores; past a
few million segments an inverted-file index keeps queries in milliseconds. ``soundsearch index
--ann faiss`` records the choice in the index; the index file is built after each indexing run
(``cache/ann-<generation>.faiss``, derived data like the matrix cache).

The index is IVF with 8-bit scalar quantisation (inner product): ``nlist`` = 4 sqrt(N) cells (at
most N / 39, so k-means has enough points; one cell, i.e. exhaustive, for tiny indexes),
``nprobe`` = nlist / 16 of them visited per query. Its candidates are re-scored exactly against the
float16 matrix, so the scores shown are exact and only recall is approximate.
"""

from __future__ import annotations

import logging
import math
import os
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from soundsearch.errors import UserError

log = logging.getLogger(__name__)

ANN_KINDS = ("none", "faiss")
TRAIN_SAMPLE = 100_000  # vectors used to learn the cells


def _faiss() -> ModuleType:
    try:
        import faiss
    except ImportError:
        raise UserError(
            "--ann faiss needs FAISS: pip install 'soundsearch[ann]' (faiss-cpu)"
        ) from None
    return faiss


class AnnIndex:
    """IVF-SQ8 over the acoustic matrix; ``search`` returns candidate segment rows."""

    def __init__(self, index: Any, nprobe: int):  # index: a faiss.IndexIVF
        self.index = index
        self.index.nprobe = nprobe

    @classmethod
    def build(cls, mat: np.ndarray, seed: int = 0) -> AnnIndex:
        faiss = _faiss()
        n, d = mat.shape
        nlist = int(max(1, min(16384, 4 * math.sqrt(n), n // 39)))  # >= 39 points per cell
        quantizer = faiss.IndexFlatIP(d)
        index = faiss.IndexIVFScalarQuantizer(
            quantizer, d, nlist, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT
        )
        rng = np.random.default_rng(seed)
        sample = mat[np.sort(rng.choice(n, min(n, max(TRAIN_SAMPLE, 40 * nlist)), replace=False))]
        t0 = time.perf_counter()
        index.train(sample.astype(np.float32))
        for i in range(0, n, 65536):
            index.add(mat[i : i + 65536].astype(np.float32))
        log.info("built FAISS IVF index (%d cells) over %d vectors in %.1f s",
                 nlist, n, time.perf_counter() - t0)  # fmt: skip
        return cls(index, max(1, nlist // 16))

    def search(self, q: np.ndarray, take: int) -> np.ndarray:
        """Rows of the ``take`` best candidates for query [D] (may hold fewer than ``take``)."""
        _, rows = self.index.search(q.astype(np.float32)[None], take)
        rows = rows[0]
        return rows[rows >= 0]

    def save(self, path: Path) -> None:
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        _faiss().write_index(self.index, str(tmp))
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> AnnIndex:
        index = _faiss().read_index(str(path))
        return cls(index, max(1, index.nlist // 16))


def ann_for(cache_dir: Path, generation: str, mat: np.ndarray) -> AnnIndex:
    """The ANN index of this generation: loaded from the cache, or built and cached."""
    path = cache_dir / f"ann-{generation}.faiss"
    if path.exists():
        return AnnIndex.load(path)
    ann = AnnIndex.build(mat)
    try:
        cache_dir.mkdir(exist_ok=True)
        ann.save(path)
        for old in cache_dir.glob("ann-*.faiss"):
            if old != path:
                old.unlink(missing_ok=True)
    except OSError as e:
        log.warning("could not write %s (%s)", path, e)
    return ann
