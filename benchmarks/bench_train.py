"""Training throughput of the paper's model, soundsearch vs the reference recipe, in 30 s clips/s.

One step trains on a batch of 30 s clips (three 10 s PaSST segments each), one caption per clip:
mel front-end in training mode (jittered filterbank, SpecAugment), PaSST-N with structured
patchout (2 frequency rows, 15 time columns), segment features averaged, a roberta-large-shaped
text encoder (random weights, dropout 0.2, 32 tokens), projections into 1024-d, the multi-positive
contrastive loss, backward, an AdamW step (lr 2e-5). Both models train in the same process:

- reference: the authors' 2023 recipe (REFERENCE.md sections 2-5) in plain eager PyTorch:
  hear21passt 0.0.26's AugmentMelSTFT + PaSST (passt_s_p16_s16_128_ap468), Hugging Face
  RobertaModel with eager attention, torch.optim.AdamW (default implementation, not fused),
  bfloat16 autocast (``--ref-precision fp16``: float16 autocast + GradScaler, as in 2023);
- ours: soundsearch.model.DualEncoder (passt-n) with a TextEncoder around the same HF model
  (sdpa attention), soundsearch.loss.contrastive_loss, fused AdamW on CUDA, bfloat16 autocast,
  ``--compile``: torch.compile of both towers, exactly as ``train.py`` does.

Both models are built in train_models.py; the reference's weights are copied into ours strictly
and both must give the same embeddings in eval mode before anything is timed. Inputs: the same
random 30 s waveforms and synthetic captions for both. See benchmarks/README.md.

    python benchmarks/bench_train.py --small --threads 2       # CPU smoke test, tiny widths
    python benchmarks/bench_train.py --device cuda [--compile]  # the real measurement, batch 64
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib.metadata
import importlib.util
import io
import json
import random
import resource
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

ROOT = Path(__file__).resolve().parents[1]
if importlib.util.find_spec("soundsearch") is None:  # a bare checkout (the GPU machine)
    sys.path.insert(0, str(ROOT / "src"))
from bench_passt import DEFAULT_VENV
from train_models import (
    ReferenceModel,
    build_ours,
    build_reference,
    check_same_function,
    hear21passt_importable,
    load_tokenizer,
    pad_to_max_length,
)

CLIP = 960000  # one 30 s training clip at 32 kHz: three 10 s PaSST segments
LR = 2e-5
# (full, --small) defaults of the options that --small changes
DEFAULTS = {"batch": (64, 4), "steps": (12, 4), "warmup": (4, 4), "rounds": (1, 2)}
# caption vocabulary (split into words when captions are made)
VOCABULARY = (
    "a dog barks loudly while birds chirp in the distance and wind blows through trees rain falls "
    "on metal roof car engine starts idles then drives away people talk crowd cheers door creaks "
    "open slowly footsteps walk gravel water flows stream splashes machine hums electric buzz "
    "bell rings church clock ticks train passes horn honks child laughs woman speaks man coughs"
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--small", action="store_true", help="tiny widths, batch 4: a CPU smoke test")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--batch", type=int, help="30 s clips per step (64; --small 4)")
    p.add_argument("--steps", type=int, help="timed steps per block (12; --small 4)")
    p.add_argument("--warmup", type=int, help="untimed steps first, compilation included (4)")
    p.add_argument("--rounds", type=int, help="timed blocks per model, alternating (1; --small 2)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--models", default="reference,ours", help="comma list: reference, ours")
    p.add_argument("--precision", default="bf16", choices=("bf16", "fp16", "fp32"), help="ours")
    p.add_argument("--ref-precision", default="bf16", choices=("bf16", "fp16", "fp32"))
    p.add_argument("--compile", action="store_true", help="torch.compile our two towers")
    p.add_argument("--compile-mode", default=None, help="torch.compile mode (default: default)")
    p.add_argument(
        "--text-padding",
        default="longest",
        choices=("longest", "max_length"),
        help="ours: pad captions to the batch's longest (as text.py does) or always to 32 tokens "
        "(a what-if: one static shape for a compiled text tower)",
    )
    p.add_argument(
        "--accum",
        default="auto",
        help="micro-batches per step: N, or auto (1, "
        "doubled for both models while one runs out of GPU memory)",
    )
    p.add_argument("--no-specaugment", action="store_true", help="no mel masks (both models)")
    p.add_argument("--no-check", action="store_true", help="skip the same-function check")
    p.add_argument("--tokenizer", help="tokenizer folder (default: the shipped MiniLM's)")
    p.add_argument(
        "--ref-venv",
        type=Path,
        default=DEFAULT_VENV,
        help="where to find hear21passt if it is not importable (bench_passt's venv)",
    )
    p.add_argument("--json", type=Path, help="also write the results to this JSON file")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    for name, (full, small) in DEFAULTS.items():
        if getattr(args, name) is None:
            setattr(args, name, small if args.small else full)
    if min(args.batch, args.steps, args.rounds) < 1 or args.warmup < 0:
        p.error("--batch, --steps and --rounds must be at least 1, --warmup at least 0")
    return args


# ----------------------------------------------------------------------------------------------
# synthetic data
# ----------------------------------------------------------------------------------------------
@dataclass
class Data:
    wave: Tensor  # [B, CLIP] random "audio", on the device
    lengths: Tensor  # [B] real samples (all full: every clip has three real segments)
    audio_ids: Tensor  # [B] one caption per file
    captions: list[list[str]]  # caption batches, used in turn (different padded lengths)


def make_captions(batch: int, longest_words: int, rng: random.Random) -> list[str]:
    """Clotho-like captions of 5..longest words, one of exactly ``longest_words`` words."""
    vocabulary = VOCABULARY.split()
    counts = [rng.randint(5, longest_words) for _ in range(batch)]
    counts[rng.randrange(batch)] = longest_words
    out = []
    for n in counts:
        words = [rng.choice(vocabulary) for _ in range(n)]
        words[0] = words[0].capitalize()
        out.append(" ".join(words[: n // 2]) + ", " + " ".join(words[n // 2 :]) + ".")
    return out


def make_data(batch: int, device: torch.device, seed: int) -> Data:
    """The same inputs for both models. Four caption batches whose longest captions differ
    (12, 16, 20 and 40 words: the last is truncated to 32 tokens), so padded lengths vary from
    step to step as in real training and a compiled text tower sees that too."""
    gen = torch.Generator().manual_seed(seed)
    wave = (torch.randn(batch, CLIP, generator=gen) * 0.1).to(device)
    lengths = torch.full((batch,), CLIP, dtype=torch.long, device=device)
    rng = random.Random(seed)
    captions = [make_captions(batch, n, rng) for n in (12, 16, 20, 40)]
    return Data(wave, lengths, torch.arange(batch, device=device), captions)


# ----------------------------------------------------------------------------------------------
# training steps
# ----------------------------------------------------------------------------------------------
AMP = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}


@dataclass
class Trainer:
    """One model's training step: forward in autocast, backward, optimiser step."""

    name: str
    model: nn.Module
    loss_fn: Callable[[Tensor, Tensor, list[str], Tensor], Tensor]  # wave, lengths, caps, ids
    make_optimizer: Callable[[], torch.optim.Optimizer]
    precision: str
    opt: torch.optim.Optimizer | None = None
    scaler: torch.amp.GradScaler | None = None
    last_loss: Tensor | None = None

    def reset(self) -> None:
        """Fresh optimiser (and scaler); nothing of a previous attempt stays on the device."""
        self.opt, self.last_loss = self.make_optimizer(), None
        device = "cuda" if torch.cuda.is_available() else "cpu"
        self.scaler = torch.amp.GradScaler(device) if self.precision == "fp16" else None

    def step(self, data: Data, i: int, accum: int) -> None:
        caps = data.captions[i % len(data.captions)]
        device, amp = data.wave.device.type, AMP[self.precision]
        n = data.wave.shape[0] // accum
        for m in range(accum):
            part = slice(m * n, (m + 1) * n)
            with torch.autocast(device, dtype=amp or torch.float32, enabled=amp is not None):
                loss = (
                    self.loss_fn(
                        data.wave[part], data.lengths[part], caps[part], data.audio_ids[part]
                    )
                    / accum
                )
            (self.scaler.scale(loss) if self.scaler else loss).backward()
        for group in self.opt.param_groups:  # the recipe sets the rate every step
            group["lr"] = LR
        if self.scaler:
            self.scaler.step(self.opt)
            self.scaler.update()
        else:
            self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        self.last_loss = loss.detach() * accum  # the last micro-batch's loss


