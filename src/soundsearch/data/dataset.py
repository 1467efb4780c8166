"""The training dataset over :class:`AudioCaption` records, its collate function and loader.

Every (audio file, caption) pair is one item, as in the reference: a file with five captions is
seen five times per epoch, each time with another caption. An item is
``(wave float32 [L], real length, caption, audio index)``; the audio index is the record's
position in ``records``, so captions of one file share it (the loss's multi-positive mask).

Audio: 32 kHz mono; longer than ``max_seconds`` (30 s) -> a random crop in training, the first
``max_seconds`` in evaluation; shorter files are not padded here: :func:`collate` zero-pads the
batch to its longest waveform (REFERENCE.md section 5).

Randomness (crop start, GPT caption swap, replacement of unreadable items) comes from one
``numpy`` generator per process, seeded from ``seed`` and, in a DataLoader worker, from the
worker's torch seed (different per worker and per epoch, fixed by the loader's ``generator``):
runs with the same seed, sampler and worker count are identical.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import random
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, get_worker_info

from soundsearch.audio import (
    MAX_TRAIN_SECONDS,
    SAMPLE_RATE,
    AudioError,
    audio_info,
    crop_or_pad,
    load_audio,
)
from soundsearch.data.cache import AudioCache
from soundsearch.data.records import AudioCaption
from soundsearch.errors import DataError

log = logging.getLogger(__name__)


class Item(NamedTuple):
    wave: np.ndarray  # [L] float32, 32 kHz
    length: int  # real samples (== L)
    caption: str
    audio_id: int  # index of the record: the file id of the multi-positive loss


def gpt_index(record: AudioCaption, caption: int) -> int | None:
    """The ClothoV2_GPT idx (row * 5 + caption number) of a ClothoV2 development caption."""
    if record.source != "clotho" or record.meta.get("split") != "development":
        return None
    row = record.meta.get("row")
    return None if row is None else int(row) * 5 + caption


class AudioCaptionDataset(Dataset):
    """(audio, caption) pairs of ``records`` for training or validation loss."""

    def __init__(
        self,
        records: Sequence[AudioCaption],
        *,
        train: bool = True,
        max_seconds: float = MAX_TRAIN_SECONDS,
        variations: dict[int, list[str]] | None = None,
        swap_p: float = 0.0,
        seed: int = 0,
        cache: AudioCache | None = None,
        on_error: str = "skip",
        max_retries: int = 20,
    ):
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', not {on_error!r}")
        if not 0.0 <= swap_p <= 1.0:
            raise ValueError(f"swap_p must be in [0, 1], not {swap_p}")
        if not records:
            raise DataError("no training records: check the data sources")
        self.records = list(records)
        self.train = train
        self.max_samples = round(max_seconds * SAMPLE_RATE)
        self.variations = variations or {}
        self.swap_p = swap_p if self.variations else 0.0
        self.seed = seed
        self.cache = cache
        self.on_error = on_error
        self.max_retries = max_retries
        pairs = [(r, k) for r, rec in enumerate(self.records) for k in range(len(rec.captions))]
        self.items = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)  # [N, 2] (record, caption)
        self._failed = mp.Value("l", 0)  # unreadable files met, summed over worker processes
        self._bad: set[int] = set()  # records found unreadable in this process
        self._rng: np.random.Generator | None = None
        self._rng_key: tuple | None = None
        if self.variations:
            self._log_swap()

    def _log_swap(self) -> None:
        n = sum(1 for r, k in self.items if gpt_index(self.records[r], int(k)) in self.variations)
        log.info(
            "GPT caption swap p=%.2f: %d of %d captions have variations", self.swap_p, n, len(self)
        )

    def __len__(self) -> int:
        return len(self.items)

    @property
    def failures(self) -> int:
        """Unreadable audio files met so far (all worker processes)."""
        return int(self._failed.value)

    def generator(self) -> np.random.Generator:
        """This process's generator (re-seeded when a new DataLoader worker starts)."""
        info = get_worker_info()
        key = (os.getpid(), None if info is None else info.seed)
        if self._rng is None or self._rng_key != key:
            entropy = [self.seed] if info is None else [self.seed, info.seed]
            self._rng = np.random.default_rng(entropy)
            self._rng_key = key
        return self._rng

    def __getitem__(self, index: int) -> Item:
        rng = self.generator()
        for _ in range(self.max_retries + 1):
            rec, cap = (int(v) for v in self.items[index])
            if rec not in self._bad:
                try:
                    wave = self.load_wave(self.records[rec], rng if self.train else None)
                    return Item(wave, int(wave.shape[0]), self.caption(rec, cap, rng), rec)
                except AudioError as e:
                    self._note_failure(rec, e)
            # replace the item: another random one in training, the next one otherwise
            index = int(rng.integers(len(self))) if self.train else (index + 1) % len(self)
        raise DataError(
            f"{self.max_retries + 1} unreadable audio files in a row (last: "
            f"{self.records[rec].path}); check the data set (see the warnings above)"
        )

    def _note_failure(self, rec: int, error: AudioError) -> None:
        if self.on_error == "raise":
            raise DataError(f"unreadable audio {error.path}: {error.reason}") from error
        self._bad.add(rec)
        with self._failed.get_lock():
            self._failed.value += 1
            total = self._failed.value
        log.warning(
            "skipping unreadable audio %s: %s (%d so far); using another item instead",
            error.path,
            error.reason,
            total,
        )

    def caption(self, rec: int, cap: int, rng: np.random.Generator) -> str:
        """Caption ``cap`` of record ``rec``; in training, swapped for a GPT variation w.p. p."""
        text = self.records[rec].captions[cap]
        if self.train and self.swap_p > 0.0:
            idx = gpt_index(self.records[rec], cap)
            options = self.variations.get(idx) if idx is not None else None
            if options and rng.random() < self.swap_p:
                text = options[int(rng.integers(len(options)))]
        return text

    def load_wave(self, record: AudioCaption, rng: np.random.Generator | None) -> np.ndarray:
        """float32 [L <= max_samples]: a random crop with ``rng``, else the start of the file."""
        if self.cache is not None:
            data = self.cache.get(record.path)
            n = int(data.shape[0])
            start = (
                int(rng.integers(0, n - self.max_samples + 1))
                if rng is not None and n > self.max_samples
                else 0
            )
            wave = np.asarray(data[start : start + self.max_samples], dtype=np.float32)
        else:
            wave = self._decode_crop(record, rng)
        wave, n = crop_or_pad(wave, min(wave.shape[0], self.max_samples))
        if n == 0:
            raise AudioError(record.path, "no audio samples")
        return np.ascontiguousarray(wave, dtype=np.float32)

    def _decode_crop(self, record: AudioCaption, rng: np.random.Generator | None) -> np.ndarray:
        """Decode only the needed ``max_seconds`` of a long file."""
        max_s = self.max_samples / SAMPLE_RATE
        if rng is None:
            return load_audio(record.path, duration_s=max_s)
        _, _, duration = audio_info(record.path)
        offset = float(rng.uniform(0.0, duration - max_s)) if duration > max_s else 0.0
        return load_audio(record.path, offset_s=offset, duration_s=max_s if offset else None)


