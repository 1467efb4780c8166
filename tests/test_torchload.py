"""Safe loading of foreign torch.save files: what loads, what is refused, and how errors read."""

from __future__ import annotations

import argparse
import io
import pathlib
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from soundsearch.errors import CheckpointError
from soundsearch.panns import build_cnn_encoder
from soundsearch.torchload import load_foreign_checkpoint, load_panns_state_dict, unwrap_panns

TINY = {"channels": (8, 16), "pool_sizes": ((2, 2), (2, 2)), "segment_samples": 32000}


def tiny_net(seed: int):
    torch.manual_seed(seed)
    return build_cnn_encoder("cnn10", **TINY).net.eval()


def panns_style(state: dict) -> dict:
    """What a PANNs .pth holds: the weights plus the balanced sampler's numpy state."""
    return {
        "iteration": 5,
        "model": state,
        "sampler": {
            "indexes_per_class": [np.arange(7), np.array([3, 1], dtype=np.int32)],
            "queue": [4, 2, 9],
            "pointers_of_classes": [0, np.int64(3)],
            "samples_num_per_class": np.array([2.0, 5.0], dtype=np.float32),
            "threshold": np.float64(0.5),
        },
    }


def _side_effect(path: str) -> None:
    Path(path).write_text("code ran")


class Evil:
    """Unpickling this with plain pickle would call _side_effect."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (_side_effect, (str(self.marker),))


class Custom:
    pass


def test_panns_file_loads_and_fits_strictly(tmp_path):
    src = tiny_net(0)
    path = tmp_path / "Cnn10_mAP=0.380.pth"
    torch.save(panns_style(src.state_dict()), path)
    obj = load_foreign_checkpoint(path)
    assert obj["iteration"] == 5
    assert np.array_equal(obj["sampler"]["indexes_per_class"][0], np.arange(7))
    assert obj["sampler"]["indexes_per_class"][1].dtype == np.int32
    assert obj["sampler"]["pointers_of_classes"][1] == 3
    dst = tiny_net(1)
    wave = 0.3 * torch.randn(2, 32000)
    with torch.no_grad():
        assert not torch.allclose(dst(wave), src(wave))
        load_panns_state_dict(dst, unwrap_panns(obj, str(path)), str(path))
        assert torch.equal(dst(wave), src(wave))
    assert not dst.logmel_extractor.melW.requires_grad  # loading keeps the front-end frozen


def test_numpy1_and_legacy_format_files_load(tmp_path):
    """Real PANNs files were pickled with numpy 1.x (numpy.core names), maybe in the old format."""
    obj = panns_style({"fc1.weight": torch.ones(2, 2)})
    torch.save(obj, tmp_path / "new.pth")
    with (
        zipfile.ZipFile(tmp_path / "new.pth") as zin,
        zipfile.ZipFile(tmp_path / "np1.pth", "w") as zout,
    ):
        for info in zin.infolist():
            data = zin.read(info)
            if info.filename.endswith("data.pkl"):
                assert b"numpy._core.multiarray" in data
                data = data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
            zout.writestr(info, data)
    torch.save(obj, tmp_path / "legacy.pth", _use_new_zipfile_serialization=False)
    for name in ("np1.pth", "legacy.pth"):
        got = load_foreign_checkpoint(tmp_path / name)
        assert np.array_equal(got["sampler"]["indexes_per_class"][0], np.arange(7)), name
        assert got["sampler"]["threshold"] == 0.5
        assert torch.equal(got["model"]["fc1.weight"], torch.ones(2, 2))


def test_lightning_style_checkpoint_loads(tmp_path):
    ckpt = {
        "epoch": 3,
        "state_dict": {"audio_proj.weight": torch.randn(4, 2)},
        "optimizer_states": [
            {"state": {0: {"exp_avg": torch.zeros(2)}}, "param_groups": [{"lr": 1e-4}]}
        ],
        "callbacks": {
            "ModelCheckpoint{'monitor': 'val/map'}": {"best_model_score": torch.tensor(0.3)}
        },
        "hyper_parameters": {"args": argparse.Namespace(lr=1e-4, out=pathlib.Path("/runs/a"))},
        "frozen": frozenset({1, 2}),
    }
    torch.save(ckpt, tmp_path / "last.ckpt")
    got = load_foreign_checkpoint(tmp_path / "last.ckpt")
    args = got["hyper_parameters"]["args"]
    assert args.lr == 1e-4 and str(args.out) == "/runs/a"
    assert isinstance(args.out, pathlib.PurePath) and not isinstance(args.out, pathlib.Path)
    assert got["epoch"] == 3 and got["frozen"] == frozenset({1, 2})


def test_lightning_attribute_dict_is_read_as_a_plain_dict(tmp_path):
    data = pytest.importorskip("lightning.fabric.utilities.data")
    torch.save({"hyper_parameters": data.AttributeDict(lr=0.1, tags=["x"])}, tmp_path / "a.ckpt")
    hp = load_foreign_checkpoint(tmp_path / "a.ckpt")["hyper_parameters"]
    assert type(hp) is dict and hp == {"lr": 0.1, "tags": ["x"]}


def test_code_in_a_pickle_is_refused_and_not_run(tmp_path):
    marker = tmp_path / "marker.txt"
    path = tmp_path / "evil.pth"
    torch.save({"model": {}, "payload": Evil(marker)}, path)
    before = set(torch.serialization.get_safe_globals())
    with pytest.raises(CheckpointError) as err:
        load_foreign_checkpoint(path)
    msg = str(err.value)
    assert str(path) in msg and "_side_effect" in msg and "not a known checkpoint" in msg
    assert not marker.exists()
    assert set(torch.serialization.get_safe_globals()) == before  # allow-list was scoped


@pytest.mark.parametrize("legacy", [False, True])
def test_custom_class_is_refused_with_its_name(tmp_path, legacy):
    path = tmp_path / "custom.pth"
    torch.save({"model": {}, "x": Custom()}, path, _use_new_zipfile_serialization=not legacy)
    with pytest.raises(CheckpointError, match=r"Custom.*not on the allow-list"):
        load_foreign_checkpoint(path)


def test_object_arrays_are_refused(tmp_path):
    path = tmp_path / "obj.pth"
    torch.save({"x": np.array([1, "a"], dtype=object)}, path)
    with pytest.raises(CheckpointError, match="ObjectDType"):
        load_foreign_checkpoint(path)


def test_missing_corrupt_and_wrong_files(tmp_path):
    with pytest.raises(CheckpointError, match=r"nope\.pth: file not found"):
        load_foreign_checkpoint(tmp_path / "nope.pth")
    with pytest.raises(CheckpointError, match="is a directory"):
        load_foreign_checkpoint(tmp_path)
    good = io.BytesIO()
    torch.save({"model": {"w": torch.ones(3)}}, good)
    cases = {
        "truncated.pth": good.getvalue()[:400],
        "garbage.pth": b"not a checkpoint at all" * 20,
        "empty.pth": b"",
    }
    legacy = io.BytesIO()
    torch.save({"w": torch.ones(3)}, legacy, _use_new_zipfile_serialization=False)
    cases["legacy_truncated.pth"] = legacy.getvalue()[:150]
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(CheckpointError, match=rf"{name}: corrupt or not a PyTorch checkpoint"):
            load_foreign_checkpoint(tmp_path / name)
    torch.save(torch.ones(3), tmp_path / "tensor.pth")
    with pytest.raises(CheckpointError, match="expected a dict"):
        load_foreign_checkpoint(tmp_path / "tensor.pth")


def test_mismatched_state_dict_lists_every_problem():
    net = tiny_net(0)
    state = dict(net.state_dict())
    del state["conv_block2.bn1.running_var"]
    state["fc2.weight"] = torch.zeros(3)
    state["fc1.weight"] = torch.zeros(16, 8)
    with pytest.raises(CheckpointError) as err:
        load_panns_state_dict(net, state, "Cnn14_mAP=0.431.pth")
    msg = str(err.value)
    assert "Cnn14_mAP=0.431.pth" in msg
    assert "missing keys: conv_block2.bn1.running_var" in msg
    assert "unexpected keys: fc2.weight" in msg
    assert "fc1.weight: file (16, 8) vs model (16, 16)" in msg


def test_unwrap_panns_checks_the_layout():
    net = tiny_net(0)
    state = unwrap_panns({"model": {f"module.{k}": v for k, v in net.state_dict().items()}})
    assert set(state) == set(net.state_dict())  # DataParallel prefix removed
    with pytest.raises(CheckpointError, match="not a PANNs CNN checkpoint"):
        unwrap_panns({"state_dict": {"blocks.0.attn.qkv.weight": torch.zeros(1)}}, "passt.ckpt")
