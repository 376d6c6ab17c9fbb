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

Reply = Callable[[bytes], bytes | None]


@pytest.fixture(autouse=True, params=["asyncio", "uvloop"])
def event_loop_kind(request: pytest.FixtureRequest) -> Any:
    """Every test on asyncio's loop and on uvloop's (the loop ``therasim run`` starts
    when uvloop is installed: therasim.runner.event_loop_factory), whose transports are
    libuv's: the same framing, reuse, closes, timeouts and TLS errors on both."""
    if request.param == "uvloop":
        uvloop = pytest.importorskip("uvloop")
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
        try:
            yield request.param
        finally:
            asyncio.set_event_loop_policy(None)
    else:
        yield request.param  # request bytes -> reply bytes (None: close without a reply)


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


async def _chat_error(client: HttpChatClient, server: asyncio.AbstractServer, body: dict[str, Any]) -> ProviderError | None:
    """The ProviderError one chat call ends in (None if it succeeds); closes the client and the server."""
    try:
        await client.chat(body)
    except ProviderError as e:
        return e
    finally:
        await client.aclose()
        server.close()
        await server.wait_closed()
    return None


def test_chat_client_gives_up_with_a_typed_error() -> None:
    async def go() -> BaseException | None:
        server, port = await _serve([lambda req: None] * 3, [])
        client = HttpChatClient([f"http://127.0.0.1:{port}/v1"], api_key="k", timeout_s=2, policy=RetryPolicy(max_retries=1, base_s=0.01, jitter=False))
        return await _chat_error(client, server, {"model": "m", "messages": []})

    e = asyncio.run(go())
    assert isinstance(e, ProviderError) and e.kind == "connection" and e.attempts == 2


# --- hostile servers: scripted per connection, exact bytes and timing --------------------

Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter, int], Any]  # (reader, writer, connection number)


async def _read_request(r: asyncio.StreamReader) -> tuple[bytes, bytes]:
    head = await r.readuntil(b"\r\n\r\n")
    length = next(int(ln.split(b":")[1]) for ln in head.split(b"\r\n") if ln.lower().startswith(b"content-length:"))
    return head, await r.readexactly(length)


async def _trickle(w: asyncio.StreamWriter, data: bytes, step: int = 1, pause: float = 0.0005) -> None:
    """Write ``data`` in pieces of ``step`` bytes, each flushed (TCP_NODELAY) and paused."""
    for i in range(0, len(data), step):
        w.write(data[i : i + step])
        await w.drain()
        await asyncio.sleep(pause)


async def _post_twice(pool: Http1Pool, t: Target, port: int) -> Any:
    """Two posts on one pool: both replies (or errors) and the connections it opened."""
    return await _post_or_error(pool, t), await _post_or_error(pool, t), pool.connections


def _scripted(script: Script, fn: Callable[[Http1Pool, Target, int], Any], ssl_ctx: Any = None, scheme: str = "http") -> Any:
    async def go() -> Any:
        conns = 0

        async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            nonlocal conns
            conns += 1
            try:
                await script(r, w, conns)
            except (asyncio.IncompleteReadError, ConnectionError):
                pass
            finally:
                w.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=ssl_ctx)
        port = server.sockets[0].getsockname()[1]
        pool = Http1Pool({"Content-Type": "application/json"})
        try:
            return await asyncio.wait_for(fn(pool, Target(f"{scheme}://127.0.0.1:{port}/v1"), port), 10)
        finally:
            pool.close()
            server.close()
            await server.wait_closed()

    return asyncio.run(go())


async def _post_or_error(pool: Http1Pool, t: Target, timeout: float = 2.0) -> Any:
    try:
        return await pool.post(t, "/chat/completions", b"{}", timeout)
    except (ConnectionError, TimeoutError) as e:
        return e


def _one(script: Script, timeout: float = 2.0) -> Any:
    return _scripted(script, lambda pool, t, port: _post_or_error(pool, t, timeout))


def test_chunked_reply_split_across_reads_with_extensions_trailers_and_a_split_last_chunk() -> None:
    payload = b'{"choices":[{"message":{"content":"' + b"x" * 300 + b'"}}]}'

    async def script(r: asyncio.StreamReader, w: asyncio.StreamWriter, n: int) -> None:
        for _ in range(2):
            await _read_request(r)
            head = b"HTTP/1.1 200 OK\r\ntransfer-ENCODING: Chunked\r\n\r\n"
            chunks = b"".join(b"%X;name=\"v\"\r\n%s\r\n" % (len(p), p) for p in (payload[:7], payload[7:200], payload[200:]))
            await _trickle(w, head + chunks, step=3)
            await _trickle(w, b"0\r\nX-Checksum: abc\r\nX-Other: 1\r\n", step=1)
            await asyncio.sleep(0.01)
            w.write(b"\r\n")  # the blank line ending the trailers, in a read of its own
            await w.drain()

    a, b, opened = _scripted(script, _post_twice)
    assert a[0] == 200 and a[2] == payload and b[2] == payload and opened == 1  # framing ended exactly: reused


