"""Named checkpoints: the registry table, the cache folder, downloads with progress and resume.

Nothing here runs at import. Files live in ``$SOUNDSEARCH_CACHE`` or ``$XDG_CACHE_HOME/soundsearch``
(default ``~/.cache/soundsearch``). A download writes ``<file>.part`` and resumes it with an HTTP
Range request; multi-part releases (salsa) are fetched part by part and joined. Offline, the error
says which URL to fetch and where to put the file.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from soundsearch.errors import CheckpointError

log = logging.getLogger(__name__)

_PASST = "https://github.com/kkoutini/PaSST/releases/download/"
_ZENODO = "https://zenodo.org/record/3987831/files/"
_SALSA_SHARES = (
    "pMWRbJzXqFPPzgD",
    "aMDLmLTZH4jCHwq",
    "3kKiQJFk45R7S5k",
    "ijLwzPAQrqKRf5P",
    "Np4A5nobAkaSGpY",
)


@dataclass(frozen=True)
class Entry:
    """One published checkpoint."""

    name: str
    filename: str
    urls: tuple[str, ...]  # several = parts joined in order
    layout: str  # how importers read it: passt-audioset | panns | dcase2023 | salsa | dcase2025
    description: str
    audio_encoder: str  # our audio-encoder row
    text_model: str | None = None  # Hugging Face id of the text tower (retrieval checkpoints)
    sha256: str | None = None  # None: not published; the file is checked by content when loaded
    size_hint: str = ""
    extra: dict = field(default_factory=dict)


REGISTRY: dict[str, Entry] = {
    e.name: e
    for e in (
        Entry(
            "passt-n-audioset",
            "passt-s-f128-p16-s16-ap.468.pt",
            (_PASST + "v0.0.2-audioset/passt-s-f128-p16-s16-ap.468.pt",),
            "passt-audioset",
            "PaSST-N AudioSet weights (audio tower init, paper's best)",
            "passt-n",
            size_hint="330 MB",
        ),
        Entry(
            "passt-s-audioset",
            "passt-s-kd-ap.486.pt",
            (_PASST + "v.0.0.9/passt-s-kd-ap.486.pt",),
            "passt-audioset",
            "PaSST-S AudioSet weights (overlapping patches)",
            "passt-s",
            size_hint="330 MB",
        ),
        Entry(
            "passt-l-audioset",
            "passt-l-kd-ap.47.pt",
            (_PASST + "v.0.0.10/passt-l-kd-ap.47.pt",),
            "passt-audioset",
            "PaSST-L (light, 7 blocks) AudioSet weights",
            "passt-l",
            size_hint="190 MB",
        ),
        Entry(
            "passt-s20-audioset",
            "passt-s-f128-20sec-p16-s10-ap.474-swa.pt",
            (_PASST + "v0.0.5/passt-s-f128-20sec-p16-s10-ap.474-swa.pt",),
            "passt-audioset",
            "PaSST-S with a 20 s positional grid",
            "passt-s20",
            size_hint="330 MB",
        ),
        Entry(
            "passt-s30-audioset",
            "passt-s-f128-30sec-p16-s10-ap.473-swa.pt",
            (_PASST + "v0.0.5/passt-s-f128-30sec-p16-s10-ap.473-swa.pt",),
            "passt-audioset",
            "PaSST-S with a 30 s positional grid",
            "passt-s30",
            size_hint="330 MB",
        ),
        Entry(
            "cnn10-audioset",
            "Cnn10_mAP=0.380.pth",
            (_ZENODO + "Cnn10_mAP%3D0.380.pth?download=1",),
            "panns",
            "PANNs CNN10 32 kHz AudioSet weights",
            "cnn10",
            size_hint="25 MB",
        ),
        Entry(
            "cnn14-audioset",
            "Cnn14_mAP=0.431.pth",
            (_ZENODO + "Cnn14_mAP%3D0.431.pth?download=1",),
            "panns",
            "PANNs CNN14 32 kHz AudioSet weights",
            "cnn14",
            size_hint="327 MB",
        ),
        Entry(
            "salsa-passt-roberta",
            "passt_roberta.ckpt",
            tuple(
                f"https://cloud.cp.jku.at/index.php/s/{s}/download/passt_roberta.{i}.ckpt"
                for i, s in enumerate(_SALSA_SHARES, 1)
            ),
            "salsa",
            "salsa (DCASE 2024 winner) PaSST-N + roberta-large, 40.11 mAP@10 on ClothoV2",
            "passt-n",
            text_model="roberta-large",
            size_hint="2.2 GB",
        ),
        Entry(
            "dcase2025-baseline",
            "dcase2025_baseline.ckpt",
            ("https://cloud.cp.jku.at/index.php/s/6ZTQ3mcwk9AAS4i/download",),
            "dcase2025",
            "DCASE 2025 task 6 baseline PaSST-N + roberta-large, 35.23 mAP@10",
            "passt-n",
            text_model="roberta-large",
            size_hint="2.2 GB",
        ),
    )
}


def cache_dir() -> Path:
    """Where named checkpoints live (created on demand)."""
    if os.environ.get("SOUNDSEARCH_CACHE"):
        return Path(os.environ["SOUNDSEARCH_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "soundsearch"


def entry(name: str) -> Entry:
    if name not in REGISTRY:
        raise CheckpointError(
            f"unknown checkpoint name {name!r}; `soundsearch models` lists the known ones "
            "(or give a path to a checkpoint file)"
        )
    return REGISTRY[name]


def local_path(name: str) -> Path:
    return cache_dir() / entry(name).filename


def is_present(name: str) -> bool:
    return local_path(name).is_file()


def _offline_message(e: Entry, reason: str) -> str:
    urls = "\n  ".join(e.urls)
    join = (
        " (download every part and join them in order: cat part1 part2 ... > file)"
        if len(e.urls) > 1
        else ""
    )
    return (
        f"cannot download {e.name} ({reason}). Fetch it on a machine with internet access{join}:\n  "
        f"{urls}\nand put it at {local_path(e.name)} (or pass the file's path instead of the name)."
    )


def _fetch(url: str, dest: Path, progress: bool, timeout: float) -> None:
    """Download ``url`` to ``dest`` through ``dest.part``, resuming a partial file."""
    from tqdm.auto import tqdm

    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    req = urllib.request.Request(url, headers={"User-Agent": "soundsearch"})
    if have:
        req.add_header("Range", f"bytes={have}-")
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        if have and resp.status != 206:
            have = 0  # server ignored the range: start over
        total = resp.length + have if resp.length is not None else None
        mode = "ab" if have else "wb"
        with (
            open(part, mode) as out,
            tqdm(
                total=total,
                initial=have,
                unit="B",
                unit_scale=True,
                desc=dest.name,
                disable=not progress,
            ) as bar,
        ):
            while chunk := resp.read(1 << 20):
                out.write(chunk)
                bar.update(len(chunk))
            out.flush()
            os.fsync(out.fileno())
    os.replace(part, dest)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


def download(name: str, progress: bool = True, timeout: float = 60.0) -> Path:
    """Fetch a named checkpoint into the cache (no-op when present); return its path."""
    e = entry(name)
    dest = local_path(name)
    if dest.is_file():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    parts = (
        [dest]
        if len(e.urls) == 1
        else [dest.with_name(f"{dest.name}.{i}") for i in range(1, len(e.urls) + 1)]
    )
    try:
        for url, p in zip(e.urls, parts):
            if not p.is_file():
                log.info("downloading %s", url)
                _fetch(url, p, progress, timeout)
    except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as err:
        raise CheckpointError(_offline_message(e, str(err))) from err
    if len(parts) > 1:
        tmp = dest.with_name(dest.name + ".joining")
        with open(tmp, "wb") as out:
            for p in parts:
                with open(p, "rb") as f:
                    shutil.copyfileobj(f, out, 1 << 22)
        os.replace(tmp, dest)
        for p in parts:
            p.unlink()
    if e.sha256 and sha256_file(dest) != e.sha256:
        bad = dest.with_name(dest.name + ".corrupt")
        os.replace(dest, bad)
        raise CheckpointError(f"{dest}: sha256 mismatch after download (moved to {bad}); try again")
    return dest


def resolve(name_or_path: str | os.PathLike, allow_download: bool = False) -> Path:
    """A path as is; a registry name -> its cached file (downloaded only if allowed)."""
    p = Path(name_or_path).expanduser()
    if p.exists():
        return p
    name = str(name_or_path)
    if name not in REGISTRY:
        raise CheckpointError(
            f"{name}: no such file, and not a known checkpoint name (`soundsearch models` lists them)"
        )
    if is_present(name):
        return local_path(name)
    if allow_download:
        return download(name)
    raise CheckpointError(
        f"{name} is not in the cache ({local_path(name)}). Run `soundsearch models download {name}` "
        "with internet access, or put the file there."
    )
