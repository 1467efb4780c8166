"""Foreign checkpoints, converted in one place, detected by content, loaded strictly.

Audio-tower initialisations:
- ``passt-audioset``: the PaSST authors' AudioSet releases, raw state dicts with official keys.
- ``panns``: PANNs CNN10/CNN14 files, ``{"iteration", "model": state_dict, "sampler"}``.

Whole retrieval models (Lightning checkpoints, ``state_dict`` inside; ``_orig_mod.`` from
``torch.compile`` and ``module.`` from DDP removed first):
- ``dcase2023``: ``audio_embedding_model.model.<PaSST>``, ``sentence_embedding_model.<HF>``,
  ``project_audio.0.*``, ``project_sentence.0.*``, ``tau``.
- ``salsa``: ``audio_embedding_model.model.model.<PaSST>``, ``sentence_embedding_model.<HF>``,
  ``project_audio.0.*``, ``project_sentence.0.*``, ``tau``; its unused extras (``timing_tau``,
  ``audio_token``, ``posencode.*``) are dropped; a sequence model on top (``audio_sequence.*``) is not
  supported and named in the error.
- ``dcase2025``: ``audio_embedding_model.model.model.<PaSST>``, ``text_embedding_model.<HF>``,
  ``audio_projection.*``, ``text_projection.*``, ``tau``.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from soundsearch.checkpoints import load_strict, mismatch_message
from soundsearch.errors import CheckpointError
from soundsearch.model import DualEncoder, ModelConfig
from soundsearch.text import TextConfig, TextEncoder

log = logging.getLogger(__name__)

# Buffers of ours that are derived constants (mel filterbank, windows): never in foreign files.
_DERIVED = re.compile(r"^audio_encoder\.frontend\.")
# Hugging Face buffers that older transformers versions saved; they are constants.
_HF_CONSTANT = re.compile(r"embeddings\.(position_ids|token_type_ids)$")


@dataclass(frozen=True)
class Layout:
    name: str
    audio: str  # prefix of the PaSST keys
    text: str  # prefix of the Hugging Face keys
    audio_proj: str
    text_proj: str
    ignore: tuple[str, ...] = ()  # regexes of keys that are known and unused
    unsupported: tuple[str, ...] = ()  # regexes of keys whose presence we cannot honour


LAYOUTS = (
    Layout(
        "dcase2025",
        "audio_embedding_model.model.model.",
        "text_embedding_model.",
        "audio_projection.",
        "text_projection.",
        ignore=(r"\.mel\.",),
    ),
    Layout(
        "salsa",
        "audio_embedding_model.model.model.",
        "sentence_embedding_model.",
        "project_audio.0.",
        "project_sentence.0.",
        ignore=(r"^timing_tau$", r"^audio_token$", r"^posencode\.", r"\.mel\."),
        unsupported=(
            r"^audio_sequence\.",
            r"^audio_output_projection\.",
            r"^project_audio\.[1-9]",
            r"^project_sentence\.[1-9]",
        ),
    ),
    Layout(
        "dcase2023",
        "audio_embedding_model.model.",
        "sentence_embedding_model.",
        "project_audio.0.",
        "project_sentence.0.",
        ignore=(r"\.mel\.",),
        unsupported=(r"^project_audio\.[1-9]", r"^project_sentence\.[1-9]"),
    ),
)


def clean_keys(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Remove ``_orig_mod.`` (torch.compile) anywhere and a leading ``module.`` (DDP)."""
    out = {}
    for k, v in state.items():
        k = k.replace("_orig_mod.", "")
        k = k.removeprefix("module.")
        out[k] = v
    return out


def read_foreign(path: str | os.PathLike) -> dict[str, Any]:
    from soundsearch.torchload import load_foreign_checkpoint

    obj = load_foreign_checkpoint(path)
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: expected a dict of tensors, found {type(obj).__name__}")
    return obj