def test_content_length_reply_byte_by_byte_and_header_case() -> None:
    body = b'{"ok":true}'

    async def script(r: asyncio.StreamReader, w: asyncio.StreamWriter, n: int) -> None:
        await _read_request(r)
        await _trickle(w, b"HTTP/1.1 200 OK\r\nCONTENT-LENGTH:%d\r\ncontent-type :  application/json \r\n\r\n%s" % (len(body), body))
        await r.read()

    status, headers, got = _one(script)
    assert (status, got) == (200, body) and headers["content-type"] == "application/json"


@pytest.mark.parametrize(
    "head",
    [
        b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n",  # no length: read to EOF
        b"HTTP/1.0 200 OK\r\n\r\n",  # HTTP/1.0, no length
        b"HTTP/1.0 200 OK\r\nContent-Length: 11\r\n\r\n",  # HTTP/1.0 with a length, server closes
    ],
)
def test_close_delimited_and_http10_replies(head: bytes) -> None:
    async def script(r: asyncio.StreamReader, w: asyncio.StreamWriter, n: int) -> None:
        await _read_request(r)
        await _trickle(w, head + b'{"ok":true}', step=4)

    a, b, opened = _scripted(script, _post_twice)
    assert a[0] == 200 and a[2] == b'{"ok":true}' and b[2] == b'{"ok":true}' and opened == 2


def test_server_closing_an_idle_kept_alive_connection_is_not_reused() -> None:
    async def script(r: asyncio.StreamReader, w: asyncio.StreamWriter, n: int) -> None:
        await _read_request(r)
        w.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\nconn%d" % (5, n))
        await w.drain()  # keep-alive reply, then the server's idle timeout closes it

    async def two(pool: Http1Pool, t: Target, port: int) -> Any:
        a = await _post_or_error(pool, t)
        await asyncio.sleep(0.05)
        b = await _post_or_error(pool, t)
        return a[2], b[2], pool.connections

    assert _scripted(script, two) == (b"conn1", b"conn2", 2)


def test_stale_connection_race_is_retried_by_the_chat_client() -> None:
    """The server closes a kept-alive connection just as the next request arrives:
    the pool reports a ConnectionError and the chat client's retry takes it."""
    ok = b'{"choices":[{"message":{"content":"fine"}}]}'

    async def go() -> Any:
        conns = 0

        async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            nonlocal conns
            conns += 1
            try:
                await _read_request(r)
                w.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(ok), ok))
                await w.drain()
                if conns == 1:
                    await _read_request(r)  # the second request on the kept-alive connection: dropped
                    w.transport.abort()
            except (asyncio.IncompleteReadError, ConnectionError):
                pass

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        client = HttpChatClient([f"http://127.0.0.1:{port}/v1"], api_key="k", timeout_s=2, policy=RetryPolicy(max_retries=1, base_s=0.0, jitter=False))
        try:
            a = await client.chat({"messages": []})
            b = await client.chat({"messages": []})
            return a, b
        finally:
            await client.aclose()
            server.close()
            await server.wait_closed()

    (_, ia), (db, ib) = asyncio.run(go())
    assert ia["attempts"] == 1 and db["choices"][0]["message"]["content"] == "fine"
    # sent again at once on a fresh connection: recorded, not a backoff step
    assert ib["attempts"] == 2 and ib["errors"][0].startswith("stale: StaleConnectionError: kept-alive connection")


@pytest.mark.parametrize(
    "reply",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"half\": ",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n20\r\n{\"half\": ",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{\"a\":\r\n",  # ends between chunks
        b"HTTP/1.1 200 OK\r\nContent-Le",  # ends in the head
    ],
)
def test_server_closing_mid_reply_is_a_connection_error(reply: bytes) -> None:
    async def script(r: asyncio.StreamReader, w: asyncio.StreamWriter, n: int) -> None:
        await _read_request(r)
        w.write(reply)
        await w.drain()

    err = _one(script)
    assert isinstance(err, ResponseError) and "before the reply was complete" in str(err)


def test_reset_mid_close_delimited_body_is_retried_as_malformed() -> None:
    """A close-delimited body cut by a reset ends the reply (as aiohttp does: a server
    that closes with the request unread sends RST after a whole reply); the cut JSON
    is then a malformed reply, which the chat client retries."""
    import socket

    ok = b'{"choices":[{"message":{"content":"fine"}}]}'

    async def go() -> Any:
        conns = 0

        async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            nonlocal conns
            conns += 1
            await _read_request(r)
            if conns == 1:
                w.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                w.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + ok[:20])
                await w.drain()
                await asyncio.sleep(0.02)
                w.close()  # linger 0: RST
                return
            w.write(b"HTTP/1.0 200 OK\r\n\r\n" + ok)
            await w.drain()
            w.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        client = HttpChatClient([f"http://127.0.0.1:{port}/v1"], api_key="k", timeout_s=2, policy=RetryPolicy(max_retries=1, base_s=0.0, jitter=False))
        try:
            return await client.chat({"messages": []})
        finally:
            await client.aclose()
            server.close()
            await server.wait_closed()

    data, info = asyncio.run(go())
    assert data["choices"][0]["message"]["content"] == "fine"
    assert info["attempts"] == 2 and info["errors"][0].startswith(("malformed: ", "connection: "))


