"""The lean HTTP/1.1 client (therasim._internal.http1) against a raw asyncio server
that answers with hand-written replies: each framing, keep-alive reuse, closes,
timeouts and replies that are not HTTP."""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import Callable
from typing import Any

import pytest

from therasim._internal.http import HttpChatClient, ProviderError
from therasim._internal.http1 import Http1Pool, ResponseError, Target
from therasim._internal.retry import RetryPolicy

Reply = Callable[[bytes], bytes | None]  # request bytes -> reply bytes (None: close without a reply)


async def _serve(replies: list[Reply], log: list[Any]) -> tuple[asyncio.AbstractServer, int]:
    """A server that reads one request at a time (head + Content-Length body) and
    writes the next reply in ``replies``; logs (connection number, request)."""
    conns = 0

    async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        nonlocal conns
        conns += 1
        me = conns
        try:
            while replies:
                head = await r.readuntil(b"\r\n\r\n")
                length = next(int(ln.split(b":")[1]) for ln in head.split(b"\r\n") if ln.lower().startswith(b"content-length:"))
                body = await r.readexactly(length)
                log.append((me, head + body))
                out = replies.pop(0)(head + body)
                if out is None:
                    w.transport.abort()
                    return
                w.write(out)
                await w.drain()
                if b"connection: close" in out.lower():
                    w.close()
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            pass

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


def _ok(body: bytes, extra: str = "") -> Reply:
    return lambda req: f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n{extra}\r\n".encode() + body


def _run(replies: list[Reply], fn: Callable[[Http1Pool, Target], Any]) -> tuple[Any, list[Any]]:
    log: list[Any] = []

    async def go() -> Any:
        server, port = await _serve(replies, log)
        pool = Http1Pool({"Authorization": "Bearer k", "Content-Type": "application/json"})
        try:
            return await fn(pool, Target(f"http://127.0.0.1:{port}/v1"))
        finally:
            pool.close()
            server.close()
            await server.wait_closed()

    return asyncio.run(go()), log


