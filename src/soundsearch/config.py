"""Where the library index lives and the search defaults users can change.

Index location, first match wins: the ``--index DIR`` option, the ``SOUNDSEARCH_INDEX`` environment
variable, ``$XDG_DATA_HOME/soundsearch/index`` (``~/.local/share/soundsearch/index`` when
``XDG_DATA_HOME`` is unset). The acoustic model of an index is chosen at ``soundsearch index`` time
(``--model`` or ``SOUNDSEARCH_MODEL``) and recorded inside the index, so searches need no option.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field
from pathlib import Path

from soundsearch.errors import UserError

ENV_INDEX = "SOUNDSEARCH_INDEX"
ENV_MODEL = "SOUNDSEARCH_MODEL"
ENV_WEIGHTS = "SOUNDSEARCH_WEIGHTS"

CHANNELS = (
    "keyword",
    "text",
    "acoustic",
)  # keyword: FTS5 BM25; text: MiniLM; acoustic: dual encoder
MODES = ("hybrid", "metadata", "acoustic")
MODE_CHANNELS = {
    "hybrid": CHANNELS,
    "metadata": ("keyword", "text"),
    "acoustic": ("acoustic",),
}


def default_index_dir() -> Path:
    """``$XDG_DATA_HOME/soundsearch/index`` (XDG base directory spec default ``~/.local/share``)."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "soundsearch" / "index"


def resolve_index_dir(option: str | os.PathLike | None = None) -> Path:
    """The index folder to use: ``--index`` option, then ``$SOUNDSEARCH_INDEX``, then the default."""
    chosen = option or os.environ.get(ENV_INDEX) or default_index_dir()
    return Path(chosen).expanduser().resolve()


@dataclass
class FusionSettings:
    """Reciprocal rank fusion: score(file) = sum over channels of weight / (rrf_k + rank)."""

    weights: dict[str, float] = field(
        default_factory=lambda: {"keyword": 1.0, "text": 1.0, "acoustic": 1.0}
    )
    rrf_k: int = 60  # the constant of Cormack et al. (2009); damps the influence of top ranks
    depth: int = 100  # candidates each channel contributes (at least 5 * k)

    def weight(self, channel: str) -> float:
        return float(self.weights.get(channel, 1.0))


def parse_weights(text: str | None) -> dict[str, float]:
    """``"keyword=1,text=0.5,acoustic=2"`` -> dict. Empty or None -> {} (use the defaults)."""
    out: dict[str, float] = {}
    for part in (text or "").split(","):
        part = part.strip()
        if not part:
            continue
        name, sep, value = part.partition("=")
        name = name.strip().lower()
        if not sep or name not in CHANNELS:
            raise UserError(
                f"bad weight {part!r}: use CHANNEL=NUMBER with CHANNEL one of {', '.join(CHANNELS)}"
            )
        try:
            out[name] = float(value)
        except ValueError:
            raise UserError(f"bad weight {part!r}: {value!r} is not a number") from None
        if out[name] < 0:
            raise UserError(f"bad weight {part!r}: weights must be >= 0")
    return out


def fusion_settings(weights: str | None = None, rrf_k: int | None = None) -> FusionSettings:
    """Defaults, then ``$SOUNDSEARCH_WEIGHTS``, then the ``--weights`` option."""
    settings = FusionSettings()
    settings.weights.update(parse_weights(os.environ.get(ENV_WEIGHTS)))
    settings.weights.update(parse_weights(weights))
    if rrf_k is not None:
        if rrf_k < 1:
            raise UserError(f"--rrf-k must be >= 1, not {rrf_k}")
        settings.rrf_k = rrf_k
    return settings


def add_index_argument(parser: argparse.ArgumentParser) -> None:
    """The ``--index DIR`` option every index command takes."""
    parser.add_argument(
        "--index",
        metavar="DIR",
        default=None,
        help=f"index folder (default: ${ENV_INDEX} or {default_index_dir()})",
    )
