"""The public builder for session graphs. The library's own presets are built with it.

A session is a loop of exchanges. Each exchange runs the ``order`` of nodes
(client, analysts, counselor, ...), then ``record`` appends the exchange to the
transcript and ``termination`` decides whether to loop. Users add, replace or
remove nodes (their own function, a LangChain runnable or chat model, an HTTP
endpoint) and add conditional edges, all through this builder.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import json
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import Runnable
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime

from therasim.context import NodeContext, SimContext, as_sim_context
from therasim.contract import ExchangeContract, NodeFn, NodeSpec, Slot, builtin_contract
from therasim.errors import TherasimError
from therasim.nodes import SPECS
from therasim.state import SessionState, Side, View, make_view

__all__ = ["NodeFn", "NodeSpec", "SessionGraphBuilder", "Slot", "http_node", "record_exchange", "wrap_node"]

Router = Callable[[dict[str, Any]], str]
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


@dataclass(slots=True)
class _Conditional:
    source: str
    router: Callable[[View], str]
    destinations: dict[str, str]


def _from_chat_model(name: str, model: BaseChatModel, side: Side) -> NodeFn:
    """A chat model at a speaker node: the standard prompt with this model."""
    if name == "counselor":
        from therasim.nodes.counselor import counselor_messages

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


def record_exchange(view: View, ctx: NodeContext) -> dict[str, Any]:
    """Append the finished exchange (client turn with analyst outputs, counselor turn
    with the plan) to the transcript and clear the per-exchange scratch. Which slot
    goes on which turn, under which name, is the graph's contract (node specs)."""
    cur = view["current"]
    exchange = int(view.get("exchange", 0))
    turns = (ctx.contract or builtin_contract()).record(cur, exchange, len(view["transcript"]))
    ctx.sim.emit({"event": "exchange", **{k: ctx.ids.get(k) for k in ("run_id", "client_id", "session")}, "exchange": exchange})
    return {"transcript": turns, "exchange": exchange + 1, "current": {"__reset__": True}}


def describe_specs(specs: dict[str, NodeSpec]) -> dict[str, dict[str, Any]]:
    """Side, model role, function name and contract of each node (for manifests and describe())."""
    return {n: s.describe() for n, s in specs.items()}


def wrap_node(spec: NodeSpec, view_fn: Callable[[dict[str, Any], Side, str], View], contract: ExchangeContract | None = None) -> Callable[..., Awaitable[dict[str, Any]]]:
    """A LangGraph node that hands ``spec.fn`` its side's view and a NodeContext.
    With a ``contract`` (session graphs), writes to undeclared scratch slots fail."""
    if spec.fn is None:
        raise TherasimError(f"node {spec.name!r} has no function")
    fn = spec.fn
    speech = _speech_keys(spec.name, spec, contract)

    async def run(state: dict[str, Any], runtime: Runtime[SimContext]) -> dict[str, Any]:
        sim = as_sim_context(runtime.context)
        ids = {k: state.get(k) for k in ("run_id", "client_id", "session", "course_key", "exchange")}
        ctx = NodeContext(sim, spec.name, spec.side, ids, spec=spec, contract=contract)
        view = view_fn(state, spec.side, spec.name)
        out = fn(view, ctx)
        if inspect.isawaitable(out):
            out = await out
        out = _coerce(spec.name, out, speech)
        if spec.name == "client" and sim.course.probes:  # planted risk probes (evaluation)
            from therasim.eval.probes import plant_probe

            out = plant_probe(sim, ids, out)
        if ctx.calls and "current" in out and "calls" not in out["current"]:
            out["current"]["calls"] = ctx.calls_update()
        if contract is not None and isinstance(out.get("current"), dict):
            contract.check_writes(spec.name, out["current"])
        return out

    run.__name__ = spec.name
    return run


