"""The paper's training recipe with Lightning: both stages, any union of sources, one GPU or many.

- AdamW (betas 0.9/0.999, eps 1e-8, no weight decay), one parameter group; the learning rate is set
  every step from the fractional epoch (:func:`soundsearch.recipe.lr_at`).
- Multi-positive symmetric contrastive loss over the global batch (embeddings all-gathered with
  gradients under DDP).
- Validation after every ``val_every`` epochs: ClothoV2 validation mAP@10 (DCASE convention), on
  global rank 0, broadcast to the others.
- Output folder: ``best.safetensors`` (best validation mAP@10) and ``last.safetensors`` in our
  format; ``last.ckpt`` (Lightning, with optimiser state) for resuming after an interruption; CSV and
  TensorBoard logs; ``config.json`` (the resolved recipe); ``metrics.jsonl`` (one line per validation).
"""

from __future__ import annotations

import json
import logging
import os
import time
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from soundsearch.errors import UserError
from soundsearch.recipe import TrainConfig, config_to_dict, lr_at

log = logging.getLogger(__name__)


def _lightning():
    try:
        import lightning.pytorch as pl
    except ImportError as e:
        raise UserError("training needs Lightning: pip install 'soundsearch[train]'") from e
    return pl


# ----------------------------------------------------------------------------------------------
# data
# ----------------------------------------------------------------------------------------------
def source_specs(cfg: TrainConfig, roots: dict[str, str]) -> list[tuple[str, str]]:
    """Recipe sources (``kind:split``) + the user's roots (``--data kind:ROOT``) -> (spec, split)."""
    out = []
    for src in cfg.sources:
        kind, _, split = src.partition(":")
        if kind not in roots:
            given = ", ".join(roots) or "none"
            raise UserError(
                f"recipe {cfg.name} trains on {kind}: give --data {kind}:ROOT (given: {given}), or "
                f"choose other sources with --set \"sources=['clotho:development']\""
            )
        out.append((roots[kind], split.replace(",", "+") or "train"))
    return out


def training_records(cfg: TrainConfig, roots: dict[str, str]) -> list:
    """The union of the recipe's sources, duplicates dropped, leakage-filtered (counts logged)."""
    from soundsearch.data import load_sources

    return load_sources(
        source_specs(cfg, roots), exclude_freesound_ids=cfg.leakage_ids, on_error=cfg.on_error
    )


def validation_records(cfg: TrainConfig, roots: dict[str, str]) -> list:
    if not cfg.val_source:
        return []
    from soundsearch.data import load_source

    kind = cfg.val_source
    if kind not in roots:
        raise UserError(f"validation uses {kind}: give --data {kind}:ROOT or --set val_source=''")
    records = load_source(roots[kind], cfg.val_split, on_error=cfg.on_error)
    return records[: cfg.limit_val_files] if cfg.limit_val_files else records


# ----------------------------------------------------------------------------------------------
# model
# ----------------------------------------------------------------------------------------------
def build_model(cfg: TrainConfig):
    """The dual encoder a run starts from: a stage-1 checkpoint, or fresh towers + AudioSet init."""
    from soundsearch.checkpoints import load_model
    from soundsearch.importers import load_audio_init
    from soundsearch.model import DualEncoder
    from soundsearch.text import TextEncoder

    if cfg.init_from:
        model = load_model(cfg.init_from)
        log.info("starting from %s", cfg.init_from)
        return model.train()
    text = TextEncoder.from_pretrained(cfg.model.text, load_weights=cfg.text_init)
    model = DualEncoder(cfg.model, text_encoder=text)
    if cfg.audio_init:
        load_audio_init(model, cfg.audio_init, allow_download=True)
    return model.train()


def apply_freezing(model, cfg: TrainConfig) -> None:
    """``freeze_text``: the text tower keeps its weights and runs in eval mode (no dropout)."""
    if cfg.freeze_text:
        model.text_encoder.requires_grad_(False)
        model.text_encoder.eval()


