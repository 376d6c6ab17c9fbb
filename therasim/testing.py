"""Deterministic chat-model doubles: real ``BaseChatModel`` implementations, so tests
run the same code path as production instead of patching internals.

The doubles are told which node calls them (:class:`therasim.context.CallInfo`:
node, side, role, kind, schema), as pydantic-ai's ``FunctionModel`` is told its
``AgentInfo``, so a test scripts replies per node instead of guessing the caller
from prompt wording: :class:`ScriptedChatModel`, or a ``FunctionChatModel`` whose
function takes a third ``info`` argument.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import random
from collections.abc import Callable, Sequence
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import ConfigDict, Field

from therasim.context import CallInfo, current_call
from therasim.memory.embeddings import (
    HashEmbedding,  # moved to the library (the "hash" embedding); kept here for old imports
)
from therasim.tools.schema_sampling import instance_from_schema

__all__ = ["CallInfo", "FakeCall", "FunctionChatModel", "HashEmbedding", "SchemaFakeChatModel", "ScriptedChatModel", "client_turn_json"]

Responder = Callable[[list[BaseMessage], dict[str, Any]], str]


def client_turn_json(utterance: str, *, wants_to_end: bool = False, delta: int = 0, because: str = "nothing_in_particular") -> str:
    """A valid client-node answer (``ClientTurn``) proposing ``delta`` for every inner variable."""
    change = {"delta": delta, "because": because}
    names = ("distress", "hopelessness", "anxiety", "self_efficacy", "alliance", "wish_to_continue")
    return json.dumps({"utterance": utterance, "changes": dict.fromkeys(names, change), "wants_to_end": wants_to_end})


class FakeCall(dict):
    """One recorded call: ``messages`` (list of BaseMessage), ``kwargs`` and ``info``
    (the calling node's :class:`CallInfo`, or None outside a node)."""

    @property
    def prompt_text(self) -> str:
        return "\n".join(str(m.content) for m in self["messages"])

    @property
    def info(self) -> CallInfo | None:
        return self.get("info")

    @property
    def node(self) -> str | None:
        """The node that made this call."""
        info = self.get("info")
        return info.node if info is not None else None


def _n_params(fn: Any) -> int:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return 2
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return 3
    return sum(1 for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD))


def _digest(messages: Sequence[BaseMessage], extra: str = "") -> int:
    h = hashlib.blake2b(digest_size=8)
    for m in messages:
        h.update(m.type.encode())
        h.update(str(m.content).encode())
    h.update(extra.encode())
    return int.from_bytes(h.digest(), "big")


class _Recording(BaseChatModel):
    model_config = ConfigDict(arbitrary_types_allowed=True)
    calls: list[FakeCall] = Field(default_factory=list)
    therasim_dialect: str = "json_object_schema"

    def _reply(self, messages: list[BaseMessage], kwargs: dict[str, Any]) -> str:
        raise NotImplementedError

    def _result(self, messages: list[BaseMessage], kwargs: dict[str, Any]) -> ChatResult:
        self.calls.append(FakeCall(messages=list(messages), kwargs=dict(kwargs), info=current_call()))
        text = self._reply(list(messages), kwargs)
        n_in = sum(len(str(m.content).split()) for m in messages)
        n_out = len(text.split())
        msg = AIMessage(content=text, usage_metadata={"input_tokens": n_in, "output_tokens": n_out, "total_tokens": n_in + n_out})
        return ChatResult(generations=[ChatGeneration(message=msg)])

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return self._result(messages, kwargs)

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return self._result(messages, kwargs)


class FunctionChatModel(_Recording):
    """Answers with ``fn(messages, kwargs)``, or ``fn(messages, kwargs, info)`` when
    ``fn`` takes three arguments (``info``: the calling node's :class:`CallInfo`);
    records every call in ``calls``."""

    fn: Any

    @property
    def _llm_type(self) -> str:
        return "therasim-function"

    def _reply(self, messages: list[BaseMessage], kwargs: dict[str, Any]) -> str:
        if _n_params(self.fn) >= 3:
            return str(self.fn(messages, kwargs, current_call()))
        return str(self.fn(messages, kwargs))


class ScriptedChatModel(_Recording):
    """Replies per calling node: ``replies[node]`` is a string, a list of strings
    (one per call, the last repeated), or a function ``(messages, info) -> str``;
    ``default`` answers nodes not listed (else a clear error names the node)."""

    replies: dict[str, Any] = Field(default_factory=dict)
    default: Any = None
    served: dict[str, int] = Field(default_factory=dict)

    @property
    def _llm_type(self) -> str:
        return "therasim-scripted"

    def _reply(self, messages: list[BaseMessage], kwargs: dict[str, Any]) -> str:
        info = current_call()
        node = info.node if info is not None else None
        script = self.replies.get(node, self.default) if node is not None else self.default
        if script is None:
            raise KeyError(f"ScriptedChatModel has no reply for node {node!r}; scripted nodes: {sorted(self.replies)} (or give default=)")
        n = self.served.get(str(node), 0)
        self.served[str(node)] = n + 1
        if isinstance(script, str):
            return script
        if isinstance(script, (list, tuple)):
            return str(script[min(n, len(script) - 1)])
        return str(script(messages, info))


class SchemaFakeChatModel(_Recording):
    """Deterministic double: schema-valid JSON when a ``response_format`` carries a
    schema, else text drawn from a hash of the prompt. Same prompt, same answer."""

    seed: int = 0
    words: int = 12

    @property
    def _llm_type(self) -> str:
        return "therasim-schema-fake"

    def _reply(self, messages: list[BaseMessage], kwargs: dict[str, Any]) -> str:
        rf = kwargs.get("response_format") or {}
        rng = random.Random(_digest(messages, f"{self.seed}|{kwargs.get('seed')}"))
        schema = rf.get("schema") or (rf.get("json_schema") or {}).get("schema")
        if schema:
            return json.dumps(instance_from_schema(schema, rng))
        vocab = "I have been feeling tired and worried about work and my family lately but I want to try".split()
        return " ".join(rng.choice(vocab) for _ in range(self.words)).capitalize() + "."
