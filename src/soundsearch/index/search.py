"""Answer queries: rank files by each channel, fuse, and describe the winners.

The vectors of the index are loaded once per :class:`Searcher` as float16 matrices and scored with
one matrix-vector product per channel (torch's float16 kernel accumulates in float32). A file's
acoustic score is the maximum over its segments: the top segments are taken until they cover
``depth`` distinct files, which gives exactly the top files by best segment without a pass over
all files. Searchers notice a re-index (the store's generation changes) and reload.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from soundsearch.config import MODE_CHANNELS, MODES, FusionSettings
from soundsearch.errors import UserError
from soundsearch.index.fusion import Fused, rrf
from soundsearch.index.lock import writer_running
from soundsearch.index.metadata import SentenceEmbedder, describe, get_embedder, keyword_query
from soundsearch.index.store import Matrices, Store

if TYPE_CHECKING:
    import torch

    from soundsearch.index.acoustic import AcousticModel
    from soundsearch.index.ann import AnnIndex

log = logging.getLogger(__name__)


@dataclass
class Result:
    rank: int
    id: int
    path: str
    name: str
    folder: str  # relative to its indexed root
    root: str
    score: float  # fused RRF score, or the channel's own score when only one channel ranked
    time: float  # start of the best segment in seconds (0 without the acoustic channel)
    duration: float | None
    channels: dict[str, dict] = field(default_factory=dict)  # channel -> {rank, score, time}


@dataclass
class Response:
    query: str
    mode: str
    channels: list[str]  # the channels that actually ranked
    results: list[Result]
    notes: list[str] = field(default_factory=list)
    took_ms: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


CHUNK_ROWS = 32768  # rows per task of the parallel matrix-vector product
_POOL: ThreadPoolExecutor | None = None


def _pool() -> ThreadPoolExecutor:
    """Threads for the product, each running torch single-threaded (set per thread)."""
    global _POOL
    if _POOL is None:
        import torch

        workers = max(1, os.cpu_count() or 1)
        _POOL = ThreadPoolExecutor(workers, "soundsearch-mv", lambda: torch.set_num_threads(1))
    return _POOL


def matvec(mat: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Scores [N] = mat [N, D] @ q [D] (float16 in, float32 accumulation, float16 out).

    The matrix is cut into blocks of :data:`CHUNK_ROWS` rows that a thread pool takes in turn
    (torch single-threaded in each): unlike one OpenMP region with a barrier, a core that other
    programs keep busy does not hold the query back (measured with the machine shared: 1M x 1024
    in 64 ms instead of 164 ms, 10k x 1024 in 1 ms instead of 12 ms).
    """
    import torch

    n = int(mat.shape[0])
    out = torch.empty(n, dtype=torch.float16)

    def block(start: int) -> None:
        end = min(n, start + CHUNK_ROWS)
        torch.mv(mat[start:end], q, out=out[start:end])

    list(_pool().map(block, range(0, n, CHUNK_ROWS)))
    return out


def top_files(
    candidates: Callable[[int], tuple[list[float], list[int]]],
    n: int,
    seg_file: np.ndarray,
    seg_start: np.ndarray,
    depth: int,
    exclude: int | None = None,
) -> list[tuple[int, float, float]]:
    """Best ``depth`` files by their best segment: [(file id, score, segment start)].

    ``candidates(m)`` gives the m best segments (scores, rows), best first. Walking them in order,
    the first segment seen of a file is its best, so the first ``depth`` distinct files are the
    answer; m grows until they are found (or every segment was seen).
    """
    take = min(n, max(4 * depth, 64))
    while True:
        vals, rows = candidates(take)
        out: list[tuple[int, float, float]] = []
        seen: set[int] = set()
        for v, i in zip(vals, rows, strict=True):
            fid = int(seg_file[i])
            if fid not in seen and fid != exclude:
                seen.add(fid)
                out.append((fid, float(v), float(seg_start[i])))
                if len(out) == depth:
                    return out
        if take >= n:
            return out
        take = min(n, take * 4)


def exact_candidates(scores: torch.Tensor) -> Callable[[int], tuple[list[float], list[int]]]:
    """Candidates from a full score vector [S] (exact search)."""
    import torch

    scores = scores.float()

    def best(m: int) -> tuple[list[float], list[int]]:
        vals, idx = torch.topk(scores, min(m, int(scores.shape[0])))
        return vals.tolist(), idx.tolist()

    return best


def ann_candidates(
    ann: AnnIndex, mat: torch.Tensor, q: np.ndarray
) -> Callable[[int], tuple[list[float], list[int]]]:
    """Candidates from an ANN index, re-scored exactly against the float16 matrix ``mat``."""
    import torch

    qh = torch.from_numpy(q.astype(np.float16))

    def best(m: int) -> tuple[list[float], list[int]]:
        rows = torch.from_numpy(ann.search(q, m))
        exact = (mat[rows] @ qh).float()  # [m]
        order = torch.argsort(exact, descending=True)
        return exact[order].tolist(), rows[order].tolist()

    return best


