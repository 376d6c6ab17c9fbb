"""therasim: composable, fast, replayable longitudinal therapy simulations.

Importing therasim configures no logging, prints nothing, sends no telemetry
and opens no network connection.
"""

from therasim._internal.aliases import install as _install_aliases
from therasim._version import __version__
from therasim.config import (
    CourseSpec,
    MemorySpec,
    ModelSpec,
    RoleModels,
    RunConfig,
    SamplingSpec,
    load_config,
)
from therasim.errors import (
    ConfigError,
    MissingExtraError,
    ProfileError,
    RunDirError,
    StructuredOutputError,
    TherasimError,
)
from therasim.native import OpenRun, open_run
from therasim.plotting import plot_client, plot_run, render_graph_png
from therasim.providers import ModelPool, make_chat_model
from therasim.runner import RunResult, arun_dir, resume, run, start_run
from therasim.structured import CallStats, agenerate_structured
from therasim.traces import afork, fork, overview, replay, timeline, turn_state

# Modules that moved keep their old import paths.
_install_aliases({f"therasim.{m}": f"therasim.tools.{m}" for m in ("bench", "stub", "schema_sampling")})
_install_aliases({f"therasim.{m}": f"therasim._internal.{m}" for m in ("checkpoint", "rundir", "http")})

__all__ = [
    "CallStats",
    "ConfigError",
    "CourseSpec",
    "MemorySpec",
    "MissingExtraError",
    "ModelPool",
    "ModelSpec",
    "OpenRun",
    "ProfileError",
    "RoleModels",
    "RunConfig",
    "RunDirError",
    "RunResult",
    "SamplingSpec",
    "StructuredOutputError",
    "TherasimError",
    "__version__",
    "afork",
    "agenerate_structured",
    "arun_dir",
    "fork",
    "load_config",
    "make_chat_model",
    "open_run",
    "overview",
    "plot_client",
    "plot_run",
    "render_graph_png",
    "replay",
    "resume",
    "run",
    "start_run",
    "timeline",
    "turn_state",
]