def adamw(params: list[nn.Parameter], fused: bool) -> torch.optim.Optimizer:
    """The recipe's AdamW: betas 0.9/0.999, eps 1e-8, no weight decay, one group."""
    return torch.optim.AdamW(
        params, lr=LR, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, fused=fused or None
    )


def reference_trainer(ref: ReferenceModel, args: argparse.Namespace) -> Trainer:
    def loss_fn(wave: Tensor, lengths: Tensor, caps: list[str], ids: Tensor) -> Tensor:
        return ref.loss(ref.encode_audio(wave, lengths), ref.encode_text(caps), ids)

    return Trainer(
        "reference", ref, loss_fn, lambda: adamw(list(ref.parameters()), False), args.ref_precision
    )


def our_trainer(model: nn.Module, args: argparse.Namespace) -> Trainer:
    from soundsearch.loss import contrastive_loss

    if args.text_padding == "max_length":
        pad_to_max_length(model.text_encoder)
    if args.compile:  # as train.py does with `compile = true`
        kw = {"mode": args.compile_mode} if args.compile_mode else {}
        model.audio_encoder.net = torch.compile(model.audio_encoder.net, **kw)
        model.text_encoder.model = torch.compile(model.text_encoder.model, **kw)

    def loss_fn(wave: Tensor, lengths: Tensor, caps: list[str], ids: Tensor) -> Tensor:
        a, t = model.encode_audio(wave, lengths), model.encode_text(caps)
        return contrastive_loss(a, t, ids, model.logit_scale)

    fused = args.device.startswith("cuda")
    params = [p for p in model.parameters() if p.requires_grad]
    return Trainer("ours", model, loss_fn, lambda: adamw(params, fused), args.precision)


