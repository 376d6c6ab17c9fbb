"""Deterministic chat-model doubles: real ``BaseChatModel`` implementations, so tests
run the same code path as production instead of patching internals."""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable, Sequence
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import ConfigDict, Field

from therasim.schema_sampling import instance_from_schema

__all__ = ["FakeCall", "FunctionChatModel", "HashEmbedding", "SchemaFakeChatModel", "client_turn_json"]

Responder = Callable[[list[BaseMessage], dict[str, Any]], str]


def client_turn_json(utterance: str, *, wants_to_end: bool = False, delta: int = 0, because: str = "nothing_in_particular") -> str:
    """A valid client-node answer (``ClientTurn``) proposing ``delta`` for every inner variable."""
    change = {"delta": delta, "because": because}
    names = ("distress", "hopelessness", "anxiety", "self_efficacy", "alliance", "wish_to_continue")
    return json.dumps({"utterance": utterance, "changes": dict.fromkeys(names, change), "wants_to_end": wants_to_end})


class FakeCall(dict):
    """One recorded call: ``messages`` (list of BaseMessage) and ``kwargs``."""

    @property
    def prompt_text(self) -> str:
        return "\n".join(str(m.content) for m in self["messages"])


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
        self.calls.append(FakeCall(messages=list(messages), kwargs=dict(kwargs)))
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
    """Answers with ``fn(messages, kwargs)``; records every call in ``calls``."""

    fn: Any

    @property
    def _llm_type(self) -> str:
        return "therasim-function"

    def _reply(self, messages: list[BaseMessage], kwargs: dict[str, Any]) -> str:
        return str(self.fn(messages, kwargs))


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


class HashEmbedding:
    """A tiny deterministic bag-of-words embedding (64 dims) for fast Chroma tests.
    Not a real embedding: use MiniLM (the default) for anything but tests."""

    @staticmethod
    def name() -> str:
        return "test-hash"

    def is_legacy(self) -> bool:
        return False

    def get_config(self) -> dict[str, Any]:
        return {}

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> HashEmbedding:
        return HashEmbedding()

    def default_space(self) -> str:
        return "cosine"

    def supported_spaces(self) -> list[str]:
        return ["cosine"]

    def __call__(self, input: list[str]) -> list[Any]:
        import numpy as np

        out = []
        for text in input:
            v = np.zeros(64, dtype="float32")
            for w in text.lower().split():
                v[int(hashlib.md5(w.encode()).hexdigest(), 16) % 64] += 1.0
            n = float(np.linalg.norm(v)) or 1.0
            out.append(v / n)
        return out

    def embed_query(self, input: list[str]) -> list[Any]:
        return self(input)