def test_content_length_reply_and_keep_alive_reuse() -> None:
    async def two(pool: Http1Pool, t: Target) -> Any:
        a = await pool.post(t, "/chat/completions", b'{"q":1}', 5)
        b = await pool.post(t, "/chat/completions", b'{"q":22}', 5)
        return a, b, pool.connections

    (a, b, opened), log = _run([_ok(b'{"a":1}'), _ok(b'{"b":2}', "Retry-After: 3\r\n")], two)
    assert a == (200, {"content-type": "application/json", "content-length": "7"}, b'{"a":1}')
    assert b[0] == 200 and b[2] == b'{"b":2}' and b[1]["retry-after"] == "3"
    assert opened == 1 and [c for c, _ in log] == [1, 1]  # one connection, reused
    req = log[1][1]
    assert req.startswith(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:")
    assert b"\r\nAuthorization: Bearer k\r\n" in req and b"\r\nContent-Length: 8\r\n\r\n" in req and req.endswith(b'{"q":22}')


def test_chunked_gzip_and_continue_replies() -> None:
    payload = b'{"choices":[{"message":{"content":"hi"}}]}'
    z = gzip.compress(payload)
    chunked = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Encoding: gzip\r\n\r\n"
    chunked += b"%x;ext=1\r\n%s\r\n%x\r\n%s\r\n0\r\nX-Trailer: 1\r\n\r\n" % (5, z[:5], len(z) - 5, z[5:])

    async def one(pool: Http1Pool, t: Target) -> Any:
        return await pool.post(t, "/x", b"{}", 5)

    (status, _headers, body), _ = _run([lambda req: chunked], one)
    assert status == 200 and body == payload


def test_close_delimited_and_connection_close_replies_are_not_reused() -> None:
    async def two(pool: Http1Pool, t: Target) -> Any:
        a = await pool.post(t, "/x", b"{}", 5)
        b = await pool.post(t, "/x", b"{}", 5)
        return a[2], b[2], pool.connections

    first = _ok(b"one", "Connection: close\r\n")
    (a, b, opened), log = _run([first, _ok(b"two")], two)
    assert (a, b, opened) == (b"one", b"two", 2) and [c for c, _ in log] == [1, 2]


def test_errors_are_connection_errors_or_timeouts() -> None:
    async def one(pool: Http1Pool, t: Target) -> Any:
        try:
            return await pool.post(t, "/x", b"{}", 0.5)
        except BaseException as e:
            return e

    reset, _ = _run([lambda req: None], one)
    assert isinstance(reset, ResponseError) and "before the reply" in str(reset)
    truncated, _ = _run([lambda req: b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"half\": "], one)
    assert isinstance(truncated, TimeoutError)  # the server keeps the connection open: the deadline ends it
    not_http, _ = _run([lambda req: b"SSH-2.0-OpenSSH\r\n\r\n"], one)
    assert isinstance(not_http, ResponseError) and "not an HTTP/1.x reply" in str(not_http)

    async def hang(pool: Http1Pool, t: Target) -> Any:
        try:
            return await pool.post(t, "/x", b"{}", 0.3)
        except BaseException as e:
            return e, list(pool._busy), {k: len(v) for k, v in pool._idle.items()}

    (err, busy, idle), _ = _run([lambda req: b""], hang)  # reads the request, never answers
    assert isinstance(err, TimeoutError) and busy == [] and not any(idle.values())


def test_refused_connection_is_a_connection_error() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    async def go() -> BaseException | None:
        pool = Http1Pool({})
        try:
            await pool.post(Target(f"http://127.0.0.1:{port}"), "/x", b"{}", 2)
        except BaseException as e:
            return e
        return None

    assert isinstance(asyncio.run(go()), ConnectionError)


def test_target_parses_base_urls() -> None:
    t = Target("https://api.example.org/v1/")
    assert (t.tls, t.host, t.port, t.path, t.host_header()) == (True, "api.example.org", 443, "/v1", "api.example.org")
    t = Target("http://[::1]:8000/v1")
    assert (t.host, t.port, t.host_header()) == ("::1", 8000, "[::1]:8000")
    with pytest.raises(ValueError, match="http:// or https://"):
        Target("ftp://x/v1")


@pytest.mark.parametrize("lean", [True, False])
def test_chat_client_retries_a_reset_and_a_503_then_answers(lean: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same retry behaviour on either transport: a reset and a 503 (Retry-After)
    are retried, counted, and the third attempt's reply is returned."""
    monkeypatch.setenv("THERASIM_HTTP_CLIENT", "lean" if lean else "aiohttp")
    ok = b'{"choices":[{"message":{"role":"assistant","content":"fine"}}],"usage":{}}'
    busy = b"HTTP/1.1 503 Busy\r\nRetry-After: 0.01\r\nContent-Length: 4\r\n\r\nbusy"
    log: list[Any] = []

    async def go() -> Any:
        server, port = await _serve([lambda req: None, lambda req: busy, _ok(ok)], log)
        client = HttpChatClient([f"http://127.0.0.1:{port}/v1"], api_key="k", timeout_s=2, policy=RetryPolicy(max_retries=3, base_s=0.01, jitter=False))
        assert client.lean is lean
        try:
            return await client.chat({"model": "m", "messages": []})
        finally:
            await client.aclose()
            server.close()
            await server.wait_closed()

    data, info = asyncio.run(go())
    assert data["choices"][0]["message"]["content"] == "fine"
    assert info["attempts"] == 3 and info["retries"] == 2
    assert info["errors"][0].startswith("connection: ") and info["errors"][1] == "http_503: busy"


def test_chat_client_gives_up_with_a_typed_error() -> None:
    async def go() -> BaseException | None:
        server, port = await _serve([lambda req: None] * 3, [])
        client = HttpChatClient([f"http://127.0.0.1:{port}/v1"], api_key="k", timeout_s=2, policy=RetryPolicy(max_retries=1, base_s=0.01, jitter=False))
        try:
            await client.chat({"model": "m", "messages": []})
        except ProviderError as e:
            return e
        finally:
            await client.aclose()
            server.close()
            await server.wait_closed()
        return None

    e = asyncio.run(go())
    assert isinstance(e, ProviderError) and e.kind == "connection" and e.attempts == 2
