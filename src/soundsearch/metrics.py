"""Retrieval metrics as pure functions of a similarity matrix (REFERENCE.md section 7).

Input everywhere: ``sim`` [n_captions, n_audio] (higher = more similar) and ``gt`` [n_captions],
the index of each caption's own audio clip.

- Text-to-audio (DCASE convention): each caption is a query with exactly one relevant clip.
  R@k = share of queries whose clip is in the top k; mAP@10 = mean of 1/rank if rank <= 10 else 0.
- Audio-to-text (CLAP convention): each clip is a query; its captions are relevant. R@k uses the
  best rank among them; mAP@10 = sum of the precision at the rank of each relevant caption found
  in the top 10, divided by the number of relevant captions (5 for ClothoV2).

Ties are broken pessimistically: a relevant item ranks below every non-relevant item with the
same score (a constant model scores 0, not 1). Among tied relevant items the order does not change
any metric. Ranks are 1-based. Metric values are fractions in [0, 1] (multiply by 100 for the
paper's percentages); median and mean rank are of the (best) relevant rank.
"""

from __future__ import annotations

import numpy as np

KS = (1, 5, 10)
MAP_AT = 10


def _check(sim: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    sim = np.asarray(sim, dtype=np.float64)
    gt = np.asarray(gt, dtype=np.int64)
    if sim.ndim != 2 or gt.shape != (sim.shape[0],):
        raise ValueError(
            f"expected sim [n_captions, n_audio] and gt [n_captions], got {sim.shape}, {gt.shape}"
        )
    if gt.size and (gt.min() < 0 or gt.max() >= sim.shape[1]):
        raise ValueError("gt holds audio indices outside the similarity matrix")
    if not np.isfinite(sim).all():
        raise ValueError("similarity matrix holds NaN or infinity")
    return sim, gt


def text_to_audio_ranks(sim: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """[n_captions] 1-based rank of each caption's clip; ties count against it."""
    sim, gt = _check(sim, gt)
    own = sim[np.arange(sim.shape[0]), gt]  # [n_captions]
    return (sim >= own[:, None]).sum(axis=1)  # itself + every clip scoring at least as high


def audio_to_text_ranks(sim: np.ndarray, gt: np.ndarray) -> list[np.ndarray]:
    """For each clip, the sorted 1-based ranks of its captions among all captions."""
    sim, gt = _check(sim, gt)
    out = []
    for a in range(sim.shape[1]):
        scores = sim[:, a]  # [n_captions]
        relevant = gt == a
        # order: score descending, then non-relevant before relevant (pessimistic ties)
        order = np.lexsort((relevant, -scores))
        out.append(np.flatnonzero(relevant[order]) + 1)
    return out


def rank_metrics(
    ranks: np.ndarray, ks: tuple[int, ...] = KS, map_at: int = MAP_AT
) -> dict[str, float]:
    """R@k, mAP@``map_at`` (one relevant item per query), median and mean rank."""
    ranks = np.asarray(ranks, dtype=np.float64)
    if ranks.size == 0:
        raise ValueError("no queries")
    out = {f"R@{k}": float(np.mean(ranks <= k)) for k in ks}
    out[f"mAP@{map_at}"] = float(np.mean(np.where(ranks <= map_at, 1.0 / ranks, 0.0)))
    out["median_rank"] = float(np.median(ranks))
    out["mean_rank"] = float(np.mean(ranks))
    return out


def text_to_audio_metrics(sim: np.ndarray, gt: np.ndarray) -> dict[str, float]:
    """DCASE text-to-audio metrics: mAP@10, R@1/5/10, median and mean rank."""
    return rank_metrics(text_to_audio_ranks(sim, gt))


def audio_to_text_metrics(
    sim: np.ndarray, gt: np.ndarray, ks: tuple[int, ...] = KS, map_at: int = MAP_AT
) -> dict[str, float]:
    """CLAP audio-to-text metrics. Clips without any caption are not queries."""
    per_clip = [r for r in audio_to_text_ranks(sim, gt) if r.size]
    if not per_clip:
        raise ValueError("no clip has a caption")
    best = np.array([r[0] for r in per_clip], dtype=np.float64)
    out = {f"R@{k}": float(np.mean(best <= k)) for k in ks}
    ap = []
    for r in per_clip:
        hits = r[r <= map_at]  # ranks of relevant captions in the top map_at
        precision = np.arange(1, hits.size + 1) / hits  # relevant so far / rank
        ap.append(precision.sum() / r.size)
    out[f"mAP@{map_at}"] = float(np.mean(ap))
    out["median_rank"] = float(np.median(best))
    out["mean_rank"] = float(np.mean(best))
    return out


def top_k(sim: np.ndarray, k: int = 10) -> np.ndarray:
    """[n_captions, min(k, n_audio)] audio indices by decreasing similarity (ties: lower index first)."""
    sim = np.asarray(sim)
    k = min(k, sim.shape[1])
    return np.argsort(-sim, axis=1, kind="stable")[:, :k]
