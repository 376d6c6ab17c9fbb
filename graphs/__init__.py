"""therasim.graphs: the session graph builder, presets, and the course graph."""

from therasim.graphs.builder import NodeSpec, SessionGraphBuilder, http_node, record_exchange
from therasim.graphs.course import (
    STEP_GROUPS,
    CourseGraphBuilder,
    course_builder,
    initial_course_state,
    run_course,
    session_thread_id,
)
from therasim.graphs.presets import PRESETS, full, minimal, preset, register_preset, unified

__all__ = [
    "PRESETS",
    "STEP_GROUPS",
    "CourseGraphBuilder",
    "NodeSpec",
    "SessionGraphBuilder",
    "course_builder",
    "full",
    "http_node",
    "initial_course_state",
    "minimal",
    "preset",
    "record_exchange",
    "register_preset",
    "run_course",
    "session_thread_id",
    "unified",
]
