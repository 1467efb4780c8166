"""The index's pure parts against hand-computed and brute-force answers: name splitting, keyword
queries, rank fusion, best-segment top-k, index location, lock, content hash, worker crashes."""

from __future__ import annotations

import os
import signal
import sqlite3
import threading
import time

import numpy as np
import pytest
import torch

from soundsearch.config import FusionSettings, fusion_settings, resolve_index_dir
from soundsearch.errors import UserError
from soundsearch.index.fusion import rrf
from soundsearch.index.lock import IndexBusyError, IndexLock
from soundsearch.index.metadata import describe, keyword_query
from soundsearch.index.names import path_words, split_words
from soundsearch.index.search import exact_candidates, top_files


@pytest.mark.parametrize(
    "name, words",
    [
        ("Door_Wood-CreakOpen_03", ["door", "wood", "creak", "open", "03"]),
        ("default_break_glass.1", ["default", "break", "glass", "1"]),
        ("HTTPServer808kick", ["http", "server", "808", "kick"]),
        ("Tür_knarrt_ÖffnenLaut", ["tür", "knarrt", "öffnen", "laut"]),
        ("犬の鳴き声", ["犬の鳴き声"]),
        ("  rain -- on  roof ", ["rain", "on", "roof"]),
    ],
)
def test_split_words(name, words):
    assert split_words(name) == words


def test_ucs_names_spell_out_their_category():
    w = path_words("Library/DOORWood_Creak Open Slow_JD_ProjX.wav")
    assert w.name[:2] == ["doors", "wood"] and w.folder == ["library"]
    assert w.sentence_part() == "doors wood creak open slow"  # creator and source ids left out
    assert path_words("DOORS_are_fine.wav").name == ["doors", "are", "fine"]  # not a CatID
    assert path_words("XYZWood_thing.wav").name == ["xyz", "wood", "thing"]  # unknown category


def test_description_combines_name_tags_and_folders():
    d = describe("sfx/Forest/owl_hoot_02.wav", {"description": ["Owl at night"], "artist": ["A"]})
    assert d.doc == "owl hoot. Owl at night. from forest"  # numbers and generic folders dropped
    assert d.fts_name == "owl hoot 02" and d.fts_folder == "sfx forest"
    assert d.fts_tags == "Owl at night. A"


def test_keyword_query_is_safe_fts5():
    con = sqlite3.connect(":memory:")
    con.execute("CREATE VIRTUAL TABLE t USING fts5(a, tokenize='porter unicode61')")
    con.execute("INSERT INTO t VALUES ('breaking glass window')")
    assert keyword_query("the breaking glass") == '"breaking" OR "glass"'
    for nasty in ['"', "NEAR(a b)", "a AND", "*", "col:term", "glass OR", "-x ^y"]:
        match = keyword_query(nasty)
        if match is not None:
            con.execute("SELECT rowid FROM t WHERE t MATCH ?", (match,)).fetchall()
    assert keyword_query("?!") is None
    assert con.execute("SELECT COUNT(*) FROM t WHERE t MATCH ?", ("break",)).fetchone() == (1,)


def test_rrf_hand_computed():
    rankings = {
        "keyword": [(1, 9.0, None), (2, 5.0, None)],
        "text": [(2, 0.9, None), (3, 0.8, None), (1, 0.1, None)],
    }
    out = rrf(rankings, {"keyword": 1.0, "text": 2.0}, k=60)
    scores = {f.file_id: f.score for f in out}
    assert scores[1] == pytest.approx(1 / 61 + 2 / 63)
    assert scores[2] == pytest.approx(1 / 62 + 2 / 61)
    assert scores[3] == pytest.approx(2 / 62)
    assert [f.file_id for f in out] == [2, 1, 3]
    assert out[0].channels["text"].rank == 1 and out[0].channels["keyword"].rank == 2


