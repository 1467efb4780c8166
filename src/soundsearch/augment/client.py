"""A small client for OpenAI-compatible chat-completions endpoints (hosted or local), over httpx.

One :class:`ChatClient` serves a whole run: it paces request starts (:class:`RateLimiter`), retries
what can succeed later (timeouts, connection errors, HTTP 408, 429 honouring ``Retry-After``, 5xx)
with exponential backoff and jitter, and sorts the rest into errors that stop the run (key, URL,
model or quota are wrong, so every request would fail: :class:`EndpointError`) and errors that only
lose one caption (:class:`RequestFailed`). The API key goes into a header and nowhere else.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import random
import time
from dataclasses import dataclass, field
from typing import Any, Self

from soundsearch.errors import UserError

log = logging.getLogger(__name__)

try:  # the `augment` extra
    import httpx
except ModuleNotFoundError:  # pragma: no cover - exercised only without the extra
    httpx = None  # type: ignore[assignment]


class EndpointError(UserError):
    """The endpoint refuses every request (bad key, unknown model, wrong URL): the run stops."""


class RequestFailed(Exception):
    """One request failed for good (retries used up, or a 4xx that retrying cannot fix)."""

    def __init__(self, message: str, requests: int = 1) -> None:
        super().__init__(message)
        self.requests = requests  # HTTP requests spent on it


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try one request before giving up on it."""

    retries: int = 5  # further tries after the first, for retryable failures
    backoff_s: float = 1.0  # first backoff; doubles each retry, times a jitter in [0.5, 1.0)
    max_backoff_s: float = 60.0  # cap of one exponential backoff
    max_retry_after_s: float = 600.0  # longest Retry-After we wait; longer ones are capped

    def backoff(self, retry: int) -> float:
        """Seconds to wait before retry number ``retry`` (0-based), with jitter."""
        return min(self.max_backoff_s, self.backoff_s * 2**retry) * random.uniform(0.5, 1.0)


@dataclass
class ChatReply:
    """The text of one answer and what it cost."""

    text: str
    usage: dict[str, int] = field(default_factory=dict)
    requests: int = 1  # HTTP requests this answer took (1 + retries)


class RateLimiter:
    """Spaces request starts at least ``60 / requests_per_minute`` seconds apart, for all workers.

    :meth:`defer` pushes the next start out (a 429 with ``Retry-After``), so the other workers stop
    hammering a server that asked everyone to wait, not only the worker that got the 429.
    """

    def __init__(self, requests_per_minute: float | None = None) -> None:
        self.interval = 60.0 / requests_per_minute if requests_per_minute else 0.0
        self._next = 0.0
        self._lock = asyncio.Lock()

    async def wait(self) -> None:
        async with self._lock:
            now = time.monotonic()
            delay = self._next - now
            self._next = max(now, self._next) + self.interval
        if delay > 0:
            await asyncio.sleep(delay)

    def defer(self, seconds: float) -> None:
        self._next = max(self._next, time.monotonic() + seconds)


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (seconds or an HTTP date), or ``None``."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _error_detail(resp: Any) -> str:
    """The server's own error message, short (OpenAI style ``{"error": {"message"}}`` or text)."""
    try:
        body = resp.json()
        err = body.get("error", body) if isinstance(body, dict) else body
        msg = err.get("message", err) if isinstance(err, dict) else err
        text = str(msg)
    except ValueError:
        text = resp.text
    text = " ".join(text.split())
    return text[:200] + ("..." if len(text) > 200 else "")


def _out_of_quota(status: int, detail: str) -> bool:
    """OpenAI answers 429 also when the account has no credit left: retrying cannot help."""
    return status == 429 and "quota" in detail.lower()


def _reply_from_json(body: Any) -> ChatReply:
    """Text and token usage of a chat-completions response; ValueError if it is not one."""
    try:
        message = body["choices"][0]["message"]
    except (KeyError, IndexError, TypeError) as e:
        raise ValueError("response has no choices[0].message") from e
    content = message.get("content") if isinstance(message, dict) else None
    usage = body.get("usage") or {}
    tokens = {
        k: int(usage[k])
        for k in ("prompt_tokens", "completion_tokens", "total_tokens")
        if isinstance(usage.get(k), int | float)
    }
    return ChatReply(text=content if isinstance(content, str) else "", usage=tokens)


