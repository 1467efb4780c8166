"""Reciprocal rank fusion (Cormack, Clarke & Buettcher, SIGIR 2009).

fused(file) = sum over channels c of weight_c / (k + rank_c(file)), ranks starting at 1; a file
missing from a channel's list gets nothing from it; files with equal scores in a channel share the
best of their ranks, so the arbitrary order of ties does not decide. Only ranks matter, so BM25 scores and cosine
similarities, which live on different scales, combine without calibration.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ChannelHit:
    rank: int  # 1-based
    score: float  # the channel's own score (BM25, cosine)
    time: float | None = None  # acoustic: start of the best segment, seconds


@dataclass
class Fused:
    file_id: int
    score: float
    channels: dict[str, ChannelHit] = field(default_factory=dict)


def rrf(
    rankings: dict[str, list[tuple[int, float, float | None]]],
    weights: dict[str, float],
    k: int = 60,
    limit: int | None = None,
) -> list[Fused]:
    """Fuse ``{channel: [(file id, score, time), ...] best first}``; best fused first.

    Ties are broken by the best single-channel rank, then by file id, so results are stable.
    """
    fused: dict[int, Fused] = {}
    for channel, ranking in rankings.items():
        w = float(weights.get(channel, 1.0))
        rank, prev = 0, None
        for pos, (fid, score, t) in enumerate(ranking, start=1):
            if score != prev:  # equal scores share a rank (BM25 ties are common for names)
                rank, prev = pos, score
            entry = fused.setdefault(fid, Fused(fid, 0.0))
            entry.score += w / (k + rank)
            entry.channels[channel] = ChannelHit(rank, score, t)
    order = sorted(
        fused.values(),
        key=lambda f: (-f.score, min(h.rank for h in f.channels.values()), f.file_id),
    )
    return order[:limit] if limit is not None else order
