"""``soundsearch augment`` against a real chat-completions server on 127.0.0.1 (real HTTP).

The server (``ChatServer`` below) speaks ``POST /v1/chat/completions``, records every request
(caption asked, time, Authorization header) and answers each one as the test's script says:
a normal numbered list, malformed lists, delays beyond the client timeout, 429 with Retry-After,
500s, 401. The CLI runs in-process like a user runs it, on a tiny ClothoV2 layout written here.
"""

from __future__ import annotations

import csv
import itertools
import json
import logging
import os
import re
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Self

import pytest

from soundsearch.cli import main
from soundsearch.data.gpt import read_variations

pytestmark = pytest.mark.timeout(60)

CLIPS = [  # (file name, keywords, five captions): 3 clips = 15 captions, idx 0..14
    ("dog yard.wav", "dog;bark;yard", ["a dog barks in the yard", "a dog is barking",
     "a dog barks at a passing car", "barking from a small dog", "a dog barks twice"]),
    ("rain roof.wav", "rain;roof;caf\u00e9", ["rain falls on a tin roof", "heavy rain on a roof",
     "raindrops patter on metal", "a storm with steady rain", "rain drums on a roof"]),
    ("door.wav", "door;creak", ["a door creaks open slowly", "a wooden door creaks",
     "someone opens a squeaky door", "a creaking door closes", "hinges squeak as a door moves"]),
]  # fmt: skip
CAPTIONS = [c for _, _, caps in CLIPS for c in caps]
QUERY_RE = re.compile(r"'(?P<caption>.*)' \[(?P<keywords>.*)\]$", re.DOTALL)
USAGE = {"prompt_tokens": 100, "completion_tokens": 40, "total_tokens": 140}


def good_variations(caption: str, n: int = 5) -> list[str]:
    return [f"Take {i} says that {caption}." for i in range(1, n + 1)]


def numbered(items: list[str], fmt: str = "{i}. {s}") -> str:
    return "\n".join(fmt.format(i=i, s=s) for i, s in enumerate(items, 1))


@dataclass
class Reply:
    """What the server does for one request."""

    status: int = 200
    content: str | None = None  # the answer text; None: a good numbered list for the caption
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds before answering
    raw: bytes | None = None  # send these bytes as the body instead of a JSON completion
    action: Callable[[], None] | None = None  # run before the delay (e.g. send Ctrl-C)


Script = Callable[[str, int], Reply]  # (caption, how many times it was asked so far, 1-based)


