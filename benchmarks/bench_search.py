"""Search latency of the library index at 10k, 100k and 1M segments (synthetic vectors).

Times what a query costs once the models are loaded: score every segment with one
matrix-vector product (float16 storage, torch's float16 kernel with float32 accumulation), then
take the best files by their best segment (``soundsearch.index.search.top_files``), for the
acoustic dimension (1024) and the MiniLM metadata dimension (384). The reference measured in the
same run is the obvious implementation: numpy float32 matrix product + argpartition + per-file
max over all segments. Query encoding is timed separately (MiniLM; the tiny dual encoder's text
tower if available), as is loading the matrices from the index cache (``--load``).

    python benchmarks/bench_search.py                       # 10k, 100k, 1M; D = 1024 and 384
    python benchmarks/bench_search.py --sizes 100000 --dims 1024 --queries 50
    python benchmarks/bench_search.py --threads 2 --load    # also time the cache file load
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from soundsearch.index.search import ann_candidates, exact_candidates, matvec, top_files

SEGMENTS_PER_FILE = 3  # average; files of one to five segments


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="10000,100000,1000000", help="segment counts")
    p.add_argument("--dims", default="1024,384", help="vector dimensions")
    p.add_argument("--queries", type=int, default=30, help="timed queries per setting")
    p.add_argument("-k", type=int, default=10, help="results per query")
    p.add_argument("--depth", type=int, default=100, help="candidates per channel for fusion")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    p.add_argument("--no-ref", action="store_true", help="skip the numpy float32 reference")
    p.add_argument("--load", action="store_true", help="time loading the matrix cache file")
    p.add_argument("--no-encoders", action="store_true", help="skip query-encoder timing")
    p.add_argument("--ann", action="store_true", help="also time the FAISS IVF option")
    p.add_argument(
        "--sqlite", action="store_true", help="time rebuilding the matrices from an index.db"
    )
    return p.parse_args(argv)


def synthetic(n: int, d: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Normalised float16 vectors [n, d], their file ids [n] and segment starts [n]."""
    rng = np.random.default_rng(seed)
    mat = np.empty((n, d), dtype=np.float16)
    for i in range(0, n, 65536):
        x = rng.standard_normal((min(65536, n - i), d), dtype=np.float32)
        mat[i : i + len(x)] = x / np.linalg.norm(x, axis=1, keepdims=True)
    lengths = rng.integers(1, 2 * SEGMENTS_PER_FILE, size=n)  # segments per file
    seg_file = np.repeat(np.arange(n), lengths)[:n].astype(np.int64)
    starts = np.zeros(n, dtype=np.float32)
    new_file = np.r_[True, seg_file[1:] != seg_file[:-1]]
    idx = np.arange(n) - np.maximum.accumulate(np.where(new_file, np.arange(n), 0))
    starts[:] = 10.0 * idx
    return mat, seg_file, starts


def queries(mat: np.ndarray, count: int, seed: int = 1) -> np.ndarray:
    """Queries near random stored vectors (so the top results are meaningful)."""
    rng = np.random.default_rng(seed)
    base = mat[rng.integers(0, len(mat), count)].astype(np.float32)
    q = base + 0.5 * rng.standard_normal(base.shape, dtype=np.float32) / np.sqrt(mat.shape[1])
    return q / np.linalg.norm(q, axis=1, keepdims=True)


def ours(mat_t: torch.Tensor, seg_file, starts, q: np.ndarray, depth: int) -> list:
    scores = matvec(mat_t, torch.from_numpy(q.astype(np.float16)))  # [S]
    return top_files(exact_candidates(scores), len(seg_file), seg_file, starts, depth)


def reference(mat32: np.ndarray, seg_file: np.ndarray, q: np.ndarray, depth: int) -> list:
    scores = mat32 @ q  # [S] float32
    best = np.full(seg_file[-1] + 1, -np.inf, dtype=np.float32)
    np.maximum.at(best, seg_file, scores)  # file score = max over its segments
    top = np.argpartition(-best, depth)[:depth]
    return sorted(top.tolist(), key=lambda f: -best[f])


def timed(fn, qs: np.ndarray) -> list[tuple[float, float]]:
    """(wall ms, process CPU ms) per query. CPU time shows the work done even when other jobs
    share the cores: on an idle machine, wall ~ CPU / threads for this memory-bound product."""
    fn(qs[0])  # warm-up
    out = []
    for q in qs:
        t0, c0 = time.perf_counter(), time.process_time()
        fn(q)
        out.append(((time.perf_counter() - t0) * 1000, (time.process_time() - c0) * 1000))
    return out


def report(label: str, times: list[tuple[float, float]]) -> str:
    ms = sorted(t for t, _ in times)
    p90 = ms[min(len(ms) - 1, int(0.9 * len(ms)))]
    cpu = statistics.median(c for _, c in times)
    return (
        f"{label:34s} median {statistics.median(ms):8.2f} ms   p90 {p90:8.2f} ms   "
        f"(CPU {cpu:7.2f} ms)"
    )