def detect_layout(state: dict[str, Tensor]) -> Layout:
    keys = list(state)
    has = lambda prefix: any(k.startswith(prefix) for k in keys)
    if has("text_embedding_model."):
        name = "dcase2025"
    elif has("sentence_embedding_model.") and has("audio_embedding_model.model.model."):
        name = "salsa"
    elif has("sentence_embedding_model.") and has("audio_embedding_model.model."):
        name = "dcase2023"
    else:
        sample = ", ".join(keys[:5])
        raise CheckpointError(
            "unrecognised checkpoint layout (known: our .safetensors format, dcase2023, salsa, "
            f"dcase2025 Lightning checkpoints, PaSST/PANNs AudioSet files); first keys: {sample}"
        )
    return next(lay for lay in LAYOUTS if lay.name == name)


def _take(state: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


# ----------------------------------------------------------------------------------------------
# PaSST variant from shapes
# ----------------------------------------------------------------------------------------------
def infer_passt(state: dict[str, Tensor]) -> tuple[str, dict[str, Any]]:
    """(variant name, overrides) that give exactly these PaSST shapes.

    The stride and grid come from the positional embeddings; a non-standard width gets
    num_heads = embed_dim // 64 (the ViT convention) unless the caller overrides it.
    """
    from soundsearch.passt import PASST_VARIANTS

    try:
        f_grid = state["freq_new_pos_embed"].shape[2]
        t_grid = state["time_new_pos_embed"].shape[3]
        dim = state["cls_token"].shape[-1]
    except KeyError as e:
        raise CheckpointError(f"not a PaSST state dict: no {e.args[0]}") from e
    depth = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("blocks."))
    for name, cfg in PASST_VARIANTS.items():
        if cfg.grid == (f_grid, t_grid) and cfg.depth == depth and cfg.embed_dim == dim:
            return name, {}
    for name, cfg in PASST_VARIANTS.items():  # same grid, other width/depth (small models)
        if cfg.grid == (f_grid, t_grid):
            return name, {"depth": depth, "embed_dim": dim, "num_heads": max(1, dim // 64)}
    raise CheckpointError(f"PaSST grid {f_grid}x{t_grid} matches none of {list(PASST_VARIANTS)}")


# ----------------------------------------------------------------------------------------------
# whole retrieval models
# ----------------------------------------------------------------------------------------------
def _split(state: dict[str, Tensor], lay: Layout, source: str) -> dict[str, dict[str, Tensor]]:
    bad = sorted(k for k in state for pat in lay.unsupported if re.search(pat, k))
    if bad:
        raise CheckpointError(
            f"{source}: {lay.name} checkpoint uses parts soundsearch does not implement: "
            f"{', '.join(bad[:6])}"
        )
    state = {k: v for k, v in state.items() if not any(re.search(p, k) for p in lay.ignore)}
    parts = {
        "audio": _take(state, lay.audio),
        "text": {k: v for k, v in _take(state, lay.text).items() if not _HF_CONSTANT.search(k)},
        "audio_proj": _take(state, lay.audio_proj),
        "text_proj": _take(state, lay.text_proj),
    }
    used = set()
    for prefix in (lay.audio, lay.text, lay.audio_proj, lay.text_proj):
        used |= {k for k in state if k.startswith(prefix)}
    rest = sorted(set(state) - used - {"tau"})
    if rest:
        raise CheckpointError(mismatch_message(source, [], rest, []))
    if "tau" not in state:
        raise CheckpointError(mismatch_message(source, ["tau"], [], []))
    parts["tau"] = {"": state["tau"]}
    return parts


def _text_encoder(text_model: str | None, cfg: TextConfig, source: str) -> TextEncoder:
    if not text_model:
        raise CheckpointError(
            f"{source}: a foreign retrieval checkpoint needs its text model's name or folder "
            "(e.g. --text-model roberta-large) for the tokenizer and configuration"
        )
    return TextEncoder.from_pretrained(
        TextConfig(**{**cfg.__dict__, "name": text_model}), load_weights=False
    )


def import_retrieval_checkpoint(
    path: str | os.PathLike, text_model: str | None, audio_overrides: dict[str, Any] | None = None
) -> DualEncoder:
    """Read a dcase2023 / salsa / dcase2025 Lightning checkpoint into a :class:`DualEncoder`."""
    source = str(path)
    obj = read_foreign(path)
    state = clean_keys(obj.get("state_dict", obj))
    lay = detect_layout(state)
    parts = _split(state, lay, source)
    variant, overrides = infer_passt(parts["audio"])
    overrides.update(audio_overrides or {})
    hp = obj.get("hyper_parameters") or {}
    tau = parts["tau"][""].reshape(())
    frozen = bool(hp.get("freeze_tau", False)) or hp.get("tau_trainable") is False
    config = ModelConfig(
        audio_encoder=variant,
        audio_overrides=overrides,
        embed_dim=int(parts["audio_proj"]["weight"].shape[0]),
        tau_init=float(tau),
        tau_learnable=not frozen,
        text=TextConfig(name=str(text_model)),
    )
    model = DualEncoder(config, text_encoder=_text_encoder(text_model, config.text, source))
    ours = {f"audio_encoder.net.{k}": v for k, v in parts["audio"].items()}
    ours.update({f"text_encoder.model.{k}": v for k, v in parts["text"].items()})
    ours.update({f"audio_proj.{k}": v for k, v in parts["audio_proj"].items()})
    ours.update({f"text_proj.{k}": v for k, v in parts["text_proj"].items()})
    ours["tau"] = tau
    _load_with_derived(model, ours, source)
    log.info("imported %s checkpoint %s (audio %s)", lay.name, source, variant)
    return model


def _load_with_derived(module: nn.Module, state: dict[str, Tensor], source: str) -> None:
    """Strict load where our derived constants (front-end buffers) come from the module itself."""
    own = module.state_dict()
    for k, v in own.items():
        if k not in state and (_DERIVED.search(k) or _HF_CONSTANT.search(k)):
            state[k] = v
    load_strict(module, state, source)


# ----------------------------------------------------------------------------------------------
# audio-tower initialisation from AudioSet releases
# ----------------------------------------------------------------------------------------------
def audioset_state(path: str | os.PathLike) -> tuple[str, dict[str, Tensor]]:
    """(layout, state dict of the network) of a PaSST or PANNs AudioSet file."""
    obj = read_foreign(path)
    if isinstance(obj.get("model"), dict) and any(
        k.startswith("conv_block1.") for k in obj["model"]
    ):
        return "panns", clean_keys(obj["model"])
    state = clean_keys(obj.get("state_dict", obj))
    if "cls_token" in state and any(k.startswith("blocks.") for k in state):
        return "passt-audioset", state
    raise CheckpointError(
        f"{path}: not a PaSST or PANNs AudioSet checkpoint (no cls_token/blocks.* or model.conv_block1.*)"
    )


def load_audio_init(
    model: DualEncoder, source: str | os.PathLike, allow_download: bool = False
) -> None:
    """Initialise ``model.audio_encoder.net`` from an AudioSet checkpoint (path or registry name)."""
    from soundsearch import hub

    path = hub.resolve(source, allow_download=allow_download)
    layout, state = audioset_state(path)
    net = model.audio_encoder.net
    prefixed = {f"audio_encoder.net.{k}": v for k, v in state.items()}
    own = {k: v for k, v in model.state_dict().items() if k.startswith("audio_encoder.")}
    for k, v in own.items():
        if k not in prefixed and _DERIVED.search(k):
            prefixed[k] = v
    load_strict(
        model.audio_encoder, {k[len("audio_encoder.") :]: v for k, v in prefixed.items()}, str(path)
    )
    log.info("initialised %s from %s (%s)", type(net).__name__, Path(path).name, layout)
