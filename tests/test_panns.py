"""PANNs CNN10 / CNN14: official layout, parity with the authors' code, precision, training-only parts."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from conftest import load_fixture

from soundsearch.encoders import build_audio_encoder
from soundsearch.errors import UserError
from soundsearch.panns import (
    CNN_SEGMENT_SAMPLES,
    CnnAudioEncoder,
    Panns,
    PannsConfig,
    build_cnn_encoder,
    dft_kernels,
    slaney_mel_matrix,
    spec_augment,
)
from soundsearch.torchload import load_panns_state_dict

TINY = {"channels": (8, 16), "pool_sizes": ((2, 2), (2, 2)), "segment_samples": 32000}


@pytest.fixture(scope="module")
def cnn10_fixture() -> dict:
    return load_fixture("panns_cnn10.npz")


def fixture_state(z: dict) -> dict[str, torch.Tensor]:
    return {k[len("weight:") :]: torch.from_numpy(z[k]) for k in z if k.startswith("weight:")}


def parity_net(z: dict, **overrides) -> CnnAudioEncoder:
    enc = build_cnn_encoder("cnn10", **overrides)
    load_panns_state_dict(enc, fixture_state(z), "panns_cnn10.npz")
    return enc.eval()


def max_diff(a: torch.Tensor, b) -> float:
    return (a.float() - torch.as_tensor(b).float()).abs().max().item()


# ----------------------------------------------------------------------------------------------
# layout
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name, key, embed_dim, n_params, n_trainable",
    [
        ("cnn10", "Cnn10", 512, 6_302_735, 5_219_279),
        ("cnn14", "Cnn14", 2048, 81_837_071, 80_753_615),
    ],
)
def test_official_state_dict_layout(fixtures_dir, name, key, embed_dim, n_params, n_trainable):
    official = json.loads((fixtures_dir / "panns_official_shapes.json").read_text())[key]
    with torch.device("meta"):  # CNN14 at full size without allocating 330 MB
        enc = build_audio_encoder(name)
    state = enc.net.state_dict()
    assert list(state) == list(official)  # same keys, same order
    assert {k: list(v.shape) for k, v in state.items()} == official
    for k, v in state.items():
        assert v.dtype == (torch.int64 if k.endswith("num_batches_tracked") else torch.float32), k
    assert enc.embed_dim == embed_dim and enc.segment_samples == CNN_SEGMENT_SAMPLES == 960_000
    # the paper's parameter counts include the frozen front-end; the front-end is not trainable
    assert sum(p.numel() for p in enc.parameters()) == n_params
    assert sum(p.numel() for p in enc.parameters() if p.requires_grad) == n_trainable
    frozen = {n for n, p in enc.net.named_parameters() if not p.requires_grad}
    assert frozen == {
        "spectrogram_extractor.stft.conv_real.weight",
        "spectrogram_extractor.stft.conv_imag.weight",
        "logmel_extractor.melW",
    }


def test_front_end_constants_match_the_reference(cnn10_fixture):
    real, imag = dft_kernels(1024)
    mel = slaney_mel_matrix(32000, 1024, 64, 50.0, 14000.0)
    z = cnn10_fixture
    assert max_diff(real, z["weight:spectrogram_extractor.stft.conv_real.weight"]) < 1e-6
    assert max_diff(imag, z["weight:spectrogram_extractor.stft.conv_imag.weight"]) < 1e-6
    assert max_diff(mel, z["weight:logmel_extractor.melW"]) < 1e-8
    assert mel[449:].abs().max() == 0  # bins above 14 kHz (bin 449 = 14031 Hz) get no weight


# ----------------------------------------------------------------------------------------------
# parity with the PANNs authors' Cnn10 (random weights, fixture)
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("stft", ["fft", "conv"])
def test_parity_3s(cnn10_fixture, stft):
    z = cnn10_fixture
    net = parity_net(z, stft=stft).net
    with torch.no_grad():
        feats = net.forward_features(torch.from_numpy(z["wave_96000"]))
        assert feats.feature_map.shape == (2, 512, 18, 4)
        assert max_diff(feats.logmel, z["logmel_96000"]) < 1e-3  # dB
        assert max_diff(feats.feature_map, z["feature_map_96000"]) < 1e-4
        assert max_diff(feats.pooled, z["pooled_96000"]) < 1e-4
        assert max_diff(net.embed(feats), z["embedding_96000"]) < 1e-4
        assert max_diff(net.classify(feats), z["clipwise_96000"]) < 1e-5
    # the one-type forward / clipwise entry points give the same tensors
    with torch.no_grad():
        assert max_diff(net(torch.from_numpy(z["wave_96000"])), z["embedding_96000"]) < 1e-4
        assert max_diff(net.clipwise(torch.from_numpy(z["wave_96000"])), z["clipwise_96000"]) < 1e-5


def test_parity_30s_through_the_encoder(cnn10_fixture):
    """The encoder pads to 30 s like the retrieval loader: an 18 s clip gives the reference's output."""
    z = cnn10_fixture
    enc = parity_net(z)
    wave = torch.from_numpy(z["wave_960000"])
    with torch.no_grad():
        emb = enc(wave)
        feats = enc.net.forward_features(wave)
        assert max_diff(emb, z["embedding_960000"]) < 1e-4
        assert max_diff(enc.net.classify(feats), z["clipwise_960000"]) < 1e-5
        # clip 2 is 18 s of audio + 12 s of zeros: hand the encoder only the 18 s
        assert wave[1, 576000:].abs().max() == 0
        short = enc(wave[1:, :576000])
    assert max_diff(short[0], z["embedding_960000"][1]) < 1e-4