# ----------------------------------------------------------------------------------------------
# measurement
# ----------------------------------------------------------------------------------------------
@dataclass
class Result:
    name: str
    precision: str
    accum: int
    step_s: list[float] = field(default_factory=list)  # mean step time of each timed block
    cpu_s: list[float] = field(default_factory=list)  # process CPU seconds per step, per block
    warmup_s: float = 0.0  # the untimed steps (compilation included)
    peak_bytes: int = 0  # GPU: max_memory_allocated; CPU: the process's peak RSS so far
    own_bytes: int = 0  # device: the peak less what the other model keeps resident
    loss: float = float("nan")
    oom: bool = False
    optimizer: str = ""  # how AdamW runs (optimizer_kind)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def resident_bytes(trainer: Trainer) -> int:
    """Device bytes a model keeps between steps: parameters, buffers, optimiser state."""
    tensors = list(trainer.model.parameters()) + list(trainer.model.buffers())
    if trainer.opt is not None:
        tensors += [v for s in trainer.opt.state.values() for v in s.values() if torch.is_tensor(v)]
    seen = {t.data_ptr(): t.nbytes for t in tensors if t.device.type == "cuda"}
    return sum(seen.values())


@contextlib.contextmanager
def memory_probe(device: torch.device) -> Iterator[Callable[[], int]]:
    """Yields a function giving the peak bytes: on a GPU since entering (allocated tensors), on
    the CPU the process's peak resident set size so far (both models together)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        yield lambda: torch.cuda.max_memory_allocated(device)
    else:
        yield lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def timed_block(
    trainer: Trainer, data: Data, first: int, steps: int, accum: int
) -> tuple[float, float]:
    """(wall seconds per step, CPU seconds per step) of ``steps`` consecutive steps."""
    device = data.wave.device
    sync(device)
    t0, c0 = time.perf_counter(), time.process_time()
    for i in range(first, first + steps):
        trainer.step(data, i, accum)
    sync(device)
    return (time.perf_counter() - t0) / steps, (time.process_time() - c0) / steps


def measure(
    trainers: list[Trainer], data: Data, args: argparse.Namespace, accum: int
) -> list[Result]:
    """Warm-up, then ``rounds`` timed blocks per model, alternating the order every round."""
    results = {t.name: Result(t.name, t.precision, accum) for t in trainers}
    device = data.wave.device
    for t in trainers:
        t.reset()
    for r in range(args.rounds):
        for t in trainers if r % 2 == 0 else trainers[::-1]:
            res = results[t.name]
            if res.oom:
                continue
            others = sum(resident_bytes(o) for o in trainers if o is not t)
            try:
                with memory_probe(device) as peak, contextlib.redirect_stdout(io.StringIO()):
                    if r == 0 and args.warmup:
                        res.warmup_s = timed_block(t, data, 0, args.warmup, accum)[0] * args.warmup
                    wall, cpu = timed_block(
                        t, data, args.warmup + r * args.steps, args.steps, accum
                    )
                    res.peak_bytes = max(res.peak_bytes, peak())
            except torch.cuda.OutOfMemoryError:
                res.oom = True
                free(t)
                continue
            res.own_bytes = max(res.own_bytes, res.peak_bytes - others)
            res.step_s.append(wall)
            res.cpu_s.append(cpu)
            res.loss = float(t.last_loss)
            res.optimizer = optimizer_kind(t.opt)
            print(f"  {t.name:9s} block {r + 1}: {wall * 1e3:8.1f} ms/step", flush=True)
    return list(results.values())


def optimizer_kind(opt: torch.optim.Optimizer) -> str:
    """How AdamW runs: ``fused``, ``foreach``, or torch's default (foreach on CUDA, loop on CPU)."""
    if opt.defaults.get("fused"):
        return "fused"
    return "foreach" if opt.defaults.get("foreach") else "default (not fused)"