@pytest.mark.parametrize("trickle", [False, True])
def test_timeout_is_honoured_for_a_silent_or_trickling_server(trickle: bool) -> None:
    import time

    async def script(r: asyncio.StreamReader, w: asyncio.StreamWriter, n: int) -> None:
        await _read_request(r)
        if trickle:  # a head, then a byte of body every 20 ms: never complete
            w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
            while True:
                await asyncio.sleep(0.02)
                w.write(b"x")
                await w.drain()
        await asyncio.sleep(5)

    t0 = time.monotonic()
    err = _one(script, timeout=0.3)
    assert isinstance(err, TimeoutError) and time.monotonic() - t0 < 2


def test_interim_100_continue_in_its_own_reads() -> None:
    async def script(r: asyncio.StreamReader, w: asyncio.StreamWriter, n: int) -> None:
        await _read_request(r)
        await _trickle(w, b"HTTP/1.1 100 Continue\r\n\r\n", step=5)
        await asyncio.sleep(0.01)
        await _trickle(w, b"HTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}", step=7)
        await r.read()

    status, headers, body = _one(script)
    assert (status, body) == (200, b"{}") and "link" not in headers


@pytest.mark.parametrize("chunked", [False, True])
def test_several_megabyte_body(chunked: bool) -> None:
    big = b'{"choices":[{"message":{"content":"' + bytes(range(97, 123)) * (6 * 1024 * 1024 // 26) + b'"}}]}'

    async def script(r: asyncio.StreamReader, w: asyncio.StreamWriter, n: int) -> None:
        await _read_request(r)
        if chunked:
            w.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            for i in range(0, len(big), 100_003):
                part = big[i : i + 100_003]
                w.write(b"%x\r\n%s\r\n" % (len(part), part))
            w.write(b"0\r\n\r\n")
        else:
            w.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(big), big))
        await w.drain()
        await r.read()

    status, _, body = _one(script, timeout=5)
    assert status == 200 and len(body) == len(big) and body == big


def test_many_concurrent_requests_on_one_pool_never_mix_replies() -> None:
    import random

    async def script(r: asyncio.StreamReader, w: asyncio.StreamWriter, n: int) -> None:
        rng = random.Random(n)
        while True:
            _, body = await _read_request(r)
            await asyncio.sleep(rng.random() * 0.01)
            out = b'{"echo":' + body + b"}"
            if rng.random() < 0.5:
                await _trickle(w, b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(out), out), step=rng.randint(1, 40), pause=0)
            else:
                w.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n" % (len(out), out))
                await w.drain()

    async def many(pool: Http1Pool, t: Target, port: int) -> Any:
        async def one(i: int) -> tuple[int, bytes]:
            await asyncio.sleep((i % 7) * 0.001)
            _, _, body = await pool.post(t, "/chat/completions", b'{"id":%d}' % i, 5)
            return i, body

        out: list[tuple[int, bytes]] = []
        for _ in range(3):  # rounds reuse the pool's idle connections
            out += await asyncio.gather(*(one(i) for i in range(60)))
        return out, pool.connections

    out, opened = _scripted(script, many)
    assert len(out) == 180 and all(body == b'{"echo":{"id":%d}}' % i for i, body in out)
    assert opened <= 180


