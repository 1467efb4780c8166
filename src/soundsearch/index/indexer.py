"""Build or update an index: scan, diff against the store, process what changed, commit in batches.

Incremental: a file whose size and mtime match the index is not read at all; one whose stat changed
is hashed and only re-processed if its content hash changed; files that disappeared are removed
(unless their whole root is missing, e.g. an unmounted drive: then nothing is removed). Files that
failed before are retried only when they change.

Safe: decoding runs in worker processes (worker.py), inference in this process; finished files are
committed every ``commit_every`` files or ``commit_seconds`` in one SQLite transaction with their
vectors, so an interruption loses at most the batch in flight and the next run resumes. One run at
a time per index (lock.py).
"""

from __future__ import annotations

import logging
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from soundsearch.audio import SAMPLE_RATE
from soundsearch.errors import UserError
from soundsearch.index.acoustic import AcousticModel, load_acoustic, normalise_spec
from soundsearch.index.lock import IndexLock
from soundsearch.index.metadata import SentenceEmbedder, describe, get_embedder
from soundsearch.index.scan import Candidate, scan
from soundsearch.index.store import ErrorRecord, FileRecord, Known, Segment, Store
from soundsearch.index.worker import DecodePool, FileFacts, Task

log = logging.getLogger(__name__)

RETRY_KINDS = ("crashed",)  # error kinds retried on every run even if the file did not change


@dataclass
class IndexOptions:
    model: str | None = None  # acoustic checkpoint (path or name); None: keep the index's; "none"
    reindex: bool = False  # drop all vectors and embed everything again (e.g. new model)
    workers: int = field(default_factory=lambda: max(1, os.cpu_count() or 1))
    batch_size: int = 16  # segments per inference call
    commit_every: int = 64  # files per transaction
    commit_seconds: float = 10.0  # ... or this often, whichever comes first
    device: str = "cpu"
    precision: str = "auto"  # acoustic inference: fp32 | bf16 | auto (bf16 on GPU)
    progress: bool = True  # tqdm bar on stderr (only if stderr is a terminal)
    ann: str | None = None  # "faiss" or "none"; None keeps the index's setting


@dataclass
class IndexReport:
    roots: list[str]
    found: int = 0  # regular files under the roots
    new: int = 0
    changed: int = 0
    unchanged: int = 0
    touched: int = 0  # stat changed, content did not
    removed: int = 0
    errors: int = 0  # files recorded as errors in this run
    known_errors: int = 0  # earlier errors, files unchanged, not retried
    not_audio: int = 0  # files without an audio extension (recorded as "not-audio", not read)
    hidden: int = 0
    segments: int = 0
    seconds: float = 0.0
    missing_roots: list[str] = field(default_factory=list)
    model: str | None = None

    @property
    def processed(self) -> int:
        return self.new + self.changed