# ----------------------------------------------------------------------------------------------
# precision
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_front_end_stays_float32_under_autocast(dtype):
    torch.manual_seed(0)
    net = build_cnn_encoder("cnn10", **TINY).net.eval()
    t = torch.arange(32000) / 32000
    tone = torch.sin(2 * torch.pi * 1000.0 * t)[None]  # full scale: |X| = 256, power 65536
    with torch.no_grad():
        ref_power = net.spectrogram_extractor(tone)
        ref_logmel = net.logmel(tone)
        with torch.autocast("cpu", dtype=dtype):
            feats = net.forward_features(tone)
            emb = net(tone)
    assert ref_power.max() > torch.finfo(torch.float16).max  # would overflow in float16
    assert feats.logmel.dtype == torch.float32
    assert torch.isfinite(feats.logmel).all()
    assert torch.equal(feats.logmel, ref_logmel)  # bit-identical to the float32 front-end
    assert feats.feature_map.dtype == dtype  # the network itself does run in low precision
    assert torch.isfinite(emb).all()


def test_silence_is_minus_100_db():
    net = build_cnn_encoder("cnn10", **TINY).net
    with torch.no_grad():
        logmel = net.logmel(torch.zeros(1, 32000))
    assert torch.all(logmel == -100.0)


# ----------------------------------------------------------------------------------------------
# pooling over padding
# ----------------------------------------------------------------------------------------------
def test_masked_and_reference_pooling():
    torch.manual_seed(1)
    ref = build_cnn_encoder("cnn10", **TINY).eval()
    masked = build_cnn_encoder("cnn10", **TINY, pooling="masked").eval()
    masked.load_state_dict(ref.state_dict())
    wave = 0.3 * torch.randn(2, 32000)
    real = torch.tensor([32000, 8000])  # clip 2: 0.25 s of audio, 0.75 s of padding
    with torch.no_grad():
        full_ref, full_masked = ref(wave, torch.tensor([32000, 32000])), masked(wave)
        pad_ref, pad_masked = ref(wave, real), masked(wave, real)
        alone = ref.net(wave[1:, :8000])  # the 0.25 s clip on its own, no padding
    assert torch.allclose(full_ref, full_masked, atol=1e-6)  # nothing padded: identical
    assert torch.allclose(pad_ref[0], pad_masked[0], atol=1e-6)
    assert max_diff(pad_ref[1], pad_masked[1]) > 1e-2  # padding changes the reference pooling
    # masked pooling sees the frames a standalone run sees: much closer to it
    assert max_diff(pad_masked[1], alone[0]) < 0.5 * max_diff(pad_ref[1], alone[0])


def test_pool_with_frames_equals_pool_over_the_valid_prefix():
    fm = torch.randn(3, 4, 10, 2)  # [B, C, T', M']
    frames = torch.tensor([10, 3, 1])
    pooled = Panns.pool(fm, frames)
    for b, n in enumerate(frames.tolist()):
        assert torch.allclose(pooled[b], Panns.pool(fm[b : b + 1, :, :n])[0], atol=1e-6)


def test_valid_frames_follow_the_pooling_stages():
    net = build_cnn_encoder("cnn10").net  # 4 stages of 2x2
    frames = net.valid_frames(torch.tensor([960000, 576000, 96000, 100]), total=3001)
    assert frames[0].tolist() == [3001, 1801, 301, 1]
    assert frames[-1].tolist() == [187, 112, 18, 1]  # 18 = the 3 s feature map's length


