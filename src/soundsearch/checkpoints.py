"""Our checkpoint format and the one entry point that loads any checkpoint.

Format: one ``.safetensors`` file. Tensors = the :class:`DualEncoder` state dict. Metadata (strings):
``format`` (:data:`FORMAT`), ``config`` (ModelConfig JSON), ``text_hf_config`` (the Hugging Face
config of the text tower), ``tokenizer`` (JSON of the tokenizer's files) and ``extra`` (JSON: e.g.
training epoch, metrics). A model is rebuilt from the file alone, offline. Foreign layouts are
converted by :mod:`soundsearch.importers`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from soundsearch import hub
from soundsearch.errors import CheckpointError
from soundsearch.model import DualEncoder, ModelConfig
from soundsearch.text import TextEncoder

log = logging.getLogger(__name__)

FORMAT = "soundsearch-dual-encoder/1"


def save_model(
    model: DualEncoder, path: str | os.PathLike, extra: dict[str, Any] | None = None
) -> Path:
    """Write ``model`` to ``path`` atomically (temporary file + rename)."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    hf_config, tok_files = model.text_encoder.export_config()
    meta = {
        "format": FORMAT,
        "config": json.dumps(model.config.to_dict()),
        "text_hf_config": json.dumps(hf_config),
        "tokenizer": json.dumps(tok_files),
        "extra": json.dumps(extra or {}, default=str),
    }
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    tmp = path.with_name(path.name + ".tmp")
    try:
        save_file(tensors, str(tmp), metadata=meta)
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise CheckpointError(f"cannot write checkpoint {path}: {e}") from e
    return path


def read_metadata(path: str | os.PathLike) -> dict[str, str] | None:
    """Our metadata when ``path`` is a soundsearch safetensors file, else None."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError, ValueError):  # not safetensors: a foreign checkpoint
        return None
    return meta if meta.get("format") == FORMAT else None


def _load_ours(path: Path, meta: dict[str, str], device: str | torch.device) -> DualEncoder:
    from safetensors.torch import load_file

    config = ModelConfig.from_dict(json.loads(meta["config"]))
    text = TextEncoder.from_config(
        config.text, json.loads(meta["text_hf_config"]), json.loads(meta["tokenizer"])
    )
    model = DualEncoder(config, text_encoder=text)
    state = load_file(str(path), device="cpu")
    load_strict(model, state, source=str(path))
    model.checkpoint_extra = json.loads(meta.get("extra", "{}"))  # type: ignore[attr-defined]
    return model.to(device).eval()


def load_strict(module: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """``load_state_dict(strict=True)`` with a readable error: missing, unexpected, wrong shapes."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in sorted(set(own) & set(state))
        if tuple(own[k].shape) != tuple(state[k].shape)
    ]
    if missing or unexpected or shapes:
        raise CheckpointError(mismatch_message(source, missing, unexpected, shapes))
    module.load_state_dict(state, strict=True)


def mismatch_message(
    source: str, missing: list[str], unexpected: list[str], shapes: list[str]
) -> str:
    def few(keys: list[str]) -> str:
        shown = ", ".join(keys[:8])
        return shown + (f", ... ({len(keys)} in all)" if len(keys) > 8 else "")

    parts = [f"checkpoint {source} does not fit the model"]
    if missing:
        parts.append(f"missing keys: {few(missing)}")
    if unexpected:
        parts.append(f"unexpected keys: {few(unexpected)}")
    if shapes:
        parts.append(f"shape mismatches: {few(shapes)}")
    parts.append("check that the checkpoint matches the chosen audio encoder / text model")
    return "; ".join(parts)


def load_model(
    source: str | os.PathLike,
    device: str | torch.device = "cpu",
    text_model: str | None = None,
    allow_download: bool = False,
    audio_overrides: dict[str, Any] | None = None,
) -> DualEncoder:
    """Load a dual encoder from our format, a foreign retrieval checkpoint, or a registry name.

    ``text_model`` names the Hugging Face text model of a foreign checkpoint (its config and
    tokenizer are needed; registry entries know theirs). Returns the model in eval mode.
    """
    path = hub.resolve(source, allow_download=allow_download)
    meta = read_metadata(path)
    if meta is not None:
        model = _load_ours(path, meta, device)
    else:
        from soundsearch.importers import import_retrieval_checkpoint

        entry = hub.REGISTRY.get(str(source))
        text_model = text_model or (entry.text_model if entry else None)
        model = import_retrieval_checkpoint(path, text_model, audio_overrides).to(device).eval()
    model.source = str(source)  # type: ignore[attr-defined]
    return model


def model_identity(model: nn.Module) -> str:
    """A stable hash of the model's config and weights (an index refuses a different model)."""
    cached = getattr(model, "_identity", None)
    if cached:
        return cached
    h = hashlib.blake2b(digest_size=16)
    config = getattr(model, "config", None)
    if config is not None and hasattr(config, "to_dict"):
        h.update(json.dumps(config.to_dict(), sort_keys=True).encode())
    for name, t in sorted(model.state_dict().items()):
        t = t.detach().to("cpu").contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    ident = h.hexdigest()
    model._identity = ident  # type: ignore[attr-defined]
    return ident
