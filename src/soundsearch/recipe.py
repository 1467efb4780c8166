"""Training recipes: a dataclass per run, TOML files per row of the paper's tables, CLI overrides.

A recipe file may name a ``base`` recipe; its keys are merged over the base's (tables merge key by
key). Overrides from the command line use dotted keys: ``lr=1e-5``, ``model.text.name=bert-base-uncased``.
Values are parsed as TOML scalars (numbers, booleans, quoted or bare strings, arrays).
"""

from __future__ import annotations

import copy
import math
import tomllib
from dataclasses import asdict, dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any

from soundsearch.errors import UserError
from soundsearch.model import ModelConfig


@dataclass
class TrainConfig:
    """One training run. Every field can be set in a recipe file or with ``--set key=value``."""

    name: str = "run"
    description: str = ""
    model: ModelConfig = field(default_factory=ModelConfig)
    audio_init: str | None = None  # AudioSet weights for the audio tower: registry name or path
    text_init: bool = True  # load the text model's pre-trained weights (False: random, tests)
    freeze_text: bool = False  # keep the text tower fixed (only its projection trains)
    init_from: str | None = None  # stage 2: a stage-1 checkpoint (our format) to start from
    sources: list[str] = field(default_factory=lambda: ["clotho:development"])  # kind:split
    val_source: str | None = "clotho"  # validation: ClothoV2 validation split
    val_split: str = "validation"
    leakage_ids: str | None = None  # CSV of Freesound ids to drop from training data
    epochs: int = 16
    lr: float = 2e-5
    min_lr: float = 1e-7
    warmup_epochs: float = 1.0
    rampdown_start: float = 1.0
    rampdown_stop: float = 15.0
    batch_size: int = 64
    max_seconds: float = 30.0  # random crop / zero pad of training audio
    gpt_variations: str | None = None  # ClothoV2_GPT file for the caption swap
    gpt_swap_p: float = 0.0
    precision: str = "auto"  # auto = bf16-mixed on GPU, 32-true on CPU; 16-mixed = fp16
    accelerator: str = "auto"
    devices: Any = "auto"
    strategy: str = "auto"
    num_workers: int = 4
    seed: int = 0
    val_every: int = 1
    limit_train_batches: Any = 1.0  # fraction or number of batches per epoch (quick runs)
    limit_val_files: int | None = None
    loggers: list[str] = field(default_factory=lambda: ["csv", "tensorboard"])  # + "wandb"
    on_error: str = "skip"  # unreadable audio / bad rows: "skip" (log + count) or "raise"
    audio_cache: str | None = None  # pre-decoded audio cache folder
    compile: bool = False  # torch.compile the towers (GPU)
    val_batch_size: int = 16  # segments per forward pass in validation
    checkpoint_every_steps: int = (
        500  # also write last.ckpt every N optimiser steps (0: epochs only)
    )


def lr_at(epoch: float, cfg: TrainConfig) -> float:
    """Learning rate at a fractional epoch: linear warm-up, then cosine to ``min_lr``, then flat."""
    if epoch < cfg.warmup_epochs:
        return cfg.lr * epoch / cfg.warmup_epochs
    if epoch < cfg.rampdown_start:
        return cfg.lr
    if epoch < cfg.rampdown_stop:
        t = (epoch - cfg.rampdown_start) / (cfg.rampdown_stop - cfg.rampdown_start)
        return cfg.min_lr + (cfg.lr - cfg.min_lr) * 0.5 * (1.0 + math.cos(math.pi * t))
    return cfg.min_lr


# ----------------------------------------------------------------------------------------------
def _merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def recipe_names() -> list[str]:
    root = resources.files("soundsearch.recipes")
    return sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".toml"))


def _read_recipe(name_or_path: str, seen: tuple[str, ...] = ()) -> dict:
    path = Path(name_or_path)
    if path.suffix == ".toml" and path.exists():
        text, label = path.read_text(encoding="utf-8"), str(path)
    else:
        res = resources.files("soundsearch.recipes") / f"{name_or_path}.toml"
        if not res.is_file():
            raise UserError(
                f"unknown recipe {name_or_path!r}: give a .toml file or one of {', '.join(recipe_names())}"
            )
        text, label = res.read_text(encoding="utf-8"), name_or_path
    if label in seen:
        raise UserError(f"recipe {label} includes itself through 'base'")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise UserError(f"recipe {label}: {e}") from e
    base = data.pop("base", None)
    own_name = data.get("name", Path(label).stem)
    if base:
        data = _merge(_read_recipe(base, seen + (label,)), data)
    data["name"] = own_name
    return data


def parse_override(item: str) -> tuple[list[str], Any]:
    if "=" not in item:
        raise UserError(f"override {item!r} must look like key=value (e.g. lr=1e-5)")
    key, raw = item.split("=", 1)
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw  # bare string
    return key.strip().split("."), value


def _set(d: dict, path: list[str], value: Any) -> None:
    for k in path[:-1]:
        d = d.setdefault(k, {})
    d[path[-1]] = value


def build_config(data: dict) -> TrainConfig:
    known = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise UserError(f"unknown recipe keys: {', '.join(unknown)}")
    data = dict(data)
    model = data.pop("model", {})
    mfields = {f.name for f in fields(ModelConfig)}
    bad = sorted(set(model) - mfields)
    if bad:
        raise UserError(f"unknown model keys: {', '.join(bad)}")
    tfields = {f.name for f in fields(type(ModelConfig().text))}
    bad = sorted(set(model.get("text", {})) - tfields)
    if bad:
        raise UserError(f"unknown model.text keys: {', '.join(bad)}")
    for k in (
        "audio_init",
        "init_from",
        "gpt_variations",
        "leakage_ids",
        "audio_cache",
        "val_source",
    ):
        if data.get(k) == "":
            data[k] = None  # TOML has no null: an empty string switches a setting off
    return TrainConfig(model=ModelConfig.from_dict(model), **data)


def load_recipe(name_or_path: str, overrides: list[str] = ()) -> TrainConfig:
    """Read a recipe (packaged name or .toml path), apply ``key=value`` overrides, validate."""
    data = _read_recipe(name_or_path)
    for item in overrides:
        path, value = parse_override(item)
        _set(data, path, value)
    return build_config(data)


def config_to_dict(cfg: TrainConfig) -> dict:
    return asdict(cfg)