class ChatServer:
    """A threaded OpenAI-style chat-completions server whose answers a test scripts."""

    def __init__(self, script: Script | None = None) -> None:
        self.script: Script = script or (lambda caption, n: Reply())
        self.requests: list[dict] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def asked(self) -> Counter:
        return Counter(r["caption"] for r in self.requests)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # keep test output quiet
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if self.path != "/v1/chat/completions":
                    return self._send(404, {"error": {"message": f"no route {self.path}"}})
                reply = server._record(body, self.headers.get("Authorization"))
                try:
                    server._answer(self, reply, body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up waiting (timeout test)
                finally:
                    with server._lock:
                        server.in_flight -= 1

            def _send(self, status: int, obj: dict, headers: dict | None = None) -> None:
                self._send_raw(status, json.dumps(obj).encode(), headers)

            def _send_raw(self, status: int, data: bytes, headers: dict | None = None) -> None:
                self.send_response(status)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return Handler

    def _record(self, body: dict, auth: str | None) -> Reply:
        m = QUERY_RE.search(body["messages"][-1]["content"])
        caption = m["caption"] if m else ""
        with self._lock:
            self.requests.append(
                {"caption": caption, "keywords": m["keywords"] if m else None, "auth": auth,
                 "time": time.monotonic(), "body": body}
            )  # fmt: skip
            n = sum(r["caption"] == caption for r in self.requests)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        return self.script(caption, n)

    def _answer(self, handler, reply: Reply, body: dict) -> None:
        if reply.action:
            reply.action()
        time.sleep(reply.delay)
        if reply.raw is not None:
            return handler._send_raw(reply.status, reply.raw, reply.headers)
        if reply.status != 200:
            msg = {"error": {"message": f"scripted HTTP {reply.status}", "type": "test"}}
            return handler._send(reply.status, msg, reply.headers)
        caption = QUERY_RE.search(body["messages"][-1]["content"])["caption"]
        text = reply.content if reply.content is not None else numbered(good_variations(caption))
        completion = {
            "id": "chatcmpl-test", "object": "chat.completion", "model": body["model"],
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": text}}],
            "usage": USAGE,
        }  # fmt: skip
        handler._send(200, completion, reply.headers)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


@pytest.fixture(autouse=True)
def _isolated(monkeypatch):
    """No proxy between the client and 127.0.0.1. And: cli.main points its log handler at the
    current sys.stderr (capsys's), closed after the test; the next main() would flush it."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    yield
    for h in logging.getLogger("soundsearch").handlers:
        if getattr(h, "_soundsearch_cli", False):
            h.stream = sys.__stderr__


@pytest.fixture
def clotho(tmp_path: Path) -> Path:
    """A ClothoV2 layout with captions and metadata CSVs for the development split (no audio)."""
    root = tmp_path / "clotho"
    (root / "development").mkdir(parents=True)
    with open(root / "clotho_captions_development.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["file_name"] + [f"caption_{k}" for k in range(1, 6)])
        for name, _, caps in CLIPS:
            w.writerow([name, *caps])
    meta = root / "clotho_metadata_development.csv"
    with open(meta, "w", newline="", encoding="ISO-8859-1") as f:
        w = csv.writer(f)
        w.writerow(["file_name", "keywords", "sound_id", "sound_link", "start_end_samples",
                    "manufacturer", "license"])  # fmt: skip
        for i, (name, kw, _) in enumerate(CLIPS):
            w.writerow([name, kw, 1000 + i, f"https://freesound.org/s/{1000 + i}", "", "u", "CC0"])
    return root


def run_cli(clotho: Path, out: Path, server: ChatServer, *extra: str, debug: bool = False) -> int:
    """``soundsearch [-vv] augment --data clotho:ROOT --out OUT --base-url SERVER ...``."""
    argv = ["-vv"] if debug else []
    argv += ["augment", "--data", f"clotho:{clotho}", "--out", str(out), "--base-url", server.url]
    argv += ["--model", "test-model", "--timeout", "2", "--backoff", "0.01", "--no-progress"]
    return main(argv + list(extra))


def cache_lines(out: Path) -> list[dict]:
    path = Path(f"{out}.cache.jsonl")
    return [json.loads(ln) for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]


def read_out(out: Path) -> list[dict]:
    return json.loads(out.read_text(encoding="utf-8"))


def test_normal_run_writes_the_variations_file(clotho, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)  # a local server needs no key
    out = tmp_path / "clotho_gpt.json"
    with ChatServer() as server:
        assert run_cli(clotho, out, server, "--concurrency", "3") == 0
    assert sorted(server.asked().values()) == [1] * 15  # every caption asked exactly once
    assert set(server.asked()) == set(CAPTIONS)
    first = server.requests[0]
    assert first["auth"] is None
    assert first["body"]["model"] == "test-model" and first["body"]["temperature"] == 1.0
    kw = {r["caption"]: r["keywords"] for r in server.requests}
    assert kw["heavy rain on a roof"] == "rain, roof, caf\u00e9"  # ISO-8859-1 metadata decoded

    records = read_out(out)
    assert [r["idx"] for r in records] == list(range(15))  # idx = row * 5 + caption number
    for r in records:
        assert r["caption"] == CAPTIONS[r["idx"]]
        assert r["variations"] == good_variations(r["caption"])
        assert r["query"].endswith(f"'{r['caption']}' [{kw[r['caption']]}]")
        assert r["response"] == numbered(good_variations(r["caption"]))
        assert Path(r["path"]).name == CLIPS[r["idx"] // 5][0]
    printed = capsys.readouterr().out
    assert "15 captions: 0 answered before, 15 asked (15 ok, 0 failed, 15 requests)" in printed
    assert "tokens: 1500 prompt + 600 completion = 2100 total" in printed
    assert all(ln["status"] == "ok" and ln["version"] for ln in cache_lines(out))


def test_training_stage_reads_what_augment_writes(clotho, tmp_path):
    out = tmp_path / "clotho_gpt.json"
    with ChatServer() as server:
        assert run_cli(clotho, out, server, "--limit", "7") == 0
    variations = read_variations(out)
    assert variations == {i: good_variations(CAPTIONS[i]) for i in range(7)}


def test_answer_forms_and_bad_answers(clotho, tmp_path, capsys):
    long = "A dog barks " + "and keeps on barking " * 5 + "in the yard."
    forms = {  # caption -> answers in order
        CAPTIONS[0]: [lambda v: numbered(v, "{i}) {s}")],
        CAPTIONS[1]: [lambda v: numbered(v, "({i}) {s}")],
        CAPTIONS[2]: [lambda v: numbered(v, "- {s}")],
        CAPTIONS[3]: [lambda v: "Sure, here you go:\n\n" + numbered(v) + "\n\nEnjoy!"],
        CAPTIONS[4]: [lambda v: numbered(v + ["Extra one.", "Extra two."])],  # 7 items
        CAPTIONS[5]: [lambda v: numbered(v[:4]), lambda v: numbered(v)],  # 4 items, then 5
        CAPTIONS[6]: [lambda v: numbered([long] * 5)] * 3,  # too long, three times: failed
        CAPTIONS[7]: [lambda v: "I cannot help with that."] * 3,  # no list: 1 item, failed
    }

    def script(caption: str, n: int) -> Reply:
        answers = forms.get(caption)
        if not answers:
            return Reply()
        return Reply(content=answers[min(n, len(answers)) - 1](good_variations(caption)))

    out = tmp_path / "gpt.json"
    with ChatServer(script) as server:
        assert run_cli(clotho, out, server, "--limit", "9", "--attempts", "3") == 0
    asked = server.asked()
    assert asked[CAPTIONS[5]] == 2 and asked[CAPTIONS[6]] == 3 and asked[CAPTIONS[7]] == 3
    records = {r["idx"]: r for r in read_out(out)}
    assert sorted(records) == [0, 1, 2, 3, 4, 5, 8]  # the two failed captions are left out
    for idx, r in records.items():
        assert r["variations"] == good_variations(CAPTIONS[idx])
    lines = {ln["idx"]: ln for ln in cache_lines(out)}
    assert lines[6]["status"] == "failed" and "words (must be fewer than 20)" in lines[6]["error"]
    assert lines[7]["status"] == "failed"
    assert lines[7]["error"] == "1 of 5 usable variations in answer 3 of 3"
    assert lines[6]["usage"]["total_tokens"] == 3 * 140  # every answer's tokens are counted
    printed = capsys.readouterr().out
    assert "9 asked (7 ok, 2 failed, 14 requests)" in printed
    assert "2 captions without variations (rerun with --retry-failed):" in printed
    assert "idx 6:" in printed and "idx 7:" in printed


def test_timeouts_are_retried_then_recorded(clotho, tmp_path):
    def script(caption: str, n: int) -> Reply:
        if caption == CAPTIONS[0] and n == 1:
            return Reply(delay=1.0)  # beyond the 0.3 s client timeout, once
        if caption == CAPTIONS[1]:
            return Reply(delay=1.0)  # always too slow
        return Reply()

    out = tmp_path / "gpt.json"
    with ChatServer(script) as server:
        rc = run_cli(clotho, out, server, "--limit", "3", "--timeout", "0.3", "--retries", "2")
    assert rc == 0
    assert server.asked() == Counter({CAPTIONS[0]: 2, CAPTIONS[1]: 3, CAPTIONS[2]: 1})
    lines = {ln["idx"]: ln for ln in cache_lines(out)}
    assert lines[0]["status"] == "ok" and lines[0]["requests"] == 2
    assert lines[1]["status"] == "failed"
    assert "timeout" in lines[1]["error"] and "gave up after 3 tries" in lines[1]["error"]
    assert [r["idx"] for r in read_out(out)] == [0, 2]


def test_429_waits_for_retry_after_and_500s_are_retried(clotho, tmp_path):
    def script(caption: str, n: int) -> Reply:
        if caption == CAPTIONS[0] and n == 1:
            return Reply(status=429, headers={"Retry-After": "1"})
        if caption == CAPTIONS[1] and n <= 2:
            return Reply(status=500 if n == 1 else 503)
        if caption == CAPTIONS[2] and n == 1:
            return Reply(raw=b"<html>bad gateway</html>")  # 200 with a body that is not JSON
        return Reply()

    out = tmp_path / "gpt.json"
    with ChatServer(script) as server:
        assert run_cli(clotho, out, server, "--limit", "3", "--concurrency", "1") == 0
    assert server.asked() == Counter({CAPTIONS[0]: 2, CAPTIONS[1]: 3, CAPTIONS[2]: 2})
    t = [r["time"] for r in server.requests if r["caption"] == CAPTIONS[0]]
    assert t[1] - t[0] >= 0.95  # Retry-After: 1 was honoured
    assert [r["idx"] for r in read_out(out)] == [0, 1, 2]
    assert [ln["requests"] for ln in cache_lines(out)] == [2, 3, 2]


def test_429_retry_after_pauses_every_worker(clotho, tmp_path):
    def script(caption: str, n: int) -> Reply:
        if caption == CAPTIONS[0] and n == 1:
            return Reply(status=429, headers={"Retry-After": "1"})
        return Reply(delay=0.2)  # the 429 reaches the client well before this answer

    out = tmp_path / "gpt.json"
    with ChatServer(script) as server:
        assert run_cli(clotho, out, server, "--limit", "6", "--concurrency", "2") == 0
    t429 = server.requests[0]["time"]
    later = [r["time"] - t429 for r in server.requests[1:]]
    assert sum(dt < 0.5 for dt in later) <= 2  # at most what was already in flight or next
    assert sum(dt >= 0.95 for dt in later) >= 4


def test_client_errors_are_not_retried_and_do_not_stop_the_run(clotho, tmp_path):
    def script(caption: str, n: int) -> Reply:
        return Reply(status=400) if caption == CAPTIONS[1] else Reply()

    out = tmp_path / "gpt.json"
    with ChatServer(script) as server:
        assert run_cli(clotho, out, server, "--limit", "3") == 0
    assert server.asked()[CAPTIONS[1]] == 1
    lines = {ln["idx"]: ln for ln in cache_lines(out)}
    assert lines[1]["status"] == "failed" and "HTTP 400" in lines[1]["error"]
    assert lines[1]["requests"] == 1
    assert [r["idx"] for r in read_out(out)] == [0, 2]


def test_rejected_key_stops_the_run_and_is_never_logged(clotho, tmp_path, capsys, monkeypatch):
    secret = "sk-test-0123456789-do-not-log"
    monkeypatch.setenv("MY_LLM_KEY", secret)
    out = tmp_path / "gpt.json"
    logging.getLogger().setLevel(logging.DEBUG)  # httpx / httpcore debug output too
    with ChatServer(lambda c, n: Reply(status=401)) as server:
        rc = run_cli(clotho, out, server, "--api-key-env", "MY_LLM_KEY", debug=True)
    err = capsys.readouterr().err
    assert rc == 2
    assert "HTTP 401" in err and "MY_LLM_KEY" in err and "was refused" in err
    assert len(server.requests) <= 4  # stopped at once, not 15 captions x retries
    assert server.requests[0]["auth"] == f"Bearer {secret}"  # the key was sent...
    assert secret not in err  # ...and never shown
    assert not out.exists()


def test_key_is_sent_but_not_logged_or_stored(clotho, tmp_path, capsys, caplog, monkeypatch):
    secret = "sk-test-abcdef-secret"
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    out = tmp_path / "gpt.json"
    with caplog.at_level(logging.DEBUG), ChatServer() as server:
        assert run_cli(clotho, out, server, "--limit", "2", debug=True) == 0
    assert {r["auth"] for r in server.requests} == {f"Bearer {secret}"}
    captured = capsys.readouterr()
    assert "HTTP Request: POST" in caplog.text  # httpx's own debug/info lines were captured
    for text in (caplog.text, captured.out, captured.err, out.read_text(),
                 Path(f"{out}.cache.jsonl").read_text()):  # fmt: skip
        assert secret not in text


def test_exhausted_quota_and_wrong_model_stop_the_run(clotho, tmp_path, capsys):
    quota = b'{"error": {"message": "You exceeded your current quota, please check your plan."}}'
    with ChatServer(lambda c, n: Reply(status=429, raw=quota)) as server:
        assert run_cli(clotho, tmp_path / "a.json", server, "--concurrency", "1") == 2
    assert len(server.requests) == 1  # not retried: it cannot get better
    assert "quota is used up" in capsys.readouterr().err
    with ChatServer(lambda c, n: Reply(status=404)) as server:
        assert run_cli(clotho, tmp_path / "b.json", server, "--concurrency", "1") == 2
    err = capsys.readouterr().err
    assert "HTTP 404" in err and "check --base-url" in err and "--model (test-model)" in err
    assert len(server.requests) == 1


def test_missing_key_for_the_hosted_api_is_a_clear_error(clotho, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    rc = main(["augment", "--data", f"clotho:{clotho}", "--out", str(tmp_path / "o.json")])
    assert rc == 2
    assert "OPENAI_API_KEY is not set" in capsys.readouterr().err


def test_interrupted_run_resumes_without_asking_twice(clotho, tmp_path, capsys):
    """Ctrl-C while the 5th caption is in flight; the rerun asks only what has no answer yet."""

    def script(caption: str, n: int) -> Reply:
        if caption == CAPTIONS[4]:
            return Reply(action=lambda: os.kill(os.getpid(), signal.SIGINT), delay=1.0)
        return Reply()

    out = tmp_path / "gpt.json"
    with ChatServer(script) as first:
        assert run_cli(clotho, out, first, "--concurrency", "1") == 130
    assert "interrupted; finished work is kept" in capsys.readouterr().err
    assert [r["caption"] for r in first.requests] == CAPTIONS[:5]
    answered = {ln["caption"] for ln in cache_lines(out)}
    assert answered == set(CAPTIONS[:4])  # the one in flight was not recorded
    assert not out.exists()

    with ChatServer() as second:
        assert run_cli(clotho, out, second, "--concurrency", "2") == 0
    assert sorted(second.asked().values()) == [1] * 11
    assert set(second.asked()) == set(CAPTIONS[4:])  # none of the answered ones again
    assert [r["idx"] for r in read_out(out)] == list(range(15))
    assert "15 captions: 4 answered before, 11 asked" in capsys.readouterr().out


def test_limit_then_full_run_and_a_torn_cache_line(clotho, tmp_path, caplog):
    out = tmp_path / "gpt.json"
    with ChatServer() as first:
        assert run_cli(clotho, out, first, "--limit", "6") == 0
    assert [r["idx"] for r in read_out(out)] == list(range(6))
    cache = Path(f"{out}.cache.jsonl")
    with open(cache, "a", encoding="utf-8") as f:  # a crash in the middle of writing idx 6
        f.write('{"version": "' + cache_lines(out)[0]["version"] + '", "idx": 6, "capt')
    with caplog.at_level(logging.WARNING), ChatServer() as second:
        assert run_cli(clotho, out, second, "--concurrency", "2") == 0
    assert "partly written last line" in caplog.text
    assert set(second.asked()) == set(CAPTIONS[6:]) and max(second.asked().values()) == 1
    assert [r["idx"] for r in read_out(out)] == list(range(15))
    assert all(json.loads(ln) for ln in cache.read_text().splitlines())


def test_failed_captions_are_asked_again_only_with_retry_failed(clotho, tmp_path):
    out = tmp_path / "gpt.json"
    bad = Reply(content="no list here")
    with ChatServer(lambda c, n: bad if c == CAPTIONS[2] else Reply()) as first:
        assert run_cli(clotho, out, first, "--limit", "4", "--attempts", "1") == 0
    assert [r["idx"] for r in read_out(out)] == [0, 1, 3]
    with ChatServer() as second:
        assert run_cli(clotho, out, second, "--limit", "4") == 0
    assert second.requests == []
    with ChatServer() as third:
        assert run_cli(clotho, out, third, "--limit", "4", "--retry-failed") == 0
    assert third.asked() == Counter({CAPTIONS[2]: 1})
    assert [r["idx"] for r in read_out(out)] == [0, 1, 2, 3]


def test_a_changed_prompt_never_reuses_cached_answers(clotho, tmp_path):
    out = tmp_path / "gpt.json"
    with ChatServer() as first:
        assert run_cli(clotho, out, first, "--limit", "2") == 0
    template = tmp_path / "prompt.txt"
    template.write_text("Rephrase this {n} times. '{caption}' [{keywords}]\n", encoding="utf-8")
    with ChatServer() as second:
        assert run_cli(clotho, out, second, "--limit", "2", "--prompt-file", str(template)) == 0
    assert set(second.asked()) == set(CAPTIONS[:2])
    assert second.requests[0]["body"]["messages"][0]["content"].startswith("Rephrase this 5 times.")
    with ChatServer() as third:  # 3 variations: another version again
        assert run_cli(clotho, out, third, "--limit", "2", "--variations", "3") == 0
    assert len(third.requests) == 2
    assert all(len(r["variations"]) == 3 for r in read_out(out))
    assert len({ln["version"] for ln in cache_lines(out)}) == 3


def test_concurrency_and_rate_limit(clotho, tmp_path):
    out = tmp_path / "gpt.json"
    with ChatServer(lambda c, n: Reply(delay=0.3)) as server:
        assert run_cli(clotho, out, server, "--limit", "8", "--concurrency", "4") == 0
    assert server.max_in_flight == 4

    out2 = tmp_path / "gpt2.json"
    with ChatServer() as server:
        assert (
            run_cli(clotho, out2, server, "--limit", "5", "--concurrency", "5", "--rpm", "600") == 0
        )
    starts = sorted(r["time"] for r in server.requests)  # sent 60/600 = 0.1 s apart
    assert starts[-1] - starts[0] >= 0.38  # unpaced, all five would arrive within milliseconds
    assert min(b - a for a, b in itertools.pairwise(starts)) >= 0.03


def test_dry_run_shows_the_first_query_and_asks_nothing(clotho, tmp_path, capsys):
    out = tmp_path / "gpt.json"
    with ChatServer() as server:
        assert run_cli(clotho, out, server, "--dry-run", "--limit", "3") == 0
    assert server.requests == [] and not out.exists()
    printed = capsys.readouterr().out
    assert "3 captions, 3 to ask of test-model" in printed
    assert (
        "Generate 5 audio captions" in printed
        and "'a dog barks in the yard' [dog, bark, yard]" in printed
    )


def test_only_clotho_data_is_accepted(tmp_path, capsys):
    rc = main(["augment", "--data", f"audiocaps:{tmp_path}", "--out", str(tmp_path / "o.json"),
               "--base-url", "http://127.0.0.1:9/v1"])  # fmt: skip
    assert rc == 2 and "give --data clotho:ROOT" in capsys.readouterr().err
    rc = main(["augment", "--data", f"clotho:{tmp_path / 'nowhere'}", "--out", "o.json",
               "--base-url", "http://127.0.0.1:9/v1"])  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 2 and "clotho_captions_development.csv not found" in err


def test_request_body_options(clotho, tmp_path):
    out = tmp_path / "gpt.json"
    with ChatServer() as server:
        rc = run_cli(clotho, out, server, "--limit", "1", "--temperature", "0.2")
        rc2 = run_cli(clotho, out, server, "--limit", "2", "--temperature", "none",
                      "--max-tokens", "0")  # fmt: skip
    assert rc == rc2 == 0
    first, second = (r["body"] for r in server.requests)
    assert first["temperature"] == 0.2 and first["max_tokens"] == 400
    assert first["messages"] == [{"role": "user", "content": first["messages"][0]["content"]}]
    assert "temperature" not in second and "max_tokens" not in second
    assert [ln["temperature"] for ln in cache_lines(out)] == [0.2, None]
