"""PaSST against the authors' reference vectors and checkpoint layouts; patchout; the encoder."""

from __future__ import annotations

import gc
import json

import numpy as np
import pytest
import torch
from conftest import FIXTURES, load_fixture

import soundsearch.passt as passt_mod
from soundsearch.encoders import build_audio_encoder
from soundsearch.errors import UserError
from soundsearch.passt import (
    PASST_VARIANTS,
    PaSST,
    PaSSTAudioEncoder,
    PaSSTConfig,
    build_passt_encoder,
)

OFFICIAL = {  # our name -> architecture name in passt_official_shapes.json
    "passt-n": "passt_s_p16_s16_128_ap468",
    "passt-s": "passt_s_kd_p16_128_ap486",
    "passt-l": "passt_l_kd_p16_128_ap47",
    "passt-s20": "passt_20sec",
    "passt-s30": "passt_30sec",
}
TINY = {"depth": 2, "embed_dim": 32, "num_heads": 2}


def fixture_model(name: str) -> tuple[PaSST, dict]:
    """The fixture's model, built from its config and loaded strictly with its weights."""
    z = load_fixture(name)
    model = PaSST(PaSSTConfig.from_dict(json.loads(str(z["config"]))))
    state = {
        k[len("weight:") :]: torch.from_numpy(v) for k, v in z.items() if k.startswith("weight:")
    }
    model.load_state_dict(state, strict=True)
    return model.eval(), z


def fixture_cases() -> list[tuple[str, int]]:
    cases = []
    for name in ("passt_tiny_s16.npz", "passt_tiny_s10.npz"):
        path = FIXTURES / name
        if path.exists():
            with np.load(path) as z:
                cases += [(name, int(k[6:])) for k in z.files if k.startswith("input_")]
    return cases or [pytest.param("none", 0, marks=pytest.mark.skip(reason="no fixtures"))]


@pytest.mark.parametrize("name, frames", fixture_cases())
@pytest.mark.parametrize("inference", [True, False], ids=["inference", "autograd"])
def test_matches_reference_vectors(name, frames, inference):
    """Features and logits at every stored input length, on both code paths (oneDNN kernels
    in CPU inference, standard ops when autograd records)."""
    model, z = fixture_model(name)
    x = torch.from_numpy(z[f"input_{frames}"])
    with torch.inference_mode(inference):
        features = model(x)
        logits = model.classify(features)
    assert features.shape == z[f"features_{frames}"].shape
    np.testing.assert_allclose(features.detach().numpy(), z[f"features_{frames}"], atol=1e-5)
    np.testing.assert_allclose(logits.detach().numpy(), z[f"logits_{frames}"], atol=1e-5)


@pytest.mark.parametrize("variant", sorted(OFFICIAL))
def test_state_dict_is_the_official_layout(variant):
    path = FIXTURES / "passt_official_shapes.json"
    if not path.exists():
        pytest.skip(f"fixture {path} not found (set SOUNDSEARCH_FIXTURES)")
    shapes = json.loads(path.read_text())[OFFICIAL[variant]]
    with torch.device("meta"):  # shapes only: no gigabytes for the 30 s model
        model = PaSST(PASST_VARIANTS[variant])
    ours = {k: list(v.shape) for k, v in model.state_dict().items()}
    assert list(ours) == list(shapes)
    assert ours == shapes


def test_variant_table():
    got = {n: (c.grid, c.depth, c.s_patchout_f, c.s_patchout_t) for n, c in PASST_VARIANTS.items()}
    assert got == {
        "passt-n": ((8, 62), 12, 2, 15),
        "passt-s": ((12, 99), 12, 3, 50),
        "passt-l": ((12, 99), 7, 3, 50),
        "passt-s20": ((12, 200), 12, 3, 80),
        "passt-s30": ((12, 300), 12, 3, 0),
    }


def _sequence_lengths(model: PaSST, mel: torch.Tensor) -> list[int]:
    """Length of the token sequence entering the first block, per call."""
    seen = []
    hook = model.blocks[0].register_forward_pre_hook(lambda m, args: seen.append(args[0].shape[1]))
    try:
        model(mel)
    finally:
        hook.remove()
    return seen


