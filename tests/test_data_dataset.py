"""Training dataset, collate, seeded randomness, unreadable audio, and the pre-decoded cache."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from soundsearch.audio import SAMPLE_RATE, load_audio
from soundsearch.data.cache import AudioCache
from soundsearch.data.dataset import AudioCaptionDataset, collate, gpt_index, make_loader
from soundsearch.data.records import AudioCaption
from soundsearch.errors import DataError


def ramp_wav(path: Path, seconds: float, sr: int = SAMPLE_RATE) -> Path:
    """A file whose samples tell where they come from (a ramp), to check crops."""
    path.parent.mkdir(parents=True, exist_ok=True)
    n = int(seconds * sr)
    sf.write(path, (np.arange(n) / n * 0.9).astype(np.float32), sr, subtype="FLOAT")
    return path


def clotho_record(path: Path, row: int, n_captions: int = 5) -> AudioCaption:
    return AudioCaption(
        audio_id=f"clotho/development/{path.name}",
        path=path,
        captions=tuple(f"{path.stem} caption {k}" for k in range(n_captions)),
        source="clotho",
        meta={"row": row, "split": "development"},
    )


@pytest.fixture()
def records(tmp_path):
    return [
        clotho_record(ramp_wav(tmp_path / "a.wav", 1.0), 0),
        clotho_record(ramp_wav(tmp_path / "b.wav", 2.5), 1, n_captions=2),
        clotho_record(ramp_wav(tmp_path / "c.wav", 0.5), 2, n_captions=1),
    ]


def test_items_are_audio_caption_pairs_and_collate_pads(records):
    ds = AudioCaptionDataset(records, train=False, max_seconds=2.0)
    assert len(ds) == 8  # 5 + 2 + 1 pairs
    items = [ds[i] for i in range(len(ds))]
    assert [it.audio_id for it in items] == [0, 0, 0, 0, 0, 1, 1, 2]
    assert [it.caption for it in items[5:7]] == ["b caption 0", "b caption 1"]
    assert items[5].length == 2 * SAMPLE_RATE  # 2.5 s cut to max_seconds
    np.testing.assert_allclose(
        items[5].wave[:100], load_audio(records[1].path)[:100]
    )  # eval: the start
    batch = collate([items[0], items[5], items[7]])
    assert batch["wave"].shape == (3, 2 * SAMPLE_RATE) and batch["wave"].dtype == torch.float32
    assert batch["lengths"].tolist() == [SAMPLE_RATE, 2 * SAMPLE_RATE, SAMPLE_RATE // 2]
    assert batch["audio_ids"].dtype == torch.int64 and batch["audio_ids"].tolist() == [0, 1, 2]
    assert batch["captions"] == ["a caption 0", "b caption 0", "c caption 0"]
    assert batch["wave"][2, SAMPLE_RATE // 2 :].abs().sum() == 0  # zero padding
    assert batch["wave"][2, : SAMPLE_RATE // 2].abs().sum() > 0


def test_training_crop_is_random_seeded_and_within_the_file(records):
    ds = AudioCaptionDataset(records, train=True, max_seconds=1.0, seed=3)
    full = load_audio(records[1].path)
    starts = []
    for _ in range(20):
        w = ds[5].wave
        assert w.shape == (SAMPLE_RATE,)
        start = int(np.argmin(np.abs(full - w[0])))
        np.testing.assert_allclose(w[1000:1010], full[start + 1000 : start + 1010], atol=2e-3)
        starts.append(start)
    assert len(set(starts)) > 10  # random crops
    again = AudioCaptionDataset(records, train=True, max_seconds=1.0, seed=3)
    np.testing.assert_array_equal(
        again[5].wave, AudioCaptionDataset(records, train=True, max_seconds=1.0, seed=3)[5].wave
    )
    assert not np.array_equal(
        again[5].wave, AudioCaptionDataset(records, train=True, max_seconds=1.0, seed=4)[5].wave
    )


def test_gpt_caption_swap_probability(records):
    variations = {
        gpt_index(records[0], k): [f"variation {k}.{j}" for j in range(5)] for k in range(5)
    }
    ds = AudioCaptionDataset(records[:1], train=True, variations=variations, swap_p=0.3, seed=0)
    n, swapped = 0, 0
    for _ in range(400):
        for i in range(5):
            cap = ds.caption(0, i, ds.generator())
            n += 1
            if cap.startswith("variation"):
                assert cap.startswith(f"variation {i}.")  # a variation of this caption
                swapped += 1
    # binomial(2000, 0.3): sd ~ 0.010; 4 sd
    assert abs(swapped / n - 0.3) < 0.041
    ev = AudioCaptionDataset(records[:1], train=False, variations=variations, swap_p=0.3)
    assert all(ev[i].caption == f"a caption {i}" for i in range(5))  # never in evaluation
    assert gpt_index(records[1], 1) == 6  # row * 5 + caption number


def test_unreadable_audio_is_reported_and_replaced(records, tmp_path, caplog):
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    recs = records + [clotho_record(bad, 3, n_captions=1)]
    ds = AudioCaptionDataset(recs, train=True, max_seconds=1.0, seed=0)
    with caplog.at_level(logging.WARNING, logger="soundsearch"):
        item = ds[len(ds) - 1]  # the broken file's item
    assert item.audio_id != 3 and item.wave.size > 0
    assert ds.failures == 1
    assert "broken.wav" in caplog.text and "unsupported or corrupt" in caplog.text
    ds[len(ds) - 1]  # known bad: replaced again without a second decode attempt
    assert ds.failures == 1
    strict = AudioCaptionDataset(recs, train=True, on_error="raise")
    with pytest.raises(DataError, match="broken.wav"):
        strict[len(strict) - 1]


def test_loader_workers_are_seeded_reproducible_and_differ(records):
    ds = AudioCaptionDataset(records * 4, train=True, max_seconds=0.25, seed=1)

    def epoch(seed):
        loader = make_loader(ds, batch_size=4, num_workers=2, seed=seed)
        return [(b["wave"].clone(), b["audio_ids"].clone()) for b in loader]

    first, second = epoch(7), epoch(7)
    assert len(first) == len(ds) // 4  # drop_last in training
    for (w1, i1), (w2, i2) in zip(first, second, strict=True):
        assert torch.equal(i1, i2) and torch.equal(w1, w2)
    assert any(not torch.equal(a[0], b[0]) for a, b in zip(first, epoch(8), strict=True))


def test_cache_hit_miss_and_equality(records, tmp_path):
    cache = AudioCache(tmp_path / "cache", dtype="float32")
    report = cache.build(
        [r.path for r in records] + [tmp_path / "nope.wav"], workers=2, progress=False
    )
    assert (
        report.built == 3
        and report.present == 0
        and list(report.failed) == [str(tmp_path / "nope.wav")]
    )
    again = cache.build([r.path for r in records], workers=2, progress=False)
    assert again.built == 0 and again.present == 3
    for r in records:
        np.testing.assert_array_equal(cache.load(r.path), load_audio(r.path))
    assert cache.hits == 3 and cache.misses == 0
    # float16 default: within half-precision error; an edited file is a miss, then a hit
    small = AudioCache(tmp_path / "c16")
    np.testing.assert_allclose(small.load(records[0].path), load_audio(records[0].path), atol=1e-3)
    assert small.misses == 1 and records[0].path in small
    ramp_wav(records[0].path, 1.5)
    assert records[0].path not in small
    assert small.load(records[0].path).size == int(1.5 * SAMPLE_RATE) and small.misses == 2


def test_dataset_reads_through_the_cache(records, tmp_path):
    cache = AudioCache(tmp_path / "cache", dtype="float32")
    cached = AudioCaptionDataset(records, train=False, max_seconds=2.0, cache=cache)
    direct = AudioCaptionDataset(records, train=False, max_seconds=2.0)
    for i in range(len(direct)):
        np.testing.assert_array_equal(cached[i].wave, direct[i].wave)
    assert cache.misses == 3 and cache.hits == len(direct) - 3
    crop = AudioCaptionDataset(records, train=True, max_seconds=1.0, cache=cache, seed=0)[5].wave
    assert crop.shape == (SAMPLE_RATE,)


class _FirstDraw(torch.utils.data.Dataset):
    """Each item: the next number of the wrapped dataset's generator in this process."""

    def __init__(self, ds):
        self.ds = ds

    def __len__(self):
        return 4

    def __getitem__(self, i):
        return int(self.ds.generator().integers(1 << 62))


def test_each_worker_has_its_own_stream(records):
    ds = AudioCaptionDataset(records, train=True, seed=5)
    loader = torch.utils.data.DataLoader(
        _FirstDraw(ds), batch_size=1, num_workers=2, generator=torch.Generator().manual_seed(0)
    )
    draws = [int(b) for b in loader]  # items 0, 2 from worker 0; 1, 3 from worker 1
    assert draws[0] != draws[1]  # first draw of each worker
    assert len(set(draws)) == 4
    again = torch.utils.data.DataLoader(
        _FirstDraw(ds), batch_size=1, num_workers=2, generator=torch.Generator().manual_seed(0)
    )
    assert [int(b) for b in again] == draws
