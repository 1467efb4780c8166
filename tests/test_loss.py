"""The multi-positive contrastive loss: a hand-computed case, a brute-force loop, the distributed variant."""

from __future__ import annotations

import math
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp
import torch.nn.functional as F

from soundsearch.loss import contrastive_loss, distributed_contrastive_loss


def test_hand_computed_two_pairs():
    a = torch.eye(2)
    t = torch.eye(2)
    loss = contrastive_loss(a, t, torch.tensor([0, 1]), torch.tensor(1.0))
    # C = I: every positive has probability e / (e + 1) in both directions.
    assert loss.item() == pytest.approx(math.log(1 + math.exp(-1)), abs=1e-6)


def brute_force(a, t, ids, scale):
    C = (a @ t.T * scale).double()
    B = len(ids)
    terms_audio, terms_text = [], []
    for i in range(B):
        for j in range(B):
            if ids[i] != ids[j]:
                continue
            col = C[:, j]  # caption j's scores over the audio items
            terms_audio.append(C[i, j] - torch.logsumexp(col, 0))
            row = C[i, :]  # audio i's scores over the captions
            terms_text.append(C[i, j] - torch.logsumexp(row, 0))
    return -0.5 * (torch.stack(terms_audio).mean() + torch.stack(terms_text).mean())


def test_brute_force_with_repeated_audio():
    g = torch.Generator().manual_seed(0)
    a = F.normalize(torch.randn(9, 16, generator=g), dim=-1)
    t = F.normalize(torch.randn(9, 16, generator=g), dim=-1)
    ids = torch.tensor([3, 3, 7, 1, 7, 7, 2, 5, 1])  # several files appear more than once
    ours = contrastive_loss(a, t, ids, torch.tensor(20.0))
    ref = brute_force(a, t, ids, 20.0)
    assert ours.item() == pytest.approx(ref.item(), rel=1e-5)
    # the positives matter: with all-unique ids the loss is different
    assert (
        abs(contrastive_loss(a, t, torch.arange(9), torch.tensor(20.0)).item() - ours.item()) > 1e-3
    )


def test_gradient_pulls_positive_pairs_together():
    g = torch.Generator().manual_seed(1)
    a = F.normalize(torch.randn(6, 8, generator=g), dim=-1).requires_grad_()
    t = F.normalize(torch.randn(6, 8, generator=g), dim=-1)
    ids = torch.arange(6)
    opt = torch.optim.SGD([a], lr=0.5)
    before = contrastive_loss(a, t, ids, torch.tensor(10.0)).item()
    for _ in range(20):
        opt.zero_grad()
        contrastive_loss(F.normalize(a, dim=-1), t, ids, torch.tensor(10.0)).backward()
        opt.step()
    after = contrastive_loss(F.normalize(a, dim=-1), t, ids, torch.tensor(10.0)).item()
    assert after < before * 0.5


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank, world, port, a, t, ids, out):
    import torch.distributed as dist

    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        n = a.shape[0] // world
        la = a[rank * n : (rank + 1) * n].clone().requires_grad_()
        lt = t[rank * n : (rank + 1) * n].clone().requires_grad_()
        loss = distributed_contrastive_loss(
            la, lt, ids[rank * n : (rank + 1) * n], torch.tensor(5.0)
        )
        loss.backward()
        # DDP averages parameter gradients over ranks; emulate it on the embedding gradients.
        ga, gt = la.grad / world, lt.grad / world
        out[rank] = (loss.detach(), ga, gt)
    finally:
        dist.destroy_process_group()


def test_distributed_matches_single_process_global_batch():
    g = torch.Generator().manual_seed(2)
    a = F.normalize(torch.randn(8, 4, generator=g), dim=-1)
    t = F.normalize(torch.randn(8, 4, generator=g), dim=-1)
    ids = torch.tensor([0, 1, 2, 0, 4, 5, 4, 7])  # repeats across the two ranks' halves
    ref_a, ref_t = a.clone().requires_grad_(), t.clone().requires_grad_()
    ref = contrastive_loss(ref_a, ref_t, ids, torch.tensor(5.0))
    ref.backward()

    world = 2
    manager = mp.Manager()
    out = manager.dict()
    mp.spawn(_worker, args=(world, _free_port(), a, t, ids, out), nprocs=world, join=True)
    for rank in range(world):
        loss, ga, gt = out[rank]
        assert loss.item() == pytest.approx(ref.item(), rel=1e-6)
        sl = slice(rank * 4, (rank + 1) * 4)
        torch.testing.assert_close(ga, ref_a.grad[sl], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(gt, ref_t.grad[sl], rtol=1e-5, atol=1e-6)