# ----------------------------------------------------------------------------------------------
# SpecAugment and training mode
# ----------------------------------------------------------------------------------------------
def test_spec_augment_masks_stripes_and_is_seeded():
    cfg = PannsConfig(spec_augment=True)
    x = torch.ones(4, 1, 300, 64)
    outs = [spec_augment(x, cfg, torch.Generator().manual_seed(s)) for s in (0, 0, 1)]
    assert torch.equal(outs[0], outs[1]) and not torch.equal(outs[0], outs[2])
    masked_any = False
    for out in outs:
        zero = out[:, 0] == 0  # [B, T, M]
        rows, cols = zero.all(2), zero.all(1)  # masked frames, masked mel bins
        assert torch.equal(zero, rows[:, :, None] | cols[:, None, :])  # only whole stripes
        for b in range(4):
            assert rows[b].sum() <= 2 * 63 and cols[b].sum() <= 2 * 7
        masked_any |= bool(zero.any())
        assert not torch.equal(zero[0], zero[1])  # drawn per example
    assert masked_any


def test_spec_augment_only_in_training():
    torch.manual_seed(2)
    no_drop = dict(TINY, block_dropout=0.0, fc_dropout=0.0)
    plain = build_cnn_encoder("cnn10", **no_drop)
    aug = build_cnn_encoder("cnn10", **no_drop, spec_augment=True)
    aug.load_state_dict(plain.state_dict())
    wave = 0.3 * torch.randn(3, 32000)
    with torch.no_grad():
        plain.eval(), aug.eval()
        assert torch.equal(plain(wave), aug(wave))  # evaluation: deterministic, no masking
        plain.train(), aug.train()
        torch.manual_seed(5)
        a1 = aug(wave)
        torch.manual_seed(5)
        a2 = aug(wave)
        p1 = plain(wave)
    assert torch.equal(a1, a2)  # seeded
    assert max_diff(a1, p1) > 1e-4  # masking is active in training mode


def test_dropout_only_in_training():
    torch.manual_seed(3)
    enc = build_cnn_encoder("cnn10", **TINY)
    wave = 0.3 * torch.randn(2, 32000)
    with torch.no_grad():
        enc.eval()
        assert torch.equal(enc(wave), enc(wave))
        enc.train()
        assert not torch.equal(enc(wave), enc(wave))


# ----------------------------------------------------------------------------------------------
# the encoder interface used by the dual encoder
# ----------------------------------------------------------------------------------------------
def test_encoder_interface_and_padding():
    torch.manual_seed(4)
    # overrides as a JSON round trip gives them (lists), like a checkpoint's stored config
    enc = build_audio_encoder(
        "cnn14", channels=[8, 16], pool_sizes=[[2, 2], [1, 1]], segment_samples=32000
    ).eval()
    assert enc.embed_dim == 16 and enc.segment_samples == 32000
    wave = 0.3 * torch.randn(3, 20000)
    lengths = torch.tensor([20000, 12000, 50])
    with torch.no_grad():
        out = enc(wave, lengths)
        # samples past a clip's length are padding: their content must not matter
        noisy = wave.clone()
        noisy[1, 12000:] = 5.0
        noisy[2, 50:] = -3.0
        assert torch.equal(enc(noisy, lengths), out)
        # equals an explicit zero-pad to the segment length
        padded = F.pad(wave * (torch.arange(20000) < lengths[:, None]), (0, 12000))
        assert torch.allclose(enc.net(padded), out, atol=1e-6)
        tiny = enc(torch.randn(1, 10))  # shorter than the network minimum: padded, not an error
    assert out.shape == (3, 16) and (out >= 0).all()
    assert tiny.shape == (1, 16)
    with pytest.raises(ValueError, match="exceeds one segment"):
        enc(torch.zeros(1, 32001))


def test_net_rejects_too_short_input_with_a_clear_error():
    net = build_cnn_encoder("cnn10", **TINY).net
    with pytest.raises(ValueError, match="shorter than the minimum"):
        net(torch.zeros(1, 500))
    assert PannsConfig().min_samples == 4800
    with torch.device("meta"):
        assert build_cnn_encoder("cnn14").net.config.min_samples == 9920


def test_bad_names_and_options():
    with pytest.raises(UserError, match="unknown CNN encoder"):
        build_cnn_encoder("cnn12")
    with pytest.raises(UserError, match="depth"):
        build_cnn_encoder("cnn10", depth=3)
    with pytest.raises(ValueError, match="differ in length"):
        build_cnn_encoder("cnn10", channels=(8, 16, 32))
