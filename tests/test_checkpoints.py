"""Our checkpoint format, the importers of foreign layouts, the registry and the cache."""

from __future__ import annotations

import pytest
import torch
from helpers import TINY_PASST, tiny_model

from soundsearch import hub
from soundsearch.checkpoints import load_model, model_identity, save_model
from soundsearch.errors import CheckpointError
from soundsearch.importers import load_audio_init

SR = 32000


@pytest.fixture(scope="module")
def model():
    m = tiny_model(seed=1)
    with torch.no_grad():
        m.tau.fill_(0.03)
    return m


def _outputs(m):
    g = torch.Generator().manual_seed(0)
    wave = 0.1 * torch.randn(2, SR * 3, generator=g)
    with torch.no_grad():
        return m.encode_audio(wave), m.encode_text(["a door creaks", "footsteps on gravel"])


def test_round_trip_rebuilds_from_the_file_alone(model, tmp_path, monkeypatch):
    path = save_model(model, tmp_path / "m.safetensors", extra={"epoch": 3})
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    loaded = load_model(path)
    assert loaded.config == model.config
    assert loaded.checkpoint_extra["epoch"] == 3
    for x, y in zip(_outputs(model), _outputs(loaded)):
        assert torch.equal(x, y)
    assert model_identity(loaded) == model_identity(model)
    other = tiny_model(seed=2)
    assert model_identity(other) != model_identity(model)


def _foreign_state(model, layout: str) -> dict:
    sd = model.state_dict()
    take = lambda p: {k[len(p) :]: v for k, v in sd.items() if k.startswith(p)}
    if layout == "dcase2023":
        audio, text, ap, tp = (
            "audio_embedding_model.model.",
            "sentence_embedding_model.",
            "project_audio.0.",
            "project_sentence.0.",
        )
    elif layout == "salsa":
        audio, text, ap, tp = (
            "audio_embedding_model.model.model.",
            "sentence_embedding_model.",
            "project_audio.0.",
            "project_sentence.0.",
        )
    else:
        audio, text, ap, tp = (
            "audio_embedding_model.model.model._orig_mod.",
            "text_embedding_model._orig_mod.",
            "audio_projection.",
            "text_projection.",
        )
    out = {audio + k: v for k, v in take("audio_encoder.net.").items()}
    out.update({text + k: v for k, v in take("text_encoder.model.").items()})
    out.update({ap + k: v for k, v in take("audio_proj.").items()})
    out.update({tp + k: v for k, v in take("text_proj.").items()})
    out["tau"] = sd["tau"].reshape(1)
    if layout == "salsa":  # its unused extras
        out["timing_tau"] = torch.ones(1)
        out["audio_token"] = torch.zeros(1, 1, 64)
        out["posencode.pe"] = torch.zeros(1, 192, 64)
    return out


@pytest.mark.parametrize("layout", ["dcase2023", "salsa", "dcase2025"])
def test_lightning_layouts_import_exactly(model, tmp_path, layout, minilm_path):
    path = tmp_path / f"{layout}.ckpt"
    torch.save(
        {
            "state_dict": _foreign_state(model, layout),
            "epoch": 7,
            "global_step": 100,
            "pytorch-lightning_version": "2.1.0",
            "hyper_parameters": {"initial_tau": 0.03},
        },
        path,
    )
    imported = load_model(path, text_model=minilm_path, audio_overrides={"num_heads": 4})
    assert imported.config.audio_encoder == "passt-n"
    assert imported.config.audio_overrides["depth"] == TINY_PASST["depth"]
    for x, y in zip(_outputs(model), _outputs(imported)):
        torch.testing.assert_close(x, y)


def test_wrong_checkpoint_names_the_keys(model, tmp_path, minilm_path):
    state = _foreign_state(model, "dcase2023")
    del state["project_audio.0.bias"]
    state["some_head.weight"] = torch.zeros(3)
    path = tmp_path / "bad.ckpt"
    torch.save({"state_dict": state}, path)
    with pytest.raises(CheckpointError, match="unexpected keys: some_head.weight"):
        load_model(path, text_model=minilm_path, audio_overrides={"num_heads": 4})
    del state["some_head.weight"]
    torch.save({"state_dict": state}, path)
    with pytest.raises(CheckpointError, match=r"missing keys: audio_proj\.bias"):
        load_model(path, text_model=minilm_path, audio_overrides={"num_heads": 4})
    torch.save({"state_dict": {"foo.weight": torch.zeros(2)}}, path)
    with pytest.raises(CheckpointError, match="unrecognised checkpoint layout"):
        load_model(path, text_model=minilm_path)


def test_salsa_sequence_model_is_refused(model, tmp_path, minilm_path):
    state = _foreign_state(model, "salsa")
    state["audio_sequence.0.linear1.weight"] = torch.zeros(4, 4)
    path = tmp_path / "salsa_seq.ckpt"
    torch.save({"state_dict": state}, path)
    with pytest.raises(CheckpointError, match="audio_sequence.0.linear1.weight"):
        load_model(path, text_model=minilm_path, audio_overrides={"num_heads": 4})