class ChatClient:
    """Sends one user message per call to ``{base_url}/chat/completions``; use as async context."""

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        temperature: float | None = 1.0,
        max_tokens: int | None = None,
        timeout_s: float = 60.0,
        requests_per_minute: float | None = None,
        policy: RetryPolicy | None = None,
        api_key_env: str = "OPENAI_API_KEY",
    ) -> None:
        if httpx is None:
            raise UserError("augmentation needs httpx: pip install 'soundsearch[augment]'")
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model = model
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.timeout_s = timeout_s
        self.policy = policy or RetryPolicy()
        self.limiter = RateLimiter(requests_per_minute)
        self.api_key_env = api_key_env
        self._has_key = bool(api_key)
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.AsyncClient(headers=headers, timeout=httpx.Timeout(timeout_s))

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._http.aclose()

    def _body(self, query: str) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [{"role": "user", "content": query}],
        }
        if self.temperature is not None:
            body["temperature"] = self.temperature
        if self.max_tokens:
            body["max_tokens"] = self.max_tokens
        return body

    def _fatal(self, status: int, detail: str, location: str | None = None) -> EndpointError:
        if location:
            hint = f"it redirects to {location}: give that address as --base-url"
        elif status == 429:
            hint = "the account's quota is used up: check its plan and billing"
        elif status in (401, 403):
            hint = (
                f"the API key in the environment variable {self.api_key_env} was refused"
                if self._has_key
                else f"no API key was sent: set the environment variable {self.api_key_env}"
                " (or name another with --api-key-env)"
            )
        else:
            hint = f"check --base-url ({self.url}) and --model ({self.model})"
        return EndpointError(f"{self.url} answered HTTP {status} ({detail}); {hint}")

    async def _attempt(self, query: str) -> tuple[ChatReply | None, str, float | None]:
        """One HTTP request: (reply, "", None) or (None, why it failed, server-asked wait)."""
        await self.limiter.wait()
        try:
            resp = await self._http.post(self.url, json=self._body(query))
        except httpx.TimeoutException:
            return None, f"no answer within {self.timeout_s:g} s (timeout)", None
        except httpx.TransportError as e:
            return None, f"connection error: {type(e).__name__}: {e}", None
        status = resp.status_code
        if status == 200:
            try:
                return _reply_from_json(resp.json()), "", None
            except ValueError as e:
                return None, f"malformed response body: {e}", None
        detail = _error_detail(resp)
        if status in (401, 403, 404) or 300 <= status < 400 or _out_of_quota(status, detail):
            raise self._fatal(status, detail, resp.headers.get("location"))
        if status == 429 or status == 408 or status >= 500:
            wait = parse_retry_after(resp.headers.get("retry-after"))
            return None, f"HTTP {status}: {detail}", wait
        raise RequestFailed(f"HTTP {status}: {detail}")

    async def complete(self, query: str) -> ChatReply:
        """The model's answer to ``query``; retries transient failures, else RequestFailed."""
        for retry in range(self.policy.retries + 1):
            try:
                reply, why, server_wait = await self._attempt(query)
            except RequestFailed as e:
                e.requests = retry + 1
                raise
            if reply is not None:
                reply.requests = retry + 1
                return reply
            if retry == self.policy.retries:
                break
            if server_wait is not None:  # the server said how long: every worker waits that long
                delay = min(server_wait, self.policy.max_retry_after_s)
                self.limiter.defer(delay)
            else:
                delay = self.policy.backoff(retry)
                if why.startswith("HTTP 429"):  # too many requests from us, not from this one
                    self.limiter.defer(delay)
                else:
                    await asyncio.sleep(delay)
            log.debug("request failed (%s); retry %d in %.2f s", why, retry + 1, delay)
        tries = self.policy.retries + 1
        raise RequestFailed(f"{why} (gave up after {tries} tries)", requests=tries)