def _make_module(model, cfg: TrainConfig):
    pl = _lightning()
    from soundsearch.loss import distributed_contrastive_loss

    class RetrievalModule(pl.LightningModule):
        """Training step of the recipe; validation lives in :class:`ValidationCallback`."""

        def __init__(self) -> None:
            super().__init__()
            self.model = model
            self._t0 = None
            self._text_cache: dict[str, torch.Tensor] = {}

        def configure_optimizers(self):
            fused = torch.cuda.is_available() and self.device.type == "cuda"
            params = [p for p in self.model.parameters() if p.requires_grad]
            return torch.optim.AdamW(
                params,
                lr=cfg.lr,
                betas=(0.9, 0.999),
                eps=1e-8,
                weight_decay=0.0,
                fused=fused or None,
            )

        def on_train_epoch_start(self) -> None:
            if cfg.freeze_text:
                self.model.text_encoder.eval()  # Lightning switched everything to train()

        def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
            n = max(1, int(self.trainer.num_training_batches))
            lr = lr_at(self.current_epoch + batch_idx / n, cfg)
            for group in self.trainer.optimizers[0].param_groups:
                group["lr"] = lr
            self._t0 = time.perf_counter()

        def _text(self, captions: list[str]) -> torch.Tensor:
            """Text embeddings; a frozen tower's sentence features are computed once per caption."""
            if not cfg.freeze_text:
                return self.model.encode_text(captions)
            missing = sorted({c for c in captions if c not in self._text_cache})
            if missing:
                with torch.no_grad():
                    feats = self.model.text_encoder.encode(missing).float().cpu()
                self._text_cache.update(zip(missing, feats))
            feats = torch.stack([self._text_cache[c] for c in captions]).to(self.device)
            return self.model.project_text(feats)

        def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
            a = self.model.encode_audio(batch["wave"], batch["lengths"])
            t = self._text(batch["captions"])
            loss = distributed_contrastive_loss(a, t, batch["audio_ids"], self.model.logit_scale)
            bs = len(batch["captions"])
            self.log("train/loss", loss, prog_bar=True, batch_size=bs)
            self.log("train/tau", self.model.tau.detach().abs(), batch_size=bs)
            self.log("train/lr", self.trainer.optimizers[0].param_groups[0]["lr"], batch_size=bs)
            return loss

        def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
            if self._t0 is not None:
                dt = time.perf_counter() - self._t0
                clips = len(batch["captions"]) * self.trainer.world_size
                self.log(
                    "train/clips_per_s", clips / max(dt, 1e-9), batch_size=len(batch["captions"])
                )

    return RetrievalModule()


def _validation_callback(cfg: TrainConfig, val_records: list, out: Path):
    pl = _lightning()
    from soundsearch.checkpoints import save_model
    from soundsearch.evaluate import results_from, score

    class ValidationCallback(pl.Callback):
        """Score ClothoV2 validation, keep best/last checkpoints in our format."""

        def __init__(self) -> None:
            self.best = -1.0

        def state_dict(self) -> dict:
            return {"best": self.best}

        def load_state_dict(self, state: dict) -> None:
            self.best = float(state.get("best", -1.0))

        def on_train_epoch_end(self, trainer, module) -> None:
            epoch = trainer.current_epoch + 1
            if epoch % cfg.val_every and epoch != trainer.max_epochs:
                return
            value = torch.tensor(-1.0, device=module.device)
            if trainer.is_global_zero:
                value.fill_(self._validate_and_save(module, epoch, trainer.global_step))
            value = trainer.strategy.broadcast(value, src=0)
            module.log("val/mAP@10", value, sync_dist=True)  # same value on every rank

        def _validate_and_save(self, module, epoch: int, step: int) -> float:
            model = module.model
            extra = {"epoch": epoch, "step": step, "recipe": cfg.name}
            metric = -1.0
            if val_records:
                autocast = module.device.type == "cuda" and "bf16" in str(cfg.precision)
                with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
                    results = results_from(
                        score(
                            model, val_records, cfg.val_batch_size, on_error="skip", progress=False
                        )
                    )
                metric = results["text_to_audio"]["mAP@10"]
                extra["val"] = results["text_to_audio"]
                with open(out / "metrics.jsonl", "a", encoding="utf-8") as f:
                    f.write(
                        json.dumps({"epoch": epoch, "step": step, **results["text_to_audio"]})
                        + "\n"
                    )
                log.info(
                    "epoch %d: validation mAP@10 %.4f (R@1 %.4f)",
                    epoch,
                    metric,
                    results["text_to_audio"]["R@1"],
                )
            save_model(model, out / "last.safetensors", extra)
            if metric > self.best or not val_records:
                self.best = metric
                save_model(model, out / "best.safetensors", extra)
            return metric

    return ValidationCallback()