def free(trainer: Trainer) -> None:
    """Drop what a failed step left behind (gradients, optimiser state, cached blocks)."""
    trainer.model.zero_grad(set_to_none=True)
    trainer.opt, trainer.scaler, trainer.last_loss = None, None, None
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# ----------------------------------------------------------------------------------------------
# report
# ----------------------------------------------------------------------------------------------
def describe(args: argparse.Namespace, tokenizer_dir: Path, models: dict[str, nn.Module]) -> str:
    def version(pkg: str) -> str:
        try:
            return importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            return "-"

    dev = torch.device(args.device)
    where = (
        torch.cuda.get_device_name(dev)
        if dev.type == "cuda"
        else f"CPU, {torch.get_num_threads()} threads"
    )
    shape = "--small widths" if args.small else "PaSST-N + roberta-large shape"
    if args.text_padding != "longest":
        shape += f", ours pads captions to {args.text_padding}"
    masks = "off" if args.no_specaugment else "on"
    lines = [
        f"torch {torch.__version__}, transformers {version('transformers')}, "
        + f"hear21passt {version('hear21passt')} on {where}",
        f"batch {args.batch} clips x 30 s (3 PaSST segments each), {shape}, "
        + f"SpecAugment {masks}, tokenizer {tokenizer_dir}",
    ]
    for name, m in models.items():
        n = sum(p.numel() for p in m.parameters()) / 1e6
        text = m.text if name == "reference" else m.text_encoder.model
        lines.append(
            f"{name}: {n:.1f}M parameters, text attention {text.config._attn_implementation}"
        )
    return "\n".join(lines)


