"""PaSST embedding throughput: soundsearch vs the authors' package hear21passt 0.0.26.

Both models are built with the same random weights (the reference's state dict is copied into
ours strictly), checked to give the same features on the same batch, then timed interleaved on
that batch of 10 s clips (mel front-end included), in float32 and under bfloat16 autocast, with
the same thread count. See benchmarks/README.md.

    python benchmarks/bench_passt.py                  # CPU, all threads, batch 8
    python benchmarks/bench_passt.py --threads 2 --batch 4 --repeats 5
    python benchmarks/bench_passt.py --device cuda --no-ref --compile   # GPU, ours only

The reference lives in its own virtual environment (default ``.bench/ref-venv``), created on
first use: torch 2.13.0 (the same build as ours), then ``--no-deps`` hear21passt 0.0.26 and
torchaudio 2.11.0 (whose CUDA-linked C++ extension is removed: hear21passt only needs its
pure-Python mel filterbank and masking). The benchmark re-runs itself in that environment with
our ``src/`` on the path, so both models run in one process on the same torch.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import statistics
import subprocess
import sys
import time
import types
import venv
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_VENV = ROOT / ".bench" / "ref-venv"
TORCH_SPEC = "torch==2.13.0"
REF_PACKAGES = ["hear21passt==0.0.26", "torchaudio==2.11.0", "numpy"]
# our variant name -> hear21passt architecture name and its patch stride
REF_ARCH = {
    "passt-n": ("passt_s_p16_s16_128_ap468", 16),
    "passt-s": ("passt_s_kd_p16_128_ap486", 10),
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--variant", default="passt-n", choices=sorted(REF_ARCH))
    p.add_argument("--batch", type=int, default=8, help="10 s clips per forward pass")
    p.add_argument("--repeats", type=int, default=3, help="timed passes per model and dtype")
    p.add_argument("--warmup", type=int, default=1, help="untimed passes first")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--dtypes", default="fp32,bf16", help="comma list of fp32, bf16, fp16")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--compile", action="store_true", help="torch.compile both models")
    p.add_argument("--no-ref", action="store_true", help="time ours only (no hear21passt)")
    p.add_argument("--ref-venv", type=Path, default=DEFAULT_VENV)
    p.add_argument("--setup-only", action="store_true", help="create the reference venv, exit")
    return p.parse_args(argv)


# ----------------------------------------------------------------------------------------------
# the reference environment
# ----------------------------------------------------------------------------------------------
def ensure_ref_venv(path: Path) -> Path:
    """Create the reference venv if needed; return its python."""
    py = path / "bin" / "python"
    marker = path / ".soundsearch-bench-ok"
    if marker.exists():
        return py
    print(f"creating the reference environment in {path} (one time)", flush=True)
    venv.EnvBuilder(with_pip=True, clear=path.exists()).create(path)
    pip = [str(py), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    subprocess.run(pip + [TORCH_SPEC], check=True)
    subprocess.run(pip + ["--no-deps"] + REF_PACKAGES, check=True)
    # torchaudio's compiled extension links to CUDA torch; without it torchaudio runs in its
    # pure-Python mode, which is all hear21passt uses (kaldi mel banks, masking).
    site = subprocess.run(
        [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    for so in (Path(site) / "torchaudio" / "lib").glob("*.so"):
        so.unlink()
    marker.write_text("ok\n")
    return py


def reexec_in_ref_venv(args: argparse.Namespace, argv: list[str]) -> int:
    py = ensure_ref_venv(args.ref_venv)
    if args.setup_only:
        return 0
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
    )
    return subprocess.run(
        [str(py), str(Path(__file__).resolve())] + argv, env=env, check=False
    ).returncode


def in_ref_venv(args: argparse.Namespace) -> bool:
    return Path(sys.prefix).resolve() == args.ref_venv.resolve()


# ----------------------------------------------------------------------------------------------
# models
# ----------------------------------------------------------------------------------------------
def import_hear21passt():
    """Import hear21passt without timm.

    hear21passt imports one function from timm (``download_cached_file``, used only to fetch
    pretrained weights). timm >= 0.9 imports torchvision, and PyPI's torchvision wheels are
    linked to CUDA torch, so timm cannot be imported next to the CPU torch build. We register a
    stand-in module whose function raises, which also proves that nothing is downloaded.
    """

    def no_download(*a, **k):
        raise RuntimeError("hear21passt tried to download weights in the benchmark")

    hub = types.ModuleType("timm.models._hub")
    hub.download_cached_file = no_download
    timm = types.ModuleType("timm")
    timm.models = types.ModuleType("timm.models")
    timm.models._hub = hub
    for name, mod in (("timm", timm), ("timm.models", timm.models), ("timm.models._hub", hub)):
        sys.modules.setdefault(name, mod)
    from hear21passt.models.passt import get_model
    from hear21passt.models.preprocess import AugmentMelSTFT
    from hear21passt.wrapper import PasstBasicWrapper

    return get_model, AugmentMelSTFT, PasstBasicWrapper


def build_reference(variant: str):
    """hear21passt's get_basic_model(mode="embed_only") for ``variant``, random weights.

    get_basic_model always asks for pretrained weights, so we assemble the same three parts
    with ``pretrained=False`` (the same mel settings as get_basic_model).
    """
    get_model, AugmentMelSTFT, PasstBasicWrapper = import_hear21passt()
    arch, stride = REF_ARCH[variant]
    with contextlib.redirect_stdout(io.StringIO()):  # it prints the whole model
        mel = AugmentMelSTFT(
            n_mels=128,
            sr=32000,
            win_length=800,
            hopsize=320,
            n_fft=1024,
            freqm=48,
            timem=192,
            htk=False,
            fmin=0.0,
            fmax=None,
            norm=1,
            fmin_aug_range=10,
            fmax_aug_range=2000,
        )
        net = get_model(arch=arch, pretrained=False, fstride=stride, tstride=stride)
    return PasstBasicWrapper(mel=mel, net=net, mode="embed_only").eval()


def randomise(module) -> None:
    """Random values for every parameter (fresh models have zero biases and unit norms, which
    would leave part of the weight copy unchecked)."""
    import torch

    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in module.named_parameters():
            unit = name.endswith("weight") and p.dim() == 1  # LayerNorm gains
            p.copy_(torch.randn(p.shape, generator=gen) * (0.1 if unit else 0.05) + float(unit))


def quiet_forward(model, x):
    with contextlib.redirect_stdout(io.StringIO()):  # hear21passt prints shapes on its first call
        return model(x)


# ----------------------------------------------------------------------------------------------
# measurement
# ----------------------------------------------------------------------------------------------
def timed(model, x, device: str, dtype_name: str) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of one forward pass."""
    import torch

    amp = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(dtype_name)
    with (
        torch.inference_mode(),
        torch.autocast(device, dtype=amp or torch.float32, enabled=amp is not None),
    ):
        if device == "cuda":
            torch.cuda.synchronize()
        t0, c0 = time.perf_counter(), time.process_time()
        quiet_forward(model, x)
        if device == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t0, time.process_time() - c0


