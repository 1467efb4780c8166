"""Symmetric multi-positive contrastive loss (REFERENCE.md section 4).

C[i, j] = a_i . t_j * scale for audio item i and caption j of the batch. Positives P[i, j]: audio i and
caption j come from the same audio file (a file may appear several times in a batch, with different
captions). loss = -0.5 * (mean_P log_softmax(C, dim=0) + mean_P log_softmax(C, dim=1)).
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor


def contrastive_loss(audio: Tensor, text: Tensor, audio_ids: Tensor, logit_scale: Tensor) -> Tensor:
    """audio [B, D], text [B, D] (normalised), audio_ids [B] int -> scalar loss."""
    C = (audio.float() @ text.float().T) * logit_scale  # [B, B]
    P = (audio_ids[:, None] == audio_ids[None, :]).to(C.dtype)  # [B, B]
    n = P.sum()
    over_audio = (torch.log_softmax(C, dim=0) * P).sum() / n  # each caption's posterior over audio
    over_text = (torch.log_softmax(C, dim=1) * P).sum() / n  # each audio's posterior over captions
    return -0.5 * (over_audio + over_text)


def gather_with_grad(x: Tensor) -> Tensor:
    """All-gather ``x`` [B, ...] from every rank into [world * B, ...], keeping gradients.

    Without an initialised process group this is the identity. Batches must have equal size on
    every rank (use drop_last in the sampler).
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    import warnings

    from torch.distributed.nn.functional import all_gather

    with warnings.catch_warnings():  # deprecated in favour of a private API; still the public one
        warnings.simplefilter("ignore", FutureWarning)
        return torch.cat(all_gather(x), dim=0)


def gather_ids(ids: Tensor) -> Tensor:
    """All-gather integer ids (no gradient)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return ids
    out = [torch.empty_like(ids) for _ in range(dist.get_world_size())]
    dist.all_gather(out, ids.contiguous())
    return torch.cat(out, dim=0)


def distributed_contrastive_loss(
    audio: Tensor, text: Tensor, audio_ids: Tensor, logit_scale: Tensor
) -> Tensor:
    """The loss over the global batch of all ranks.

    Every rank computes the full global loss; the all-gather's backward sums the gradients that
    flow to each rank's local embeddings over the ranks (world * dL/de), and DDP then averages the
    parameter gradients over ranks, which gives exactly the single-process gradient of the global
    batch. ``audio_ids`` must be unique across ranks (e.g. data-set indices).
    """
    return contrastive_loss(
        gather_with_grad(audio), gather_with_grad(text), gather_ids(audio_ids), logit_scale
    )
