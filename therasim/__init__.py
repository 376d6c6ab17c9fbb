"""therasim: composable, fast, replayable longitudinal therapy simulations.

Importing therasim configures no logging, prints nothing, sends no telemetry
and opens no network connection.
"""

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
from therasim.providers import ModelPool, make_chat_model
from therasim.structured import CallStats, agenerate_structured

__all__ = [
    "CallStats",
    "ConfigError",
    "CourseSpec",
    "MemorySpec",
    "MissingExtraError",
    "ModelPool",
    "ModelSpec",
    "ProfileError",
    "RoleModels",
    "RunConfig",
    "RunDirError",
    "SamplingSpec",
    "StructuredOutputError",
    "TherasimError",
    "__version__",
    "agenerate_structured",
    "load_config",
    "make_chat_model",
]