@pytest.mark.parametrize("reply", [b"HTTP/1.1 204 No Content\r\n\r\n", b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"])
def test_empty_bodies_end_the_reply_and_keep_the_connection(reply: bytes) -> None:
    async def script(r: asyncio.StreamReader, w: asyncio.StreamWriter, n: int) -> None:
        while True:
            await _read_request(r)
            w.write(reply)
            await w.drain()

    a, b, opened = _scripted(script, _post_twice)
    assert a[2] == b"" and b[2] == b"" and opened == 1


@pytest.mark.parametrize(
    "status_line",
    [b"HTTP/1.1 OK\r\n", b"HTTP/1.1\r\n", b"HTP/1.1 200 OK\r\n", b"HTTP/1.1 2OO OK\r\n", b"200 OK\r\n"],
)
def test_malformed_status_line_is_a_connection_error(status_line: bytes) -> None:
    async def script(r: asyncio.StreamReader, w: asyncio.StreamWriter, n: int) -> None:
        await _read_request(r)
        w.write(status_line + b"Content-Length: 2\r\n\r\n{}")
        await w.drain()
        await r.read()

    err = _one(script)
    assert isinstance(err, ResponseError) and "not an HTTP/1.x reply" in str(err)


@pytest.mark.parametrize("length", [b"-1", b"abc", b"5, 6"])
def test_bad_content_length_is_refused(length: bytes) -> None:
    async def script(r: asyncio.StreamReader, w: asyncio.StreamWriter, n: int) -> None:
        await _read_request(r)
        w.write(b"HTTP/1.1 200 OK\r\nContent-Length: " + length + b"\r\n\r\n{\"a\":1}")
        await w.drain()
        await r.read()

    err = _one(script)
    assert isinstance(err, ResponseError) and "Content-Length" in str(err)


def test_bytes_beyond_the_declared_length_do_not_leak_into_the_next_reply() -> None:
    """A server whose Content-Length undercounts: the surplus is not the next reply's
    start, and the connection is not reused."""

    async def script(r: asyncio.StreamReader, w: asyncio.StreamWriter, n: int) -> None:
        while True:
            await _read_request(r)
            w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nstale")
            await w.drain()

    async def two(pool: Http1Pool, t: Target, port: int) -> Any:
        a = await _post_or_error(pool, t)
        b = await _post_or_error(pool, t)
        return a[2], b[2], pool.connections

    assert _scripted(script, two) == (b"{}", b"{}", 2)


@pytest.mark.parametrize("lean", [True, False])
def test_json_error_reply_reaches_the_callers_error(lean: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("THERASIM_HTTP_CLIENT", "lean" if lean else "aiohttp")
    err = b'{"error":{"message":"This model\'s maximum context length is 4096 tokens","type":"invalid_request_error"}}'

    async def go() -> Any:
        async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            try:
                while True:
                    await _read_request(r)
                    w.write(b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (len(err), err))
                    await w.drain()
            except (asyncio.IncompleteReadError, ConnectionError):
                pass

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        client = HttpChatClient([f"http://127.0.0.1:{port}/v1"], api_key="k", timeout_s=2, policy=RetryPolicy(max_retries=2, base_s=0.0, jitter=False))
        return await _chat_error(client, server, {"messages": []})

    e = asyncio.run(go())
    assert isinstance(e, ProviderError) and e.status == 400 and e.kind == "http_400" and e.attempts == 1
    assert "maximum context length is 4096 tokens" in str(e)


def _self_signed(tmp_path: Any) -> tuple[Any, Any]:
    """A self-signed CA certificate for 127.0.0.1 (and no host name): its PEM file and
    a server context presenting it."""
    import datetime
    import ipaddress
    import ssl

    pytest.importorskip("cryptography")
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "therasim test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key()).serial_number(1)
        .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_pem, key_pem = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_pem.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert_pem, key_pem)
    return cert_pem, server_ctx


def test_https_with_a_private_ca_through_ssl_cert_file(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """An enterprise/self-signed CA named by SSL_CERT_FILE is trusted (the default
    context reads it); an untrusted certificate fails with the ssl module's error."""
    import ssl

    cert_pem, server_ctx = _self_signed(tmp_path)

    async def script(r: asyncio.StreamReader, w: asyncio.StreamWriter, n: int) -> None:
        while True:
            await _read_request(r)
            w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
            await w.drain()

    async def refused(pool: Http1Pool, t: Target, port: int) -> Any:
        try:
            return await pool.post(t, "/x", b"{}", 2)
        except OSError as e:  # ssl.SSLCertVerificationError: the chat client's "tls" error (not retried)
            return e

    untrusted = _scripted(script, refused, ssl_ctx=server_ctx, scheme="https")
    assert isinstance(untrusted, ssl.SSLCertVerificationError) and "CERTIFICATE_VERIFY_FAILED" in str(untrusted)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert_pem))
    a, b, opened = _scripted(script, _post_twice, ssl_ctx=server_ctx, scheme="https")
    assert a[:1] == (200,) and a[2] == b"{}" and b[2] == b"{}" and opened == 1


@pytest.mark.parametrize("connection", [b"close", b"Close", b"TE, close", b"close,TE"])
def test_connection_close_in_any_form_is_not_reused(connection: bytes) -> None:
    """The server means to close (it stops reading after its reply, closing a moment
    later): a second request must go on a new connection, whatever the header's case
    or token list."""

    async def script(r: asyncio.StreamReader, w: asyncio.StreamWriter, n: int) -> None:
        await _read_request(r)
        w.write(b"HTTP/1.1 200 OK\r\nConnection: " + connection + b"\r\nContent-Length: 5\r\n\r\nconn%d" % n)
        await w.drain()
        await asyncio.sleep(0.3)

    async def two(pool: Http1Pool, t: Target, port: int) -> Any:
        a = await _post_or_error(pool, t)
        b = await _post_or_error(pool, t, timeout=1)
        return a[2], b if isinstance(b, BaseException) else b[2]

    assert _scripted(script, two) == (b"conn1", b"conn2")


def test_request_head_follows_each_target_even_when_a_dead_ones_id_is_reused() -> None:
    """Targets made and dropped one after another (CPython reuses their memory, so
    their ids): each request still goes to its own target's path."""

    async def script(r: asyncio.StreamReader, w: asyncio.StreamWriter, n: int) -> None:
        while True:
            head, _ = await _read_request(r)
            path = head.split(b" ")[1]
            w.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(path), path))
            await w.drain()

    async def many(pool: Http1Pool, t: Target, port: int) -> Any:
        got = []
        for i in range(20):
            got.append((await pool.post(Target(f"http://127.0.0.1:{port}/v{i}"), "/x", b"{}", 2))[2])
        return got

    assert _scripted(script, many) == [b"/v%d/x" % i for i in range(20)]