def report(dt: str, B: int, times: dict[str, list[tuple[float, float]]]) -> None:
    """Segments/s from the median and the best wall time; CPU seconds per segment (median),
    which other processes on a shared machine disturb much less than wall time."""
    wall = {n: [w for w, _ in t] for n, t in times.items()}
    rate = {n: B / statistics.median(w) for n, w in wall.items()}
    best = {n: B / min(w) for n, w in wall.items()}
    cpu = {n: statistics.median(c for _, c in t) / B for n, t in times.items()}
    for n in times:
        print(
            f"{dt:5s} {n:10s} {rate[n]:7.3f} segments/s (median; best {best[n]:.3f}); "
            f"{cpu[n]:.3f} CPU s/segment"
        )
    if "reference" in times:
        print(
            f"{dt:5s} speed-up   {rate['ours'] / rate['reference']:.2f}x wall median, "
            f"{best['ours'] / best['reference']:.2f}x best vs best, "
            f"{cpu['reference'] / cpu['ours']:.2f}x CPU time",
            flush=True,
        )


def measure(models: dict, x, args: argparse.Namespace) -> None:
    """Interleave the models pass by pass so that load changes hit both alike."""
    for dt in args.dtypes.split(","):
        for model in models.values():
            for _ in range(args.warmup):
                timed(model, x, args.device, dt)
        times = {name: [] for name in models}
        for _ in range(args.repeats):
            for name, model in models.items():
                times[name].append(timed(model, x, args.device, dt))
        report(dt, x.shape[0], times)


def check_equal(ref, ours, x, device: str) -> None:
    """Same weights, same input: the features must agree to float32 precision."""
    import torch

    torch.backends.cudnn.allow_tf32 = False  # TF32 convolutions would blur the comparison
    with torch.inference_mode():
        a = quiet_forward(ref, x)
        b = ours(x)
    torch.backends.cudnn.allow_tf32 = True
    diff = (a - b).abs().max().item()
    scale = a.abs().max().item()
    print(f"same weights, same input: max |ref - ours| = {diff:.2e} (features up to {scale:.2f})")
    if diff > 1e-4 * max(1.0, scale):
        raise SystemExit("numerical mismatch between the reference and ours")


def describe(args: argparse.Namespace) -> str:
    import platform

    import torch

    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        names = [ln for ln in Path("/proc/cpuinfo").read_text().splitlines() if "model name" in ln]
        cpu = names[0].split(":", 1)[1].strip() if names else cpu
    dev = torch.cuda.get_device_name() if args.device == "cuda" else cpu
    return (
        f"torch {torch.__version__} on {dev}; threads {torch.get_num_threads()}; "
        f"batch {args.batch} x 10 s; variant {args.variant}"
    )


def build_models(args: argparse.Namespace) -> dict:
    """{"reference": hear21passt, "ours": soundsearch}, same random weights, on the device."""
    from soundsearch.passt import build_passt_encoder

    ours = build_passt_encoder(args.variant).eval()
    models = {}
    if not args.no_ref:
        ref = build_reference(args.variant)
        randomise(ref.net)
        ours.net.load_state_dict(ref.net.state_dict(), strict=True)
        models["reference"] = ref.to(args.device)
    models["ours"] = ours.to(args.device)
    return models


def run(args: argparse.Namespace) -> int:
    import torch

    warnings.filterwarnings("ignore", category=UserWarning)  # the reference's deprecations
    warnings.filterwarnings("ignore", category=FutureWarning)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(describe(args), flush=True)
    gen = torch.Generator().manual_seed(1)
    x = (torch.randn(args.batch, 320000, generator=gen) * 0.1).to(args.device)
    models = build_models(args)
    if "reference" in models:
        check_equal(models["reference"], models["ours"], x[:2], args.device)
    if args.compile:
        models = {name: torch.compile(m) for name, m in models.items()}
    measure(models, x, args)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.no_ref or in_ref_venv(args):
        return run(args)
    return reexec_in_ref_venv(args, argv)


if __name__ == "__main__":
    sys.exit(main())
