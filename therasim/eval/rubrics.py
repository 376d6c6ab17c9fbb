"""Rubrics as data: YAML files shipped in ``therasim/eval/rubrics/`` and any
file a user adds (``load_rubric(path)``, ``--rubrics my_rubric.yaml``).

A rubric has a scale, criteria (each with anchor text per point, or the
rubric's shared anchors), whether each score must cite evidence turns, how
the overall score is formed, optional derived summaries, and whether the judge
may see the client's hidden profile (only for rubrics about client realism).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from therasim.config import format_validation_error
from therasim.errors import ConfigError

__all__ = ["Criterion", "Rubric", "builtin_rubrics", "load_rubric", "resolve_rubrics"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Criterion(_Strict):
    id: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    name: str
    description: str = ""
    kind: Literal["score", "count"] = "score"
    anchors: dict[int, str] = Field(default_factory=dict, description="anchor text per scale point (score criteria)")
    subscale: str | None = None
    allow_na: bool = Field(False, description="the judge may answer null (not applicable), e.g. no risk in the session")


class Derived(_Strict):
    """A summary computed from criteria: the mean of some, the sum of some, or a
    ratio of two sums (``ratio: [[numerator ids], [denominator ids]]``)."""

    mean: list[str] | None = None
    sum: list[str] | None = None
    ratio: tuple[list[str], list[str]] | None = None
    thresholds: dict[str, float] = Field(default_factory=dict, description="named cut-offs, e.g. fair/good")

    @model_validator(mode="after")
    def _one(self) -> Derived:
        if sum(x is not None for x in (self.mean, self.sum, self.ratio)) != 1:
            raise ValueError("a derived summary needs exactly one of mean, sum, ratio")
        return self


class Rubric(_Strict):
    name: str = Field(pattern=r"^[a-z][a-z0-9_-]*$")
    title: str
    source: str = Field(min_length=3, description="the published instrument this rubric follows")
    instructions: str = ""
    scale: tuple[int, int]
    anchors: dict[int, str] = Field(default_factory=dict, description="shared anchors for criteria without their own")
    criteria: list[Criterion] = Field(min_length=1)
    overall: Literal["mean", "sum", "none"] = "mean"
    thresholds: dict[str, float] = Field(default_factory=dict)
    evidence_required: bool = True
    mode: Literal["rubric", "criterion"] = Field("rubric", description="one judge call per rubric, or one per criterion")
    sees_profile: bool = Field(False, description="only for rubrics about client realism: the judge also sees the hidden profile")
    derived: dict[str, Derived] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check(self) -> Rubric:
        lo, hi = self.scale
        if lo >= hi:
            raise ValueError(f"scale must be [low, high] with low < high, got {list(self.scale)}")
        ids = [c.id for c in self.criteria]
        dup = {i for i in ids if ids.count(i) > 1}
        if dup:
            raise ValueError(f"criteria ids must be unique; repeated: {sorted(dup)}")
        for c in self.criteria:
            anchors = c.anchors or self.anchors
            if c.kind == "score":
                if not anchors:
                    raise ValueError(f"criterion {c.id!r} has no anchors and the rubric has no shared anchors")
                bad = [k for k in anchors if not lo <= k <= hi]
                if bad:
                    raise ValueError(f"criterion {c.id!r}: anchor points {bad} are outside the scale {lo}..{hi}")
                if lo not in anchors or hi not in anchors:
                    raise ValueError(f"criterion {c.id!r}: anchors must describe both ends of the scale ({lo} and {hi})")
        for name, d in self.derived.items():
            refs = (d.mean or []) + (d.sum or []) + ([x for part in d.ratio for x in part] if d.ratio else [])
            unknown = [r for r in refs if r not in ids]
            if unknown:
                raise ValueError(f"derived {name!r} refers to unknown criteria {unknown}; criteria are {ids}")
        return self

    def anchors_for(self, c: Criterion) -> dict[int, str]:
        return dict(sorted((c.anchors or self.anchors).items()))

    @property
    def scored(self) -> list[Criterion]:
        return [c for c in self.criteria if c.kind == "score"]


def _builtin_dir() -> Any:
    return resources.files("therasim.eval") / "rubrics"


def builtin_rubrics() -> dict[str, Rubric]:
    """The rubrics shipped with therasim, by name."""
    out: dict[str, Rubric] = {}
    for f in sorted(_builtin_dir().iterdir(), key=lambda p: p.name):
        if f.name.endswith(".yaml"):
            r = _parse(f.read_text(encoding="utf-8"), f"therasim/eval/rubrics/{f.name}")
            out[r.name] = r
    return out


def _parse(text: str, source: str) -> Rubric:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{source}: malformed YAML{where}: {getattr(e, 'problem', None) or e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: a rubric file is a mapping (name, title, source, scale, criteria, ...), found {type(data).__name__}")
    try:
        return Rubric.model_validate(data)
    except ValidationError as e:
        err = format_validation_error(e, source)
        lines = [*str(err).splitlines()[:-1], "Rubric fields are: " + ", ".join(Rubric.model_fields) + ". See docs/evaluation.md (Rubrics as data)."]
        raise ConfigError("\n".join(lines), err.problems) from None


def load_rubric(path: str | Path) -> Rubric:
    """Load and validate a user rubric file; errors name the field."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: no such rubric file; give a YAML path or one of {sorted(builtin_rubrics())}")
    return _parse(p.read_text(encoding="utf-8"), str(p))


def resolve_rubrics(names: list[str] | str | None) -> list[Rubric]:
    """Rubrics by built-in name or file path (comma-separated string or list)."""
    if names is None:
        return []
    items = [x.strip() for n in ([names] if isinstance(names, str) else names) for x in n.split(",")]
    shipped = builtin_rubrics()
    out: list[Rubric] = []
    for n in (i for i in items if i):
        if n in shipped:
            out.append(shipped[n])
        elif n.endswith((".yaml", ".yml")) or Path(n).exists():
            out.append(load_rubric(n))
        else:
            raise ConfigError(f"unknown rubric {n!r}; built-in rubrics are {sorted(shipped)}, or give a YAML file path")
    return out
