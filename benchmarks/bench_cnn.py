"""Audio-encoder throughput: PANNs CNN10 / CNN14 next to PaSST-N, in 30 s clips per second.

Every encoder is built with random weights through ``soundsearch.encoders.build_audio_encoder``
and timed on the same random 30 s clips, front-end included, in evaluation mode under
``torch.inference_mode``, in float32 and under bfloat16 autocast, with the same thread count:

- CNN10 / CNN14 see each clip as one 30 s segment (960000 samples, 3001 frames), as in the paper;
- PaSST-N sees each clip as three 10 s segments (its segment length), so a "clip" costs 3 passes.

    python benchmarks/bench_cnn.py                       # CPU, 1 clip per pass, fp32 + bf16
    python benchmarks/bench_cnn.py --threads 2 --batch 2 --repeats 3
    python benchmarks/bench_cnn.py --device cuda --batch 16
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

import torch

CLIP_SECONDS = 30
SR = 32000
DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class Result:
    model: str
    dtype: str
    seconds: list[float]  # wall time of each timed pass
    batch: int  # 30 s clips per pass

    @property
    def clips_per_s(self) -> float:
        return self.batch / statistics.median(self.seconds)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="cnn10,cnn14,passt-n", help="comma list of encoder names")
    p.add_argument("--batch", type=int, default=1, help="30 s clips per forward pass")
    p.add_argument("--repeats", type=int, default=2, help="timed passes per model and dtype")
    p.add_argument("--warmup", type=int, default=1, help="untimed passes first")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--dtypes", default="fp32,bf16", help="comma list of fp32, bf16, fp16")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    return p.parse_args(argv)


def build(name: str, device: torch.device) -> torch.nn.Module | str:
    """The encoder, or a one-line reason why it cannot be built here."""
    try:
        from soundsearch.encoders import build_audio_encoder

        torch.manual_seed(0)
        return build_audio_encoder(name).to(device).eval()
    except (ImportError, AttributeError) as e:  # e.g. soundsearch.passt not written yet
        return f"{name} is not available in this checkout ({type(e).__name__}: {e})"


def segments(clips: torch.Tensor, segment_samples: int) -> torch.Tensor:
    """[B, 30 s] -> [B * k, segment_samples]: consecutive segments, the last zero-padded."""
    b, n = clips.shape
    k = -(-n // segment_samples)
    padded = torch.nn.functional.pad(clips, (0, k * segment_samples - n))
    return padded.reshape(b * k, segment_samples)


@contextlib.contextmanager
def precision(device: torch.device, dtype: torch.dtype | None) -> Iterator[None]:
    if dtype is None:
        yield
    else:
        with torch.autocast(device_type=device.type, dtype=dtype):
            yield


def time_one(
    enc: torch.nn.Module, wave: torch.Tensor, args: argparse.Namespace, dtype: torch.dtype | None
) -> list[float]:
    device = wave.device
    times = []
    with torch.inference_mode(), precision(device, dtype):
        for i in range(args.warmup + args.repeats):
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            out = enc(wave)
            if device.type == "cuda":
                torch.cuda.synchronize()
            if i >= args.warmup:
                times.append(time.perf_counter() - start)
    assert torch.isfinite(out).all(), "non-finite embeddings"
    return times


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    gen = torch.Generator().manual_seed(0)
    clips = (0.1 * torch.randn(args.batch, CLIP_SECONDS * SR, generator=gen)).to(device)
    results: list[Result] = []
    for name in args.models.split(","):
        enc = build(name, device)
        if isinstance(enc, str):
            print(f"skipped: {enc}", flush=True)
            continue
        wave = segments(clips, int(enc.segment_samples))
        n_params = sum(p.numel() for p in enc.parameters()) / 1e6
        print(f"{name}: {n_params:.1f}M parameters, input {tuple(wave.shape)}", flush=True)
        for dname in args.dtypes.split(","):
            times = time_one(enc, wave, args, DTYPES[dname])
            results.append(Result(name, dname, times, args.batch))
            print(f"  {dname}: " + ", ".join(f"{t:.2f}s" for t in times), flush=True)
        del enc
    print_table(results, args, device)
    return 0


def print_table(results: list[Result], args: argparse.Namespace, device: torch.device) -> None:
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(
        f"\n{where}, {torch.get_num_threads()} threads, torch {torch.__version__}, "
        f"batch {args.batch} x 30 s, median of {args.repeats}"
    )
    print(f"{'model':<10} {'dtype':<6} {'30 s clips/s':>13} {'ms / clip':>10} {'x realtime':>11}")
    for r in results:
        ms = 1000.0 / r.clips_per_s
        rt = r.clips_per_s * CLIP_SECONDS
        print(f"{r.model:<10} {r.dtype:<6} {r.clips_per_s:>13.3f} {ms:>10.0f} {rt:>11.1f}")


if __name__ == "__main__":
    sys.exit(main())