def test_rrf_ties_share_a_rank_and_zero_weight_removes_a_channel():
    tied = {"keyword": [(5, 1.0, None), (6, 1.0, None), (7, 0.5, None)]}
    out = rrf(tied, {}, k=60)
    assert [f.channels["keyword"].rank for f in out] == [1, 1, 3]
    both = {"keyword": [(1, 2.0, None), (2, 1.0, None)], "text": [(2, 0.9, None), (1, 0.1, None)]}
    assert [f.file_id for f in rrf(both, {"keyword": 0.0, "text": 1.0})] == [2, 1]
    assert [f.file_id for f in rrf(both, {"keyword": 1.0, "text": 0.0})] == [1, 2]


def test_top_files_equals_brute_force_max_over_segments():
    rng = np.random.default_rng(0)
    n, files = 5000, 900
    seg_file = np.sort(rng.integers(0, files, n))
    starts = rng.random(n).astype(np.float32)
    scores = torch.from_numpy(rng.standard_normal(n).astype(np.float32))
    for depth, exclude in ((1, None), (10, None), (50, int(seg_file[0])), (900, None)):
        got = top_files(exact_candidates(scores), n, seg_file, starts, depth, exclude)
        best = {}
        for i in range(n):
            f = int(seg_file[i])
            if f != exclude and (f not in best or scores[i] > best[f][0]):
                best[f] = (float(scores[i]), float(starts[i]))
        want = sorted(best.items(), key=lambda kv: -kv[1][0])[:depth]
        assert [(f, s, t) for f, (s, t) in want] == got