# Lightning warnings that are expected here: a frozen text tower is in eval mode on purpose, our
# own last.ckpt is trusted when resuming, and a deprecation inside Lightning itself.
_QUIET = (".*module\\(s\\) in eval mode.*", ".*weights_only.*", ".*LeafSpec.*")


def _batches_per_epoch(cfg: TrainConfig, n: int) -> int:
    limit = cfg.limit_train_batches
    if isinstance(limit, float) and limit <= 1.0:
        return max(1, int(n * limit))
    return max(1, min(n, int(limit)))


def resume_point(out: Path) -> Path | None:
    """The newest of ``last.ckpt`` (epoch ends, every N steps) and ``interrupted.ckpt``."""
    found = [p for p in (out / "last.ckpt", out / "interrupted.ckpt") if p.is_file()]
    return max(found, key=lambda p: p.stat().st_mtime_ns) if found else None


def _checkpoint_callback(out: Path, every_n_steps: int):
    pl = _lightning()

    class LastCheckpoint(pl.Callback):
        """``last.ckpt`` (Lightning, optimiser included) at every epoch end and every N steps,
        written to a temporary file and renamed, so a crash never leaves a broken checkpoint."""

        def _save(self, trainer) -> None:
            tmp = out / "last.ckpt.tmp"
            trainer.save_checkpoint(str(tmp), weights_only=False)
            if trainer.is_global_zero:
                os.replace(tmp, out / "last.ckpt")
                (out / "interrupted.ckpt").unlink(missing_ok=True)
            trainer.strategy.barrier("soundsearch-last-ckpt")

        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
            if every_n_steps and trainer.global_step % every_n_steps == 0:
                self._save(trainer)

        def on_train_epoch_end(self, trainer, module) -> None:
            self._save(trainer)

        def on_exception(self, trainer, module, exception: BaseException) -> None:
            """Interrupted (Ctrl-C, a fatal data error): keep the progress of the current epoch."""
            tmp = out / "interrupted.ckpt.tmp"
            trainer.save_checkpoint(str(tmp), weights_only=False)
            if trainer.is_global_zero:
                os.replace(tmp, out / "interrupted.ckpt")
                log.warning(
                    "run stopped (%s); progress saved, continue with --resume",
                    type(exception).__name__,
                )

    return LastCheckpoint()


def _precision(cfg: TrainConfig, accelerator: str) -> str:
    if cfg.precision != "auto":
        return cfg.precision
    return (
        "bf16-mixed" if accelerator in ("gpu", "cuda") or torch.cuda.is_available() else "32-true"
    )


def _loggers(cfg: TrainConfig, out: Path) -> list:
    from lightning.pytorch import loggers

    made = []
    for name in cfg.loggers:
        if name == "csv":
            made.append(loggers.CSVLogger(str(out), name="logs"))  # version_N per (resumed) run
        elif name == "tensorboard":
            try:
                made.append(loggers.TensorBoardLogger(str(out), name="tb"))
            except ModuleNotFoundError:
                log.warning("tensorboard not installed; skipping its logger")
        elif name == "wandb":
            made.append(
                loggers.WandbLogger(project="soundsearch", name=cfg.name, save_dir=str(out))
            )
        else:
            raise UserError(f"unknown logger {name!r} (csv, tensorboard, wandb)")
    return made


