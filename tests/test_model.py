"""The dual encoder: segmenting of long audio, determinism, batch independence, precision."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from helpers import tiny_model, write_tone

from soundsearch.audio import SEGMENT_SAMPLES, load_audio
from soundsearch.model import split_segments

SR = 32000


@pytest.fixture(scope="module")
def model():
    return tiny_model()


def test_split_segments_keeps_real_segments_only():
    wave = torch.arange(2 * 25).float().view(2, 25)
    segs, seg_len, owner = split_segments(wave, torch.tensor([25, 7]), seg=10)
    assert owner.tolist() == [0, 0, 0, 1]  # item 1 (7 samples) has one segment, padded ones dropped
    assert seg_len.tolist() == [10, 10, 5, 7]
    assert segs.shape == (4, 10)
    assert (
        segs[2, :5].tolist() == list(range(20, 25)) and segs[2, 5:].abs().sum() == 0
    )  # zero padding
    _, _, owner0 = split_segments(torch.zeros(1, 30), torch.tensor([0]), seg=10)
    assert owner0.tolist() == [0]  # an empty item still gets one segment


@torch.no_grad()
def test_long_audio_is_the_mean_of_segment_features_then_projected(model):
    g = torch.Generator().manual_seed(0)
    n = int(2.5 * SEGMENT_SAMPLES)
    wave = 0.1 * torch.randn(1, n, generator=g)
    emb = model.encode_audio(wave, torch.tensor([n]))
    pieces = [wave[:, i : i + SEGMENT_SAMPLES] for i in range(0, n, SEGMENT_SAMPLES)]
    feats = torch.cat([model.encode_segments(p) for p in pieces])  # 3 segments, last one padded
    assert feats.shape[0] == 3
    expected = F.normalize(model.audio_proj(feats.mean(0, keepdim=True)), dim=-1)
    torch.testing.assert_close(emb, expected, rtol=1e-5, atol=1e-6)
    # per-segment embeddings (for timestamps) differ from each other
    per_segment = model.project_audio(feats)
    assert (per_segment[0] - per_segment[1]).abs().max() > 1e-3


@torch.no_grad()
def test_inference_is_deterministic_and_batch_independent(model, tmp_path):
    path = write_tone(tmp_path / "tone.wav", 12.5)
    a = torch.from_numpy(load_audio(path))[None]
    b = torch.from_numpy(load_audio(path))[None]
    e1 = model.encode_audio(a, torch.tensor([a.shape[1]]))
    e2 = model.encode_audio(b, torch.tensor([b.shape[1]]))
    assert torch.equal(e1, e2)  # same file, same embedding, bit for bit
    longer = torch.zeros(2, 3 * SEGMENT_SAMPLES)
    longer[0, : a.shape[1]] = a[0]
    longer[1] = 0.2 * torch.randn(3 * SEGMENT_SAMPLES)
    batched = model.encode_audio(longer, torch.tensor([a.shape[1], longer.shape[1]]))
    torch.testing.assert_close(batched[0:1], e1, rtol=1e-4, atol=1e-5)


@torch.no_grad()
def test_text_and_audio_are_normalised_and_scaled(model):
    t = model.encode_text(["a dog barks", "rain on a roof"])
    a = model.encode_audio(0.1 * torch.randn(2, SR * 3))
    assert torch.allclose(t.norm(dim=-1), torch.ones(2)) and torch.allclose(
        a.norm(dim=-1), torch.ones(2)
    )
    assert model.logit_scale.item() == pytest.approx(100.0)  # 1 / 0.01


def test_fixed_temperature_is_not_trained():
    m = tiny_model(tau_learnable=False, tau_init=0.05)
    assert "tau" not in dict(m.named_parameters()) and m.logit_scale.item() == pytest.approx(20.0)


@torch.no_grad()
def test_bf16_autocast_on_cpu_stays_close(model):
    wave = 0.1 * torch.randn(2, SR * 4, generator=torch.Generator().manual_seed(3))
    ref = model.encode_audio(wave)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = model.encode_audio(wave)
        txt = model.encode_text(["glass breaking"])
    assert low.dtype == torch.float32 and txt.dtype == torch.float32
    assert (F.cosine_similarity(low, ref) > 0.99).all()


def test_training_mode_is_random_and_backpropagates():
    m = tiny_model().train()
    wave = 0.1 * torch.randn(2, SR * 4, generator=torch.Generator().manual_seed(4))
    a1 = m.encode_audio(wave)
    a2 = m.encode_audio(wave)
    assert not torch.allclose(a1, a2)  # patchout / mel jitter are active in training
    (a1 * m.encode_text(["x", "y"])).sum().backward()
    assert m.audio_proj.weight.grad is not None and m.text_proj.weight.grad is not None
    grads = [p.grad for p in m.audio_encoder.parameters() if p.requires_grad]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)
