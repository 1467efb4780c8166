"""Embed a split, score it both ways, write results: the DCASE evaluation, deterministic.

Audio: every file is cut into consecutive segments of the model's ``segment_samples`` (10 s for
PaSST) covering the whole file; the last partial segment is zero-padded and passed with its real
length; the segment features of one file are averaged, then projected (the model's
``encode_audio`` semantics, computed segment-batch by segment-batch so long files fit in memory).
Text: every caption of every record is a query, in record order; its relevant clip is its record.

Metrics: :mod:`soundsearch.metrics` (text-to-audio: DCASE; audio-to-text: CLAP convention).
Outputs on request: a JSON file of the results, the DCASE submission CSV (``caption,fname_1,...,
fname_10``: the top 10 files of each caption), the similarity matrix as ``.npy``
[n_captions, n_audio] (rows: captions in order, columns: records in order).
"""

from __future__ import annotations

import csv
import json
import logging
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from soundsearch.audio import AudioError, iter_segments
from soundsearch.data.records import AudioCaption
from soundsearch.errors import DataError
from soundsearch.metrics import MAP_AT, audio_to_text_metrics, text_to_audio_metrics, top_k

log = logging.getLogger(__name__)

CONVENTIONS = {
    "text_to_audio": "DCASE: each caption is a query with one relevant clip; "
    "mAP@10 = mean of 1/rank (0 beyond 10); ties count against the relevant clip",
    "audio_to_text": "CLAP: each clip is a query, its captions relevant; R@k uses the best rank; "
    "mAP@10 = sum of precision at relevant ranks <= 10 / number of relevant captions",
}


@dataclass
class Scores:
    """Everything computed from one pass over a split."""

    sim: np.ndarray  # [n_captions, n_audio] cosine similarities
    gt: np.ndarray  # [n_captions] index of each caption's clip
    captions: list[str]
    files: list[str]  # file name of each clip (column)
    skipped: dict[str, str] = field(default_factory=dict)  # unreadable file -> reason


class _Segments(Dataset):
    """File i -> (i, list of segments, error reason or None); decoding runs in loader workers."""

    def __init__(self, paths: Sequence[Path], segment_samples: int):
        self.paths = list(paths)
        self.segment_samples = segment_samples

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[int, list[np.ndarray], str | None]:
        try:
            return i, list(iter_segments(self.paths[i], self.segment_samples)), None
        except AudioError as e:
            return i, [], e.reason


def _as_is(item: Any) -> Any:
    return item


def _model_device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


class _SegmentFeatures:
    """Runs segments through the audio encoder ``batch_size`` at a time; sums features per file."""

    def __init__(self, model: Any, n_files: int, batch_size: int):
        self.model = model
        self.seg = int(model.segment_samples)
        self.device = _model_device(model)
        self.batch_size = batch_size
        self.sums: dict[int, torch.Tensor] = {}
        self.counts = np.zeros(n_files, dtype=np.int64)
        self.pending: list[tuple[int, np.ndarray]] = []

    def add(self, i: int, segment: np.ndarray) -> None:
        self.counts[i] += 1
        self.pending.append((i, segment))
        if len(self.pending) >= self.batch_size:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        wave = torch.zeros(len(self.pending), self.seg, dtype=torch.float32)  # [M, seg]
        lengths = torch.tensor([len(s) for _, s in self.pending], dtype=torch.int64)  # [M]
        for j, (_, s) in enumerate(self.pending):
            wave[j, : len(s)] = torch.from_numpy(s)
        feats = self.model.encode_segments(wave.to(self.device), lengths.to(self.device))  # [M, F]
        for j, (i, _) in enumerate(self.pending):
            f = feats[j].float()
            self.sums[i] = self.sums[i] + f if i in self.sums else f.clone()
        self.pending.clear()

    def embeddings(self) -> np.ndarray:
        """Mean features per file, projected and normalised: [n_files, D] (zero rows: no audio)."""
        self.flush()
        done = sorted(self.sums)
        out: np.ndarray | None = None
        for start in range(0, len(done), self.batch_size):
            idx = done[start : start + self.batch_size]
            feats = torch.stack([self.sums[i] / int(self.counts[i]) for i in idx])  # [b, F]
            emb = self.model.project_audio(feats).float().cpu().numpy()  # [b, D]
            if out is None:
                out = np.zeros((len(self.counts), emb.shape[1]), dtype=np.float32)
            out[idx] = emb
        return out if out is not None else np.zeros((len(self.counts), 0), dtype=np.float32)