def collate(batch: Sequence[Item]) -> dict[str, torch.Tensor | list[str]]:
    """Zero-pad to the longest waveform of the batch.

    -> {"wave": [B, L] float32, "lengths": [B] int64, "captions": list[str], "audio_ids": [B] int64}
    """
    lengths = [int(item.length) for item in batch]
    wave = torch.zeros(len(batch), max(1, max(lengths)), dtype=torch.float32)  # [B, L]
    for i, item in enumerate(batch):
        wave[i, : lengths[i]] = torch.from_numpy(np.asarray(item.wave, dtype=np.float32))
    return {
        "wave": wave,
        "lengths": torch.tensor(lengths, dtype=torch.int64),
        "captions": [item.caption for item in batch],
        "audio_ids": torch.tensor([item.audio_id for item in batch], dtype=torch.int64),
    }


def seed_worker(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: seed Python's and numpy's global generators per worker
    (for any library code that uses them; the dataset has its own generator)."""
    seed = torch.initial_seed() % 2**32
    random.seed(seed)
    np.random.seed(seed)


def make_loader(
    dataset: AudioCaptionDataset,
    batch_size: int,
    *,
    shuffle: bool | None = None,
    num_workers: int = 0,
    seed: int = 0,
    drop_last: bool | None = None,
    pin_memory: bool = False,
) -> DataLoader:
    """A DataLoader with :func:`collate`, seeded shuffling and seeded workers.

    Defaults follow the dataset's mode: training shuffles and drops the last partial batch.
    """
    train = dataset.train
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=train if shuffle is None else shuffle,
        drop_last=train if drop_last is None else drop_last,
        num_workers=num_workers,
        collate_fn=collate,
        worker_init_fn=seed_worker,
        generator=generator,
        pin_memory=pin_memory,
        persistent_workers=num_workers > 0,
    )
