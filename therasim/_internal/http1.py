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
  5 s; nginx and envoy after their keep-alive timeouts) is seen closed when its FIN
  arrives and is never reused; one that ends in the instant it is reused (no
  byte of a reply arrived) raises :class:`StaleConnectionError`, which the chat
  client sends again at once on a fresh connection (``fresh=True``), once per
  call and only when its retry policy retries at all (it retries these POSTs
  anyway); a fresh connection's failure, and any failure after a byte of the
  reply, are ordinary connection errors;
- a connection whose request was cancelled or timed out is closed (its state is
  unknown), never reused;
- a TLS certificate the context refuses raises ``ssl.SSLCertVerificationError``
  from the connect (the chat client reports it as a configuration error).

Parsing follows RFC 9112 for replies, leniently where llhttp's lenient mode is
(bare LF line ends, obsolete line folding, whitespace before a header's colon)
and strictly where a lenient reading could take the wrong bytes as the reply
(bad status lines, header lines without a colon, bare CR, conflicting
Content-Length values, bad chunk sizes or chunk ends).
"""

from __future__ import annotations

import asyncio
import os
import re
import ssl
import time
import zlib
from functools import lru_cache
from urllib.parse import quote, urlsplit

__all__ = ["Http1Pool", "ResponseError", "StaleConnectionError", "Target", "check_ca_bundle", "tls_context"]

MAX_HEAD = 64 * 1024  # a reply head (or a chunked body's trailers) larger than this is refused
MAX_CHUNK_LINE = 4096
IDLE_S = 30.0  # a connection idle longer than this is closed rather than reused
_HEX = re.compile(rb"[0-9a-fA-F]{1,15}")
_SAFE = "/%:@!$&'()*+,;=-._~"  # RFC 3986 pchar and "/", with "%" kept as given (already encoded)


class ResponseError(ConnectionError):
    """The peer's bytes are not an HTTP/1.x reply, or the connection ended mid-reply."""


class StaleConnectionError(ResponseError):
    """A kept-alive connection ended before any byte of the reply: most likely the
    server closed it as idle just as the request went out."""


def check_ca_bundle(path: str, field: str = "ca_bundle") -> str:
    """``path`` (``~`` expanded) when it names a readable file of PEM certificates;
    else a ValueError naming ``field`` and the fix."""
    p = os.path.expanduser(path)
    if not os.path.exists(p):
        raise ValueError(f"{field}: no file at {path!r}; give the path of the PEM file holding your private CA's certificate(s), or leave {field} out to use the system's CAs")
    if os.path.isdir(p):
        raise ValueError(f"{field}: {path!r} is a folder; give the PEM file itself (for a folder of hashed certificates, set SSL_CERT_DIR)")
    try:
        with open(p, "rb") as f:
            head = f.read(1 << 20)
    except OSError as e:
        raise ValueError(f"{field}: {path!r} cannot be read ({e.strerror}); make it readable by the user running therasim") from None
    if b"-----BEGIN CERTIFICATE-----" not in head:
        raise ValueError(f"{field}: {path!r} holds no PEM certificate (no '-----BEGIN CERTIFICATE-----' line); convert a DER file with `openssl x509 -inform der -in CA.cer -out ca.pem`")
    try:
        ssl.create_default_context(cafile=p)
    except (ssl.SSLError, ValueError) as e:
        raise ValueError(f"{field}: {path!r} is not a valid PEM certificate file ({e}); export the CA certificate again in PEM form") from None
    return p


@lru_cache(maxsize=32)
def _context(ca_bundle: str | None, verify: bool, env: tuple[str | None, str | None]) -> ssl.SSLContext:
    if ca_bundle is not None:
        ca_bundle = check_ca_bundle(ca_bundle)
    if not verify:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx
    return ssl.create_default_context(cafile=ca_bundle)


def tls_context(ca_bundle: str | None = None, verify: bool = True) -> ssl.SSLContext:
    """The client TLS context for model calls, shared by both HTTP clients: the
    system's CAs (and SSL_CERT_FILE / SSL_CERT_DIR), or only those in ``ca_bundle``;
    ``verify=False`` checks neither certificate nor host name. One context per
    setting (building one reads the CA store: milliseconds), checked when made."""
    return _context(ca_bundle, verify, (os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR")))


class Target:
    """Where requests to one base URL go: scheme, host, port, path prefix, and the
    request head's fixed part."""

    __slots__ = ("host", "key", "path", "port", "query", "server_hostname", "tls")

    def __init__(self, base_url: str) -> None:
        u = urlsplit(base_url)
        if u.scheme not in ("http", "https"):
            raise ValueError(f"base_url {base_url!r}: expected http:// or https://")
        if not u.hostname:
            raise ValueError(f"base_url {base_url!r}: no host")
        self.tls = u.scheme == "https"
        self.host = u.hostname
        self.port = u.port or (443 if self.tls else 80)
        # percent-encoded as aiohttp (yarl) would: a space or a non-ASCII letter never reaches the request line
        self.path = quote(u.path.rstrip("/"), safe=_SAFE)
        self.query = f"?{quote(u.query, safe=_SAFE + '?')}" if u.query else ""  # kept on every request (api-version=... for Azure-style gateways)
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
        self.deadline = 0.0  # loop time by which the current reply must be complete
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
            i = buf.find(b"\r\n\r\n", 0, MAX_HEAD + 4)
            lines: list[str] | None = None
            if i >= 0:
                head = bytes(buf[:i]).decode("latin-1")
                lines = head.split("\r\n")
                n = len(lines) - 1
                if head.count("\n") == n and head.count("\r") == n:  # every line ends in CRLF: the common case
                    del buf[: i + 4]
                else:
                    lines = None
            if lines is None:
                lines = self._lenient_head()
                if lines is None:
                    return
            parts = lines[0].split(" ", 2)
            if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or len(parts[1]) != 3 or not parts[1].isdigit():
                raise ResponseError(f"not an HTTP/1.x reply: {lines[0][:80]!r}")
            status = int(parts[1])
            if status < 200:
                if status == 101:
                    raise ResponseError("the server switched protocols (101) though no upgrade was asked for")
                continue  # 100 Continue, 103 Early Hints: the real reply follows
            headers = _headers(lines)
            self.status, self.headers = status, headers
            self.keep = parts[0] == "HTTP/1.1" and "close" not in headers.get("connection", "").lower()  # a token list too
            te = headers.get("transfer-encoding")
            if status in (204, 304):  # never a body, whatever the headers say (RFC 9112 6.3)
                self.mode, self.length = "length", 0
            elif te is not None:
                if "content-length" in headers:  # both: Transfer-Encoding wins, and the connection is not reused
                    self.keep = False
                if te.rsplit(",", 1)[-1].strip().lower() == "chunked":
                    self.mode = "chunked"
                else:  # a final coding other than chunked: the body ends at the close
                    self.mode, self.keep = "eof", False
            elif "content-length" in headers:
                cl = headers["content-length"]
                self.length = int(cl) if cl.isdigit() and cl.isascii() else _content_length(cl)
                self.mode = "length"
            else:
                self.mode, self.keep = "eof", False
        if self.mode == "length":
            if len(buf) >= self.length:
                body = bytes(buf[: self.length])
                del buf[: self.length]
                self._finish(body)
        elif self.mode == "chunked":
            self._chunks()

    def _lenient_head(self) -> list[str] | None:
        """The head's lines when some end in a bare LF (llhttp's lenient mode), taken
        from the buffer; None until the blank line ending it has come."""
        buf = self.buf
        j = buf.find(b"\n\r\n", 0, MAX_HEAD + 3)
        k = buf.find(b"\n\n", 0, MAX_HEAD + 2 if j < 0 else j + 1)
        if k >= 0:
            end, skip = k, 2
        elif j >= 0:
            end, skip = j, 3
        else:
            if len(buf) > MAX_HEAD:
                raise ResponseError("reply head larger than 64 KiB")
            return None
        head = bytes(buf[: end - 1 if end and buf[end - 1] == 13 else end]).decode("latin-1")
        del buf[: end + skip]
        return _lines(head)

    def _chunks(self) -> None:
        buf = self.buf
        while True:
            i = buf.find(b"\n", 0, MAX_CHUNK_LINE)
            if i < 0:
                if len(buf) >= MAX_CHUNK_LINE:
                    raise ResponseError("chunk size line longer than 4 KiB")
                return
            line = bytes(buf[: i - 1 if i and buf[i - 1] == 13 else i])
            if not (line.isalnum() and len(line) < 16 and line[1:2] not in (b"x", b"X")):  # else not plain hex digits
                line = line.split(b";", 1)[0].strip(b" \t")  # a chunk extension is ignored
                if not _HEX.fullmatch(line):
                    raise ResponseError(f"bad chunk size {line[:20]!r}")
            try:
                size = int(line, 16)
            except ValueError:  # letters past f
                raise ResponseError(f"bad chunk size {line[:20]!r}") from None
            if size == 0:  # the last chunk, then trailers (ignored) up to a blank line
                if buf.startswith(b"\r\n", i + 1):
                    end = i + 3
                elif buf.startswith(b"\n", i + 1):
                    end = i + 2
                else:
                    j = buf.find(b"\n\r\n", i, MAX_HEAD)
                    k = buf.find(b"\n\n", i, MAX_HEAD if j < 0 else j + 1)
                    if k >= 0:
                        end = k + 2
                    elif j >= 0:
                        end = j + 3
                    else:
                        if len(buf) > MAX_HEAD:
                            raise ResponseError("chunked trailers larger than 64 KiB")
                        return
                del buf[:end]
                self._finish(bytes(self.body))
                return
            start = i + 1
            stop = start + size
            if len(buf) < stop + 1:
                return
            if buf[stop] == 10:  # LF: lenient
                after = stop + 1
            elif buf[stop] == 13:
                if len(buf) < stop + 2:
                    return
                if buf[stop + 1] != 10:
                    raise ResponseError("chunk data not followed by CRLF")
                after = stop + 2
            else:
                raise ResponseError("chunk data longer than its size")
            self.body += buf[start:stop]
            del buf[:after]

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
        if self.status is not None or self.body:  # else already reset (a new connection, or by the last reply's _finish)
            self._reset()
        self.buf.clear()
        self.received = False
        self.waiter = w = loop.create_future()
        t = self.transport
        assert t is not None
        if t.is_closing():  # the peer's FIN came in after the pool's check: a write would go nowhere
            self.closed = True
            w.set_exception(ResponseError("connection closed before the request was sent"))
        else:
            t.write(data)
        return w


class Http1Pool:
    """Keep-alive connections of one event loop, per (scheme, host, port)."""

    def __init__(self, headers: dict[str, str], ssl_context: ssl.SSLContext | None = None) -> None:
        self._idle: dict[tuple[str, str, int], list[_Conn]] = {}
        self._busy: set[_Conn] = set()
        self._extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items() if k.lower() not in ("host", "content-length", "connection"))
        self._heads: dict[tuple[Target, str], bytes] = {}  # the Target itself (identity hash, kept alive): an id can be reused
        self._ssl = ssl_context  # None: the system's CAs (tls_context()), made at the first https connection
        self.connections = 0  # opened (statistics)
        # one timer for all requests in flight, armed at the earliest deadline of a busy
        # connection (:meth:`_sweep`), instead of a timer made and cancelled per request
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0

    def _head(self, t: Target, path: str) -> bytes:
        key = (t, path)
        h = self._heads.get(key)
        if h is None:
            h = self._heads[key] = f"POST {t.path}{path}{t.query} HTTP/1.1\r\nHost: {t.host_header()}\r\n{self._extra}Content-Length: ".encode("latin-1")
        return h

    async def _connect(self, t: Target, timeout: float) -> _Conn:
        loop = asyncio.get_running_loop()
        if t.tls and self._ssl is None:
            self._ssl = tls_context()
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
            if not c.closed and now - c.idle_since < IDLE_S and not (c.transport is None or c.transport.is_closing()):
                return c
            c.close()
        return None

    async def post(
        self, t: Target, path: str, body: bytes, timeout: float, fresh: bool = False, loop: asyncio.AbstractEventLoop | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        """POST ``body`` (JSON) to ``t``'s ``path``; the whole reply within ``timeout`` s.
        A kept-alive connection that ends before any byte of the reply raises
        :class:`StaleConnectionError`; ``fresh``: open a new connection (for
        sending such a request again). ``loop``: the running loop, when the caller
        already has it."""
        if loop is None:
            loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        data = self._head(t, path) + b"%d\r\n\r\n" % len(body) + body
        conn = None if fresh else self._reuse(t)
        reused = conn is not None
        if conn is None:
            conn = await self._connect(t, max(deadline - loop.time(), 0.001))
        conn.deadline = deadline
        self._busy.add(conn)
        try:
            fut = conn.send(data, loop)
            if self._timer is None or deadline < self._timer_at:
                self._arm(loop, deadline)
            status, headers, raw = await fut
        except ResponseError as e:
            conn.abort()
            if reused and not conn.received:
                raise StaleConnectionError(f"kept-alive {e}") from None
            raise
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

    def _arm(self, loop: asyncio.AbstractEventLoop, at: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = at
        self._timer = loop.call_at(at, self._sweep, loop)

    def _sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        """The pool's timer: every busy connection whose deadline has come gets a
        ``TimeoutError`` (its request is then aborted by :meth:`post`); the timer is
        armed again at the earliest deadline left. With one timeout for all requests
        it fires about once per timeout, looking at the requests in flight."""
        self._timer = None
        now = loop.time()
        nxt: float | None = None
        for c in self._busy:
            w = c.waiter
            if w is None or w.done():
                continue
            if c.deadline <= now + 0.001:  # the loop's timers have millisecond resolution
                w.set_exception(TimeoutError())
            elif nxt is None or c.deadline < nxt:
                nxt = c.deadline
        if nxt is not None:
            self._arm(loop, nxt)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for conns in self._idle.values():
            for c in conns:
                c.close()
        self._idle.clear()
        for c in list(self._busy):
            c.abort()
        self._busy.clear()


def _lines(head: str) -> list[str]:
    """The head's lines, each ended by CRLF or a bare LF; a bare CR is refused
    (RFC 9112 2.2: it could hide a line end from another parser on the way)."""
    if head.count("\r") != head.count("\r\n"):
        raise ResponseError("bare CR in the reply head")
    return [ln[:-1] if ln.endswith("\r") else ln for ln in head.split("\n")]


def _headers(lines: list[str]) -> dict[str, str]:
    """Header fields, names in lower case; a repeated field's values joined with
    ", " (RFC 9110 5.3); an obsolete folded line joined to its field with a space."""
    headers: dict[str, str] = {}
    for ln in lines[1:]:  # the common case; anything else: the careful loop below
        k, sep, v = ln.partition(":")
        k = k.strip().lower()
        if not sep or not k or k in headers or ln[0] in " \t":
            return _headers_careful(lines)
        headers[k] = v.strip()
    return headers


def _headers_careful(lines: list[str]) -> dict[str, str]:
    headers: dict[str, str] = {}
    last = ""
    for ln in lines[1:]:
        if ln[:1] in (" ", "\t"):  # obs-fold (RFC 9112 5.2): a continuation of the field before
            if not last:
                raise ResponseError(f"a folded header line with no field before it: {ln[:80]!r}")
            headers[last] = f"{headers[last]} {ln.strip()}".strip()
            continue
        k, sep, v = ln.partition(":")
        k = k.strip().lower()
        if not sep or not k:
            raise ResponseError(f"malformed header line {ln[:80]!r}")
        v = v.strip()
        if k in headers:
            v = f"{headers[k]}, {v}"
        headers[k] = v
        last = k
    return headers


def _content_length(value: str) -> int:
    """Content-Length's value; a list of one repeated value is that value (RFC 9112 6.3)."""
    if value.isdigit() and value.isascii():
        return int(value)
    vals = {x.strip() for x in value.split(",")} if "," in value else {value}
    if len(vals) == 1:
        v = vals.pop()
        if v.isdigit() and v.isascii():
            return int(v)
    raise ResponseError(f"bad Content-Length {value[:40]!r}")