def test_index_location_precedence(monkeypatch, tmp_path):
    monkeypatch.delenv("SOUNDSEARCH_INDEX", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert resolve_index_dir() == tmp_path / "xdg" / "soundsearch" / "index"
    monkeypatch.setenv("SOUNDSEARCH_INDEX", str(tmp_path / "env"))
    assert resolve_index_dir() == tmp_path / "env"
    assert resolve_index_dir(tmp_path / "opt") == tmp_path / "opt"


def test_fusion_settings_from_env_and_option(monkeypatch):
    monkeypatch.setenv("SOUNDSEARCH_WEIGHTS", "acoustic=3")
    s = fusion_settings("text=0.5", rrf_k=10)
    assert s.weights == {"keyword": 1.0, "text": 0.5, "acoustic": 3.0} and s.rrf_k == 10
    assert FusionSettings().rrf_k == 60
    for bad in ("text", "loud=1", "text=x", "text=-1"):
        with pytest.raises(UserError):
            fusion_settings(bad)


def test_lock_names_the_holder(tmp_path):
    with IndexLock(tmp_path), pytest.raises(IndexBusyError, match=f"pid {os.getpid()}"):
        IndexLock(tmp_path).acquire()
    with IndexLock(tmp_path):  # released: free again
        pass


def test_content_hash_samples_big_files(tmp_path, monkeypatch):
    from soundsearch.index import scan

    p = tmp_path / "big.bin"
    data = bytearray(np.random.default_rng(0).bytes(3000))
    p.write_bytes(bytes(data))
    full = scan.content_hash(p)
    assert not full.startswith("s")
    monkeypatch.setattr(scan, "HASH_FULL_LIMIT", 1000)
    monkeypatch.setattr(scan, "HASH_SAMPLE", 100)
    sampled = scan.content_hash(p)
    assert sampled.startswith("s") and sampled != full
    data[1500] ^= 1  # inside the middle sample
    p.write_bytes(bytes(data))
    assert scan.content_hash(p) != sampled
    data[500] ^= 1  # outside every sample: documented blind spot of sampled hashing
    p.write_bytes(bytes(data))
    assert scan.content_hash(p) == scan.content_hash(p)


def _pool_outcomes(pool, tasks: list) -> dict:
    outcomes = {}
    try:
        for msg in pool.run(tasks):
            if msg[0] in ("done", "error", "same"):
                outcomes[msg[2]] = msg
    finally:
        pool.close()
    return outcomes


def _fifo_and_good_tasks(tmp_path) -> list:
    from test_index_collection import write_wav

    from soundsearch.index.worker import Task

    fifo = tmp_path / "stuck.wav"
    os.mkfifo(fifo)  # opening it blocks until a writer comes: a reader that never returns
    good = [write_wav(tmp_path / f"ok_{i}.wav") for i in range(3)]
    return [Task(0, str(fifo), 0)] + [
        Task(i + 1, str(g), g.stat().st_size) for i, g in enumerate(good)
    ]


@pytest.mark.timeout(120)
def test_decode_pool_stops_a_stalled_worker(tmp_path):
    """A worker stuck on one file is stopped after ``stall_seconds``: that file becomes a
    'crashed' error, every other file is still processed by a replacement worker."""
    from soundsearch.index.worker import DecodePool

    outcomes = _pool_outcomes(DecodePool(1, stall_seconds=2.0), _fifo_and_good_tasks(tmp_path))
    assert outcomes[0][0] == "error" and outcomes[0][3] == "crashed"
    assert "no progress for 2 s" in outcomes[0][4]
    assert [outcomes[i][0] for i in (1, 2, 3)] == ["done"] * 3


@pytest.mark.timeout(120)
def test_decode_pool_survives_a_dead_worker(tmp_path):
    """A worker killed mid-file (as a crashing decoder would die) is replaced the same way."""
    from soundsearch.index.worker import DecodePool

    pool = DecodePool(1)

    def kill_when_started() -> None:
        while not pool._slots:
            time.sleep(0.05)
        time.sleep(1.0)  # it is now blocked on the FIFO
        os.kill(pool._slots[0].proc.pid, signal.SIGKILL)

    killer = threading.Thread(target=kill_when_started, daemon=True)
    killer.start()
    outcomes = _pool_outcomes(pool, _fifo_and_good_tasks(tmp_path))
    killer.join()
    assert outcomes[0][0] == "error" and outcomes[0][3] == "crashed"
    assert "died (exit code -9)" in outcomes[0][4]
    assert [outcomes[i][0] for i in (1, 2, 3)] == ["done"] * 3


def test_long_files_stream_in_bounded_memory(tmp_path):
    """A 10-minute file (77 MB once decoded at 32 kHz float32) passes through the worker's
    message stream one 10 s segment at a time: peak allocation stays far below the whole."""
    import tracemalloc

    import soundfile as sf

    from soundsearch.index.worker import Task, process_file

    path = tmp_path / "ten_minutes.wav"
    rng = np.random.default_rng(0)
    with sf.SoundFile(path, "w", samplerate=16000, channels=1, subtype="PCM_16") as f:
        for _ in range(20):
            f.write((0.1 * rng.standard_normal(30 * 16000)).astype(np.float32))
    tracemalloc.start()
    try:
        segments = 0
        for msg in process_file(Task(0, str(path), path.stat().st_size, None, 320000)):
            segments += msg[0] == "seg"
            last = msg
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert segments == 60 and last[0] == "done" and last[3].duration == pytest.approx(600.0)
    assert peak < 30e6, f"peak {peak / 1e6:.1f} MB"  # 30 s decode blocks, not the whole file


def test_searcher_keeps_its_snapshot_while_an_index_run_is_writing(tmp_path):
    """Mid-run commits do not make readers rebuild their matrices on every query: they reload
    once the writer is gone (its pid is recorded in the lock file)."""
    import json
    import socket

    from soundsearch.index.search import Searcher
    from soundsearch.index.store import ErrorRecord, FileRecord, Store

    store = Store(tmp_path, create=True)
    with store.transaction() as con:
        store.set_meta(con, "text_dim", "4")

    def add(name: str) -> None:
        vec = np.ones(4, np.float16) / 2
        store.write_batch([FileRecord(f"/x/{name}", "/x", name, 1, 1, "h", text_vec=vec)])

    add("a.wav")
    searcher = Searcher(store)
    searcher.refresh()
    assert len(searcher._m.text_file) == 1
    lock = tmp_path / "index.lock"
    lock.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": 0}))
    add("b.wav")
    store.write_batch([], [ErrorRecord("/x/c.wav", "/x", "corrupt", "bad")])
    searcher.refresh()
    assert len(searcher._m.text_file) == 1  # the run is still going: old snapshot
    lock.write_text("")  # the run ended (the lock is truncated on release)
    searcher.refresh()
    assert len(searcher._m.text_file) == 2
    store.close()
