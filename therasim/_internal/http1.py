"""A lean HTTP/1.1 client for one kind of request: POST a JSON body, read the whole
reply. Keep-alive connections on asyncio protocols, pooled per event loop and per
(scheme, host, port); TLS through asyncio's ``ssl`` support.

Why not aiohttp for this: a model call's transport is one request and one reply of
known size, and aiohttp's general machinery (request and response objects, header
multidicts, URL objects, tracing hooks, stream readers) cost ~0.3-0.5 ms of CPU per
call, about a sixth of the orchestrator's CPU per model call on the ``zero`` stub.
Here a request is one ``transport.write`` of preformatted headers and body, and a
reply is parsed from the bytes as they arrive (Content-Length, chunked or
read-to-close framing; a gzip/deflate body is decoded, though none is asked for).

What :class:`therasim._internal.http.HttpChatClient` relies on:

- :meth:`Http1Pool.post` returns ``(status, headers, body)`` (header names in lower
  case) or raises ``TimeoutError`` (no complete reply within ``timeout_s``, the
  connection included) or a ``ConnectionError`` (refused, reset, closed before the
  reply was complete, a reply that is not HTTP);
- an idle connection the server has closed (uvicorn, under vLLM, closes them after
  5 s) is seen closed when its FIN arrives and is never reused; one closed in the
  instant it is reused fails like any lost connection, and the caller's retry
  policy takes it (a reset is not retried here: it may be the server's fault, and
  the caller counts it);
- a connection whose request was cancelled or timed out is closed (its state is
  unknown), never reused.
"""

from __future__ import annotations

import asyncio
import ssl
import time
import zlib
from typing import Any
from urllib.parse import urlsplit

__all__ = ["Http1Pool", "ResponseError", "Target"]

MAX_HEAD = 64 * 1024
IDLE_S = 30.0  # a connection idle longer than this is closed rather than reused


class ResponseError(ConnectionError):
    """The peer's bytes are not an HTTP/1.x reply, or the connection ended mid-reply."""


class Target:
    """Where requests to one base URL go: scheme, host, port, path prefix, and the
    request head's fixed part."""

    __slots__ = ("host", "key", "path", "port", "server_hostname", "tls")

    def __init__(self, base_url: str) -> None:
        u = urlsplit(base_url)
        if u.scheme not in ("http", "https"):
            raise ValueError(f"base_url {base_url!r}: expected http:// or https://")
        if not u.hostname:
            raise ValueError(f"base_url {base_url!r}: no host")
        self.tls = u.scheme == "https"
        self.host = u.hostname
        self.port = u.port or (443 if self.tls else 80)
        self.path = u.path.rstrip("/")
        self.server_hostname = self.host if self.tls else None
        self.key = (u.scheme, self.host, self.port)

    def host_header(self) -> str:
        h = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.tls else 80
        return h if self.port == default else f"{h}:{self.port}"


