"""Safe loading of foreign ``torch.save`` files (PANNs ``.pth``, Lightning ``.ckpt``, raw state dicts).

Pickle can run arbitrary code, so we never call ``torch.load(weights_only=False)``. Files are read
with PyTorch's restricted unpickler (``weights_only=True``) plus a small, explicit allow-list of
plain data types that real checkpoints carry next to their weights, active only for the duration
of one load (``torch.serialization.safe_globals``; nothing global is changed):

- numpy arrays, scalars and dtypes (PANNs files keep their training sampler's index arrays), under
  both the numpy 1.x (``numpy.core``) and 2.x (``numpy._core``) names; object and structured
  dtypes are not allowed (arrays of arbitrary objects);
- ``argparse.Namespace`` (hyper-parameters of older training scripts);
- ``pathlib`` paths, read as *pure* paths (no filesystem access);
- ``frozenset``, ``slice``, ``datetime.date/datetime/timedelta``;
- Lightning's ``AttributeDict`` (a plain ``dict`` subclass), read as a plain ``dict``.

Everything else is refused: e.g. omegaconf ``DictConfig`` hyper-parameters (Lightning stores them
when a model was configured with Hydra), custom classes, functions or bound methods (old learning-
rate scheduler states). Such a file raises :class:`CheckpointError` naming the global it needs;
convert it with the tool that wrote it (keep only the ``state_dict``).
"""

from __future__ import annotations

import _compat_pickle
import argparse
import datetime
import importlib
import io
import logging
import os
import pathlib
import pickle
import pickletools
import re
import threading
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from soundsearch.errors import CheckpointError

log = logging.getLogger(__name__)


def _numpy_multiarray() -> Any:
    """numpy's private ``multiarray`` module (``numpy._core`` in 2.x, ``numpy.core`` in 1.x)."""
    try:
        return importlib.import_module("numpy._core.multiarray")
    except ImportError:  # numpy < 2
        return importlib.import_module("numpy.core.multiarray")


def _allowed_globals() -> list[Any]:
    """(object, name-in-the-pickle) pairs that the restricted unpickler may resolve."""
    ma = _numpy_multiarray()
    allowed: list[Any] = [(np.ndarray, "numpy.ndarray"), (np.dtype, "numpy.dtype")]
    for prefix in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed += [(ma._reconstruct, f"{prefix}._reconstruct"), (ma.scalar, f"{prefix}.scalar")]
    # The dtype instance's own class must be allowed for its BUILD step (state of the dtype).
    for code in "?bBhHiIlLqQefdgFDGSUMm":
        cls = type(np.dtype(code))
        allowed.append((cls, f"{cls.__module__}.{cls.__qualname__}"))
    allowed += [
        (argparse.Namespace, "argparse.Namespace"),
        (frozenset, "builtins.frozenset"),
        (slice, "builtins.slice"),
        (datetime.date, "datetime.date"),
        (datetime.datetime, "datetime.datetime"),
        (datetime.timedelta, "datetime.timedelta"),
    ]
    for module in ("pathlib", "pathlib._local"):  # Python 3.13 moved the classes
        for name, pure in (
            ("PosixPath", pathlib.PurePosixPath),
            ("PurePosixPath", pathlib.PurePosixPath),
            ("WindowsPath", pathlib.PureWindowsPath),
            ("PureWindowsPath", pathlib.PureWindowsPath),
        ):
            allowed.append((pure, f"{module}.{name}"))
    for name in (
        "lightning.fabric.utilities.data.AttributeDict",
        "lightning_fabric.utilities.data.AttributeDict",
        "pytorch_lightning.utilities.parsing.AttributeDict",
        "lightning.pytorch.utilities.parsing.AttributeDict",
    ):
        allowed.append((dict, name))
    return allowed


ALLOWED_GLOBAL_NAMES: frozenset[str] = frozenset(name for _, name in _allowed_globals())

# safe_globals edits a process-wide set for the duration of the with-block: one load at a time.
_LOCK = threading.Lock()
_GLOBAL_RE = re.compile(r"GLOBAL ([\w.]+)")
_BUILD_RE = re.compile(r"(?:but got|unrecognized function) <?(?:class )?'?([\w.<> ]+?)'?>?(?:\s|$)")