def test_foreign_checkpoint_needs_a_text_model(model, tmp_path):
    path = tmp_path / "x.ckpt"
    torch.save({"state_dict": _foreign_state(model, "dcase2025")}, path)
    with pytest.raises(CheckpointError, match="text model"):
        load_model(path)


def test_passt_audioset_file_initialises_the_audio_tower(model, tmp_path):
    raw = {
        k[len("audio_encoder.net.") :]: v.clone()
        for k, v in model.state_dict().items()
        if k.startswith("audio_encoder.net.")
    }
    path = tmp_path / "passt-audioset.pt"
    torch.save(raw, path)
    fresh = tiny_model(seed=5)
    load_audio_init(fresh, path)
    for k, v in raw.items():
        assert torch.equal(fresh.state_dict()["audio_encoder.net." + k], v)
    raw.pop("norm.weight")
    torch.save(raw, path)
    with pytest.raises(CheckpointError, match=r"missing keys: net\.norm\.weight"):
        load_audio_init(tiny_model(seed=6), path)


def test_registry_and_offline_messages(tmp_path, monkeypatch):
    monkeypatch.setenv("SOUNDSEARCH_CACHE", str(tmp_path))
    assert hub.cache_dir() == tmp_path
    salsa = hub.entry("salsa-passt-roberta")
    assert len(salsa.urls) == 5 and all(
        u.endswith(f"passt_roberta.{i}.ckpt") for i, u in enumerate(salsa.urls, 1)
    )
    assert (
        hub.entry("passt-n-audioset")
        .urls[0]
        .endswith("v0.0.2-audioset/passt-s-f128-p16-s16-ap.468.pt")
    )
    with pytest.raises(CheckpointError, match="soundsearch models download passt-n-audioset"):
        hub.resolve("passt-n-audioset")
    with pytest.raises(CheckpointError, match="not a known checkpoint name"):
        hub.resolve("nonexistent-thing")
    (tmp_path / "passt-s-f128-p16-s16-ap.468.pt").write_bytes(b"x")
    assert hub.resolve("passt-n-audioset") == tmp_path / "passt-s-f128-p16-s16-ap.468.pt"


def test_download_resumes_a_partial_file(tmp_path, monkeypatch):
    """A real HTTP server on 127.0.0.1 serving a file with Range support; the .part is resumed."""
    import http.server
    import threading

    payload = bytes(range(256)) * 1000
    seen_ranges = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            rng = self.headers.get("Range")
            seen_ranges.append(rng)
            start = int(rng.split("=")[1].rstrip("-")) if rng else 0
            body = payload[start:]
            self.send_response(206 if rng else 200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/file.pt"
        entry = hub.Entry("test-file", "file.pt", (url,), "passt-audioset", "test", "passt-n")
        monkeypatch.setitem(hub.REGISTRY, "test-file", entry)
        monkeypatch.setenv("SOUNDSEARCH_CACHE", str(tmp_path))
        (tmp_path / "file.pt.part").write_bytes(payload[:1000])
        path = hub.download("test-file", progress=False)
        assert path.read_bytes() == payload
        assert seen_ranges == ["bytes=1000-"]
        assert not (tmp_path / "file.pt.part").exists()
    finally:
        server.shutdown()


def test_every_official_passt_layout_is_recognised(fixtures_dir):
    """The shapes of each released PaSST file map back to its variant (no overrides needed)."""
    import json

    from soundsearch.importers import infer_passt

    expected = {
        "passt_s_p16_s16_128_ap468": "passt-n",
        "passt_s_kd_p16_128_ap486": "passt-s",
        "passt_l_kd_p16_128_ap47": "passt-l",
        "passt_20sec": "passt-s20",
        "passt_30sec": "passt-s30",
    }
    shapes = json.loads((fixtures_dir / "passt_official_shapes.json").read_text())
    for arch, variant in expected.items():
        state = {k: torch.empty(v, device="meta") for k, v in shapes[arch].items()}
        assert infer_passt(state) == (variant, {}), arch


def test_panns_file_initialises_a_cnn10_tower(tmp_path):
    """A PANNs-style file ({iteration, model, sampler with numpy state}) loads strictly into CNN10."""
    import numpy as np

    cnn = tiny_model(seed=7, audio_encoder="cnn10", audio_overrides={})
    official = {
        k[len("audio_encoder.net.") :]: v.clone() + 0.5 * v.is_floating_point()
        for k, v in cnn.state_dict().items()
        if k.startswith("audio_encoder.net.")
    }
    assert len(official) == 60
    path = tmp_path / "Cnn10_mAP=0.380.pth"
    torch.save(
        {
            "iteration": 660000,
            "model": official,
            "sampler": {"indexes": np.arange(5), "pointer": np.int64(3)},
        },
        path,
    )
    load_audio_init(cnn, path)
    state = cnn.state_dict()
    assert all(torch.equal(state["audio_encoder.net." + k], v) for k, v in official.items())
