"""Gates: thresholds on any evaluation metric (``--gate gates.yaml``); a failed
gate makes ``therasim eval`` exit with status 3, naming each one.

::

    gates:
      mindeval.overall: {min: 3.5}
      health.strategy_stickiness: {max: 0.5}
      risk.recall: {min: 0.9}
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from therasim.config import format_validation_error, read_document
from therasim.errors import ConfigError

__all__ = ["Gate", "check_gates", "load_gates"]


class Gate(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    metric: str
    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _bound(self) -> Gate:
        if self.min is None and self.max is None:
            raise ValueError(f"gate {self.metric!r} needs min and/or max")
        return self


def load_gates(source: str | Path | Mapping[str, Any]) -> list[Gate]:
    """Gates from a YAML file or a mapping ``{"gates": {metric: {min, max}}}``."""
    name, data = read_document(source, "gates", lambda p: f"{p}: no such gates file; write one like `gates: {{mindeval.overall: {{min: 3.5}}}}`")
    if not isinstance(data, Mapping) or not isinstance(data.get("gates"), Mapping):
        raise ConfigError(f"{name}: expected a top-level 'gates:' mapping of metric -> {{min: X, max: Y}}")
    out = []
    for metric, bounds in data["gates"].items():
        if not isinstance(bounds, Mapping):
            raise ConfigError(f"{name}: gates.{metric}: expected {{min: X}} and/or {{max: Y}}, found {bounds!r}")
        try:
            out.append(Gate(metric=str(metric), **bounds))
        except ValidationError as e:
            raise format_validation_error(e, f"{name}: gates.{metric}") from None
    return out


def check_gates(gates: list[Gate], summary: Mapping[str, float | None]) -> list[str]:
    """Failed gates, one message each (a metric that was not computed fails)."""
    failed = []
    for g in gates:
        v = summary.get(g.metric)
        if v is None:
            known = ", ".join(sorted(k for k in summary if summary[k] is not None)[:40])
            failed.append(f"{g.metric}: not computed in this evaluation (metrics: {known} ...)")
            continue
        if g.min is not None and v < g.min:
            failed.append(f"{g.metric} = {v:.4g} is below min {g.min:g}")
        if g.max is not None and v > g.max:
            failed.append(f"{g.metric} = {v:.4g} is above max {g.max:g}")
    return failed