def train(
    cfg: TrainConfig,
    roots: dict[str, str],
    out: str | os.PathLike,
    resume: bool = False,
    progress: bool = True,
) -> Path | None:
    """Run the recipe; returns the output folder (None on the other ranks of a multi-process
    run). ``resume`` continues from ``out/last.ckpt``."""
    pl = _lightning()
    from soundsearch.data.dataset import AudioCaptionDataset, make_loader
    from soundsearch.data.gpt import read_variations

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ckpt = resume_point(out)
    if ckpt is not None and not resume:
        raise UserError(
            f"{out} already holds a run: add --resume to continue it, or choose another --out"
        )
    if resume and ckpt is None:
        raise UserError(f"nothing to resume in {out} (no last.ckpt or interrupted.ckpt)")
    if resume:
        log.info("resuming from %s", ckpt)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    (out / "config.json").write_text(json.dumps(config_to_dict(cfg), indent=2) + "\n")

    records = training_records(cfg, roots)
    val_records = validation_records(cfg, roots)
    variations = read_variations(cfg.gpt_variations) if cfg.gpt_variations else None
    if cfg.gpt_swap_p > 0 and not variations:
        raise UserError(
            f"recipe {cfg.name} swaps captions (p={cfg.gpt_swap_p}): give "
            "--set gpt_variations=FILE (made by `soundsearch augment`) or --set gpt_swap_p=0"
        )
    cache = None
    if cfg.audio_cache:
        from soundsearch.data.cache import AudioCache

        cache = AudioCache(cfg.audio_cache)
        # decode every file once, in parallel, before the first step (resumable: done files stay)
        cache.build([r.path for r in records], workers=max(1, cfg.num_workers), progress=progress)
    dataset = AudioCaptionDataset(
        records,
        train=True,
        max_seconds=cfg.max_seconds,
        variations=variations,
        swap_p=cfg.gpt_swap_p,
        seed=cfg.seed,
        cache=cache,
        on_error=cfg.on_error,
    )
    loader = make_loader(
        dataset,
        cfg.batch_size,
        num_workers=cfg.num_workers,
        seed=cfg.seed,
        pin_memory=torch.cuda.is_available(),
    )
    if len(loader) == 0:
        raise UserError(f"{len(dataset)} training pairs do not fill one batch of {cfg.batch_size}")

    model = build_model(cfg)
    apply_freezing(model, cfg)
    if cfg.compile:
        model.audio_encoder.net = torch.compile(model.audio_encoder.net)
        model.text_encoder.model = torch.compile(model.text_encoder.model)
    module = _make_module(model, cfg)
    callbacks = [
        _validation_callback(cfg, val_records, out),
        _checkpoint_callback(out, every_n_steps=cfg.checkpoint_every_steps),
    ]
    accelerator = cfg.accelerator
    trainer = pl.Trainer(
        max_epochs=cfg.epochs,
        accelerator=accelerator,
        devices=cfg.devices,
        strategy=cfg.strategy,
        precision=_precision(cfg, accelerator),
        logger=_loggers(cfg, out),
        callbacks=callbacks,
        limit_train_batches=cfg.limit_train_batches,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        enable_progress_bar=progress,
        enable_model_summary=False,
        enable_checkpointing=False,  # our callbacks write best/last (ours) and last.ckpt
        default_root_dir=str(out),
        log_every_n_steps=max(1, min(50, _batches_per_epoch(cfg, len(loader)) // 2)),
    )
    with warnings.catch_warnings():
        for message in _QUIET:
            warnings.filterwarnings("ignore", message=message)
        trainer.fit(module, train_dataloaders=loader, ckpt_path=str(ckpt) if resume else None)
    if dataset.failures:
        log.warning("%d unreadable audio files were skipped during training", dataset.failures)
    return out if trainer.is_global_zero else None


def with_overrides(cfg: TrainConfig, **kw: Any) -> TrainConfig:
    return replace(cfg, **kw)