def load_foreign_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a ``torch.save`` file with the restricted unpickler and our allow-list (CPU tensors).

    Raises :class:`CheckpointError` naming the path when the file is missing, corrupt, not a
    PyTorch file, needs a global outside the allow-list, or does not hold a dict.
    """
    p = Path(path)
    if not p.is_file():
        what = "is a directory, not a checkpoint file" if p.is_dir() else "file not found"
        raise CheckpointError(f"{p}: {what}")
    try:
        with _LOCK, torch.serialization.safe_globals(_allowed_globals()):
            obj = torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        refused = _refused_globals(p, str(e))
        if refused:
            raise CheckpointError(
                f"{p}: refused to load: it needs the Python global(s) {', '.join(refused)}, which "
                "are not on the allow-list of plain data types (loading them could run code); "
                "this file is not a known checkpoint. If you trust it, re-save only its weights "
                "(torch.save(obj['state_dict']) or a .safetensors file) and load that."
            ) from e
        raise CheckpointError(
            f"{p}: corrupt or not a PyTorch checkpoint (truncated or malformed pickle data)"
        ) from e
    except (
        RuntimeError,
        EOFError,
        ValueError,
        OSError,
        AttributeError,
        KeyError,
        IndexError,
        TypeError,
        zipfile.BadZipFile,
    ) as e:
        raise CheckpointError(f"{p}: corrupt or not a PyTorch checkpoint ({_first_line(e)})") from e
    if not isinstance(obj, dict):
        raise CheckpointError(
            f"{p}: expected a dict (state dict or checkpoint), found {type(obj).__name__}"
        )
    return obj


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0]}" if text else type(e).__name__


def _refused_globals(path: Path, message: str) -> list[str]:
    """Globals the restricted unpickler refused ([] when the file is truncated or not a pickle)."""
    scanned = _scan_globals(path)
    if scanned is None:
        return []
    named = [n for n in _GLOBAL_RE.findall(message) if n in scanned]
    others = [n for n in scanned if n not in ALLOWED_GLOBAL_NAMES and not _torch_default(n)]
    names = named + others
    if not names and "Weights only load failed" in message:  # e.g. an object-dtype array
        names = [m.strip() for m in _BUILD_RE.findall(message)]
    return sorted(set(names))


_TORCH_DEFAULTS = frozenset(
    (
        "collections.OrderedDict",
        "collections.Counter",
        "_codecs.encode",
        "builtins.bytearray",
        "builtins.set",
        "builtins.complex",
    )
)


def _torch_default(name: str) -> bool:
    """Names PyTorch's restricted unpickler resolves itself (tensors, storages, dtypes)."""
    return name in _TORCH_DEFAULTS or name.startswith("torch.")


def _py3_name(module: str, name: str) -> str:
    """Python 2 names that protocol-2 pickles use (``__builtin__.set``) mapped as pickle does."""
    if (module, name) in _compat_pickle.NAME_MAPPING:
        module, name = _compat_pickle.NAME_MAPPING[(module, name)]
    module = _compat_pickle.IMPORT_MAPPING.get(module, module)
    return f"{module}.{name}"


def _scan_globals(path: Path) -> set[str] | None:
    """Every global the file's pickle names, read statically (nothing is executed).

    ``None`` when the pickle stream does not parse (truncated or not a pickle): then a refusal
    message from the unpickler is about garbage, not about a real global.
    """
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                pkl = next(n for n in z.namelist() if n.rsplit("/", 1)[-1] == "data.pkl")
                stream, count = io.BytesIO(z.read(pkl)), 1
        else:  # legacy format: magic number, protocol, sys info, then the object
            stream, count = io.BytesIO(path.read_bytes()), 4
        names: set[str] = set()
        for _ in range(count):
            strings: list[str] = []
            for op, arg, _pos in pickletools.genops(stream):
                if op.name == "GLOBAL":
                    names.add(_py3_name(*str(arg).split(" ", 1)))
                elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                    names.add(_py3_name(strings[-2], strings[-1]))
                elif isinstance(arg, str):
                    strings.append(arg)
        return names
    except Exception:  # noqa: BLE001 - any parse failure means "not a readable pickle"
        return None


# ----------------------------------------------------------------------------------------------
# PANNs files
# ----------------------------------------------------------------------------------------------
_PANNS_MARKERS = ("conv_block1.conv1.weight", "fc1.weight", "fc_audioset.weight")


def unwrap_panns(obj: Mapping[str, Any], source: str = "checkpoint") -> dict[str, Tensor]:
    """The network state dict of a PANNs file (``obj["model"]``; a bare state dict also works)."""
    state = obj.get("model", obj)
    if not isinstance(state, Mapping):
        raise CheckpointError(f"{source}: 'model' holds {type(state).__name__}, not a state dict")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    missing = [k for k in _PANNS_MARKERS if k not in state]
    if missing:
        shown = ", ".join(list(obj)[:8])
        raise CheckpointError(
            f"{source}: not a PANNs CNN checkpoint (no {', '.join(missing)}); "
            f"top-level keys: {shown}"
        )
    bad = [k for k, v in state.items() if not isinstance(v, Tensor)]
    if bad:
        raise CheckpointError(f"{source}: non-tensor entries in the state dict: {bad[:5]}")
    return state


def load_panns_state_dict(
    net: nn.Module, state: Mapping[str, Tensor], source: str = "state dict"
) -> None:
    """Strictly load ``state`` into a PANNs network (or an encoder holding it as ``.net``).

    Raises :class:`CheckpointError` listing missing keys, unexpected keys and shape mismatches.
    """
    if not any(k.startswith("conv_block1.") for k in net.state_dict()) and hasattr(net, "net"):
        net = net.net
    own = net.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in state and tuple(state[k].shape) != tuple(own[k].shape)
    ]
    if missing or unexpected or shapes:
        parts = [f"{source} does not fit the {type(net).__name__} network"]
        for label, items in (
            ("missing keys", missing),
            ("unexpected keys", unexpected),
            ("shape mismatches", shapes),
        ):
            if items:
                more = f", ... ({len(items)} in all)" if len(items) > 8 else ""
                parts.append(f"{label}: {', '.join(items[:8])}{more}")
        parts.append("check that the checkpoint matches the chosen encoder (cnn10 / cnn14)")
        raise CheckpointError("; ".join(parts))
    net.load_state_dict(dict(state), strict=True)
