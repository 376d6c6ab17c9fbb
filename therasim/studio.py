"""Graphs for LangGraph Studio / ``langgraph dev`` (see langgraph.json at the repo root).

The server gives the runtime context as JSON, so the graphs here take a
:class:`StudioContext` (plain data: model specs as strings or objects, course
shape, seed) and turn it into the :class:`~therasim.context.SimContext` nodes
use. The preset comes from ``THERASIM_PRESET`` (default ``full``).

Example context (Studio's "Manage Assistants", or the SDK's ``context=``)::

    {"models": {"default": "openai:Qwen/Qwen2.5-7B-Instruct@http://127.0.0.1:8000/v1"},
     "max_turns": 4, "modality": "mi"}
"""

from __future__ import annotations

import os
import threading
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from therasim.context import SimContext

__all__ = ["StudioContext", "course_graph", "session_graph", "studio_course", "studio_session"]


class StudioContext(BaseModel):
    """Run context as JSON. ``models`` maps a role (client, counselor, analysts, judge,
    default) to a model spec: ``"embedded"``, ``"embedded:PATH.gguf"``,
    ``"openai:MODEL@URL"``, ``"vllm:MODEL@URL"`` or a ModelSpec object."""

    model_config = ConfigDict(extra="forbid")

    models: dict[str, str | dict[str, Any]] = Field(default_factory=lambda: dict[str, str | dict[str, Any]](default="embedded"))
    modality: str = "cbt"
    max_turns: int = Field(6, ge=1, le=200)
    sessions: int = Field(3, ge=1, le=100)
    emotion_taxonomy: str = "plutchik"
    seed: int = 0
    structured_attempts: int = Field(3, ge=1, le=10)

    def to_sim(self) -> SimContext:
        """The SimContext this describes; one per distinct context (models are reused)."""
        key = self.model_dump_json()
        with _LOCK:
            sim = _SIMS.get(key)
            if sim is None:
                from therasim.config import CourseSpec
                from therasim.providers import ModelPool
                from therasim.traces import parse_model_spec

                pool = ModelPool({role: parse_model_spec(spec) for role, spec in self.models.items()})
                course = CourseSpec(preset=_preset_name(), modality=self.modality, max_turns=self.max_turns, sessions=self.sessions, emotion_taxonomy=self.emotion_taxonomy, memory=False)
                sim = _SIMS[key] = SimContext(models=pool, course=course, seed=self.seed, structured_attempts=self.structured_attempts)
            return sim


_SIMS: dict[str, SimContext] = {}
_LOCK = threading.Lock()


def _preset_name() -> str:
    return os.environ.get("THERASIM_PRESET", "full")


def studio_session(preset: str | None = None) -> Any:
    """The session graph of ``preset`` with :class:`StudioContext` as its context schema
    (compiled without a checkpointer: the server brings its own)."""
    from therasim.graphs import preset as get_preset

    g = get_preset(preset or _preset_name()).build(fold=False)  # every node its own step in Studio
    g.context_schema = StudioContext  # type: ignore[assignment]
    return g.compile(name="session")


def studio_course(preset: str | None = None) -> Any:
    """The course graph (memory off: Studio runs have no run directory)."""
    from therasim.graphs import CourseGraphBuilder
    from therasim.graphs import preset as get_preset

    g = CourseGraphBuilder(get_preset(preset or _preset_name())).without("memory").build()
    g.context_schema = StudioContext  # type: ignore[assignment]
    return g.compile(name="course")


session_graph = studio_session()
course_graph = studio_course()
