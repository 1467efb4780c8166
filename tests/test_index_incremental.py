"""Incremental and safe indexing, through the CLI: only changes are processed, deletions are
removed, an interrupted run (Ctrl-C or kill -9) loses nothing and resumes, two runs on one index
are refused with a clear message, unreadable files are errors."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_index_collection import copy_minetest, require_minetest, write_ogg, write_wav

from soundsearch.cli import main

SRC = str(Path(__file__).resolve().parents[1] / "src")


def index(capsys, root: Path, idx: Path, *extra: str) -> dict:
    capsys.readouterr()
    args = ["index", *([str(root)] if root else []), "--index", str(idx), "--json", *extra]
    rc = main([*args, "--workers", "0", "--no-progress"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    return json.loads(out.out.strip().splitlines()[-1])


def db_rows(idx: Path, sql: str) -> list[tuple]:
    con = sqlite3.connect(idx / "index.db")
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def search_names(capsys, idx: Path, query: str, k: int = 3) -> list[str]:
    capsys.readouterr()
    assert main(["search", query, "--index", str(idx), "-k", str(k), "--json"]) == 0
    return [r["name"] for r in json.loads(capsys.readouterr().out)["results"]]


def test_reindex_processes_only_changes(tmp_path, capsys):
    require_minetest()
    lib = tmp_path / "lib"
    files = copy_minetest(lib)
    gen = lib / "gen"
    write_wav(gen / "tone_a.wav")
    write_wav(gen / "tone_b.wav", freq=550)
    (gen / "broken.wav").write_bytes(b"")
    idx = tmp_path / "idx"
    first = index(capsys, lib, idx)
    n = len(files) + 2
    assert (first["new"], first["errors"], first["found"]) == (n, 1, n + 1)
    stamps = dict(db_rows(idx, "SELECT path, indexed_at FROM files"))

    again = index(capsys, lib, idx)
    assert (again["new"], again["changed"], again["unchanged"]) == (0, 0, n)
    assert again["known_errors"] == 1 and again["errors"] == 0  # broken file not retried
    assert dict(db_rows(idx, "SELECT path, indexed_at FROM files")) == stamps

    glass = next(f for f in files if f.name == "default_break_glass.1.ogg")
    glass.unlink()  # deleted
    write_ogg(gen / "tone_a.ogg", DESCRIPTION="spaceship engine humming")  # new, tagged
    write_wav(gen / "tone_b.wav", seconds=0.8, freq=880)  # changed content
    later = time.time() + 100
    os.utime(gen / "tone_a.wav", (later, later))  # touched: same content, new mtime
    write_wav(gen / "broken.wav")  # repaired
    r = index(capsys, lib, idx)
    assert (r["new"], r["changed"], r["touched"], r["removed"]) == (2, 1, 1, 1)
    assert r["unchanged"] == n - 3 and r["errors"] == 0
    assert db_rows(idx, "SELECT COUNT(*) FROM errors") == [(0,)]
    stamp_a = db_rows(idx, f"SELECT indexed_at FROM files WHERE path = '{gen / 'tone_a.wav'}'")
    assert stamp_a == [(stamps[str(gen / "tone_a.wav")],)]  # touched file was not re-processed
    assert "default_break_glass.1.ogg" not in search_names(capsys, idx, "breaking glass")
    assert search_names(capsys, idx, "spaceship engine", 1) == ["tone_a.ogg"]


def test_missing_root_keeps_its_files(tmp_path, capsys):
    lib = tmp_path / "drive"
    write_wav(lib / "rain_on_roof.wav")
    idx = tmp_path / "idx"
    index(capsys, lib, idx)
    lib.rename(tmp_path / "unmounted")
    r = index(capsys, None, idx)  # no folder: re-scan the known ones
    assert r["missing_roots"] == [str(lib)] and r["removed"] == 0
    assert db_rows(idx, "SELECT COUNT(*) FROM files") == [(1,)]


def _make_many(folder: Path, n: int) -> None:
    for i in range(n):
        write_wav(folder / f"clip_{i:04d}_wind_gust.wav", seconds=0.2, freq=200 + i)


def _session_processes(sid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid and fields[0] != "Z":  # session id; skip zombies
            out.append(int(stat.parent.name))
    return out


def _start_index(lib: Path, idx: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "soundsearch", "index", str(lib), "--index", str(idx),
           "--commit-every", "4", "--workers", "1", "--no-progress"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": SRC}
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True, text=True)  # fmt: skip


def _wait_for_commits(proc: subprocess.Popen, idx: Path, at_least: int) -> int:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"index finished before it could be interrupted: {proc.stderr}"
        try:
            n = db_rows(idx, "SELECT COUNT(*) FROM files")[0][0]
        except sqlite3.Error:
            n = 0  # not created yet
        if n >= at_least:
            return n
        time.sleep(0.02)
    raise AssertionError("no commit within 120 s")


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT])
def test_interrupted_run_loses_nothing_and_resumes(tmp_path, capsys, sig):
    lib, idx, total = tmp_path / "lib", tmp_path / "idx", 240
    _make_many(lib, total)
    proc = _start_index(lib, idx)
    _wait_for_commits(proc, idx, 8)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    if sig == signal.SIGINT:
        assert proc.returncode == 130 and "finished work is kept" in err
    assert db_rows(idx, "PRAGMA integrity_check") == [("ok",)]
    done = dict(db_rows(idx, "SELECT path, indexed_at FROM files"))
    assert 8 <= len(done) < total
    assert db_rows(idx, "SELECT COUNT(*) FROM files WHERE text_vec IS NULL") == [(0,)]
    time.sleep(2.5)  # workers notice their parent is gone within about a second
    assert _session_processes(proc.pid) == []

    r = index(capsys, lib, idx)
    assert r["new"] == total - len(done) and r["unchanged"] == len(done)  # none twice
    after = dict(db_rows(idx, "SELECT path, indexed_at FROM files"))
    assert len(after) == total
    assert all(after[p] == t for p, t in done.items())


def test_second_index_run_is_refused_while_first_holds_the_lock(tmp_path, capsys):
    lib, idx = tmp_path / "lib", tmp_path / "idx"
    write_wav(lib / "birdsong.wav")
    script = (
        "import time; from soundsearch.index.lock import IndexLock\n"
        f"with IndexLock({str(idx)!r}):\n    print('locked', flush=True); time.sleep(60)"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", script],
        env={**os.environ, "PYTHONPATH": SRC},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        capsys.readouterr()
        assert main(["index", str(lib), "--index", str(idx), "--workers", "0"]) == 2
        err = capsys.readouterr().err
        assert f"pid {holder.pid}" in err and "being updated by another" in err
    finally:
        holder.kill()
        holder.wait()
    assert index(capsys, lib, idx)["new"] == 1  # the lock died with its holder


NO_DAC = "-dac_override,-dac_read_search"  # root without these obeys file permissions


def test_unreadable_files_and_folders_are_errors(tmp_path, capsys):
    """Permission errors are recorded, the rest is indexed. Root ignores chmod, so as root the
    CLI runs in a subprocess without the capabilities that bypass permissions (setpriv)."""
    lib, idx = tmp_path / "lib", tmp_path / "idx"
    write_wav(lib / "ok_rain.wav")
    write_wav(lib / "secret_door.wav").chmod(0o000)
    write_wav(lib / "locked" / "inside.wav")
    (lib / "locked").chmod(0o000)
    try:
        st = _index_without_privileges(lib, idx, capsys)
    finally:
        (lib / "locked").chmod(0o755)
    errors = {Path(e["path"]).name: e for e in st["error_list"]}
    assert st["files"] == 1
    assert errors["secret_door.wav"]["kind"] == "permission"
    assert errors["locked"]["kind"] == "permission"
    assert "permission" in errors["secret_door.wav"]["reason"].lower()


def _index_without_privileges(lib: Path, idx: Path, capsys) -> dict:
    if os.geteuid() != 0:
        index(capsys, lib, idx)
        capsys.readouterr()
        main(["status", "--index", str(idx), "--json"])
        return json.loads(capsys.readouterr().out)
    if not shutil.which("setpriv"):
        pytest.skip("running as root without setpriv (util-linux): cannot make a file unreadable")
    env = {**os.environ, "PYTHONPATH": SRC}
    prefix = ["setpriv", f"--inh-caps={NO_DAC}", f"--bounding-set={NO_DAC}", sys.executable]
    run = lambda *a: subprocess.run(
        [*prefix, "-m", "soundsearch", *a, "--index", str(idx)],
        env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    r = run("index", str(lib), "--workers", "0")
    assert r.returncode == 0, r.stderr
    r = run("status", "--json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)
