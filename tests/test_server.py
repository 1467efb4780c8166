"""The HTTP API over a real socket: search, similar, status, audio (with Range), error answers, and
`soundsearch serve` binding to 127.0.0.1 by default."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from test_index_collection import build_collection

from soundsearch.cli import main

pytest.importorskip("starlette", reason="the serve extra (starlette) is not installed")
pytest.importorskip("uvicorn", reason="the serve extra (uvicorn) is not installed")


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    from soundsearch.server import create_app, start_in_thread

    root = tmp_path_factory.mktemp("served")
    build_collection(root / "lib")
    idx = root / "idx"
    assert main(["index", str(root / "lib"), "--index", str(idx), "--workers", "0",
                 "--no-progress"]) == 0  # fmt: skip
    server, url = start_in_thread(create_app(idx))
    with httpx.Client(base_url=url, timeout=30) as client:
        yield {"client": client, "url": url, "root": root, "idx": idx}
    server.should_exit = True
    server.thread.join(timeout=10)


def test_search_api(served):
    c = served["client"]
    r = c.get("/api/search", params={"q": "breaking glass", "k": 3})
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    body = r.json()
    assert [x["name"][:19] for x in body["results"]] == ["default_break_glass"] * 3
    assert body["channels"] == ["keyword", "text"] and body["took_ms"] > 0
    r = c.get("/api/search", params={"q": "explosion", "k": 1, "mode": "metadata"})
    assert r.json()["results"][0]["name"] == "tnt_explode.ogg"


@pytest.mark.parametrize(
    "params, message",
    [
        ({"q": ""}, "empty query"),
        ({"q": "glass", "mode": "loud"}, "unknown mode"),
        ({"q": "glass", "k": "many"}, "whole number"),
        ({"q": "glass", "k": "0"}, "between 1 and"),
        ({"q": "glass", "mode": "acoustic"}, "no acoustic model"),
    ],
)
def test_bad_requests_get_400_with_a_message(served, params, message):
    r = served["client"].get("/api/search", params=params)
    assert r.status_code == 400 and message in r.json()["error"]


def test_similar_api(served):
    c = served["client"]
    first = c.get("/api/search", params={"q": "footsteps on snow", "k": 1}).json()["results"][0]
    r = c.get("/api/similar", params={"id": first["id"], "k": 3})
    assert r.status_code == 200
    body = r.json()
    assert first["id"] not in [x["id"] for x in body["results"]]
    assert all("snow_footstep" in x["name"] for x in body["results"])
    assert "metadata similarity" in body["notes"][0]
    assert c.get("/api/similar", params={"id": 10**9}).status_code == 400
    assert c.get("/api/similar", params={"id": "/etc/passwd"}).status_code == 400


def test_status_api(served):
    st = served["client"].get("/api/status").json()
    assert st["files"] > 100 and st["errors"] >= 5 and st["acoustic_model"] is None
    assert {e["kind"] for e in st["error_list"]} >= {"corrupt", "empty", "not-audio"}


def test_audio_is_served_with_ranges(served):
    c = served["client"]
    hit = c.get("/api/search", params={"q": "breaking glass", "k": 1}).json()["results"][0]
    data = Path(hit["path"]).read_bytes()
    r = c.get(f"/api/audio/{hit['id']}")
    assert r.status_code == 200 and r.headers["content-type"] == "audio/ogg"
    assert r.content == data
    r = c.get(f"/api/audio/{hit['id']}", headers={"Range": "bytes=100-199"})
    assert r.status_code == 206 and r.content == data[100:200]
    assert r.headers["content-range"] == f"bytes 100-199/{len(data)}"


def test_audio_only_for_indexed_files(served):
    c = served["client"]
    assert c.get("/api/audio/999999").status_code == 404
    for path in ("/api/audio/..%2F..%2Fetc%2Fpasswd", "/api/audio/-1", "/static/../server.py"):
        r = c.get(path)
        assert r.status_code == 404 and b"root:" not in r.content
    victim = c.get("/api/search", params={"q": "lava", "k": 1}).json()["results"][0]
    Path(victim["path"]).unlink()
    r = c.get(f"/api/audio/{victim['id']}")
    assert r.status_code == 410 and "soundsearch index" in r.json()["error"]


def test_page_and_static_files(served):
    c = served["client"]
    r = c.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert 'id="q"' in r.text and "/static/app.js" in r.text
    assert "http" not in r.text.replace("http-equiv", "")  # no CDN, nothing external
    js = c.get("/static/app.js")
    assert js.status_code == 200 and "/api/search" in js.text
    assert c.get("/static/style.css").status_code == 200


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _listening(port: int) -> list[str]:
    """Local addresses (hex, as in /proc/net/tcp) listening on ``port``."""
    out = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not os.path.exists(table):
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            if state == "0A" and int(local.split(":")[1], 16) == port:
                out.append(local.split(":")[0])
    return out


def test_serve_command_binds_loopback_by_default(served):
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "soundsearch", "serve", "--index", str(served["idx"]),
         "--port", str(port)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, proc.stderr.read()
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/api/status", timeout=2)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "server did not come up"
                time.sleep(0.2)
        assert r.status_code == 200 and r.json()["files"] > 100
        assert _listening(port) == ["0100007F"]  # 127.0.0.1 only
    finally:
        proc.terminate()
        proc.wait(timeout=30)
