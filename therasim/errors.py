"""Typed errors raised by therasim. Each message says what was wrong and how to fix it."""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "MissingExtraError",
    "ProfileError",
    "RunDirError",
    "StructuredOutputError",
    "TherasimError",
]


class TherasimError(Exception):
    """Base class of every error therasim raises on purpose."""


class ConfigError(TherasimError, ValueError):
    """A run configuration (YAML or Python) is invalid.

    ``problems`` holds one ``(field_path, message)`` pair per problem found.
    """

    def __init__(self, message: str, problems: list[tuple[str, str]] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or []


class ProfileError(TherasimError, ValueError):
    """A client profile record is invalid; names the record and the field."""

    def __init__(self, message: str, record: str | None = None, field: str | None = None) -> None:
        super().__init__(message)
        self.record = record
        self.field = field


class MissingExtraError(TherasimError, ImportError):
    """An optional dependency is not installed; names the extra that brings it."""

    def __init__(self, package: str, extra: str, purpose: str) -> None:
        super().__init__(
            f"{purpose} needs the Python package {package!r}, which is not installed. "
            f"Install it with:  pip install 'therasim[{extra}]'"
        )
        self.package = package
        self.extra = extra


class StructuredOutputError(TherasimError):
    """A model did not return a valid instance of ``schema_name`` within the attempt budget.

    ``raw`` is the last raw text the model produced; ``errors`` the validation
    error of each attempt.
    """

    def __init__(self, schema_name: str, raw: str, attempts: int, errors: list[str], stats: object = None) -> None:
        last = errors[-1] if errors else "unknown error"
        super().__init__(
            f"model output did not validate as {schema_name} after {attempts} attempt(s); "
            f"last error: {last}; raw output: {raw[:300]!r}"
        )
        self.schema_name = schema_name
        self.raw = raw
        self.attempts = attempts
        self.errors = errors
        self.stats = stats  # therasim.structured.CallStats of the failed call (tokens, latency)


class RunDirError(TherasimError):
    """A run directory is missing, unwritable or was made by an incompatible version."""


class UnknownNameError(TherasimError, KeyError):
    """A name (modality, taxonomy, preset, ...) that is not registered."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""