# --- gaps: query strings, TLS settings and errors, lenient and strict parsing, stale connections ---


def _chat_server(reply: bytes, log: list[bytes] | None = None, ssl_ctx: Any = None) -> Callable[[], Any]:
    """An async factory of a keep-alive server answering every request with ``reply``
    (logging each request head); returns (server, port)."""

    async def start() -> Any:
        async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            try:
                while True:
                    head, _ = await _read_request(r)
                    if log is not None:
                        log.append(head)
                    w.write(reply)
                    await w.drain()
            except (asyncio.IncompleteReadError, ConnectionError):
                pass

        server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=ssl_ctx)
        return server, server.sockets[0].getsockname()[1]

    return start


OK_CHAT = b'{"choices":[{"message":{"role":"assistant","content":"fine"}}]}'
OK_REPLY = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(OK_CHAT), OK_CHAT)


def _chat_through(base: str, start: Callable[[], Any], **kw: Any) -> Any:
    """One chat call (then a second) through a client for ``base`` (``{port}`` filled
    in) against the server ``start`` makes: the two results, or the ProviderError."""

    async def go() -> Any:
        server, port = await start()
        client = HttpChatClient([base.format(port=port)], api_key="k", timeout_s=2, policy=RetryPolicy(max_retries=2, base_s=0.0, jitter=False), **kw)
        try:
            return await client.chat({"messages": []}), await client.chat({"messages": []})
        except ProviderError as e:
            return e
        finally:
            await client.aclose()
            server.close()
            await server.wait_closed()

    return asyncio.run(go())