def test_structured_patchout_in_training_only():
    cfg = PaSSTConfig(img_size=(128, 1000), stride=16, depth=1, embed_dim=16, num_heads=2,
                      s_patchout_t=15, s_patchout_f=2)  # fmt: skip
    model = PaSST(cfg)
    mel = torch.randn(3, 1, 128, 1000)
    assert _sequence_lengths(model.train(), mel) == [2 + (62 - 15) * (8 - 2)]
    assert _sequence_lengths(model.eval(), mel) == [2 + 62 * 8]
    assert torch.equal(model(mel), model(mel))  # eval is deterministic
    model.train()
    torch.manual_seed(5)
    a = model(mel)
    torch.manual_seed(5)
    b = model(mel)
    torch.manual_seed(6)
    c = model(mel)
    assert torch.equal(a, b) and not torch.allclose(a, c)


def test_structured_patchout_keeps_a_column_of_short_input():
    cfg = PaSSTConfig(img_size=(128, 1000), stride=16, depth=1, embed_dim=16, num_heads=2,
                      s_patchout_t=15, s_patchout_f=2)  # fmt: skip
    model = PaSST(cfg).train()
    assert _sequence_lengths(model, torch.randn(1, 1, 128, 100)) == [2 + 1 * 6]  # 6 columns


def test_unstructured_patchout():
    cfg = PaSSTConfig(img_size=(128, 998), stride=10, depth=1, embed_dim=16, num_heads=2,
                      u_patchout=100)  # fmt: skip
    model = PaSST(cfg)
    mel = torch.randn(2, 1, 128, 500)
    assert _sequence_lengths(model.train(), mel) == [2 + 12 * 49 - 100]
    assert _sequence_lengths(model.eval(), mel) == [2 + 12 * 49]


def test_patchout_selection_is_shared_across_the_batch():
    """The same columns are dropped for every example: identical inputs give identical outputs."""
    cfg = PaSSTConfig(img_size=(128, 1000), stride=16, depth=1, embed_dim=16, num_heads=2,
                      s_patchout_t=30, s_patchout_f=3)  # fmt: skip
    model = PaSST(cfg).train()
    out = model(torch.randn(1, 1, 128, 1000).expand(4, -1, -1, -1))
    assert torch.allclose(out, out[:1].expand_as(out))


def test_training_backpropagates_to_the_blocks():
    model, z = fixture_model("passt_tiny_s16.npz")
    model.train()
    model(torch.from_numpy(z["input_500"])).square().sum().backward()
    for name, p in model.named_parameters():
        if not name.startswith("head"):  # the heads are not part of the features
            assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_too_long_input_is_a_clear_error():
    model = PaSST(PaSSTConfig(img_size=(128, 1000), stride=16, depth=1, embed_dim=16, num_heads=2))
    model(torch.zeros(1, 1, 128, 1007))  # 62 columns: the whole grid
    with pytest.raises(ValueError, match=r"at most 1007 frames.*segments"):
        model(torch.zeros(1, 1, 128, 1008))
    with pytest.raises(ValueError, match="expected mel"):
        model(torch.zeros(1, 1, 64, 500))


def test_cpu_inference_cache_follows_weight_changes():
    """The packed-weight cache must never serve stale weights."""
    model, z = fixture_model("passt_tiny_s10.npz")
    x = torch.from_numpy(z["input_412"])
    with torch.inference_mode():
        before = model(x)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(1.1)
    with torch.inference_mode():
        after = model(x)
    standard = model(x)  # autograd on: the standard ops, no cache
    assert not torch.allclose(before, after)
    torch.testing.assert_close(after, standard.detach(), atol=1e-5, rtol=1e-5)


