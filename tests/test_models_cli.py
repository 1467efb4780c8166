"""``soundsearch models`` in-process: list, convert a foreign checkpoint, info, offline download."""

from __future__ import annotations

import json

import torch
from helpers import tiny_model

from soundsearch.cli import main


def test_list_shows_registry_and_presence(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SOUNDSEARCH_CACHE", str(tmp_path))
    (tmp_path / "Cnn10_mAP=0.380.pth").write_bytes(b"x")
    assert main(["models", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["cnn10-audioset"]["present"] and not rows["salsa-passt-roberta"]["present"]
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "passt-n-audioset" in out and str(tmp_path) in out


def test_convert_and_info(tmp_path, capsys, minilm_path):
    model = tiny_model(seed=3)
    sd = model.state_dict()
    state = {
        "audio_embedding_model.model." + k[len("audio_encoder.net.") :]: v
        for k, v in sd.items()
        if k.startswith("audio_encoder.net.")
    }
    state.update(
        {
            "sentence_embedding_model." + k[len("text_encoder.model.") :]: v
            for k, v in sd.items()
            if k.startswith("text_encoder.model.")
        }
    )
    state.update(
        {
            "project_audio.0." + k[len("audio_proj.") :]: v
            for k, v in sd.items()
            if k.startswith("audio_proj.")
        }
    )
    state.update(
        {
            "project_sentence.0." + k[len("text_proj.") :]: v
            for k, v in sd.items()
            if k.startswith("text_proj.")
        }
    )
    state["tau"] = sd["tau"].reshape(1)
    src = tmp_path / "old.ckpt"
    torch.save({"state_dict": state}, src)
    out = tmp_path / "new.safetensors"
    # the tiny model's 4 heads cannot be read off the shapes: the importer's default is dim // 64
    rc = main(["models", "convert", str(src), str(out), "--text-model", minilm_path])
    assert rc == 0 and out.exists()
    assert main(["models", "info", str(out)]) == 0
    info = json.loads(capsys.readouterr().out.split("\n", 1)[1])
    assert info["config"]["audio_encoder"] == "passt-n" and info["extra"]["converted_from"] == str(
        src
    )


def test_download_offline_says_where_to_put_the_file(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SOUNDSEARCH_CACHE", str(tmp_path))
    from soundsearch import hub

    e = hub.REGISTRY["cnn10-audioset"]
    monkeypatch.setitem(
        hub.REGISTRY,
        "cnn10-audioset",
        hub.Entry(
            e.name,
            e.filename,
            ("http://127.0.0.1:9/none",),
            e.layout,
            e.description,
            e.audio_encoder,
        ),
    )
    assert main(["models", "download", "cnn10-audioset"]) == 2
    err = capsys.readouterr().err
    assert "cannot download cnn10-audioset" in err and str(tmp_path / "Cnn10_mAP=0.380.pth") in err