class _Conn(asyncio.Protocol):
    """One keep-alive connection: at most one request at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.waiter: asyncio.Future[tuple[int, dict[str, str], bytes]] | None = None
        self.closed = False
        self.idle_since = 0.0
        self.received = False  # any byte of the current reply (for the error message)
        self._reset()

    def _reset(self) -> None:
        self.status: int | None = None
        self.headers: dict[str, str] = {}
        self.mode = ""  # "length", "chunked", "eof"
        self.length = 0
        self.keep = True
        self.body = bytearray()

    # -- asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        w = self.waiter
        if w is None or w.done():  # bytes nobody asked for (a server's idle-timeout reply): drop the connection
            self.close()
            return
        self.received = True
        self.buf += data
        try:
            self._parse()
        except ResponseError as e:
            self.close()
            if not w.done():
                w.set_exception(e)

    def eof_received(self) -> bool | None:
        return None  # close the transport; connection_lost settles the waiter

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        w = self.waiter
        if w is None or w.done():
            return
        if self.status is not None and self.mode == "eof":
            try:
                self._finish(bytes(self.buf))
            except ResponseError as e:
                if not w.done():
                    w.set_exception(e)
            return
        what = "closed" if exc is None else f"lost ({type(exc).__name__}: {exc})"
        stage = "before the reply" if not self.received else "before the reply was complete"
        w.set_exception(ResponseError(f"connection {what} {stage}"))

    # -- parsing
    def _parse(self) -> None:
        buf = self.buf
        while self.status is None:
            i = buf.find(b"\r\n\r\n")
            if i < 0:
                if len(buf) > MAX_HEAD:
                    raise ResponseError("reply head larger than 64 KiB")
                return
            head = bytes(buf[:i]).decode("latin-1")
            del buf[: i + 4]
            lines = head.split("\r\n")
            parts = lines[0].split(" ", 2)
            if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
                raise ResponseError(f"not an HTTP/1.x reply: {lines[0][:80]!r}")
            status = int(parts[1])
            if 100 <= status < 200:  # 100 Continue and friends: the real reply follows
                continue
            headers: dict[str, str] = {}
            for ln in lines[1:]:
                k, sep, v = ln.partition(":")
                if sep:
                    headers[k.strip().lower()] = v.strip()
            self.status, self.headers = status, headers
            self.keep = parts[0] == "HTTP/1.1" and "close" not in headers.get("connection", "").lower()  # a token list too
            if "chunked" in headers.get("transfer-encoding", "").lower():
                self.mode = "chunked"
            elif "content-length" in headers:
                try:
                    self.length = int(headers["content-length"])
                except ValueError:
                    self.length = -1
                if self.length < 0:
                    raise ResponseError(f"bad Content-Length {headers['content-length'][:40]!r}")
                self.mode = "length"
            elif status in (204, 304):
                self.mode, self.length = "length", 0
            else:
                self.mode, self.keep = "eof", False
        if self.mode == "length":
            if len(buf) >= self.length:
                body = bytes(buf[: self.length])
                del buf[: self.length]
                self._finish(body)
        elif self.mode == "chunked":
            self._chunks()

    def _chunks(self) -> None:
        buf = self.buf
        while True:
            i = buf.find(b"\r\n")
            if i < 0:
                return
            try:
                size = int(bytes(buf[:i]).split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise ResponseError("bad chunk size") from None
            if size == 0:
                j = buf.find(b"\r\n\r\n", i)  # the last chunk, trailers, blank line
                if j < 0:
                    return
                del buf[: j + 4]
                self._finish(bytes(self.body))
                return
            if len(buf) < i + 2 + size + 2:
                return
            self.body += buf[i + 2 : i + 2 + size]
            del buf[: i + 2 + size + 2]

    def _finish(self, body: bytes) -> None:
        enc = self.headers.get("content-encoding", "").lower()
        try:
            if enc == "gzip":
                body = zlib.decompress(body, 16 + zlib.MAX_WBITS)
            elif enc == "deflate":
                body = zlib.decompress(body)
        except zlib.error as e:
            raise ResponseError(f"bad {enc} body: {e}") from None
        w, status, headers = self.waiter, self.status, self.headers
        if not self.keep or self.buf:  # bytes past the reply's end: the framing is off, don't reuse
            self.close()
        self._reset()
        if w is not None and not w.done():
            w.set_result((status or 0, headers, body))

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    def send(self, data: bytes, loop: asyncio.AbstractEventLoop) -> asyncio.Future[tuple[int, dict[str, str], bytes]]:
        self._reset()
        self.buf.clear()
        self.received = False
        self.waiter = loop.create_future()
        assert self.transport is not None
        self.transport.write(data)
        return self.waiter


class Http1Pool:
    """Keep-alive connections of one event loop, per (scheme, host, port)."""

    def __init__(self, headers: dict[str, str]) -> None:
        self._idle: dict[tuple[str, str, int], list[_Conn]] = {}
        self._busy: set[_Conn] = set()
        self._extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items() if k.lower() not in ("host", "content-length", "connection"))
        self._heads: dict[tuple[Target, str], bytes] = {}  # the Target itself (identity hash, kept alive): an id can be reused
        self._ssl: ssl.SSLContext | None = None
        self.connections = 0  # opened (statistics)

    def _head(self, t: Target, path: str) -> bytes:
        key = (t, path)
        h = self._heads.get(key)
        if h is None:
            h = self._heads[key] = f"POST {t.path}{path} HTTP/1.1\r\nHost: {t.host_header()}\r\n{self._extra}Content-Length: ".encode("latin-1")
        return h

    async def _connect(self, t: Target, timeout: float) -> _Conn:
        loop = asyncio.get_running_loop()
        if t.tls and self._ssl is None:
            self._ssl = ssl.create_default_context()
        _, conn = await asyncio.wait_for(
            loop.create_connection(_Conn, t.host, t.port, ssl=self._ssl if t.tls else None, server_hostname=t.server_hostname),
            timeout,
        )
        self.connections += 1
        return conn

    def _reuse(self, t: Target) -> _Conn | None:
        idle = self._idle.get(t.key)
        now = time.monotonic()
        while idle:
            c = idle.pop()
            if not c.closed and now - c.idle_since < IDLE_S:
                return c
            c.close()
        return None

    async def post(self, t: Target, path: str, body: bytes, timeout: float) -> tuple[int, dict[str, str], bytes]:
        """POST ``body`` (JSON) to ``t``'s ``path``; the whole reply within ``timeout`` s."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        data = self._head(t, path) + b"%d\r\n\r\n" % len(body) + body
        conn = self._reuse(t)
        if conn is None:
            conn = await self._connect(t, max(deadline - loop.time(), 0.001))
        self._busy.add(conn)
        try:
            fut = conn.send(data, loop)
            timer = loop.call_at(deadline, _expire, fut)
            try:
                status, headers, raw = await fut
            finally:
                timer.cancel()
        except BaseException:  # failed, timed out, cancelled: the connection's state is unknown
            conn.abort()
            raise
        finally:
            self._busy.discard(conn)
        if not conn.closed:
            conn.idle_since = time.monotonic()
            conn.waiter = None
            self._idle.setdefault(t.key, []).append(conn)
        return status, headers, raw

    def close(self) -> None:
        for conns in self._idle.values():
            for c in conns:
                c.close()
        self._idle.clear()
        for c in list(self._busy):
            c.abort()
        self._busy.clear()


def _expire(fut: asyncio.Future[Any]) -> None:
    if not fut.done():
        fut.set_exception(TimeoutError())
