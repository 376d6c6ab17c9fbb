"""The HTTP transport for OpenAI-compatible servers (vLLM): a lean keep-alive
HTTP/1.1 client (:mod:`therasim._internal.http1`; ``THERASIM_HTTP_CLIENT=aiohttp``
switches to raw aiohttp), one connection pool per event loop, retries with
backoff and jitter within a per-call budget, Retry-After honoured, and a circuit breaker per base URL that moves
courses to a healthy replica while one is failing.

The openai SDK's request transformation and langchain-openai's parse path cost
milliseconds of CPU per call; at hundreds of requests in flight that decides
whether one core can keep a GPU busy, so the hot path posts JSON directly.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import ssl
import threading
import time
import warnings
import weakref
from dataclasses import dataclass, field
from typing import Any

import orjson

from therasim._internal.http1 import StaleConnectionError
from therasim._internal.retry import RetryPolicy
from therasim.errors import TherasimError
from therasim.redact import redact_text, redact_url

__all__ = ["Breakers", "CircuitBreaker", "HttpChatClient", "ProviderError", "RetryPolicy", "endpoint", "tls_settings"]


def endpoint(base_url: str, path: str) -> str:
    """``path`` under ``base_url``, the base URL's query string kept after it
    (``https://gw/v1?api-version=1`` + ``/chat/completions`` ->
    ``https://gw/v1/chat/completions?api-version=1``)."""
    base, sep, query = base_url.partition("?")
    return base.rstrip("/") + path + sep + query


def tls_settings(ca_bundle: str | None, verify_tls: bool, urls: list[str]) -> ssl.SSLContext | None:
    """The TLS context for ``urls`` (None: the client's default, the system's CAs):
    ``ca_bundle`` checked (a clear error naming the field), and a loud warning when
    ``verify_tls`` is off. Both HTTP clients and streamed calls use it."""
    from therasim._internal.http1 import tls_context
    from therasim.errors import ConfigError

    if ca_bundle is not None:
        if not verify_tls:
            raise ConfigError("models.*: ca_bundle and verify_tls: false together; give ca_bundle (certificates checked against your CA) or verify_tls: false (not checked), not both")
        try:
            return tls_context(ca_bundle)
        except ValueError as e:
            raise ConfigError(f"models.*.{e}") from None
    if not verify_tls:
        https = [redact_url(u) for u in urls if u.startswith("https://")]
        warnings.warn(
            f"models.*.verify_tls is false: TLS certificates and host names of {', '.join(https) or 'the model servers'} are NOT checked; "
            "anyone on the network path can read and change the model calls. Use ca_bundle: /path/to/ca.pem for a private CA instead.",
            RuntimeWarning,
            stacklevel=3,
        )
        return tls_context(verify=False)
    return None


def _dumps(body: dict[str, Any]) -> bytes:
    """The request body as JSON bytes: orjson (several times faster than ``json`` on
    a prompt-sized body; the same JSON values), ``json`` for what orjson refuses."""
    try:
        return orjson.dumps(body)
    except TypeError:
        return json.dumps(body).encode()


def _loads(raw: bytes) -> Any:
    """A response body: orjson, else ``json`` (which raises ValueError on a bad body)."""
    try:
        return orjson.loads(raw)
    except ValueError:
        return json.loads(raw)


_RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})


