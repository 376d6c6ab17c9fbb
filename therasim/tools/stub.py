"""A calibrated stub of an OpenAI-compatible model server, for benchmarks and tests
(never a default). ``therasim stub --profile h100-8b --port 8011``.

- Deterministic: the reply is drawn from a hash of the request; schema-valid JSON
  when ``response_format`` carries a JSON schema (every therasim node schema
  parses), else text of a set token count (capped by ``max_tokens``).
- A latency model: ``ttft + uncached_prompt_tokens / prefill_rate +
  output_tokens x tpot(n_in_flight)``; ``tpot`` is flat up to the first point
  and interpolated after it (it rises with load past a knee); requests past
  ``max_concurrency`` queue.
- An emulated prefix cache: prompts are cut into 16-token blocks (4 characters a
  token), chained by hash, kept in an LRU of ``cache_tokens`` capacity; cached
  tokens are reported in ``usage.prompt_tokens_details.cached_tokens``.
- ``/metrics``: requests, tokens, cached tokens, hit ratio, in-flight now and peak,
  faults injected; ``/v1/embeddings``: deterministic unit vectors.
- Fault injection (``--faults RATE`` spread over all kinds, or ``--fault KIND=RATE``):
  HTTP 5xx, 429 with Retry-After, connection resets, hangs past the client
  timeout, truncated bodies, malformed JSON, schema-valid JSON with
  out-of-range values, empty completions.
- Safe by default: binds 127.0.0.1; every POST must be ``application/json``; a
  request from a browser page of another origin is refused (403); bodies are
  bounded (413 past ``max_body``), malformed ones get 400; schema sampling is
  bounded (:mod:`therasim.tools.schema_sampling`); request tracing only into the file
  or folder given on the command line (``--trace FILE``, ``--trace-dir DIR``).
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import math
import random
import re
import socket
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from therasim.errors import ConfigError

__all__ = ["FAULT_KINDS", "MAX_BODY", "MAX_EMBED_DIM", "MAX_EMBED_INPUTS", "PROFILES", "StubProfile", "StubServer", "content_hash", "create_app", "parse_faults"]

MAX_BODY = 16 * 1024 * 1024  # bytes of one request body (413 past it)
MAX_EMBED_INPUTS = 2048  # texts in one embeddings request
MAX_EMBED_DIM = 8192  # dimensions of one embedding
_TRACE_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")

FAULT_KINDS = ("http_500", "http_429", "reset", "hang", "truncated", "malformed", "out_of_range", "empty")


@dataclass(frozen=True)
class StubProfile:
    name: str
    ttft_s: float = 0.0
    prefill_tok_s: float = math.inf
    tpot: tuple[tuple[int, float], ...] = ((1, 0.0),)  # (requests in flight, seconds per output token)
    max_concurrency: int = 100_000
    cache_tokens: int = 400_000
    text_tokens: int = 100  # output tokens of a free-text reply (max_tokens caps it)
    hang_s: float = 600.0

    def tpot_at(self, n: int) -> float:
        pts = self.tpot
        if n <= pts[0][0]:
            return pts[0][1]
        for (n0, t0), (n1, t1) in itertools.pairwise(pts):
            if n <= n1:
                return t0 + (t1 - t0) * (n - n0) / (n1 - n0)
        if len(pts) >= 2:  # extrapolate the last segment
            (n0, t0), (n1, t1) = pts[-2], pts[-1]
            return t1 + (t1 - t0) * (n - n1) / (n1 - n0)
        return pts[-1][1]


PROFILES: dict[str, StubProfile] = {
    # pure overhead: answers at once
    "zero": StubProfile("zero"),
    # one H100, 8B model, chat workload (docs/benchmarks.md): prefill 30k tok/s,
    # 10/30/45 ms per output token at 8/128/256 in flight, 256 sequences at most
    "h100-8b": StubProfile("h100-8b", ttft_s=0.015, prefill_tok_s=30_000, tpot=((8, 0.010), (128, 0.030), (256, 0.045)), max_concurrency=256, cache_tokens=400_000),
    # a hosted API: 0.4 s to first token, 50 tokens/s per stream, no slowdown with load
    "api-like": StubProfile("api-like", ttft_s=0.4, prefill_tok_s=math.inf, tpot=((1, 0.020),), max_concurrency=100_000, cache_tokens=0),
}


def parse_faults(rate: float = 0.0, kinds: list[str] | None = None) -> dict[str, float]:
    """``rate`` spread evenly over every kind, plus explicit ``KIND=RATE`` entries."""
    out: dict[str, float] = {}
    if rate:
        if not 0 <= rate <= 1:
            raise ConfigError(f"--faults must be between 0 and 1, got {rate}")
        out = {k: rate / len(FAULT_KINDS) for k in FAULT_KINDS}
    for item in kinds or []:
        if "=" not in item:
            raise ConfigError(f"--fault {item!r}: expected KIND=RATE, kinds: {', '.join(FAULT_KINDS)}")
        k, v = item.split("=", 1)
        if k not in FAULT_KINDS:
            raise ConfigError(f"--fault {k!r} is not a fault kind; kinds: {', '.join(FAULT_KINDS)}")
        try:
            out[k] = float(v)
        except ValueError:
            raise ConfigError(f"--fault {item!r}: RATE must be a number") from None
    if sum(out.values()) > 1:
        raise ConfigError(f"fault rates add up to {sum(out.values()):.2f} > 1")
    return out


def content_hash(text: str) -> str:
    """The id of one served completion (the bench matches transcripts against these)."""
    return hashlib.blake2b(text.strip().encode(), digest_size=8).hexdigest()


def _tokens(text: str) -> int:
    return max(1, (len(text) + 3) // 4)


class PrefixCache:
    """16-token blocks chained by hash, LRU by tokens."""

    BLOCK_CHARS = 64  # 16 tokens x 4 characters

    def __init__(self, capacity_tokens: int) -> None:
        self.capacity_blocks = capacity_tokens // 16
        self._lru: OrderedDict[bytes, None] = OrderedDict()

    def lookup_insert(self, prompt: str, seen: set[bytes] | None = None) -> int:
        """Cached prompt tokens (the longest cached block prefix); then cache all blocks.
        ``seen`` collects the prompt's block hashes (a course's distinct blocks)."""
        if self.capacity_blocks <= 0:
            return 0
        h = b""
        hits = 0
        prefix = True
        n = len(prompt) // self.BLOCK_CHARS
        for i in range(n):
            h = hashlib.blake2b(h + prompt[i * self.BLOCK_CHARS : (i + 1) * self.BLOCK_CHARS].encode(), digest_size=12).digest()
            if seen is not None:
                seen.add(h)
            if prefix and h in self._lru:
                hits += 1
                self._lru.move_to_end(h)
            else:
                prefix = False
                self._lru[h] = None
        while len(self._lru) > self.capacity_blocks:
            self._lru.popitem(last=False)
        return hits * 16


@dataclass
class Metrics:
    requests: int = 0
    completed: int = 0
    prompt_tokens: int = 0
    cached_tokens: int = 0
    completion_tokens: int = 0
    in_flight: int = 0
    in_flight_peak: int = 0
    queued_peak: int = 0
    embeddings: int = 0
    # Modelled server time (see StubServer.busy): prefill of uncached tokens, and each
    # request's share of the batched decode.
    prefill_busy_s: float = 0.0
    decode_busy_s: float = 0.0
    faults: dict[str, int] = field(default_factory=dict)
    started: float = field(default_factory=time.time)
    # distinct prompt blocks per course (the OpenAI ``user`` field), for the first
    # COURSES_TRACKED courses seen: the KV footprint a course asks a server to hold
    course_blocks: dict[str, set[bytes]] = field(default_factory=dict, repr=False)

    COURSES_TRACKED = 256

    def as_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in self.__dict__.items() if k != "course_blocks"}
        d["prefix_hit_ratio"] = round(self.cached_tokens / self.prompt_tokens, 4) if self.prompt_tokens else 0.0
        d["busy_s"] = round(self.prefill_busy_s + self.decode_busy_s, 3)
        d["prefill_busy_s"] = round(self.prefill_busy_s, 3)
        d["decode_busy_s"] = round(self.decode_busy_s, 3)
        n = len(self.course_blocks)
        d["courses_tracked"] = n
        d["distinct_prompt_tokens_per_course"] = round(16 * sum(len(b) for b in self.course_blocks.values()) / n, 1) if n else None
        d["uptime_s"] = round(time.time() - self.started, 3)
        return d


class StubServer:
    """The stub's state: profile, prefix cache, metrics, fault plan, request trace."""

    def __init__(self, profile: StubProfile | str = "zero", *, faults: dict[str, float] | None = None, seed: int = 0, time_scale: float = 1.0, trace: str | Path | None = None, trace_dir: str | Path | None = None, max_body: int = MAX_BODY) -> None:
        if isinstance(profile, str):
            if profile not in PROFILES:
                raise ConfigError(f"unknown stub profile {profile!r}; profiles: {sorted(PROFILES)}")
            profile = PROFILES[profile]
        self.profile = profile
        self.faults = faults or {}
        self.seed = seed
        self.time_scale = time_scale
        self.cache = PrefixCache(profile.cache_tokens)
        self.metrics = Metrics()
        self._sem: asyncio.Semaphore | None = None
        self._fault_rng = random.Random(seed ^ 0x5EED)
        self._trace = open(trace, "a", encoding="utf-8") if trace else None
        # POST /trace may only open files in this folder, chosen on the command line
        self.trace_dir = Path(trace_dir).resolve() if trace_dir else None
        self.max_body = max_body
        self.served: set[str] = set()  # hashes of completions delivered whole

    def sem(self) -> asyncio.Semaphore:
        if self._sem is None:
            self._sem = asyncio.Semaphore(self.profile.max_concurrency)
        return self._sem

    def set_trace(self, name: str | None) -> Path | None:
        """Start appending request bodies to ``TRACE_DIR/NAME.jsonl`` (None: stop)."""
        if self._trace is not None:
            self._trace.close()
            self._trace = None
        if name is None:
            return None
        if self.trace_dir is None:
            raise PermissionError("tracing over HTTP is off; start the stub with --trace-dir DIR")
        if not isinstance(name, str) or not _TRACE_NAME.match(name):
            raise ValueError("trace name must be 1-64 letters, digits, '-' or '_' (the file is TRACE_DIR/NAME.jsonl)")
        path = self.trace_dir / f"{name}.jsonl"
        self._trace = open(path, "a", encoding="utf-8")
        return path

    def reset(self) -> None:
        self.cache = PrefixCache(self.profile.cache_tokens)
        self.metrics = Metrics()
        self.served = set()

    # content ---------------------------------------------------------------
    def reply(self, body: dict[str, Any]) -> tuple[str, bool, dict[str, Any] | None]:
        """(content, is_json, schema) from a hash of the request."""
        from therasim.tools.schema_sampling import instance_from_schema

        key = json.dumps({"m": body.get("messages"), "rf": body.get("response_format"), "s": body.get("seed"), "model": body.get("model")}, sort_keys=True)
        rng = random.Random(int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big") ^ self.seed)
        rf = body.get("response_format") or {}
        schema = (rf.get("json_schema") or {}).get("schema") or rf.get("schema")
        if not schema and rf.get("type") == "json_object":
            # vLLM's json_object: always a JSON object. therasim's json_object dialect puts the
            # schema in the prompt ("... matching this JSON schema: {...}"); honour it when present.
            schema = _schema_in_prompt(body.get("messages") or [])
            if not schema:
                words = "I hear how hard this week has been".split()
                return json.dumps({"reply": " ".join(rng.choice(words) for _ in range(8))}), True, None
        if schema:
            # booleans (a client's wish to end, a draft judged unsafe) rarely true, as in real sessions
            return json.dumps(instance_from_schema(schema, rng, p_true=0.08, p_true_by_name={"safe": 0.95})), True, schema
        n = min(int(body.get("max_tokens") or body.get("max_completion_tokens") or self.profile.text_tokens), self.profile.text_tokens)
        words = "I hear how hard this week has been and I wonder what helped you get through the long nights at work with your family".split()
        out: list[str] = []
        while _tokens(" ".join(out)) < n:
            out.append(rng.choice(words))
        return (" ".join(out).capitalize() + ".")[: 4 * n], False, None

    def replies(self, body: dict[str, Any]) -> list[tuple[str, bool, dict[str, Any] | None]]:
        """``n`` replies (vLLM's ``n``): the first is :meth:`reply`, the others drawn with
        shifted seeds, so they differ."""
        n = body.get("n") or 1
        n = n if isinstance(n, int) and not isinstance(n, bool) and 1 <= n <= 16 else 1
        return [self.reply(body if i == 0 else {**body, "seed": (body.get("seed") or 0) + 7919 * i}) for i in range(n)]

    def busy(self, uncached: int, out_tokens: int, in_flight: int) -> tuple[float, float]:
        """Modelled server seconds one request occupies: its uncached prefill
        (``uncached / prefill_rate``, the server prefills one request at a time) and
        its share of the batched decode (``out_tokens x tpot(n) / n`` with ``n`` in
        flight: a decode step serves every sequence in the batch)."""
        p = self.profile
        prefill = uncached / p.prefill_tok_s if math.isfinite(p.prefill_tok_s) else 0.0
        n = max(in_flight, 1)
        return prefill, out_tokens * p.tpot_at(n) / n

    def latency(self, uncached: int, out_tokens: int, in_flight: int) -> float:
        p = self.profile
        prefill = uncached / p.prefill_tok_s if math.isfinite(p.prefill_tok_s) else 0.0
        return (p.ttft_s + prefill + out_tokens * p.tpot_at(max(in_flight, 1))) * self.time_scale

    def draw_fault(self) -> str | None:
        if not self.faults:
            return None
        u = self._fault_rng.random()
        acc = 0.0
        for k, r in self.faults.items():
            acc += r
            if u < acc:
                self.metrics.faults[k] = self.metrics.faults.get(k, 0) + 1
                return k
        return None


def _schema_in_prompt(messages: list[Any]) -> dict[str, Any] | None:
    """A JSON schema given in the last user message after ``JSON schema:`` (therasim's
    prompt and json_object dialects), or None."""
    for m in reversed(messages):
        if isinstance(m, dict) and m.get("role") == "user" and isinstance(m.get("content"), str):
            text = m["content"]
            i = text.rfind("JSON schema:")
            if i < 0:
                return None
            try:
                obj, _ = json.JSONDecoder().raw_decode(text[i + len("JSON schema:") :].lstrip())
            except json.JSONDecodeError:
                return None
            return obj if isinstance(obj, dict) else None
    return None


def _out_of_range(obj: Any) -> Any:
    """Push the first bounded integer it finds far out of range (still valid JSON)."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            if isinstance(v, bool):
                continue
            if isinstance(v, int):
                return {**obj, k: v + 1000}
            new = _out_of_range(v)
            if new is not v:
                return {**obj, k: new}
    if isinstance(obj, list) and obj:
        return [_out_of_range(obj[0]), *obj[1:]]
    return obj


def _bad(message: str, status: int = 400) -> Any:
    from aiohttp import web

    return web.json_response({"error": {"message": message, "type": "invalid_request_error"}}, status=status)


def _chat_problem(body: Any) -> str | None:
    """Why a chat request body is malformed (None when it is fine)."""
    if not isinstance(body, dict):
        return "the request body must be a JSON object"
    msgs = body.get("messages")
    if not isinstance(msgs, list) or not all(isinstance(x, dict) for x in msgs):
        return "messages must be a list of objects"
    rf = body.get("response_format")
    if rf is not None:
        if not isinstance(rf, dict):
            return "response_format must be an object"
        js = rf.get("json_schema")
        if js is not None and not isinstance(js, dict):
            return "response_format.json_schema must be an object"
        schema = (js or {}).get("schema") or rf.get("schema")
        if schema is not None and not isinstance(schema, dict):
            return "the JSON schema must be an object"
    for k in ("max_tokens", "max_completion_tokens"):
        v = body.get(k)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            return f"{k} must be a positive integer"
    if body.get("seed") is not None and (isinstance(body["seed"], bool) or not isinstance(body["seed"], int)):
        return "seed must be an integer"
    return None


def _stops(body: dict[str, Any]) -> list[str]:
    stop = body.get("stop")
    if isinstance(stop, str):
        return [stop] if stop else []
    return [x for x in stop or [] if isinstance(x, str) and x]


def _cut_at_stop(text: str, body: dict[str, Any]) -> str:
    """vLLM's ``stop``: the text up to (not including) the first stop string."""
    cut = min((i for i in (text.find(s) for s in _stops(body)) if i >= 0), default=-1)
    return text if cut < 0 else text[:cut]


def _pieces(text: str) -> list[str]:
    """Token-sized pieces of a reply, for streaming (a word and its trailing space)."""
    import re

    return re.findall(r"\S+\s*|\s+", text) or ([text] if text else [])


async def _stream_sse(request: Any, server: StubServer, body: dict[str, Any], cid: str, texts: list[str], finish: list[str], usage: dict[str, Any]) -> Any:
    """An OpenAI/vLLM ``stream: true`` reply: ``chat.completion.chunk`` server-sent events
    (role, content pieces, finish reason per choice; usage last when
    ``stream_options.include_usage``), then ``data: [DONE]``."""
    from aiohttp import web

    resp = web.StreamResponse(status=200, headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    await resp.prepare(request)
    base = {"id": cid, "object": "chat.completion.chunk", "created": int(time.time()), "model": body.get("model", "stub")}

    async def send(obj: dict[str, Any]) -> None:
        await resp.write(b"data: " + json.dumps({**base, **obj}).encode() + b"\n\n")

    for i, text in enumerate(texts):
        await send({"choices": [{"index": i, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]})
        for piece in _pieces(text):
            await send({"choices": [{"index": i, "delta": {"content": piece}, "finish_reason": None}]})
        await send({"choices": [{"index": i, "delta": {}, "finish_reason": finish[i]}]})
        server.served.add(content_hash(text))
    if (body.get("stream_options") or {}).get("include_usage"):
        await send({"choices": [], "usage": usage})
    await resp.write(b"data: [DONE]\n\n")
    await resp.write_eof()
    return resp


def create_app(server: StubServer) -> Any:
    from aiohttp import web

    from therasim.tools.schema_sampling import SchemaTooLarge

    @web.middleware
    async def guard(request: web.Request, handler: Any) -> Any:
        # A page in the user's browser must not reach the stub: refuse any request
        # carrying another origin, and any POST that is not JSON (a browser sends
        # text/plain or form bodies cross-origin without asking first).
        origin = request.headers.get("Origin")
        if origin is not None and origin not in (f"http://{request.host}", f"https://{request.host}"):
            return _bad(f"cross-origin requests are refused (Origin {origin[:100]!r})", 403)
        if request.headers.get("Sec-Fetch-Site") in ("cross-site", "same-site"):
            return _bad("cross-site requests are refused", 403)
        if request.method == "POST":
            if request.content_type != "application/json":
                return _bad(f"Content-Type must be application/json, got {request.content_type[:100]!r}", 415)
            if request.content_length is not None and request.content_length > server.max_body:
                return _bad(f"request body of {request.content_length} bytes is over the limit of {server.max_body}", 413)
        return await handler(request)

    async def read_json(request: web.Request) -> Any:
        """The body as JSON; raises an HTTP 400 or 413 response."""
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise web.HTTPRequestEntityTooLarge(max_size=server.max_body, actual_size=server.max_body + 1, text=json.dumps({"error": {"message": f"request body is over the limit of {server.max_body} bytes", "type": "invalid_request_error"}}), content_type="application/json") from None
        try:
            return json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise web.HTTPBadRequest(text=json.dumps({"error": {"message": "request body is not valid JSON", "type": "invalid_request_error"}}), content_type="application/json") from None

    async def chat(request: web.Request) -> web.StreamResponse:
        body = await read_json(request)
        problem = _chat_problem(body)
        if problem:
            return _bad(problem)
        m = server.metrics
        m.requests += 1
        if server._trace is not None:
            server._trace.write(json.dumps(body, separators=(",", ":")) + "\n")
        fault = server.draw_fault()
        if fault == "http_500":
            return web.json_response({"error": {"message": "injected server error", "type": "server_error"}}, status=500)
        if fault == "http_429":
            return web.json_response({"error": {"message": "injected rate limit", "type": "rate_limit"}}, status=429, headers={"Retry-After": "0.05"})
        if fault == "reset":
            if request.transport is not None:
                request.transport.abort()
            return web.Response(status=500)
        prompt = "".join(f"{x.get('role')}:{x.get('content')}\n" for x in body["messages"] if isinstance(x, dict))
        p_tok = _tokens(prompt)
        sem = server.sem()
        m.queued_peak = max(m.queued_peak, m.requests - m.completed - m.in_flight)
        async with sem:
            m.in_flight += 1
            m.in_flight_peak = max(m.in_flight_peak, m.in_flight)
            try:
                user = body.get("user")
                seen = None
                if isinstance(user, str):
                    seen = m.course_blocks.get(user)
                    if seen is None and len(m.course_blocks) < m.COURSES_TRACKED:
                        seen = m.course_blocks[user] = set()
                cached = min(server.cache.lookup_insert(prompt, seen), p_tok)
                try:
                    contents = server.replies(body)
                except SchemaTooLarge as e:
                    m.completed += 1
                    return _bad(f"response_format: {e}")
                content, is_json, _schema = contents[0]
                if fault == "out_of_range" and is_json:
                    content = json.dumps(_out_of_range(json.loads(content)))
                if fault == "empty":
                    content = ""
                c_tok = _tokens(content) if content else 0
                delay = server.latency(p_tok - cached, c_tok, m.in_flight)
                pb, db = server.busy(p_tok - cached, c_tok, m.in_flight)
                m.prefill_busy_s += pb
                m.decode_busy_s += db
                if fault == "hang":
                    delay = server.profile.hang_s
                if delay > 0:
                    await asyncio.sleep(delay)
            finally:
                m.in_flight -= 1
        m.completed += 1
        m.prompt_tokens += p_tok
        m.cached_tokens += cached
        m.completion_tokens += c_tok
        texts = [content, *(c for c, _, _ in contents[1:])]
        finish = ["stop"] * len(texts)  # the stub's text always ends naturally (max_tokens already caps it)
        texts = [_cut_at_stop(t, body) for t in texts]
        c_tok += sum(_tokens(t) for t in texts[1:])
        usage = {"prompt_tokens": p_tok, "completion_tokens": c_tok, "total_tokens": p_tok + c_tok, "prompt_tokens_details": {"cached_tokens": cached}}
        cid = "chatcmpl-" + hashlib.blake2b(prompt.encode(), digest_size=6).hexdigest()
        if body.get("stream"):
            return await _stream_sse(request, server, body, cid, texts, finish, usage)
        payload = {
            "id": cid,
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", "stub"),
            "choices": [{"index": i, "message": {"role": "assistant", "content": t}, "finish_reason": finish[i], "logprobs": None} for i, t in enumerate(texts)],
            "usage": usage,
        }
        content = texts[0]
        raw = json.dumps(payload)
        if fault == "malformed":
            raw = raw.replace('"choices"', "'choices'", 1)
        if fault == "truncated":
            resp = web.StreamResponse(status=200, headers={"Content-Type": "application/json", "Content-Length": str(len(raw))})
            await resp.prepare(request)
            await resp.write(raw[: len(raw) // 2].encode())
            if request.transport is not None:
                request.transport.abort()
            return resp
        if fault != "malformed":
            server.served.add(content_hash(content))
        return web.Response(text=raw, content_type="application/json")

    async def set_faults(request: web.Request) -> web.Response:
        """``{"faults": {KIND: RATE}}`` replaces the fault plan (the bench turns it off for the replay)."""
        body = await read_json(request)
        plan = body.get("faults") if isinstance(body, dict) else None
        if not isinstance(plan, dict) or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= 1 for v in plan.values()):
            return _bad("expected {\"faults\": {KIND: RATE between 0 and 1}}")
        server.faults = {k: float(v) for k, v in plan.items() if k in FAULT_KINDS}
        return web.json_response({"faults": server.faults})

    async def served(request: web.Request) -> web.Response:
        return web.json_response(sorted(server.served))

    async def embeddings(request: web.Request) -> web.Response:
        body = await read_json(request)
        if not isinstance(body, dict):
            return _bad("the request body must be a JSON object")
        inputs = body.get("input")
        if isinstance(inputs, str):
            inputs = [inputs]
        if not isinstance(inputs, list) or not all(isinstance(x, str) for x in inputs):
            return _bad("input must be a string or a list of strings")
        if len(inputs) > MAX_EMBED_INPUTS:
            return _bad(f"input has {len(inputs)} texts; at most {MAX_EMBED_INPUTS} per request")
        dims = body.get("dimensions") or 384
        if isinstance(dims, bool) or not isinstance(dims, int) or not 1 <= dims <= MAX_EMBED_DIM:
            return _bad(f"dimensions must be an integer from 1 to {MAX_EMBED_DIM}")
        if dims * len(inputs) > 4 * MAX_EMBED_DIM * 64:
            return _bad("dimensions x inputs is too large for one request; send fewer texts")
        server.metrics.embeddings += len(inputs)
        data = []
        for i, text in enumerate(inputs):
            rng = random.Random(int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big"))
            v = [rng.gauss(0, 1) for _ in range(dims)]
            n = math.sqrt(sum(x * x for x in v)) or 1.0
            data.append({"object": "embedding", "index": i, "embedding": [x / n for x in v]})
        return web.json_response({"object": "list", "data": data, "model": body.get("model", "stub-embed"), "usage": {"prompt_tokens": 0, "total_tokens": 0}})

    async def models(request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": "stub", "object": "model", "owned_by": "therasim"}]})

    async def health(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def metrics(request: web.Request) -> web.Response:
        return web.json_response({**server.metrics.as_dict(), "profile": server.profile.name, "faults_configured": server.faults})

    async def reset(request: web.Request) -> web.Response:
        server.reset()
        return web.json_response({"ok": True})

    async def trace(request: web.Request) -> web.Response:
        """``{"name": NAME}`` starts appending request bodies to ``TRACE_DIR/NAME.jsonl``
        (the folder given by ``--trace-dir``; off without it); ``{"name": null}`` stops."""
        body = await read_json(request)
        if not isinstance(body, dict) or set(body) - {"name"}:
            return _bad('expected {"name": NAME} or {"name": null}')
        try:
            path = server.set_trace(body.get("name"))
        except PermissionError as e:
            return _bad(str(e), 403)
        except ValueError as e:
            return _bad(str(e))
        return web.json_response({"ok": True, "tracing": path is not None, "file": path.name if path else None})

    app = web.Application(client_max_size=server.max_body, middlewares=[guard])
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_post("/v1/embeddings", embeddings)
    app.router.add_get("/v1/models", models)
    app.router.add_get("/health", health)
    app.router.add_get("/metrics", metrics)
    app.router.add_post("/reset", reset)
    app.router.add_post("/trace", trace)
    app.router.add_get("/served", served)
    app.router.add_post("/faults", set_faults)
    return app


def run_stub(profile: str = "zero", *, host: str = "127.0.0.1", port: int = 8011, faults: dict[str, float] | None = None, seed: int = 0, time_scale: float = 1.0, trace: str | None = None, trace_dir: str | None = None, print_fn: Any = print) -> None:
    """Serve until interrupted."""
    from aiohttp import web

    if not 0 <= port <= 65535:
        raise ConfigError(f"--port {port} is not a TCP port; use 1-65535 (0 picks a free one)")
    if not (math.isfinite(time_scale) and time_scale >= 0):
        raise ConfigError(f"--time-scale must be a finite number >= 0, got {time_scale}")
    if trace_dir is not None and not Path(trace_dir).is_dir():
        raise ConfigError(f"--trace-dir {trace_dir}: no such folder; create it first")
    server = StubServer(profile, faults=faults, seed=seed, time_scale=time_scale, trace=trace, trace_dir=trace_dir)
    sock = _listen(host, port)  # bound before the banner: with --port 0 the banner names the port the OS chose
    port = int(sock.getsockname()[1])
    print_fn(f"therasim stub ({server.profile.name}) on http://{host}:{port}/v1  (metrics: http://{host}:{port}/metrics)")
    web.run_app(create_app(server), sock=sock, print=None, access_log=None, handle_signals=True, shutdown_timeout=1.0)


def _listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port (an OSError names why it cannot be had)."""
    family, _, _, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    return socket.create_server(addr[:2], family=family, backlog=1024)