def bench_setting(n: int, d: int, args: argparse.Namespace) -> None:
    mat, seg_file, starts = synthetic(n, d)
    qs = queries(mat, args.queries)
    mat_t = torch.from_numpy(mat)
    print(f"\n{n:,} segments x {d} ({mat.nbytes / 2**20:.0f} MiB float16), "
          f"{seg_file[-1] + 1:,} files")  # fmt: skip
    for depth, what in (
        (args.k, f"top-{args.k} files"),
        (args.depth, f"top-{args.depth} (fusion)"),
    ):
        ms = timed(lambda q: ours(mat_t, seg_file, starts, q, depth), qs)  # noqa: B023
        print(report(f"  soundsearch fp16  {what}", ms))
    if not args.no_ref and n * d * 4 <= 8 << 30:
        mat32 = mat.astype(np.float32)
        got = [f for f, _, _ in ours(mat_t, seg_file, starts, qs[0], args.k)]
        ref = reference(mat32, seg_file, qs[0], args.k)
        overlap = len(set(got) & set(ref))
        ms = timed(lambda q: reference(mat32, seg_file, q, args.k), qs[: max(5, len(qs) // 3)])
        print(report(f"  reference numpy fp32 top-{args.k}", ms) + f"   (same top-{args.k}: "
              f"{overlap}/{args.k})")  # fmt: skip
        del mat32
    if args.ann:
        bench_ann(mat_t, seg_file, starts, qs, args.k)
    if args.load:
        bench_load(mat, seg_file, starts)
    if args.sqlite:
        bench_sqlite(mat, seg_file, starts)


def bench_sqlite(mat: np.ndarray, seg_file: np.ndarray, starts: np.ndarray) -> None:
    """A real index.db with these vectors: time Store.matrices() cold (SQLite) and warm (cache)."""
    from soundsearch.index.store import Store

    with tempfile.TemporaryDirectory() as tmp:
        store = Store(tmp, create=True)
        t0 = time.perf_counter()
        with store.transaction() as con:
            files = np.unique(seg_file)
            con.executemany(
                "INSERT INTO files (id, path, root, rel, size, mtime_ns, hash, indexed_at) "
                "VALUES (?, ?, '/', ?, 0, 0, '', 0)",
                ((int(f), f"/f{f}", f"f{f}") for f in files),
            )
            con.executemany(
                "INSERT INTO segments (file_id, idx, start, end, vec) VALUES (?, 0, ?, ?, ?)",
                ((int(f), float(t), float(t) + 10, v.tobytes())
                 for f, t, v in zip(seg_file, starts, mat, strict=True)),
            )  # fmt: skip
            store.set_meta(con, "acoustic_dim", str(mat.shape[1]))
            store._bump(con)
        write_s = time.perf_counter() - t0
        size = (Path(tmp) / "index.db").stat().st_size
        t0 = time.perf_counter()
        m = store.matrices()
        cold = time.perf_counter() - t0
        assert np.array_equal(m.acoustic, mat)
        t0 = time.perf_counter()
        store.matrices()
        warm = time.perf_counter() - t0
        store.close()
    print(f"  index.db {size / 2**20:.0f} MiB written in {write_s:.1f} s; matrices from SQLite "
          f"{cold:.1f} s (cold, writes the cache), from the cache {warm:.2f} s")  # fmt: skip


def bench_ann(mat_t: torch.Tensor, seg_file, starts, qs: np.ndarray, k: int) -> None:
    from soundsearch.index.ann import AnnIndex

    t0 = time.perf_counter()
    ann = AnnIndex.build(mat_t.numpy())
    build_s = time.perf_counter() - t0
    n = len(seg_file)

    def search(q: np.ndarray) -> list:
        return top_files(ann_candidates(ann, mat_t, q), n, seg_file, starts, k)

    ms = timed(search, qs)
    recall = statistics.mean(
        len({f for f, _, _ in search(q)} & {f for f, _, _ in ours(mat_t, seg_file, starts, q, k)})
        / k
        for q in qs
    )
    print(report(f"  FAISS IVF-SQ8 top-{k}", ms) + f"   (recall@{k} {recall:.2f}, "
          f"build {build_s:.0f} s)")  # fmt: skip


def bench_load(mat: np.ndarray, seg_file: np.ndarray, starts: np.ndarray) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "vectors.npz"
        with open(path, "wb") as f:
            np.savez(f, acoustic=mat, seg_file=seg_file, seg_start=starts)
        t0 = time.perf_counter()
        with np.load(path) as z:
            _ = z["acoustic"], z["seg_file"], z["seg_start"]
        print(f"  load matrix cache ({path.stat().st_size / 2**20:.0f} MiB)   "
              f"{(time.perf_counter() - t0) * 1000:8.0f} ms")  # fmt: skip


def bench_encoders(n_queries: int) -> None:
    from soundsearch.index.metadata import get_embedder

    e = get_embedder()
    t0 = time.perf_counter()
    e.embed(["warm up"])
    print(f"\nMiniLM load + first query {time.perf_counter() - t0:8.2f} s")
    texts = ["a heavy wooden door creaking open slowly", "breaking glass", "rain on a tin roof"]
    ms = timed(lambda q: e.embed([str(q)]), np.array(texts * max(1, n_queries // 3)))
    print(report("MiniLM query encoding", ms))


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, k={args.k}, "
          f"{args.queries} queries per setting")  # fmt: skip
    for d in [int(x) for x in args.dims.split(",")]:
        for n in [int(x) for x in args.sizes.split(",")]:
            bench_setting(n, d, args)
    if not args.no_encoders:
        bench_encoders(args.queries)


if __name__ == "__main__":
    main()
