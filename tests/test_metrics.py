"""Retrieval metrics against hand-computed cases and a brute-force loop."""

from __future__ import annotations

import numpy as np
import pytest

from soundsearch.metrics import (
    audio_to_text_metrics,
    audio_to_text_ranks,
    text_to_audio_metrics,
    text_to_audio_ranks,
    top_k,
)


def test_text_to_audio_by_hand():
    # captions x clips; caption i belongs to clip i
    sim = np.array(
        [
            [0.9, 0.1, 0.2],  # own clip first: rank 1
            [0.8, 0.5, 0.7],  # own clip (0.5) third: rank 3
            [0.3, 0.6, 0.4],  # own clip (0.4) second: rank 2
        ]
    )
    gt = np.array([0, 1, 2])
    assert text_to_audio_ranks(sim, gt).tolist() == [1, 3, 2]
    m = text_to_audio_metrics(sim, gt)
    assert m["mAP@10"] == pytest.approx((1 + 1 / 3 + 1 / 2) / 3)  # 0.6111
    assert m["R@1"] == pytest.approx(1 / 3)
    assert m["R@5"] == 1.0 and m["R@10"] == 1.0
    assert m["median_rank"] == 2.0 and m["mean_rank"] == 2.0


def test_rank_beyond_ten_scores_zero():
    sim = np.zeros((1, 12))
    sim[0, :11] = np.arange(11, 0, -1)  # clips 0..10 above clip 11
    m = text_to_audio_metrics(sim, np.array([11]))
    assert m["mAP@10"] == 0.0 and m["R@10"] == 0.0 and m["median_rank"] == 12


def test_ties_count_against_the_relevant_item():
    sim = np.ones((2, 4))  # a constant model
    m = text_to_audio_metrics(sim, np.array([0, 3]))
    assert text_to_audio_ranks(sim, np.array([0, 3])).tolist() == [4, 4]
    assert m["R@1"] == 0.0
    a2t = audio_to_text_ranks(np.ones((3, 1)), np.array([0, 0, 0]))
    assert a2t[0].tolist() == [1, 2, 3]  # tied relevant captions among themselves: any order
    a2t = audio_to_text_ranks(np.array([[1.0, 0], [1.0, 0], [0.5, 0]]), np.array([1, 0, 0]))
    assert a2t[0].tolist() == [2, 3]  # caption 1 ties with caption 0 (not relevant): it loses


def test_audio_to_text_by_hand():
    # clip 0 has captions 0 and 1; clip 1 has captions 2, 3 and 4
    gt = np.array([0, 0, 1, 1, 1])
    sim = np.array(
        [
            [0.9, 0.0],
            [0.1, 0.8],
            [0.5, 0.7],
            [0.2, 0.9],
            [0.3, 0.1],
        ]
    )
    # clip 0 ranks captions by column 0: c0 .9, c2 .5, c4 .3, c3 .2, c1 .1 -> relevant at 1 and 5
    # clip 1: c3 .9, c1 .8, c2 .7, c4 .1, c0 0 -> relevant at 1, 3, 4
    ranks = audio_to_text_ranks(sim, gt)
    assert ranks[0].tolist() == [1, 5] and ranks[1].tolist() == [1, 3, 4]
    m = audio_to_text_metrics(sim, gt)
    ap0 = (1 / 1 + 2 / 5) / 2
    ap1 = (1 / 1 + 2 / 3 + 3 / 4) / 3
    assert m["mAP@10"] == pytest.approx((ap0 + ap1) / 2)
    assert m["R@1"] == 1.0 and m["median_rank"] == 1.0


def brute_force(sim, gt, k=10):
    """Sort every query explicitly, pessimistic ties: relevant after non-relevant at equal score."""
    n_cap, n_aud = sim.shape
    t2a = []
    for i in range(n_cap):
        order = sorted(range(n_aud), key=lambda a: (-sim[i, a], a == gt[i]))
        t2a.append(order.index(gt[i]) + 1)
    t2a = np.array(t2a)
    a2t_best, a2t_ap = [], []
    for a in range(n_aud):
        rel = {c for c in range(n_cap) if gt[c] == a}
        if not rel:
            continue
        order = sorted(range(n_cap), key=lambda c: (-sim[c, a], c in rel))
        hits, precisions = 0, []
        for pos, c in enumerate(order[:k], start=1):
            if c in rel:
                hits += 1
                precisions.append(hits / pos)
        a2t_best.append(min(order.index(c) for c in rel) + 1)
        a2t_ap.append(sum(precisions) / len(rel))
    return t2a, np.array(a2t_best), float(np.mean(a2t_ap))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_against_brute_force(seed):
    rng = np.random.default_rng(seed)
    n_aud = 30
    gt = np.repeat(np.arange(n_aud), 5)[rng.permutation(5 * n_aud)]
    sim = np.round(rng.normal(size=(5 * n_aud, n_aud)), 1)  # coarse values: many ties
    sim[np.arange(len(gt)), gt] += 1.0  # some signal
    t2a, best, ap = brute_force(sim, gt)
    np.testing.assert_array_equal(text_to_audio_ranks(sim, gt), t2a)
    m = text_to_audio_metrics(sim, gt)
    assert m["mAP@10"] == pytest.approx(np.mean(np.where(t2a <= 10, 1 / t2a, 0)))
    for k in (1, 5, 10):
        assert m[f"R@{k}"] == pytest.approx(np.mean(t2a <= k))
    a2t = audio_to_text_metrics(sim, gt)
    assert a2t["mAP@10"] == pytest.approx(ap)
    assert a2t["R@5"] == pytest.approx(np.mean(best <= 5))
    assert a2t["median_rank"] == np.median(best)


def test_perfect_and_bad_inputs():
    sim = np.eye(4)
    assert text_to_audio_metrics(sim, np.arange(4))["mAP@10"] == 1.0
    assert audio_to_text_metrics(sim, np.arange(4))["mAP@10"] == 1.0
    with pytest.raises(ValueError, match="NaN"):
        text_to_audio_metrics(np.full((2, 2), np.nan), np.arange(2))
    with pytest.raises(ValueError, match="outside"):
        text_to_audio_metrics(sim, np.array([0, 1, 2, 4]))
    assert top_k(np.array([[0.1, 0.9, 0.5]]), 2).tolist() == [[1, 2]]
