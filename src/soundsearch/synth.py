"""A small synthetic audio-caption data set in ClothoV2's exact layout, for tests and smoke runs.

Each clip is one or two *groups* of sound events played in order; a group is 1-3 events of one
*kind* at one *pitch*; the clip is quiet or loud. Every attribute is audible and named in the
captions, so a small model can learn the retrieval task:

- kind: beep (steady tone), noise burst, rising chirp, falling chirp, knock/click, hum/buzz (a
  harmonic drone), siren-like warble (frequency-modulated tone);
- pitch: low / high (frequency range, or low-pass vs high-pass noise);
- count: one / two / three events; order: "X then Y" for two groups; loudness: quiet / loud.

Each clip gets five captions from five different templates with random synonyms, all true of
the clip. Descriptions are unique within a split (while the space allows), so every caption has
one right answer. Output (``write_synth``): ``clotho_captions_{split}.csv``,
``clotho_metadata_{split}.csv`` (keywords, fake Freesound ids), ``{split}/*.wav`` (16-bit PCM) and
``synth_info.json``. The same seed and options give byte-identical files.
"""

from __future__ import annotations

import csv
import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from soundsearch.audio import SAMPLE_RATE
from soundsearch.data.clotho import CLOTHO_SPLITS

log = logging.getLogger(__name__)

KINDS = ("tone", "noise", "chirp_up", "chirp_down", "knock", "hum", "warble")
PITCHES = ("low", "high")
LOUDNESS = ("quiet", "loud")
SPLIT_IDS = {"development": 1_000_000, "validation": 2_000_000, "evaluation": 3_000_000}

# (singular, plural) synonyms per kind; the first is the keyword.
NOUNS = {
    "tone": [("beep", "beeps"), ("tone", "tones"), ("bleep", "bleeps")],
    "noise": [
        ("noise burst", "noise bursts"),
        ("burst of noise", "bursts of noise"),
        ("blast of static", "blasts of static"),
    ],
    "chirp_up": [
        ("rising chirp", "rising chirps"),
        ("upward sweep", "upward sweeps"),
        ("ascending whistle", "ascending whistles"),
    ],
    "chirp_down": [
        ("falling chirp", "falling chirps"),
        ("downward sweep", "downward sweeps"),
        ("descending whistle", "descending whistles"),
    ],
    "knock": [("knock", "knocks"), ("click", "clicks"), ("tap", "taps")],
    "hum": [("hum", "hums"), ("drone", "drones"), ("buzz", "buzzes")],
    "warble": [
        ("warble", "warbles"),
        ("siren-like warble", "siren-like warbles"),
        ("wobbling siren", "wobbling sirens"),
    ],
}
PITCH_WORDS = {"low": ("low", "low-pitched", "deep"), "high": ("high", "high-pitched", "shrill")}
COUNT_WORDS = {
    1: ("a", "one", "a single"),
    2: ("two", "a pair of"),
    3: ("three", "a series of three"),
}
LOUD_ADJ = {"quiet": ("quiet", "soft", "faint"), "loud": ("loud", "strong", "powerful")}
LOUD_ADV = {
    "quiet": ("quietly", "softly", "faintly"),
    "loud": ("loudly", "strongly", "at full volume"),
}
COUNT_KEYWORD = {1: "one", 2: "two", 3: "three"}

Group = tuple[str, str, int]  # (kind, pitch, count)


@dataclass(frozen=True)
class ClipSpec:
    """What one clip holds; the captions are written from this."""

    groups: tuple[Group, ...]
    loudness: str

    def keywords(self) -> list[str]:
        words = []
        for kind, pitch, count in self.groups:
            words += [NOUNS[kind][0][0], pitch, COUNT_KEYWORD[count]]
        return list(dict.fromkeys(words + [self.loudness]))