class Searcher:
    """Keeps the matrices and models of one index in memory and answers queries."""

    def __init__(
        self,
        store: Store,
        fusion: FusionSettings | None = None,
        device: str = "cpu",
        embedder: SentenceEmbedder | None = None,
    ):
        self.store = store
        self.fusion = fusion or FusionSettings()
        self.device = device
        self._embedder = embedder
        self._acoustic = None
        self._acoustic_error: str | None = None
        self._lock = threading.RLock()
        self._gen: str | None = None
        self._m: Matrices | None = None
        self._t: dict[str, object] = {}
        self._ann = None  # ann.AnnIndex when the index asks for approximate acoustic search

    # state -------------------------------------------------------------------------------
    def refresh(self) -> None:
        """(Re)load the matrices if the index changed since the last query."""
        import torch

        with self._lock:
            gen = self.store.generation()
            if gen == self._gen:
                return
            if self._m is not None and writer_running(self.store.dir):
                return  # mid-run: keep the last complete snapshot, reload when the run ends
            m = self.store.matrices()
            self._t = {"text": torch.from_numpy(m.text), "acoustic": torch.from_numpy(m.acoustic)}
            self._ann = None
            if self.store.get_meta("ann") == "faiss" and len(m.acoustic):
                from soundsearch.index.ann import ann_for

                self._ann = ann_for(self.store.dir / "cache", gen, m.acoustic)
            self._m, self._gen = m, gen
            self._acoustic, self._acoustic_error = None, None  # the model may have changed too

    @property
    def embedder(self) -> SentenceEmbedder:
        if self._embedder is None:
            self._embedder = get_embedder()
        return self._embedder

    def acoustic_model(self, required: bool = False) -> AcousticModel | None:
        """The index's acoustic model, loaded on first use; None (with a note) if unavailable."""
        spec = self.store.get_meta("acoustic_model_spec")
        if spec is None:
            if required:
                raise UserError(
                    f"the index at {self.store.dir} has no acoustic model; index with "
                    "`soundsearch index --model CHECKPOINT ...` or use --mode metadata"
                )
            return None
        if self._acoustic is None and self._acoustic_error is None:
            self._acoustic, self._acoustic_error = self._load_acoustic(spec)
        if self._acoustic is None and required:
            raise UserError(self._acoustic_error)
        return self._acoustic

    def _load_acoustic(self, spec: str) -> tuple[AcousticModel | None, str | None]:
        from soundsearch.index.acoustic import load_acoustic

        expected = self.store.get_meta("acoustic_model_identity")
        try:
            model = load_acoustic(spec, self.device)
        except UserError as e:
            return None, f"acoustic model {spec} not available: {e}"
        if model.identity != expected:
            return None, (
                f"acoustic model {spec} is now {model.identity}, but the index was built with "
                f"{expected}; re-index with `soundsearch index --reindex`"
            )
        return model, None

    def _text_model_ok(self, notes: list[str]) -> bool:
        """False (with a note) when the index's text vectors come from another text model."""
        recorded = self.store.get_meta("text_model_identity")
        if recorded is None or recorded == self.embedder.identity:
            return True
        notes.append(
            f"the index's descriptions were embedded by {recorded}, not {self.embedder.identity}; "
            "the text channel is off until `soundsearch index` re-embeds them"
        )
        return False

    def warm(self) -> None:
        """Load everything a query needs (the server calls this before serving)."""
        self.refresh()
        self.embedder.embed(["warm up"])
        self.acoustic_model()

    # queries -----------------------------------------------------------------------------
    def search(self, query: str, k: int = 10, mode: str = "hybrid") -> Response:
        """Rank indexed files for a text query."""
        t0 = time.perf_counter()
        query = query.strip()
        if not query:
            raise UserError("empty query: describe the sound you are looking for")
        self._check(k, mode)
        self.refresh()
        depth = max(self.fusion.depth, 5 * k)
        wanted = MODE_CHANNELS[mode]
        rankings, notes = {}, []
        if "keyword" in wanted:
            match = keyword_query(query)
            rankings["keyword"] = self.store.keyword_search(match, depth) if match else []
        if "text" in wanted and self._text_model_ok(notes):
            q = self.embedder.embed([query])[0]
            rankings["text"] = self._rank_text(q, depth)
        if "acoustic" in wanted:
            model = self.acoustic_model(required=mode == "acoustic")
            if model is not None:
                q = model.embed_text([query])[0]
                rankings["acoustic"] = self._rank_acoustic(q, depth)
            else:
                notes.append(
                    self._acoustic_error
                    or "this index has no acoustic model, so only names, folders and tags were "
                    "searched; index with --model CHECKPOINT to search by sound content"
                )
        return self._respond(query, mode, rankings, k, notes, t0)

    def similar(self, target: int | str, k: int = 10, mode: str | None = None) -> Response:
        """Rank files that sound like ``target`` (an indexed file id, or any audio file path)."""
        t0 = time.perf_counter()
        self.refresh()
        fid, path = self._resolve(target)
        notes: list[str] = []
        model = self.acoustic_model(required=mode == "acoustic") if mode != "metadata" else None
        depth = max(self.fusion.depth, 5 * k)
        rankings = {}
        if model is not None:
            q = self._example_vector(model, fid, path)
            rankings["acoustic"] = self._rank_acoustic(q, depth, exclude=fid)
        if model is None or mode == "hybrid":
            if model is None and mode != "metadata":
                notes.append(
                    (self._acoustic_error or "this index has no acoustic model")
                    + "; ranked by metadata similarity (name, folders, tags) instead"
                )
            rankings["text"] = self._rank_text(self._example_text(fid, path), depth, exclude=fid)
        used_mode = mode or ("acoustic" if model is not None else "metadata")
        return self._respond(path, used_mode, rankings, k, notes, t0)

    # channels ----------------------------------------------------------------------------
    def _rank_text(self, q: np.ndarray, depth: int, exclude: int | None = None) -> list[tuple]:
        import torch

        mat = self._t["text"]
        if mat.shape[0] == 0:
            return []
        scores = matvec(mat, torch.from_numpy(q.astype(np.float16))).float()  # [F]
        take = min(int(scores.shape[0]), depth + 1)
        vals, idx = torch.topk(scores, take)
        ids = self._m.text_file[idx.numpy()]
        out = [(int(f), float(v), None) for f, v in zip(ids, vals.tolist(), strict=True)]
        return [r for r in out if r[0] != exclude][:depth]

    def _rank_acoustic(self, q: np.ndarray, depth: int, exclude: int | None = None) -> list[tuple]:
        import torch

        mat = self._t["acoustic"]
        n = int(mat.shape[0])
        if n == 0:
            return []
        if self._ann is not None:
            candidates = ann_candidates(self._ann, mat, q)
        else:
            candidates = exact_candidates(matvec(mat, torch.from_numpy(q.astype(np.float16))))
        m = self._m
        return top_files(candidates, n, m.seg_file, m.seg_start, depth, exclude)

    def _example_vector(self, model: AcousticModel, fid: int | None, path: str) -> np.ndarray:
        if fid is not None:
            vecs = self.store.segment_vectors(fid).astype(np.float32)
            if len(vecs):
                v = vecs.mean(axis=0)
                return v / max(float(np.linalg.norm(v)), 1e-12)
        return model.embed_file(path)

    def _example_text(self, fid: int | None, path: str) -> np.ndarray:
        if fid is not None:
            rows = np.flatnonzero(self._m.text_file == fid)
            if len(rows):
                return self._m.text[rows[0]].astype(np.float32)
        from soundsearch.index.tags import read_tags

        return self.embedder.embed([describe(Path(path).name, read_tags(path)).doc])[0]

    # helpers -----------------------------------------------------------------------------
    def _check(self, k: int, mode: str) -> None:
        if mode not in MODES:
            raise UserError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
        if not 1 <= k <= 10000:
            raise UserError(f"k must be between 1 and 10000, not {k}")

    def _resolve(self, target: int | str) -> tuple[int | None, str]:
        if isinstance(target, int) or (isinstance(target, str) and target.isdigit()):
            rows = self.store.files_by_id([int(target)])
            if not rows:
                raise UserError(f"no indexed file has id {target}")
            return int(target), rows[int(target)]["path"]
        p = Path(target).expanduser()
        if not p.is_file():
            raise UserError(f"{target}: no such audio file")
        resolved = str(p.resolve())
        return self.store.file_id(resolved), resolved

    def _respond(
        self, query: str, mode: str, rankings: dict, k: int, notes: list[str], t0: float
    ) -> Response:
        fused = rrf(rankings, self.fusion.weights, self.fusion.rrf_k, limit=k)
        single = [c for c, r in rankings.items() if r]
        rows = self.store.files_by_id(f.file_id for f in fused)
        results = [
            _result(i + 1, f, rows[f.file_id], single[0] if len(single) == 1 else None)
            for i, f in enumerate(fused)
            if f.file_id in rows  # deleted by a concurrent index run since the matrices loaded
        ]
        took = (time.perf_counter() - t0) * 1000
        return Response(query, mode, list(rankings), results, notes, round(took, 2))


def _result(rank: int, f: Fused, row: dict, only_channel: str | None) -> Result:
    rel = Path(row["rel"])
    hit_a = f.channels.get("acoustic")
    score = f.channels[only_channel].score if only_channel else f.score
    return Result(
        rank=rank,
        id=f.file_id,
        path=row["path"],
        name=rel.name,
        folder=str(rel.parent) if str(rel.parent) != "." else "",
        root=row["root"],
        score=round(float(score), 6),
        time=float(hit_a.time) if hit_a and hit_a.time is not None else 0.0,
        duration=row["duration"],
        channels={c: asdict(h) for c, h in f.channels.items()},
    )