def report(results: list[Result], args: argparse.Namespace) -> None:
    gib = 2.0**30
    mem = "peak GiB (own)" if args.device.startswith("cuda") else "peak RSS GiB"
    print(
        f"\n{'model':10s} {'prec':5s} {'accum':>5s} {'ms/step':>9s} {'clips/s':>9s} "
        f"{'best':>9s} {'CPU s/step':>10s} {mem:>15s} {'warm-up s':>9s} {'loss':>7s}"
    )
    rate = {}
    for r in results:
        if r.oom or not r.step_s:
            print(f"{r.name:10s} {r.precision:5s} {r.accum:5d}  out of memory")
            continue
        med, best = statistics.median(r.step_s), min(r.step_s)
        rate[r.name] = (args.batch / med, args.batch / best)
        own = f" ({r.own_bytes / gib:.1f})" if args.device.startswith("cuda") else ""
        print(
            f"{r.name:10s} {r.precision:5s} {r.accum:5d} {med * 1e3:9.1f} {rate[r.name][0]:9.2f} "
            f"{rate[r.name][1]:9.2f} {statistics.median(r.cpu_s):10.2f} "
            f"{r.peak_bytes / gib:9.2f}{own:>6s} {r.warmup_s:9.1f} {r.loss:7.3f}"
        )
    if len(rate) == 2:
        print(
            f"speed-up ours / reference: {rate['ours'][0] / rate['reference'][0]:.2f}x "
            f"(median blocks), {rate['ours'][1] / rate['reference'][1]:.2f}x best vs best; "
            "issue target: >= 2x (the reference made 255 clips/s on an H200, bf16)"
        )
    print("optimisers: " + ", ".join(f"{r.name} AdamW {r.optimizer}" for r in results))
    if args.compile:
        from torch._dynamo.utils import counters

        breaks = sum(counters["graph_break"].values())
        print(f"torch.compile: {counters['stats']['unique_graphs']} graphs, {breaks} graph breaks")
    if args.device == "cpu":
        print("CPU figures are a smoke test: they say nothing about GPU throughput")


def write_json(path: Path, results: list[Result], args: argparse.Namespace, header: str) -> None:
    data = {
        "setup": header,
        "args": {k: str(v) for k, v in vars(args).items()},
        "results": [asdict(r) for r in results],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")


# ----------------------------------------------------------------------------------------------
# main
# ----------------------------------------------------------------------------------------------
def build_trainers(args: argparse.Namespace, data: Data) -> tuple[list[Trainer], str]:
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    if not names or set(names) - {"reference", "ours"}:
        raise SystemExit(f"--models takes reference and/or ours, not {args.models!r}")
    tokenizer, tokenizer_dir = load_tokenizer(args.tokenizer)
    ref = ours = None
    torch.manual_seed(args.seed)
    if "reference" in names:
        hear21passt_importable(args.ref_venv)
        ref = build_reference(args.small, not args.no_specaugment, tokenizer)
    if "ours" in names:
        ours = build_ours(args.small, not args.no_specaugment, tokenizer_dir, ref)
    models = {n: m for n, m in (("reference", ref), ("ours", ours)) if m is not None}
    for m in models.values():
        m.to(data.wave.device).train()
    header = describe(args, tokenizer_dir, models)
    print(header, flush=True)
    if ref is not None and ours is not None and not args.no_check:
        two = slice(0, 2)
        check_same_function(ref, ours, data.wave[two], data.lengths[two], data.captions[0][two])
    trainers = []
    if ref is not None:
        trainers.append(reference_trainer(ref, args))
    if ours is not None:
        trainers.append(our_trainer(ours, args))
    return trainers, header


def accumulations(args: argparse.Namespace) -> list[int]:
    if args.accum == "auto":
        return [a for a in (1, 2, 4, 8) if args.batch % a == 0]
    if not args.accum.isdigit() or args.batch % int(args.accum):
        raise SystemExit(f"--accum must divide the batch ({args.batch}), got {args.accum}")
    return [int(args.accum)]


def run(args: argparse.Namespace) -> int:
    warnings.filterwarnings("ignore", category=UserWarning)  # the reference's deprecations
    warnings.filterwarnings("ignore", category=FutureWarning)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if args.compile and args.warmup < 4:
        print("note: --warmup < 4 leaves compilation (one per caption length) in the timing")
    data = make_data(args.batch, device, args.seed)
    trainers, header = build_trainers(args, data)
    attempts: list[Result] = []
    for accum in accumulations(args):
        print(
            f"training: {args.warmup} warm-up + {args.rounds} x {args.steps} timed steps per "
            f"model, {accum} micro-batch(es) per step",
            flush=True,
        )
        results = measure(trainers, data, args, accum)
        attempts += results
        if not any(r.oom for r in results):
            break
        for t in trainers:
            free(t)
        failed = ", ".join(r.name for r in results if r.oom)
        print(f"{failed}: out of GPU memory with {accum} micro-batch(es); both models again")
    report(results, args)
    if args.json:
        write_json(args.json, attempts, args, header)
    return 0


def main(argv: list[str] | None = None) -> int:
    return run(parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