@dataclass(frozen=True)
class SynthConfig:
    """Options of :func:`write_synth`."""

    clips: int = 200  # development clips
    val_clips: int | None = None  # default: max(8, clips // 4)
    eval_clips: int | None = None  # default: max(8, clips // 4)
    seed: int = 0
    min_seconds: float = 2.0
    max_seconds: float = 6.0
    sample_rate: int = SAMPLE_RATE

    def split_sizes(self) -> dict[str, int]:
        default = max(8, self.clips // 4)
        return {
            "development": self.clips,
            "validation": default if self.val_clips is None else self.val_clips,
            "evaluation": default if self.eval_clips is None else self.eval_clips,
        }


# -- descriptions ------------------------------------------------------------------------------
def sample_spec(rng: np.random.Generator) -> ClipSpec:
    """One random clip description: one or two groups, a loudness."""
    n_groups = int(rng.integers(1, 3))
    groups = tuple(
        (str(rng.choice(KINDS)), str(rng.choice(PITCHES)), int(rng.integers(1, 4)))
        for _ in range(n_groups)
    )
    return ClipSpec(groups, str(rng.choice(LOUDNESS)))


def sample_specs(n: int, rng: np.random.Generator) -> list[ClipSpec]:
    """``n`` descriptions, distinct while the space of descriptions allows."""
    specs: list[ClipSpec] = []
    seen: set[ClipSpec] = set()
    for _ in range(n):
        for _attempt in range(1000):
            spec = sample_spec(rng)
            if spec not in seen:
                break
        else:
            log.warning("synthetic descriptions exhausted: some clips share a description")
        seen.add(spec)
        specs.append(spec)
    return specs


def _pick(rng: np.random.Generator, options: tuple[str, ...] | list) -> str:
    return options[int(rng.integers(len(options)))]


def group_phrase(group: Group, rng: np.random.Generator) -> str:
    """e.g. "two shrill beeps", "an upward sweep" (random synonyms)."""
    kind, pitch, count = group
    singular, plural = _pick(rng, NOUNS[kind])
    words = f"{_pick(rng, PITCH_WORDS[pitch])} {singular if count == 1 else plural}"
    article = _pick(rng, COUNT_WORDS[count])
    if article == "a" and words[0] in "aeiou":
        article = "an"
    return f"{article} {words}"


def _cap(text: str) -> str:
    return text[0].upper() + text[1:]


def _single_templates(g: str, n: int, adj: str, adv: str) -> list[str]:
    s = n == 1
    return [
        f"{_cap(g)} {'sounds' if s else 'sound'} {adv}.",
        f"A {adj} recording of {g}.",
        f"Someone plays {g} {adv}.",
        f"There {'is' if s else 'are'} {g}, and the sound is {adj}.",
        f"Only {g}, played {adv}.",
    ]


def _pair_templates(g1: str, n1: int, g2: str, n2: int, adj: str, adv: str) -> list[str]:
    return [
        f"{_cap(g1)} followed by {g2}, both {adj}.",
        f"First {g1}, then {g2}; the recording is {adj}.",
        f"{_cap(g2)} {'comes' if n2 == 1 else 'come'} after {g1} in a {adj} recording.",
        f"A {adj} sequence: {g1} and then {g2}.",
        f"{_cap(g1)} {'plays' if n1 == 1 else 'play'} {adv} before {g2}.",
    ]


def captions_for(spec: ClipSpec, rng: np.random.Generator) -> list[str]:
    """Five captions of ``spec``, one per template, synonyms drawn independently, order shuffled."""
    out = []
    for t in range(5):
        phrases = [group_phrase(g, rng) for g in spec.groups]
        adj, adv = _pick(rng, LOUD_ADJ[spec.loudness]), _pick(rng, LOUD_ADV[spec.loudness])
        if len(spec.groups) == 1:
            out.append(_single_templates(phrases[0], spec.groups[0][2], adj, adv)[t])
        else:
            (_, _, n1), (_, _, n2) = spec.groups
            out.append(_pair_templates(phrases[0], n1, phrases[1], n2, adj, adv)[t])
    order = rng.permutation(5)
    return [out[i] for i in order]


# -- audio -------------------------------------------------------------------------------------
def _fade(x: np.ndarray, sr: int, ms: float = 8.0) -> np.ndarray:
    n = min(int(sr * ms / 1000), x.size // 2)
    if n > 0:
        ramp = 0.5 - 0.5 * np.cos(np.linspace(0.0, np.pi, n))
        x[:n] *= ramp
        x[-n:] *= ramp[::-1]
    return x


def _band_noise(n: int, sr: int, lo: float, hi: float, rng: np.random.Generator) -> np.ndarray:
    spec = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1.0 / sr)
    spec[(freqs < lo) | (freqs > hi)] = 0.0
    x = np.fft.irfft(spec, n)
    return x / (np.abs(x).max() + 1e-9)


def _sweep(t: np.ndarray, f0: float, f1: float) -> np.ndarray:
    """Exponential sweep from f0 to f1 over the duration of ``t``."""
    dur = max(t[-1], 1e-6)
    k = np.log(f1 / f0) / dur
    return np.sin(2 * np.pi * f0 * (np.exp(k * t) - 1.0) / k)


def render_event(
    kind: str, pitch: str, dur: float, sr: int, rng: np.random.Generator
) -> np.ndarray:
    """One event of ``dur`` seconds, peak 1."""
    n = max(16, int(dur * sr))
    t = np.arange(n) / sr
    high = pitch == "high"
    u = float(rng.uniform())
    if kind == "tone":
        x = np.sin(2 * np.pi * (2000 + 600 * u if high else 300 + 150 * u) * t)
    elif kind == "noise":
        x = _band_noise(n, sr, 4000, 12000, rng) if high else _band_noise(n, sr, 40, 500, rng)
    elif kind in ("chirp_up", "chirp_down"):
        lo, hi = (1500 + 300 * u, 5000 + 1000 * u) if high else (150 + 50 * u, 600 + 100 * u)
        x = _sweep(t, lo, hi) if kind == "chirp_up" else _sweep(t, hi, lo)
    elif kind == "knock":
        f, decay = (3000 + 1000 * u, 0.006) if high else (150 + 100 * u, 0.03)
        x = np.sin(2 * np.pi * f * t) * np.exp(-t / decay)
    elif kind == "hum":
        f0 = 300 + 100 * u if high else 60 + 40 * u
        x = sum(np.sin(2 * np.pi * f0 * h * t) / h for h in range(1, 6))
    elif kind == "warble":
        fc = 1800 + 600 * u if high else 500 + 200 * u
        rate = 5.0 + 3.0 * float(rng.uniform())
        phase = 2 * np.pi * fc * (t - 0.15 / (2 * np.pi * rate) * np.cos(2 * np.pi * rate * t))
        x = np.sin(phase)
    else:
        raise ValueError(f"unknown event kind {kind!r}")
    x = np.asarray(x, dtype=np.float64)
    return _fade(x / (np.abs(x).max() + 1e-9), sr)


EVENT_SECONDS = {"knock": (0.08, 0.12), "hum": (0.6, 0.9), "warble": (0.5, 0.8)}  # others below
DEFAULT_EVENT_SECONDS = (0.2, 0.4)


def render_clip(
    spec: ClipSpec, rng: np.random.Generator, sr: int, min_s: float, max_s: float
) -> np.ndarray:
    """The clip's waveform, float32, length in [min_s, max_s] seconds (events compressed to fit)."""
    parts: list[tuple[str, str, float]] = []  # (kind, pitch, duration); "gap" for silence
    for gi, (kind, pitch, count) in enumerate(spec.groups):
        if gi:
            parts.append(("gap", "", float(rng.uniform(0.35, 0.6))))
        for e in range(count):
            if e:
                parts.append(("gap", "", float(rng.uniform(0.08, 0.2))))
            lo, hi = EVENT_SECONDS.get(kind, DEFAULT_EVENT_SECONDS)
            parts.append((kind, pitch, float(rng.uniform(lo, hi))))
    total = float(rng.uniform(min_s, max_s))
    lead = float(rng.uniform(0.05, 0.3))
    content = sum(d for _, _, d in parts)
    scale = min(1.0, (total - lead - 0.1) / content) if content > 0 else 1.0
    level = float(rng.uniform(0.5, 0.7) if spec.loudness == "loud" else rng.uniform(0.04, 0.07))
    out = rng.standard_normal(int(total * sr)) * 0.002  # faint noise floor
    pos = int(lead * sr)
    for kind, pitch, dur in parts:
        n = int(dur * scale * sr)
        if kind != "gap":
            event = render_event(kind, pitch, dur * scale, sr, rng)[: out.size - pos]
            out[pos : pos + event.size] += level * float(rng.uniform(0.85, 1.0)) * event
        pos += n
    return np.clip(out, -1.0, 1.0).astype(np.float32)


# -- files -------------------------------------------------------------------------------------
METADATA_COLUMNS = (
    "file_name",
    "keywords",
    "sound_id",
    "sound_link",
    "start_end_samples",
    "manufacturer",
    "license",
)


def write_split(root: Path, split: str, n: int, cfg: SynthConfig) -> int:
    """Write one split's audio and CSVs; returns the number of audio samples written."""
    split_no = CLOTHO_SPLITS.index(split)
    specs = sample_specs(n, np.random.default_rng([cfg.seed, split_no, 0]))
    (root / split).mkdir(parents=True, exist_ok=True)
    for old in (root / split).glob(f"synth {split} *.wav"):  # an earlier run's clips
        old.unlink()
    caption_rows, meta_rows, samples = [], [], 0
    for i, spec in enumerate(specs):
        rng = np.random.default_rng([cfg.seed, split_no, 1, i])
        name = f"synth {split} {i:05d}.wav"
        wave = render_clip(spec, rng, cfg.sample_rate, cfg.min_seconds, cfg.max_seconds)
        sf.write(root / split / name, wave, cfg.sample_rate, subtype="PCM_16")
        samples += wave.size
        caption_rows.append([name, *captions_for(spec, rng)])
        sound_id = SPLIT_IDS[split] + i
        meta_rows.append(
            [
                name,
                ";".join(spec.keywords()),
                str(sound_id),
                "",
                f"[0, {wave.size}]",
                "soundsearch synth",
                "CC0",
            ]
        )
    _write_csv(
        root / f"clotho_captions_{split}.csv",
        ["file_name"] + [f"caption_{k}" for k in range(1, 6)],
        caption_rows,
        "utf-8",
    )
    _write_csv(
        root / f"clotho_metadata_{split}.csv", list(METADATA_COLUMNS), meta_rows, "ISO-8859-1"
    )
    return samples


def _write_csv(path: Path, header: list[str], rows: list[list[str]], encoding: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding=encoding, newline="") as f:
        out = csv.writer(f, lineterminator="\n")
        out.writerow(header)
        out.writerows(rows)
    os.replace(tmp, path)


def write_synth(root: str | os.PathLike, cfg: SynthConfig = SynthConfig()) -> dict[str, object]:
    """Write the data set under ``root``; returns a summary (clips per split, hours of audio)."""
    if not 0 < cfg.min_seconds <= cfg.max_seconds:
        raise ValueError("need 0 < min_seconds <= max_seconds")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    sizes = cfg.split_sizes()
    samples = 0
    for split in CLOTHO_SPLITS:
        samples += write_split(root, split, sizes[split], cfg)
        log.info("synth: %s: %d clips", split, sizes[split])
    info = {"clips": sizes, "seconds": round(samples / cfg.sample_rate, 3), "config": asdict(cfg)}
    (root / "synth_info.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    return {"root": str(root), **info}
