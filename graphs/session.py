"""Run one session graph: initial state from a profile, and a convenience runner."""

from __future__ import annotations

from typing import Any

from therasim.context import SimContext
from therasim.profiles import ClientProfile

__all__ = ["course_recursion_limit", "initial_session_state", "recursion_limit", "run_session", "session_recursion_limit"]


def recursion_limit(steps_per_round: int, rounds: int) -> int:
    """LangGraph's recursion limit for a loop of ``rounds`` rounds of at most
    ``steps_per_round`` steps (two rounds and 50 steps of slack)."""
    return steps_per_round * (rounds + 2) + 50


def session_recursion_limit(max_turns: int) -> int:
    """For a session of at most ``max_turns`` exchanges (20 steps each, rewrites included)."""
    return recursion_limit(20, max_turns)


def course_recursion_limit(sessions: int, steps: int = 40) -> int:
    """For a course of ``sessions`` sessions of at most ``steps`` course steps each."""
    return recursion_limit(steps, sessions)


def initial_session_state(
    profile: ClientProfile,
    *,
    session: int = 1,
    run_id: str = "adhoc",
    modality: str = "cbt",
    inner: dict[str, Any] | None = None,
    goals: list[str] | None = None,
    counselor_memory: list[dict[str, Any]] | None = None,
    client_memory: list[dict[str, Any]] | None = None,
    counselor_notes: str = "",
) -> dict[str, Any]:
    """State at the start of a session; hidden parts stay in client-only keys."""
    return {
        "run_id": run_id,
        "client_id": profile.id,
        "session": session,
        "course_key": f"{run_id}/{profile.id}",
        "modality": modality,
        "goals": goals if goals is not None else list(profile.intake.goals),
        "intake": profile.intake.model_dump(),
        "counselor_memory": counselor_memory or [],
        "counselor_notes": counselor_notes,
        "profile": {"intake": profile.intake.model_dump(), "hidden": profile.hidden.model_dump()},
        "inner": inner if inner is not None else profile.initial_state.model_dump(),
        "client_memory": client_memory or [],
        "current": {},
        "exchange": 0,
        "ended": False,
        "end_reason": None,
    }


async def run_session(graph: Any, state: dict[str, Any], context: SimContext, *, thread_id: str | None = None) -> dict[str, Any]:
    """Run a compiled session graph to its end and return the final state."""
    config: dict[str, Any] = {"recursion_limit": session_recursion_limit(context.course.max_turns)}
    if thread_id is not None:
        config["configurable"] = {"thread_id": thread_id}
    from therasim.graphs.executor import ainvoke

    return await ainvoke(graph, state, config, context=context)  # type: ignore[no-any-return]