@pytest.mark.parametrize("lean", [True, False])
def test_a_query_string_in_base_url_is_kept_on_every_request(lean: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    from therasim._internal.http import endpoint

    monkeypatch.setenv("THERASIM_HTTP_CLIENT", "lean" if lean else "aiohttp")
    log: list[bytes] = []
    (a, _), (b, _) = _chat_through("http://127.0.0.1:{port}/openai/v1/?api-version=2024-06-01&deployment=gpt-4o", _chat_server(OK_REPLY, log))
    assert a["choices"][0]["message"]["content"] == "fine" == b["choices"][0]["message"]["content"]
    assert [h.split(b" ")[1] for h in log] == [b"/openai/v1/chat/completions?api-version=2024-06-01&deployment=gpt-4o"] * 2
    assert endpoint("https://gw/v1/", "/chat/completions") == "https://gw/v1/chat/completions"
    assert endpoint("https://gw/v1?k=1", "/chat/completions") == "https://gw/v1/chat/completions?k=1"


@pytest.mark.parametrize("lean", [True, False])
def test_ca_bundle_trusts_a_private_ca_and_its_absence_is_a_tls_error_not_retried(lean: bool, tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("THERASIM_HTTP_CLIENT", "lean" if lean else "aiohttp")
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    cert_pem, server_ctx = _self_signed(tmp_path)
    log: list[bytes] = []
    start = _chat_server(OK_REPLY, log, server_ctx)
    (a, ia), (_, ib) = _chat_through("https://127.0.0.1:{port}/v1?api-version=1", start, ca_bundle=str(cert_pem))
    assert a["choices"][0]["message"]["content"] == "fine" and ia["attempts"] == 1 and ib["attempts"] == 1 and len(log) == 2

    e = _chat_through("https://127.0.0.1:{port}/v1?api-version=1", start)  # the system's CAs: refused
    assert isinstance(e, ProviderError) and e.kind == "tls" and e.attempts == 1, e
    msg = str(e)
    assert "https://127.0.0.1:" in msg and "api-version=***" in msg and "certificate" in msg and "models.*.ca_bundle" in msg and "not retried" in msg

    e = _chat_through("https://localhost:{port}/v1", start, ca_bundle=str(cert_pem))  # trusted CA, wrong name
    assert isinstance(e, ProviderError) and e.kind == "tls" and e.attempts == 1
    assert "'localhost' is not a name the certificate was issued for" in str(e) and "base_url" in str(e)
    assert len(log) == 2  # neither refused call reached the server


@pytest.mark.parametrize("lean", [True, False])
def test_verify_tls_false_connects_with_a_loud_warning(lean: bool, tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("THERASIM_HTTP_CLIENT", "lean" if lean else "aiohttp")
    _, server_ctx = _self_signed(tmp_path)
    with pytest.warns(RuntimeWarning, match=r"verify_tls is false: TLS certificates and host names of https://127\.0\.0\.1:\d+/v1 are NOT checked"):
        (a, _), _ = _chat_through("https://127.0.0.1:{port}/v1", _chat_server(OK_REPLY, None, server_ctx), verify_tls=False)
    assert a["choices"][0]["message"]["content"] == "fine"


def test_ca_bundle_settings_are_checked_with_the_field_and_the_fix(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from therasim._internal import http1
    from therasim.config import load_config
    from therasim.errors import ConfigError

    cert_pem, _ = _self_signed(tmp_path)
    (tmp_path / "notpem.pem").write_text("hello\n")
    (tmp_path / "badpem.pem").write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")

    def cfg(**kw: Any) -> dict[str, Any]:
        return {"models": {"default": {"provider": "openai", "model": "m", "base_url": "https://gw.example/v1", **kw}}}

    cases = [
        (str(tmp_path / "missing.pem"), "no file at"),
        (str(tmp_path), "is a folder"),
        (str(tmp_path / "notpem.pem"), "holds no PEM certificate"),
        (str(tmp_path / "badpem.pem"), "is not a valid PEM certificate file"),
    ]
    for path, needle in cases:
        with pytest.raises(ConfigError) as ei:
            load_config(cfg(ca_bundle=path))
        assert "models.default.ca_bundle" in str(ei.value) and needle in str(ei.value), str(ei.value)

    def unreadable(*a: Any, **k: Any) -> Any:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(http1, "open", unreadable, raising=False)  # (chmod 000 does not stop root)
    with pytest.raises(ConfigError, match=r"(?s)models\.default\.ca_bundle.*cannot be read \(Permission denied\); make it readable"):
        load_config(cfg(ca_bundle=str(cert_pem)))
    monkeypatch.undo()
    with pytest.raises(ConfigError, match=r"ca_bundle and verify_tls: false together"):
        load_config(cfg(ca_bundle=str(cert_pem), verify_tls=False))
    assert load_config(cfg(ca_bundle=str(cert_pem))).models.default.ca_bundle == str(cert_pem)
    with pytest.raises(ConfigError, match=r"models\.\*\.ca_bundle: no file at"):  # the client itself checks too
        HttpChatClient(["https://gw.example/v1"], api_key="k", timeout_s=1, policy=RetryPolicy(), ca_bundle=str(tmp_path / "gone.pem"))


def test_a_run_against_an_untrusted_certificate_fails_fast_naming_the_fix(tmp_path: Any) -> None:
    """The run's fault handling: the course fails at its first model call with the TLS
    reason (as a 401 would, not after a retry budget), and the run ends."""
    import threading

    from therasim.runner import run

    _, server_ctx = _self_signed(tmp_path)
    ready = threading.Event()
    box: dict[str, Any] = {}

    def serve() -> None:
        async def main() -> None:
            async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
                w.close()

            server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=server_ctx)
            box["port"], box["loop"], box["stop"] = server.sockets[0].getsockname()[1], asyncio.get_running_loop(), asyncio.Event()
            asyncio.get_running_loop().set_exception_handler(lambda loop, ctx: None)  # the refused handshakes
            ready.set()
            await box["stop"].wait()
            server.close()

        asyncio.run(main())

    th = threading.Thread(target=serve, daemon=True)
    th.start()
    assert ready.wait(60)
    url = f"https://127.0.0.1:{box['port']}/v1"
    cfg = {"course": {"preset": "minimal", "sessions": 1, "max_turns": 2}, "memory": {"backend": "none"}, "models": {"default": {"provider": "openai", "model": "m", "base_url": url, "max_retries": 5, "timeout_s": 5}}}
    try:
        res = run(cfg, sample=2, out=tmp_path / "runs")
    finally:
        box["loop"].call_soon_threadsafe(box["stop"].set)
        th.join(10)
    assert not res.ok and len(res.failed) == 2
    for why in res.failed.values():
        # the first call's error, not one after the retry budget ("failed after 6 attempt(s)")
        assert why.startswith("ProviderError: model call to https://127.0.0.1:") and "TLS certificate was refused" in why and "models.*.ca_bundle" in why, why
        assert "attempt(s)" not in why


@pytest.mark.parametrize(
    "reply",
    [
        b"HTTP/1.1 200 OK\nContent-Type: application/json\nContent-Length: 11\n\n{\"ok\":true}",
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\nContent-Length: 11\r\n\n{\"ok\":true}",  # mixed
        b"HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n\n4\n{\"ok\n7;x=y\n\":true}\n0\nX-T: 1\n\n",
        b"HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n\n4\r\n{\"ok\r\n7\n\":true}\n0\n\n",
    ],
)
def test_bare_lf_replies_are_read_and_the_connection_kept(reply: bytes) -> None:
    async def script(r: asyncio.StreamReader, w: asyncio.StreamWriter, n: int) -> None:
        while True:
            await _read_request(r)
            await _trickle(w, reply, step=3)

    a, b, opened = _scripted(script, _post_twice)
    assert a[0] == 200 and a[2] == b'{"ok":true}' and b[2] == b'{"ok":true}' and opened == 1, (a, b)


@pytest.mark.parametrize(
    ("reply", "needle"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 2\rX-Evil: 1\r\n\r\n{}", "bare CR"),
        (b"HTTP/1.1 200 OK\r\nContent-Length 2\r\n\r\n{}", "malformed header line"),
        (b"HTTP/1.1 200 OK\r\n folded: x\r\nContent-Length: 2\r\n\r\n{}", "folded header line with no field before it"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}", "bad Content-Length '2, 3'"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: +2\r\n\r\n{}", "bad Content-Length"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1_0\r\n" + b"x" * 16 + b"\r\n0\r\n\r\n", "bad chunk size"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-2\r\n{}\r\n0\r\n\r\n", "bad chunk size"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}xx\r\n0\r\n\r\n", "chunk data longer than its size"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\rx0\r\n\r\n", "not followed by CRLF"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"2;" + b"e" * 5000 + b"\r\n{}\r\n0\r\n\r\n", "chunk size line longer"),
        (b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * (70 * 1024) + b"\r\nContent-Length: 2\r\n\r\n{}", "reply head larger than 64 KiB"),
        (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n", "switched protocols"),
        (b"HTTP/1.1 2000 OK\r\nContent-Length: 2\r\n\r\n{}", "not an HTTP/1.x reply"),
    ],
)
def test_malformed_replies_are_refused_with_a_clear_error(reply: bytes, needle: str) -> None:
    async def script(r: asyncio.StreamReader, w: asyncio.StreamWriter, n: int) -> None:
        await _read_request(r)
        w.write(reply)
        await w.drain()
        await r.read()

    err = _one(script)
    assert isinstance(err, ResponseError) and needle in str(err), err


def test_folded_repeated_and_large_headers_and_trailers_are_read() -> None:
    big = b"v" * (40 * 1024)  # large cookies or tracing headers from a gateway: under the 64 KiB limit
    reply = (
        b"HTTP/1.1 200 OK\r\nX-Folded: one\r\n  two\r\n\tthree\r\nVia: 1.1 nginx\r\nVia: 1.1 envoy\r\nX-Big: " + big + b"\r\n"
        b"Content-Length: 2\r\nContent-Length: 2\r\n\r\n{}"
    )

    async def script(r: asyncio.StreamReader, w: asyncio.StreamWriter, n: int) -> None:
        while True:
            await _read_request(r)
            await _trickle(w, reply, step=4096)

    (status, headers, body), b, opened = _scripted(script, _post_twice)
    assert (status, body, b[2], opened) == (200, b"{}", b"{}", 1)
    assert headers["x-folded"] == "one two three" and headers["via"] == "1.1 nginx, 1.1 envoy" and len(headers["x-big"]) == len(big)


@pytest.mark.parametrize(
    ("reply", "body", "reused"),
    [
        (b"HTTP/1.1 204 No Content\r\nContent-Length: 7\r\n\r\n", b"", True),  # 204: never a body
        (b"HTTP/1.1 304 Not Modified\r\nContent-Length: 7\r\n\r\n", b"", True),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n", b"{}", False),  # TE wins; not reused
    ],
)
def test_bodies_that_headers_do_not_decide(reply: bytes, body: bytes, reused: bool) -> None:
    async def script(r: asyncio.StreamReader, w: asyncio.StreamWriter, n: int) -> None:
        while True:
            await _read_request(r)
            w.write(reply)
            await w.drain()

    a, b, opened = _scripted(script, _post_twice)
    assert a[2] == body and b[2] == body and opened == (1 if reused else 2)


def test_a_transfer_coding_other_than_chunked_is_read_to_the_close() -> None:
    async def script(r: asyncio.StreamReader, w: asyncio.StreamWriter, n: int) -> None:
        await _read_request(r)
        await _trickle(w, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: identity\r\nContent-Length: 1\r\n\r\n" + OK_CHAT, step=9)

    status, _, body = _one(script)
    assert status == 200 and body == OK_CHAT


def test_a_stale_connection_is_sent_again_once_and_only_before_any_reply_byte() -> None:
    """The retry policy's contract for a kept-alive connection lost as a request goes
    out: with no byte of the reply, once at once on a fresh connection (not a
    replica failure); after a byte of the reply, an ordinary connection error; with
    max_retries 0, no second send at all."""

    def serve(second: bytes | None) -> Callable[[], Any]:
        async def start() -> Any:
            async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
                try:
                    await _read_request(r)
                    w.write(OK_REPLY)
                    await w.drain()
                    await _read_request(r)  # the second request on the kept-alive connection
                    if second:
                        w.write(second)
                        await w.drain()
                    w.transport.abort()
                except (asyncio.IncompleteReadError, ConnectionError):
                    pass

            server = await asyncio.start_server(handle, "127.0.0.1", 0)
            return server, server.sockets[0].getsockname()[1]

        return start

    (_, _), (b, ib) = _chat_through("http://127.0.0.1:{port}/v1", serve(None))
    assert b["choices"][0]["message"]["content"] == "fine" and ib["attempts"] == 2 and ib["errors"][0].startswith("stale: ")
    (_, _), (b, ib) = _chat_through("http://127.0.0.1:{port}/v1", serve(b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n{"))
    assert ib["attempts"] == 2 and ib["errors"][0].startswith("connection: ResponseError: connection closed before the reply was complete")

    async def no_retries() -> Any:
        server, port = await serve(None)()
        client = HttpChatClient([f"http://127.0.0.1:{port}/v1"], api_key="k", timeout_s=2, policy=RetryPolicy(max_retries=0))
        await client.chat({"messages": []})
        return await _chat_error(client, server, {"messages": []})

    e = asyncio.run(no_retries())
    assert isinstance(e, ProviderError) and e.kind == "connection" and e.attempts == 1 and "StaleConnectionError" in str(e)


def test_streamed_calls_keep_the_query_and_use_ca_bundle_and_refuse_untrusted_certificates(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from langchain_core.messages import HumanMessage

    from therasim.config import ModelSpec
    from therasim.errors import TherasimError
    from therasim.providers import make_chat_model

    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    cert_pem, server_ctx = _self_signed(tmp_path)
    sse = b'data: {"choices":[{"delta":{"content":"hel"}}]}\n\ndata: {"choices":[{"delta":{"content":"lo"},"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n'
    log: list[bytes] = []

    async def go(ca: str | None) -> Any:
        server, port = await _chat_server(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: %d\r\n\r\n%s" % (len(sse), sse), log, server_ctx)()
        model = make_chat_model(ModelSpec(provider="openai", model="m", base_url=f"https://127.0.0.1:{port}/v1?api-version=7", ca_bundle=ca, max_retries=0))
        try:
            return "".join([str(c.content) async for c in model.astream([HumanMessage(content="hi")])])
        except TherasimError as e:
            return e
        finally:
            await model.aclose_loop()  # type: ignore[attr-defined]
            server.close()
            await server.wait_closed()

    assert asyncio.run(go(str(cert_pem))) == "hello"
    assert log[0].split(b" ")[1] == b"/v1/chat/completions?api-version=7"
    e = asyncio.run(go(None))
    assert isinstance(e, TherasimError) and "TLS certificate was refused" in str(e) and "models.*.ca_bundle" in str(e) and len(log) == 1


def test_base_url_paths_are_percent_encoded_and_a_key_with_a_line_break_is_refused() -> None:
    from therasim.errors import ConfigError

    t = Target("https://gw.example/my deployment/v1/?api-version=2024-06-01&q=a b&r=%2F")
    assert (t.path, t.query) == ("/my%20deployment/v1", "?api-version=2024-06-01&q=a%20b&r=%2F")
    with pytest.raises(ConfigError, match="line break"):
        HttpChatClient(["http://127.0.0.1:1/v1"], api_key="sk-abc\r\nX-Injected: 1", timeout_s=1, policy=RetryPolicy())
