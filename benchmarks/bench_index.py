"""Indexing throughput (files/s) on the minetest sound effects, on this machine's CPU.

Settings, each on a fresh index of the same copied collection (``--copies`` times the 109 minetest
OGG files, renamed): metadata only (names, tags, MiniLM; files are still decoded to check them),
then with an acoustic model: the tiny dual encoder of the tests (2-block PaSST, random weights) and
PaSST-N (the paper's audio tower, random weights: speed does not depend on the weights), in fp32
and under bfloat16 autocast. A second run over the unchanged collection shows the cost of an
incremental update. The MiniLM / model load time is reported apart from the throughput.

    python benchmarks/bench_index.py                        # metadata, tiny, passt-n (fp32, bf16)
    python benchmarks/bench_index.py --models none,tiny --copies 5 --workers 2
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import tempfile
import time
from pathlib import Path

import torch

from soundsearch.index.indexer import Indexer, IndexOptions
from soundsearch.index.metadata import get_embedder
from soundsearch.index.store import Store

MINETEST = "/usr/share/games/minetest"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="none,tiny,passt-n", help="none, tiny, passt-n")
    p.add_argument("--precisions", default="fp32,bf16", help="for the acoustic models")
    p.add_argument("--copies", type=int, default=3, help="copies of the minetest sounds")
    p.add_argument("--workers", type=int, default=max(1, os.cpu_count() or 1))
    p.add_argument("--batch-size", type=int, default=16, help="segments per inference call")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    return p.parse_args(argv)


def make_collection(root: Path, copies: int) -> int:
    sounds = sorted(glob.glob(f"{MINETEST}/**/sounds/*.ogg", recursive=True))
    if not sounds:
        raise SystemExit(f"no minetest sounds under {MINETEST} (Debian package minetest-data)")
    for c in range(copies):
        for s in sounds:
            rel = Path(s).relative_to(MINETEST)
            dst = root / f"copy{c}" / rel.parent / f"{rel.stem}_{c}{rel.suffix}"
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(s, dst)
    return copies * len(sounds)


def make_checkpoint(kind: str, folder: Path) -> str | None:
    """A random-weight dual encoder with the MiniLM text tower, saved in our format."""
    if kind == "none":
        return None
    from soundsearch.checkpoints import save_model
    from soundsearch.model import DualEncoder, ModelConfig
    from soundsearch.text import TextConfig

    overrides = {"depth": 2, "embed_dim": 64, "num_heads": 4} if kind == "tiny" else {}
    text = TextConfig(name="minilm", hidden_dropout=None, attention_dropout=None)
    torch.manual_seed(0)
    model = DualEncoder(
        ModelConfig("passt-n", overrides, text, embed_dim=1024 if kind != "tiny" else 32)
    )
    return str(save_model(model, folder / f"{kind}.safetensors"))


def run_once(lib: Path, idx: Path, ckpt: str | None, precision: str, args) -> tuple:
    opts = IndexOptions(model=ckpt or "none", workers=args.workers, batch_size=args.batch_size,
                        precision=precision, progress=False)  # fmt: skip
    store = Store(idx, create=True)
    try:
        report = Indexer(store, opts).run([lib])
    finally:
        store.close()
    return report


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"{os.cpu_count()} CPUs, torch {torch.get_num_threads()} threads, {args.workers} "
          f"decode workers, batch {args.batch_size}")  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="soundsearch-bench-") as tmp:
        tmp = Path(tmp)
        n = make_collection(tmp / "lib", args.copies)
        t0 = time.perf_counter()
        get_embedder().embed(["warm up"])
        print(f"{n} files; MiniLM load {time.perf_counter() - t0:.1f} s (not counted below)\n")
        for kind in args.models.split(","):
            ckpt = make_checkpoint(kind, tmp)
            precisions = ["fp32"] if kind == "none" else args.precisions.split(",")
            for precision in precisions:
                idx = tmp / f"idx-{kind}-{precision}"
                if ckpt:
                    from soundsearch.index.acoustic import load_acoustic

                    t0 = time.perf_counter()
                    load_acoustic(ckpt, "cpu", precision)
                    load_s = time.perf_counter() - t0
                else:
                    load_s = 0.0
                first = run_once(tmp / "lib", idx, ckpt, precision, args)
                again = run_once(tmp / "lib", idx, ckpt, precision, args)
                label = f"{kind:8s} {precision if ckpt else '-':5s}"
                print(f"{label} {first.processed / first.seconds:7.2f} files/s  "
                      f"{first.segments / first.seconds:7.2f} segments/s  "
                      f"({first.processed} files, {first.segments} segments, "
                      f"{first.seconds:.1f} s; model load {load_s:.1f} s)  "
                      f"unchanged re-run {again.seconds:.2f} s")  # fmt: skip


if __name__ == "__main__":
    main()