@torch.inference_mode()
def embed_audio(
    model: Any,
    paths: Sequence[Path],
    batch_size: int = 16,
    *,
    num_workers: int = 0,
    on_error: str = "raise",
    progress: bool = True,
) -> tuple[np.ndarray, dict[int, str]]:
    """Normalised embeddings [n_files, D] (rows of failed files are zero) and failures {i: reason}.

    ``batch_size`` counts segments per forward pass. A file that cannot be decoded raises a
    DataError with ``on_error="raise"``; with "skip" it is logged and returned in the failures.
    """
    features = _SegmentFeatures(model, len(paths), batch_size)
    files = _Segments(paths, features.seg)
    loader = DataLoader(files, batch_size=None, num_workers=num_workers, collate_fn=_as_is)
    failed: dict[int, str] = {}
    bar = tqdm(loader, desc="embedding audio", unit="file", disable=not progress)
    for i, segments, error in bar:
        if error is not None:
            if on_error == "raise":
                raise DataError(f"cannot evaluate: {paths[i]}: {error}")
            log.warning("skipping unreadable audio %s: %s", paths[i], error)
            failed[i] = error
            continue
        for s in segments:
            features.add(i, s)
    return features.embeddings(), failed


@torch.inference_mode()
def embed_text(
    model: Any, captions: Sequence[str], batch_size: int = 64, progress: bool = True
) -> np.ndarray:
    """Normalised caption embeddings [n_captions, D], in order."""
    chunks = []
    bar = tqdm(total=len(captions), desc="embedding captions", unit="caption", disable=not progress)
    for start in range(0, len(captions), batch_size):
        batch = list(captions[start : start + batch_size])
        chunks.append(model.encode_text(batch).float().cpu().numpy())
        bar.update(len(batch))
    bar.close()
    return np.concatenate(chunks) if chunks else np.zeros((0, 0), dtype=np.float32)


def score(
    model: Any,
    records: Sequence[AudioCaption],
    batch_size: int = 16,
    *,
    text_batch_size: int = 64,
    num_workers: int = 0,
    on_error: str = "raise",
    progress: bool = True,
) -> Scores:
    """Embed every clip and caption of ``records``; the similarity matrix and ground truth."""
    if not records:
        raise DataError("nothing to evaluate: no records")
    was_training = model.training
    model.eval()
    try:
        audio, failed = embed_audio(
            model,
            [r.path for r in records],
            batch_size,
            num_workers=num_workers,
            on_error=on_error,
            progress=progress,
        )
        kept = [i for i in range(len(records)) if i not in failed]
        if not kept:
            raise DataError("no clip of the split could be read")
        captions = [c for i in kept for c in records[i].captions]
        gt = np.array([j for j, i in enumerate(kept) for _ in records[i].captions], dtype=np.int64)
        text = embed_text(model, captions, text_batch_size, progress)
    finally:
        model.train(was_training)
    return Scores(
        sim=text @ audio[kept].T,  # [n_captions, n_audio]
        gt=gt,
        captions=captions,
        files=[records[i].path.name for i in kept],
        skipped={str(records[i].path): reason for i, reason in failed.items()},
    )


def results_from(scores: Scores) -> dict[str, Any]:
    """The metrics of both directions, counts, skipped files and the conventions used."""
    return {
        "text_to_audio": text_to_audio_metrics(scores.sim, scores.gt),
        "audio_to_text": audio_to_text_metrics(scores.sim, scores.gt),
        "n_audio": int(scores.sim.shape[1]),
        "n_captions": int(scores.sim.shape[0]),
        "skipped_files": dict(scores.skipped),
        "conventions": dict(CONVENTIONS),
    }


def evaluate(
    model: Any,
    records: Sequence[AudioCaption],
    batch_size: int = 16,
    *,
    text_batch_size: int = 64,
    num_workers: int = 0,
    on_error: str = "raise",
    json_path: str | os.PathLike | None = None,
    submission_path: str | os.PathLike | None = None,
    similarity_path: str | os.PathLike | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Score ``records`` with ``model`` and return the metrics (see :func:`results_from`).

    Writes the JSON results, the DCASE submission CSV and the similarity ``.npy`` when the
    corresponding path is given.
    """
    scores = score(
        model,
        records,
        batch_size,
        text_batch_size=text_batch_size,
        num_workers=num_workers,
        on_error=on_error,
        progress=progress,
    )
    results = results_from(scores)
    if json_path:
        _atomic_write(json_path, lambda f: f.write(json.dumps(results, indent=2) + "\n"), "w")
    if submission_path:
        write_submission(submission_path, scores)
    if similarity_path:
        _atomic_write(similarity_path, lambda f: np.save(f, scores.sim.astype(np.float32)), "wb")
    return results


def write_submission(path: str | os.PathLike, scores: Scores, k: int = MAP_AT) -> None:
    """DCASE retrieval submission: ``caption,fname_1,...,fname_k``, one row per caption."""
    best = top_k(scores.sim, k)  # [n_captions, k]

    def write(f: Any) -> None:
        out = csv.writer(f, lineterminator="\n")
        out.writerow(["caption"] + [f"fname_{j + 1}" for j in range(best.shape[1])])
        for caption, row in zip(scores.captions, best, strict=True):
            out.writerow([caption] + [scores.files[a] for a in row])

    _atomic_write(path, write, "w")


def _atomic_write(path: str | os.PathLike, write: Callable[[Any], Any], mode: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(
            fd, mode, **({"encoding": "utf-8", "newline": ""} if "b" not in mode else {})
        ) as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