def test_cpu_inference_cache_is_freed_with_the_model():
    model, z = fixture_model("passt_tiny_s16.npz")
    with torch.inference_mode():
        model(torch.from_numpy(z["input_37"]))
    ids = {id(p) for p in model.parameters()}
    assert ids & set(passt_mod._PACKED)
    del model
    gc.collect()
    assert not ids & set(passt_mod._PACKED)


def test_model_built_in_inference_mode_and_without_qkv_bias():
    """Inference tensors have no version counter (no cache); a bias-free qkv still works."""
    cfg = PaSSTConfig(img_size=(128, 1000), stride=16, depth=2, embed_dim=16, num_heads=2,
                      qkv_bias=False)  # fmt: skip
    model = PaSST(cfg).eval()
    mel = torch.randn(2, 1, 128, 300)
    standard = model(mel).detach()
    with torch.inference_mode():
        twin = PaSST(cfg).eval()
        twin.load_state_dict(model.state_dict())
        assert twin.blocks[0].attn.qkv.weight.is_inference()
        torch.testing.assert_close(twin(mel), standard, atol=1e-5, rtol=1e-5)
        with torch.no_grad():
            for p in twin.parameters():
                p.mul_(0.5)  # in place, unversioned: must still be seen
        assert not torch.allclose(twin(mel), standard)


def test_bf16_autocast_stays_close_to_float32():
    model, z = fixture_model("passt_tiny_s10.npz")
    x = torch.from_numpy(z["input_998"])
    with torch.inference_mode():
        ref = model(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(x)
    scale = ref.abs().max()
    assert (low.float() - ref).abs().max() < 0.02 * scale
    assert not torch.equal(low.float(), ref)  # it did run in low precision


# ----------------------------------------------------------------------------------------------
# the audio-encoder wrapper
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "variant, samples",
    [("passt-n", 320000), ("passt-s", 320000), ("passt-l", 320000), ("passt-s20", 640000),
     ("passt-s30", 960000)],
)  # fmt: skip
def test_encoder_segment_samples(variant, samples):
    with torch.device("meta"):
        enc = build_passt_encoder(variant)
    assert enc.segment_samples == samples
    assert enc.embed_dim == 768
    keys = list(enc.state_dict())
    assert all(k.startswith("net.") for k in keys)  # front-end constants are not saved
    assert keys[0] == "net.cls_token"


def test_encoder_forward_shape_and_interface():
    enc = build_audio_encoder("passt-n", **TINY).eval()
    assert isinstance(enc, PaSSTAudioEncoder)
    wave = torch.randn(2, enc.segment_samples) * 0.1
    with torch.inference_mode():
        out = enc(wave, torch.tensor([320000, 1000]))
        mel = enc.frontend(wave)
        direct = enc.net(mel)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = enc(wave)
    assert out.shape == (2, 32) and out.dtype == torch.float32
    assert mel.shape == (2, 1, 128, 1000)
    assert torch.equal(out, direct)
    assert low.dtype == torch.float32 and torch.allclose(low, out, atol=0.05 * out.abs().max())


def test_encoder_overrides():
    enc = build_passt_encoder("passt-s", depth=1, embed_dim=16, num_heads=2, mel={"freqm": 48})
    assert enc.net.config.depth == 1 and enc.embed_dim == 16
    assert enc.net.config.stride == 10  # untouched fields keep the variant's value
    assert enc.frontend.config.freqm == 48
    assert PASST_VARIANTS["passt-s"].depth == 12  # the table is not modified
    with pytest.raises(UserError, match="unknown PaSST settings"):
        build_passt_encoder("passt-n", layers=2)
    with pytest.raises(UserError, match="unknown PaSST variant"):
        build_passt_encoder("passt-x")
    with pytest.raises(ValueError, match="unknown mel settings"):
        build_passt_encoder("passt-n", mel={"freq_mask": 1}, **TINY)


def test_config_round_trips_through_json():
    cfg = PASST_VARIANTS["passt-s20"]
    again = PaSSTConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg and again.grid == (12, 200)
    with pytest.raises(ValueError, match="unknown PaSST settings"):
        PaSSTConfig.from_dict({"depthh": 3})