class Indexer:
    """Runs one ``soundsearch index`` over a store (holding its lock for the whole run)."""

    def __init__(
        self,
        store: Store,
        options: IndexOptions | None = None,
        embedder: SentenceEmbedder | None = None,
    ):
        self.store = store
        self.opt = options or IndexOptions()
        self._embedder = embedder
        self.acoustic: AcousticModel | None = None
        self._known: dict[str, Known] = {}

    @property
    def embedder(self) -> SentenceEmbedder:
        if self._embedder is None:
            self._embedder = get_embedder()
        return self._embedder

    def run(self, roots: list[str | os.PathLike]) -> IndexReport:
        """Index ``roots`` (all known roots if empty). Raises UserError for unusable input."""
        t0 = time.perf_counter()
        with IndexLock(self.store.dir):
            roots_abs = self._roots(roots)
            report = IndexReport(roots=roots_abs)
            self._setup_models(report)
            present = [r for r in roots_abs if Path(r).is_dir()]
            report.missing_roots = [r for r in roots_abs if r not in present]
            for r in report.missing_roots:
                log.warning("%s is missing (unmounted?); its files stay in the index", r)
            self._sync_text_model()
            tasks, recs = self._plan(present, report)
            self._process(tasks, recs, report)
            self._build_caches()
        report.seconds = time.perf_counter() - t0
        return report

    def _build_caches(self) -> None:
        """Matrix cache (and ANN index if asked for) now, not on the first query."""
        if self.opt.ann is not None:
            if self.opt.ann not in ("none", "faiss"):
                raise UserError(f"--ann must be none or faiss, not {self.opt.ann!r}")
            with self.store.transaction() as con:
                self.store.set_meta(con, "ann", None if self.opt.ann == "none" else self.opt.ann)
        m = self.store.matrices()
        if self.store.get_meta("ann") == "faiss" and len(m.acoustic):
            from soundsearch.index.ann import ann_for

            ann_for(self.store.dir / "cache", m.generation, m.acoustic)

    # setup -------------------------------------------------------------------------------
    def _roots(self, roots: list[str | os.PathLike]) -> list[str]:
        if not roots:
            known = self.store.roots()
            if not known:
                raise UserError("no folder given and the index has none yet: soundsearch index DIR")
            return known
        out = []
        for r in roots:
            p = Path(r).expanduser()
            if not p.is_dir():
                raise UserError(f"{r}: not a folder (give the folders of your sound library)")
            out.append(str(p.resolve()))
        self.store.add_roots(out)
        return out

    def _setup_models(self, report: IndexReport) -> None:
        recorded_spec = self.store.get_meta("acoustic_model_spec")
        recorded_id = self.store.get_meta("acoustic_model_identity")
        spec = normalise_spec(self.opt.model) if self.opt.model is not None else recorded_spec
        if spec is not None:
            self.acoustic = load_acoustic(spec, self.opt.device, self.opt.precision)
        new_id = self.acoustic.identity if self.acoustic else None
        if self.opt.reindex:
            self.store.clear_acoustic()
            with self.store.transaction() as con:
                con.execute("UPDATE files SET size = -1")  # every file looks changed
        elif recorded_id is not None and new_id != recorded_id:
            raise UserError(
                f"the index at {self.store.dir} was built with acoustic model {recorded_spec} "
                f"({recorded_id}), not {spec or 'none'} ({new_id}). Re-embed everything with "
                f"`soundsearch index --reindex --model {spec or 'none'}`, or use another --index"
            )
        with self.store.transaction() as con:
            self.store.set_meta(con, "acoustic_model_spec", spec)
            self.store.set_meta(con, "acoustic_model_identity", new_id)
            self.store.set_meta(con, "acoustic_dim", str(self.acoustic.dim) if new_id else None)
        report.model = spec

    def _sync_text_model(self) -> None:
        """Re-embed stored descriptions if the text model changed since they were embedded."""
        recorded = self.store.get_meta("text_model_identity")
        if recorded == self.embedder.identity:
            return
        rows = self.store.query("SELECT id, doc FROM files")
        if rows:
            log.info("text model changed (%s -> %s): re-embedding %d descriptions",
                     recorded, self.embedder.identity, len(rows))  # fmt: skip
            vecs = self.embedder.embed([d for _, d in rows])
            self.store.set_text_vectors([(i, v) for (i, _), v in zip(rows, vecs, strict=True)])
        with self.store.transaction() as con:
            self.store.set_meta(con, "text_model_identity", self.embedder.identity)
            self.store.set_meta(con, "text_dim", str(self.embedder.dim))

    # plan --------------------------------------------------------------------------------
    def _plan(self, roots: list[str], report: IndexReport) -> tuple[list[Task], list[Candidate]]:
        found = scan(roots, exclude=[str(self.store.dir)])
        report.found, report.hidden = len(found.files), found.hidden
        known = self.store.known_files(roots)
        self._known = dict(known)
        known_err = self.store.known_errors(roots)
        model_id = self.acoustic.identity if self.acoustic else None
        seg = self.acoustic.segment_samples if self.acoustic else 0
        tasks: list[Task] = []
        cands: list[Candidate] = []
        errors: list[ErrorRecord] = []
        for c in found.files:
            k = known.pop(c.path, None)
            err = known_err.pop(c.path, None)
            if not c.is_audio:
                report.not_audio += 1
                if err is None or err[:2] != (c.size, c.mtime_ns):
                    ext = Path(c.path).suffix or "(none)"
                    errors.append(_err(c, "not-audio", f"not an audio file (extension {ext})"))
                continue
            if (
                k is not None
                and (k.size, k.mtime_ns) == (c.size, c.mtime_ns)
                and (k.acoustic_model == model_id)
            ):
                report.unchanged += 1
                continue
            if err is not None and err[:2] == (c.size, c.mtime_ns) and err[2] not in RETRY_KINDS:
                report.known_errors += 1
                continue
            same_model = k is not None and k.acoustic_model == model_id
            tasks.append(Task(len(tasks), c.path, c.size, k.hash if same_model else None, seg))
            cands.append(c)
        errors += [ErrorRecord(p.path, p.root, p.kind, p.reason) for p in found.problems]
        problem_paths = {p.path for p in found.problems}
        gone_errors = [p for p in known_err if p not in problem_paths]
        report.removed = len(known)
        report.errors += sum(e.kind != "not-audio" for e in errors)
        self.store.write_batch([], errors, [], [k.id for k in known.values()], gone_errors)
        return tasks, cands

    # process -----------------------------------------------------------------------------
    def _process(self, tasks: list[Task], cands: list[Candidate], report: IndexReport) -> None:
        if not tasks:
            return
        batch = _Batch(self, self._known, report)
        bar = tqdm(
            total=len(tasks),
            unit="file",
            desc="indexing",
            file=sys.stderr,
            disable=not (self.opt.progress and sys.stderr.isatty()),
            dynamic_ncols=True,
        )
        pool = DecodePool(min(self.opt.workers, len(tasks)) if self.opt.workers else 0)
        try:
            for i, msg in enumerate(pool.run(tasks)):
                if i == 0:  # workers are running: load the text model while they fill the queue
                    self.embedder.embed(["warm up"])
                if batch.handle(msg, cands):
                    bar.update(1)
                    bar.set_postfix(errors=report.errors, refresh=False)
            batch.flush_segments()
            batch.commit()
        finally:
            pool.close()
            bar.close()