class ProviderError(TherasimError):
    """A model call that failed after its retry budget (or could not be retried)."""

    def __init__(self, message: str, *, kind: str, status: int | None = None, attempts: int = 1, url: str | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.status = status
        self.attempts = attempts
        self.url = url


@dataclass
class CircuitBreaker:
    """Per base URL: opens after ``threshold`` consecutive failures, stays open for
    ``cooldown_s``, then lets one trial request through (half-open)."""

    threshold: int = 5
    cooldown_s: float = 5.0
    failures: int = 0
    opened_at: float | None = None
    trips: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def available(self) -> bool:
        if self.opened_at is None:  # closed: no lock needed to read one field
            return True
        with self._lock:
            if self.opened_at is None:
                return True
            return time.monotonic() - self.opened_at >= self.cooldown_s

    def success(self) -> None:
        if self.failures == 0 and self.opened_at is None:  # nothing to reset (the common case)
            return
        with self._lock:
            self.failures = 0
            self.opened_at = None

    def failure(self) -> bool:
        """Record a failure; True when this one opened the breaker."""
        with self._lock:
            self.failures += 1
            if self.failures >= self.threshold and (self.opened_at is None or time.monotonic() - self.opened_at >= self.cooldown_s):
                self.opened_at = time.monotonic()
                self.trips += 1
                return True
            return False


class Breakers:
    """The circuit breakers of a set of replicas, one per base URL. A
    :class:`therasim.providers.ModelPool` owns one, shared by every model it builds,
    so a replica that trips for one course is skipped by all of the run's courses
    (and by no other run in the process)."""

    def __init__(self) -> None:
        self._d: dict[str, CircuitBreaker] = {}
        self._lock = threading.Lock()

    def __getitem__(self, url: str) -> CircuitBreaker:
        with self._lock:
            b = self._d.get(url)
            if b is None:
                b = self._d[url] = CircuitBreaker()
            return b

    def snapshot(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            return {u: {"failures": b.failures, "open": b.opened_at is not None, "trips": b.trips} for u, b in self._d.items()}



def tls_message(url: str, e: BaseException) -> str:
    """What a refused server certificate means, and the fix."""
    from urllib.parse import urlsplit

    reason = getattr(e, "verify_message", None) or getattr(getattr(e, "certificate_error", None), "verify_message", None) or str(e)
    host = urlsplit(url).hostname or url
    return redact_text(
        f"model call to {url} failed: the server's TLS certificate was refused ({reason}). "
        "This is a configuration error, not retried: if the server uses a private or self-signed CA, "
        f"set models.*.ca_bundle to that CA's PEM file; if {host!r} is not a name the certificate was issued for, "
        "put one it was issued for in models.*.base_url"
    )


class HttpChatClient:
    """POST /chat/completions to one of ``urls`` (in preference order)."""

    def __init__(
        self, urls: list[str], *, api_key: str, timeout_s: float, policy: RetryPolicy, seed: int = 0, breakers: Breakers | None = None,
        ca_bundle: str | None = None, verify_tls: bool = True,
    ) -> None:
        if not urls:
            raise TherasimError("no base_url to send requests to")
        self.urls = [u.rstrip("/") for u in urls]
        self.ssl = tls_settings(ca_bundle, verify_tls, self.urls)
        self._chat_urls: dict[str, str] = {}
        if any(c in api_key for c in "\r\n\0"):  # it would split the request head (the lean client) or be refused (aiohttp)
            from therasim.errors import ConfigError

            raise ConfigError("the API key holds a line break or NUL; set the variable models.*.api_key_env names to the key alone")
        self.headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}
        self.timeout_s = timeout_s
        self.policy = policy
        self.breakers = Breakers() if breakers is None else breakers
        self._rng = random.Random(seed)
        self._sessions: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = weakref.WeakKeyDictionary()
        # the lean HTTP/1.1 client (therasim._internal.http1) unless THERASIM_HTTP_CLIENT=aiohttp
        self.lean = os.environ.get("THERASIM_HTTP_CLIENT", "").strip().lower() != "aiohttp"
        self._targets: dict[str, Any] = {}
        self._breaker_of: dict[str, CircuitBreaker] = {}  # the breakers' own objects, looked up once per URL
        self._redacted_urls: dict[str, str] = {}

    def _session(self) -> Any:
        loop = asyncio.get_running_loop()
        s = self._sessions.get(loop)
        if self.lean:
            if s is None:
                from therasim._internal.http1 import Http1Pool

                s = self._sessions[loop] = Http1Pool(self.headers, self.ssl)
            return s
        import aiohttp

        if s is None or s.closed:
            s = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=300, keepalive_timeout=60, ssl=True if self.ssl is None else self.ssl),
                timeout=aiohttp.ClientTimeout(total=self.timeout_s),
                json_serialize=json.dumps,
            )
            self._sessions[loop] = s
        return s

    async def aclose(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        s = self._sessions.pop(loop, None)
        if s is None:
            return
        if self.lean:
            s.close()
        elif not s.closed:
            await s.close()

    def _breaker(self, url: str) -> CircuitBreaker:
        b = self._breaker_of.get(url)
        if b is None:
            b = self._breaker_of[url] = self.breakers[url]
        return b

    def _pick(self) -> str:
        for u in self.urls:
            if self._breaker(u).available():
                return u
        return self.urls[0]  # all open: keep trying the preferred one (it may have recovered)

    def chat_sync(self, body: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """:meth:`chat` for a caller without an event loop (LangChain's ``invoke``): the
        same request, retries and breakers, on a loop of its own (in a worker thread
        when this thread already runs one)."""

        async def once() -> tuple[dict[str, Any], dict[str, Any]]:
            try:
                return await self.chat(body)
            finally:
                await self.aclose()

        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(once())
        import concurrent.futures

        with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="therasim-http-sync") as pool:
            return pool.submit(asyncio.run, once()).result()

    def _tls_errors(self) -> tuple[type[BaseException], ...]:
        if self.lean:
            return (ssl.SSLCertVerificationError,)
        import aiohttp

        return (ssl.SSLCertVerificationError, aiohttp.ClientConnectorCertificateError)

    def _connection_errors(self) -> tuple[type[BaseException], ...]:
        if self.lean:
            return (ConnectionError, OSError)
        import aiohttp

        return (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError, aiohttp.ClientConnectionError, ConnectionError)

    def _redacted(self, url: str) -> str:
        r = self._redacted_urls.get(url)
        if r is None:
            r = self._redacted_urls[url] = redact_url(url)
        return r

    async def _post(self, url: str, payload: bytes, fresh: bool = False) -> tuple[int, str | None, bytes]:
        """One attempt: status, Retry-After and body of the reply (``fresh``: on a new
        connection, the lean client)."""
        if self.lean:
            from therasim._internal.http1 import Target

            t = self._targets.get(url)
            if t is None:
                t = self._targets[url] = Target(url)
            loop = asyncio.get_running_loop()
            pool = self._sessions.get(loop)
            if pool is None:
                pool = self._session()
            status, headers, raw = await pool.post(t, "/chat/completions", payload, self.timeout_s, fresh, loop)
            return status, headers.get("retry-after"), raw
        u = self._chat_urls.get(url)
        if u is None:
            u = self._chat_urls[url] = endpoint(url, "/chat/completions")
        async with self._session().post(u, data=payload, headers=self.headers) as resp:
            return resp.status, resp.headers.get("Retry-After"), await resp.read()

    async def chat(self, body: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """The parsed response and transport info (attempts, retries, errors, url)."""
        errors: list[str] = []
        t0 = time.monotonic()
        payload = _dumps(body)
        n = 0
        stale = 0  # 1 once a request lost to a stale kept-alive connection was sent again
        fresh = False
        while True:
            url = self._pick()
            status: int | None = None
            retry_after: float | None = None
            kind = "ok"
            try:
                status, ra, raw = await self._post(url, payload, fresh)
                if status == 200:
                    data = _loads(raw)
                    choice = data["choices"][0]["message"]
                    if not isinstance(choice.get("content"), (str, type(None))):
                        raise ValueError("message.content is not text")
                    self._breaker(url).success()
                    return data, {"attempts": n + 1 + stale, "retries": n + stale, "errors": [redact_text(x) for x in errors] if errors else [], "url": self._redacted(url)}
                if ra:
                    try:
                        retry_after = float(ra)
                    except ValueError:
                        retry_after = None
                kind = f"http_{status}"
                detail = raw[:200].decode("utf-8", "replace")
            except self._tls_errors() as e:  # a configuration error: retrying cannot help
                self._breaker(url).failure()
                raise ProviderError(tls_message(url, e), kind="tls", attempts=n + 1 + stale, url=redact_url(url)) from None
            except asyncio.TimeoutError:
                kind, detail = "timeout", f"no reply within {self.timeout_s:g} s"
            except self._connection_errors() as e:
                kind, detail = "connection", f"{type(e).__name__}: {e}"[:200]
                if not stale and self.lean and self.policy.max_retries != 0 and isinstance(e, StaleConnectionError):
                    # the server closed an idle kept-alive connection as this request went out
                    # (no byte of a reply came): sent again at once on a fresh connection,
                    # once per call; recorded, but neither a replica failure nor a backoff step
                    errors.append(f"stale: {detail}")
                    stale, fresh = 1, True
                    continue
            except (ValueError, KeyError, IndexError, TypeError) as e:  # malformed or truncated body
                kind, detail = "malformed", f"{type(e).__name__}: {e}"[:200]
            errors.append(f"{kind}: {detail}")
            retryable = kind in ("timeout", "connection", "malformed") or (status in _RETRY_STATUS)
            if self._breaker(url).failure() and len(self.urls) > 1:
                errors.append(f"circuit opened for {redact_url(url)}; moving to another replica")
            elapsed = time.monotonic() - t0
            why = "not retryable" if not retryable else self.policy.give_up(n, elapsed)
            if why is not None:
                raise ProviderError(redact_text(f"model call to {url} failed after {n + 1 + stale} attempt(s) ({why}); last: {errors[-1]}"), kind=kind, status=status, attempts=n + 1 + stale, url=redact_url(url))
            await asyncio.sleep(min(self.policy.delay(n, retry_after, self._rng), max(0.0, self.policy.budget_s - elapsed)))
            n += 1
            fresh = False
