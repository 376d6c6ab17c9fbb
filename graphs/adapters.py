"""Role adapters: what can stand at a node besides a ``(view, ctx)`` function (a
LangChain chat model at a speaker node, a runnable, an HTTP endpoint), and how a
node's plain-text reply becomes a scratch update. The builders call these; the
role names live here, not in the builder base."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import Runnable

from therasim.context import NodeContext, SimContext
from therasim.contract import ExchangeContract, NodeFn, NodeSpec, builtin_contract
from therasim.errors import TherasimError
from therasim.state import Side, View

__all__ = ["SPEAKER_NODES", "describe_impl", "http_node", "normalise"]

# Where a plain-text reply goes for nodes that declare no writes (legacy names).
SPEAKER_NODES = {"client": ("client_text",), "counselor": ("draft", "counselor_text")}


def describe_impl(node: Any) -> dict[str, Any]:
    """What a node is implemented by: a chat model (class, model, endpoint, sampling),
    a runnable, or a function (module and qualified name)."""
    if isinstance(node, BaseChatModel):
        from therasim.providers import describe_chat_model

        return {"kind": "chat_model", **describe_chat_model(node)}
    if isinstance(node, Runnable):
        return {"kind": "runnable", "class": f"{type(node).__module__}.{type(node).__qualname__}"}
    return {"kind": "function", "fn": f"{getattr(node, '__module__', '?')}.{getattr(node, '__qualname__', type(node).__name__)}"}


def _from_chat_model(name: str, model: BaseChatModel, side: Side) -> NodeFn:
    """A chat model at a speaker node: the standard prompt with this model."""
    if name == "counselor":
        from therasim.speech import counselor_messages

        async def fn(view: View, ctx: NodeContext) -> dict[str, Any]:
            from therasim.structured import agenerate_text

            text, stats = await agenerate_text(model.with_config(tags=ctx.tags("counselor", "text")), counselor_messages(view, ctx))  # type: ignore[arg-type]
            ctx._record("counselor", "text", stats)
            return {"current": {**dict.fromkeys(_speech_keys(ctx.node, ctx.spec, ctx.contract), text.strip()), "calls": ctx.calls_update()}}

        return fn
    if name == "client":
        from therasim.nodes.client import client as client_fn
        from therasim.providers import ModelPool

        async def cfn(view: View, ctx: NodeContext) -> dict[str, Any]:
            sub = SimContext(**{**ctx.sim.__dict__, "models": ModelPool({"default": ctx.sim.models.spec("analysts"), "client": model})})
            return await client_fn(view, NodeContext(sub, ctx.node, ctx.side, ctx.ids, spec=ctx.spec, contract=ctx.contract))

        return cfn
    raise TherasimError(f"a chat model can stand in only for the 'client' or 'counselor' node, not {name!r}; wrap it in a function for other nodes")


def _from_runnable(name: str, runnable: Runnable) -> NodeFn:
    """A LangChain runnable: gets the view as a dict; returns an update dict, or text for a speaker node."""

    async def fn(view: View, ctx: NodeContext) -> dict[str, Any]:
        out = await runnable.ainvoke(view.to_dict())
        return _coerce(name, out, _speech_keys(name, ctx.spec, ctx.contract))

    return fn


def _speech_keys(name: str, spec: NodeSpec | None, contract: ExchangeContract | None) -> tuple[str, ...]:
    """The scratch slots a node's plain-text output fills: its declared speech slots."""
    if spec is not None and spec.writes is not None:
        return (contract or builtin_contract()).speech_keys(spec)
    return SPEAKER_NODES.get(name, ())


def _coerce(name: str, out: Any, speech_keys: tuple[str, ...] | None = None) -> dict[str, Any]:
    if hasattr(out, "content") and not isinstance(out, dict):
        out = out.content
    if isinstance(out, str):
        keys = SPEAKER_NODES.get(name, ()) if speech_keys is None else speech_keys
        if not keys:
            raise TherasimError(f"node {name!r} returned text; only nodes that write a speech slot (client, counselor) may return text, others must return a state update dict")
        return {"current": dict.fromkeys(keys, out.strip())}
    if out is None:
        return {}
    if not isinstance(out, dict):
        raise TherasimError(f"node {name!r} returned {type(out).__name__}; return a dict of state updates (or text for speaker nodes)")
    return out


def http_node(url: str, *, timeout_s: float = 60.0, headers: dict[str, str] | None = None) -> NodeFn:
    """A node served over HTTP: POSTs ``{"node", "view"}`` as JSON and expects a JSON
    state update (or ``{"text": ...}`` for speaker nodes)."""

    def _post(payload: bytes) -> Any:
        req = urllib.request.Request(url, data=payload, headers={"content-type": "application/json", **(headers or {})}, method="POST")
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:
            return json.loads(resp.read().decode())

    async def fn(view: View, ctx: NodeContext) -> dict[str, Any]:
        payload = json.dumps({"node": ctx.node, "view": view.to_dict()}, default=str).encode()
        out = await asyncio.to_thread(_post, payload)
        if isinstance(out, dict) and set(out) == {"text"}:
            out = out["text"]
        return _coerce(ctx.node, out, _speech_keys(ctx.node, ctx.spec, ctx.contract))

    return fn


def normalise(name: str, node: Any, side: Side) -> NodeFn:
    """A node function from what a user hands the builder: a function, a LangChain
    chat model (at a speaker node) or a runnable."""
    if isinstance(node, BaseChatModel):
        return _from_chat_model(name, node, side)
    if isinstance(node, Runnable):
        return _from_runnable(name, node)
    if callable(node):
        return node  # type: ignore[no-any-return]
    raise TherasimError(f"node {name!r}: expected a function (view, ctx) -> dict, a LangChain chat model or runnable, got {type(node).__name__}")