class _Batch:
    """Files in flight: segments awaiting inference, finished files awaiting commit."""

    def __init__(self, indexer: Indexer, known: dict[str, Known], report: IndexReport):
        self.ix = indexer
        self.known = known
        self.report = report
        self.segs: list[tuple[int, int, np.ndarray]] = []  # (task idx, segment index, wave)
        self.vectors: dict[int, dict[int, np.ndarray]] = {}  # task idx -> segment index -> vec
        self.facts: dict[int, FileFacts] = {}  # done, maybe still waiting for vectors
        self.ready: list[FileRecord] = []
        self.errors: list[ErrorRecord] = []
        self.touched: list[tuple[int, int, int]] = []
        self.last_commit = time.monotonic()
        self.cands: list[Candidate] = []

    def handle(self, msg: tuple, cands: list[Candidate]) -> bool:
        """Take one worker message; True when a file is finished (for the progress bar)."""
        self.cands = cands
        kind, _, idx = msg[0], msg[1], msg[2]
        c = cands[idx]
        if kind == "seg":
            self.segs.append((idx, msg[3], msg[4]))
            if len(self.segs) >= self.ix.opt.batch_size:
                self.flush_segments()
            return False
        if kind == "same":
            self.touched.append((self.known[c.path].id, c.size, c.mtime_ns))
            self.report.touched += 1
        elif kind == "error":
            self.segs = [s for s in self.segs if s[0] != idx]
            self.vectors.pop(idx, None)
            self.errors.append(_err(c, msg[3], msg[4]))
            self.report.errors += 1
            log.debug("%s: %s", c.path, msg[4])
        else:
            self.facts[idx] = msg[3]
            self._finish_ready()
        self._maybe_commit()
        return True

    def flush_segments(self) -> None:
        if not self.segs:
            return
        waves = [w for _, _, w in self.segs]
        vecs = self.ix.acoustic.embed_segments(waves)  # [N, D]
        for (idx, i, _), v in zip(self.segs, vecs, strict=True):
            self.vectors.setdefault(idx, {})[i] = v
        self.segs = []
        self._finish_ready()

    def _finish_ready(self) -> None:
        for idx in list(self.facts):
            f = self.facts[idx]
            got = self.vectors.get(idx, {})
            if len(got) < f.segments:
                continue
            del self.facts[idx]
            self.vectors.pop(idx, None)
            self.ready.append(self._record(self.cands[idx], f, got))

    def _record(self, c: Candidate, f: FileFacts, vecs: dict[int, np.ndarray]) -> FileRecord:
        d = describe(c.rel, f.tags)
        model = self.ix.acoustic
        segs = None
        if model is not None:
            step = model.segment_samples / SAMPLE_RATE
            segs = [
                Segment(i * step, min((i + 1) * step, f.duration), vecs[i]) for i in sorted(vecs)
            ]
            self.report.segments += len(segs)
        if c.path in self.known:
            self.report.changed += 1
        else:
            self.report.new += 1
        return FileRecord(
            path=c.path, root=c.root, rel=c.rel, size=c.size, mtime_ns=c.mtime_ns, hash=f.hash,
            duration=f.duration, sample_rate=f.sample_rate, channels=f.channels, tags=f.tags,
            doc=d.doc, fts_name=d.fts_name, fts_folder=d.fts_folder, fts_tags=d.fts_tags,
            segments=segs, acoustic_model=model.identity if model else None,
        )  # fmt: skip

    def _maybe_commit(self) -> None:
        n = len(self.ready) + len(self.errors) + len(self.touched)
        due = time.monotonic() - self.last_commit >= self.ix.opt.commit_seconds
        if n >= self.ix.opt.commit_every or (n and due):
            self.commit()

    def commit(self) -> None:
        if self.ready:
            vecs = self.ix.embedder.embed([r.doc for r in self.ready])  # [B, 384]
            for r, v in zip(self.ready, vecs, strict=True):
                r.text_vec = v
        self.ix.store.write_batch(self.ready, self.errors, self.touched)
        log.debug("committed %d files, %d errors", len(self.ready), len(self.errors))
        self.ready, self.errors, self.touched = [], [], []
        self.last_commit = time.monotonic()


def _err(c: Candidate, kind: str, reason: str) -> ErrorRecord:
    return ErrorRecord(c.path, c.root, kind, reason, c.size, c.mtime_ns)