class SessionGraphBuilder:
    """Compose a session graph.

    >>> b = SessionGraphBuilder()
    >>> b.add_node("client", client, side="client", role="client")  # doctest: +SKIP
    >>> b.add_node("counselor", counselor, side="counselor", role="counselor")  # doctest: +SKIP
    >>> graph = b.compile()  # doctest: +SKIP
    """

    def __init__(self, name: str = "custom") -> None:
        self.name = name
        self.nodes: dict[str, NodeSpec] = {}
        self.order: list[str] = []
        self.conditionals: dict[str, _Conditional] = {}

    # composition -------------------------------------------------------------
    def add_node(
        self,
        name: str,
        node: NodeFn | BaseChatModel | Runnable,
        *,
        side: Side,
        role: str | None = None,
        before: str | None = None,
        after: str | None = None,
        description: str = "",
        reads: tuple[str, ...] | None = None,
        writes: tuple[str | Slot, ...] | None = None,
        speech: bool | None = None,
        max_tokens: int | None = None,
    ) -> SessionGraphBuilder:
        """Add a node to each exchange (at the end, or ``before``/``after`` another).

        ``reads``/``writes``/``speech``/``max_tokens`` declare its contract (see
        :class:`~therasim.contract.NodeSpec`); a node named like a built-in one
        (``client``, ``counselor``, ...) keeps the built-in contract for what is not given."""
        if side not in ("client", "counselor", "system"):
            raise TherasimError(f"side must be 'client', 'counselor' or 'system', got {side!r}")
        base = SPECS.get(name) or NodeSpec(name)
        spec = NodeSpec(
            name,
            self._normalise(name, node, side),
            side,
            role,
            description,
            describe_impl(node),
            reads=base.reads if reads is None else tuple(reads),
            writes=base.writes if writes is None else tuple(writes),
            speech=base.speech if speech is None else speech,
            max_tokens=base.max_tokens if max_tokens is None else max_tokens,
        )
        return self.add(spec, before=before, after=after)

    def add(self, spec: NodeSpec, *, before: str | None = None, after: str | None = None) -> SessionGraphBuilder:
        """Add a node from its spec (a node module's ``SPEC``): one line per role.

        >>> b.add(my_nodes.SUPERVISOR, before="counselor")  # doctest: +SKIP
        """
        name = spec.name
        if name in self.nodes:
            raise TherasimError(f"node {name!r} already exists; use replace_node to swap it")
        if name in ("record", "termination", START, END):
            raise TherasimError(f"{name!r} is reserved; the builder adds record and termination itself")
        if spec.fn is None:
            raise TherasimError(f"node {name!r}: its NodeSpec has no function")
        self.nodes[name] = spec if spec.impl is not None else spec.replace(impl=describe_impl(spec.fn))
        if before is not None:
            self.order.insert(self._index(before), name)
        elif after is not None:
            self.order.insert(self._index(after) + 1, name)
        else:
            self.order.append(name)
        return self

    def replace_node(self, name: str, node: NodeFn | BaseChatModel | Runnable, *, side: Side | None = None) -> SessionGraphBuilder:
        """Swap the implementation of an existing node, keeping its place and edges."""
        if name not in self.nodes:
            raise TherasimError(f"no node {name!r} to replace; nodes are {self.order}")
        old = self.nodes[name]
        side = side or old.side
        self.nodes[name] = old.replace(
            fn=self._normalise(name, node, side), side=side, impl={**describe_impl(node), "replaced": (old.impl or {}).get("fn") or (old.impl or {}).get("class") or "?"}
        )
        return self

    def remove_node(self, name: str) -> SessionGraphBuilder:
        """Drop a node; its neighbours are joined and conditional edges to it are dropped."""
        if name not in self.nodes:
            raise TherasimError(f"no node {name!r} to remove; nodes are {self.order}")
        i = self.order.index(name)
        successor = self.order[i + 1] if i + 1 < len(self.order) else "record"
        del self.nodes[name]
        self.order.remove(name)
        self.conditionals.pop(name, None)
        for c in list(self.conditionals.values()):
            # Routes into the removed node go to its successor instead.
            c.destinations = {k: (successor if v == name else v) for k, v in c.destinations.items()}
            j = self.order.index(c.source)
            natural = self.order[j + 1] if j + 1 < len(self.order) else "record"
            if set(c.destinations.values()) == {natural}:
                del self.conditionals[c.source]
        return self

    def add_conditional_edges(self, source: str, router: Callable[[View], str], destinations: dict[str, str]) -> SessionGraphBuilder:
        """After ``source``, go where ``router(view)`` says (a key of ``destinations``).
        Destinations must be later nodes of the exchange (or 'record')."""
        self._index(source)
        for d in destinations.values():
            if d != "record" and self._index(d) <= self._index(source):
                raise TherasimError(f"conditional edge {source!r} -> {d!r} must point forward in the exchange {self.order}")
        self.conditionals[source] = _Conditional(source, router, dict(destinations))
        return self

    def _index(self, name: str) -> int:
        try:
            return self.order.index(name)
        except ValueError:
            raise TherasimError(f"no node {name!r}; nodes are {self.order}") from None

    def _normalise(self, name: str, node: Any, side: Side) -> NodeFn:
        if isinstance(node, BaseChatModel):
            return _from_chat_model(name, node, side)
        if isinstance(node, Runnable):
            return _from_runnable(name, node)
        if callable(node):
            return node  # type: ignore[no-any-return]
        raise TherasimError(f"node {name!r}: expected a function (view, ctx) -> dict, a LangChain chat model or runnable, got {type(node).__name__}")

    # compile -----------------------------------------------------------------
    def contract(self) -> ExchangeContract:
        """The graph's node contract: its nodes' specs and the scratch slots they declare
        (views, transcript record, export and token caps derive from it)."""
        return ExchangeContract(self.nodes[n] for n in self.order)

    def build(self) -> StateGraph:
        """The uncompiled LangGraph StateGraph."""
        if not self.order:
            raise TherasimError("the session graph has no nodes; add at least a client and a counselor")
        contract = self.contract()

        def view_fn(state: dict[str, Any], side: Side, node: str) -> View:
            return make_view(state, side, node, contract)

        g: StateGraph = StateGraph(SessionState, context_schema=SimContext)  # type: ignore[arg-type]
        for name in self.order:
            g.add_node(name, wrap_node(self.nodes[name], view_fn, contract))
        g.add_node("record", wrap_node(NodeSpec("record", record_exchange, "system"), view_fn, contract))
        from therasim.nodes.termination import termination

        g.add_node("termination", wrap_node(NodeSpec("termination", termination, "system"), view_fn, contract))
        g.add_edge(START, self.order[0])
        chain = [*self.order, "record"]
        for i, name in enumerate(self.order):
            cond = self.conditionals.get(name)
            if cond is not None:
                spec_side = self.nodes[name].side

                def route(state: dict[str, Any], _c: _Conditional = cond, _s: Side = spec_side) -> str:
                    return _c.destinations[_c.router(make_view(state, _s, _c.source, contract))]

                g.add_conditional_edges(name, route, sorted(set(cond.destinations.values())))
            else:
                g.add_edge(name, chain[i + 1])
        g.add_edge("record", "termination")
        g.add_conditional_edges("termination", lambda s: END if s.get("ended") else "__loop__", {END: END, "__loop__": self.order[0]})
        return g

    def compile(self, checkpointer: Any = None) -> Any:
        """Compile with any LangGraph checkpointer (or none)."""
        return self.build().compile(checkpointer=checkpointer, name=f"session:{self.name}")

    def mermaid(self) -> str:
        """Mermaid text of the graph, drawn offline."""
        return self.build().compile().get_graph().draw_mermaid()

    def describe(self) -> dict[str, Any]:
        """The graph's shape and contract as JSON-able data (recorded in run manifests)."""
        return {
            "name": self.name,
            "order": list(self.order),
            "nodes": describe_specs(self.nodes),
            "conditionals": {k: v.destinations for k, v in self.conditionals.items()},
        }

    def fingerprint(self) -> str:
        """A hash of :meth:`describe` plus the routers' names: two builders with the same
        fingerprint run the same nodes, in the same order, with the same contracts."""
        d = self.describe()
        d["routers"] = {k: getattr(v.router, "__qualname__", type(v.router).__name__) for k, v in self.conditionals.items()}
        return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]

    def copy(self) -> SessionGraphBuilder:
        b = SessionGraphBuilder(self.name)
        b.nodes = dict(self.nodes)
        b.order = list(self.order)
        b.conditionals = {k: _Conditional(v.source, v.router, dict(v.destinations)) for k, v in self.conditionals.items()}
        return b

