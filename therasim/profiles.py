"""Client profiles: the intake form the counselor may see, kept apart from the
hidden profile and inner state only the client role-play sees.

Load from YAML or JSONL (errors name the record and field), draw diverse
profiles with a seeded sampler, or use the shipped examples.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from therasim.errors import ProfileError

__all__ = [
    "ARCHETYPES",
    "ClientProfile",
    "HiddenProfile",
    "InnerState",
    "IntakeForm",
    "example_profiles",
    "load_profiles",
    "sample_profiles",
]

ARCHETYPES = (
    "intellectualiser", "minimiser", "deflector", "externaliser", "self_critic", "people_pleaser", "flooded",
    "sceptic", "storyteller", "ambivalent", "ready", "disagreeable", "catastrophiser", "resistant",
    "grateful_compliant", "tester",
)


class _Rec(BaseModel):
    model_config = ConfigDict(extra="forbid")


class IntakeForm(_Rec):
    """What the counselor may see."""

    name: str = Field(min_length=1, max_length=80)
    age: int = Field(ge=12, le=100)
    gender: str = Field("unspecified", max_length=40)
    occupation: str = Field("unspecified", max_length=80)
    presenting_problem: str = Field(min_length=3, max_length=600)
    goals: list[str] = Field(default_factory=list, max_length=10)
    referral: str = Field("self-referred", max_length=200)


class InnerState(_Rec):
    """The client's hidden, per-turn state (0..10 scales; disclosure 0..4)."""

    distress: int = Field(6, ge=0, le=10)
    hopelessness: int = Field(4, ge=0, le=10)
    anxiety: int = Field(5, ge=0, le=10)
    self_efficacy: int = Field(4, ge=0, le=10)
    trust: int = Field(4, ge=0, le=10)
    disclosure: int = Field(1, ge=0, le=4)
    wish_to_continue: int = Field(7, ge=0, le=10)
    wants_to_end: bool = False
    homework: str | None = None
    recent_events: list[str] = Field(default_factory=list)


class HiddenProfile(_Rec):
    """Only the client role-play sees this."""

    backstory: str = Field(min_length=3, max_length=2000)
    core_beliefs: list[str] = Field(default_factory=list, max_length=10)
    triggers: list[str] = Field(default_factory=list, max_length=10)
    personality: str = Field("reserved", max_length=200)
    conversation_style: str = Field("brief, plain sentences", max_length=200)
    archetype: Literal[ARCHETYPES] = "minimiser"  # type: ignore[valid-type]
    risk_factors: list[str] = Field(default_factory=list, max_length=10)
    undisclosed: str = Field("", max_length=1000, description="What the client holds back until trust grows.")


class ClientProfile(_Rec):
    id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    intake: IntakeForm
    hidden: HiddenProfile
    initial_state: InnerState = InnerState()
    extra: dict[str, Any] = Field(default_factory=dict, description="Free-form data carried with the profile (e.g. an imported dataset's fields); not shown to any model.")

    @field_validator("id")
    @classmethod
    def _id(cls, v: str) -> str:
        if v in (".", ".."):
            raise ValueError("id may not be '.' or '..'")
        return v


def _problem(rec: str, e: ValidationError) -> ProfileError:
    first = e.errors()[0]
    loc = ".".join(str(p) for p in first["loc"]) or "(record)"
    found = repr(first.get("input"))[:60]
    kind = "unknown field" if first["type"] == "extra_forbidden" else first["msg"]
    more = f" (+{len(e.errors()) - 1} more)" if len(e.errors()) > 1 else ""
    return ProfileError(f"profile {rec}: field {loc}: {kind} (found {found}){more}", record=rec, field=loc)


def load_profiles(path: str | Path, *, strict: bool = False) -> tuple[list[ClientProfile], list[ProfileError]]:
    """Load profiles from ``.yaml``/``.yml`` (a list) or ``.jsonl`` (one per line).

    Returns ``(valid, problems)``: a bad record is reported and skipped so the valid
    ones still run; ``strict=True`` raises the first problem instead. Duplicate ids
    are problems too.
    """
    p = Path(path)
    if not p.is_file():
        raise ProfileError(f"{p}: no such profiles file", record=str(p))
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ProfileError(f"{p}: not UTF-8 text", record=str(p)) from None
    records: list[tuple[str, Any]] = []
    problems: list[ProfileError] = []
    if p.suffix in (".jsonl", ".ndjson"):
        for i, line in enumerate(text.split("\n"), 1):
            if not line.strip():
                continue
            try:
                records.append((f"{p.name}:{i}", json.loads(line)))
            except json.JSONDecodeError as e:
                problems.append(ProfileError(f"profile {p.name}:{i}: invalid JSON ({e.msg})", record=f"{p.name}:{i}"))
    else:
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise ProfileError(f"{p}: malformed YAML: {str(e).splitlines()[0]}", record=str(p)) from None
        if data is None:
            raise ProfileError(f"{p}: the file is empty; expected a list of profiles", record=str(p))
        if isinstance(data, dict):
            data = data.get("profiles", [data])
        if not isinstance(data, list):
            raise ProfileError(f"{p}: expected a list of profiles, found {type(data).__name__}", record=str(p))
        records = [(f"{p.name}#{i}", r) for i, r in enumerate(data)]
    out: list[ClientProfile] = []
    seen: set[str] = set()
    for rec, obj in records:
        if isinstance(obj, dict) and isinstance(obj.get("id"), str):
            rec = f"{rec} (id {obj['id']})"
        if not isinstance(obj, dict):
            problems.append(ProfileError(f"profile {rec}: expected a mapping, found {type(obj).__name__}", record=rec))
            continue
        from therasim.profile_import import foreign_format

        if (fmt := foreign_format(obj)) is not None:
            problems.append(ProfileError(f"profile {rec}: this is a {fmt} profile, not therasim's format; convert the file first: therasim profiles import {fmt} {p} -o profiles.jsonl", record=rec))
            continue
        try:
            prof = ClientProfile.model_validate(obj)
        except ValidationError as e:
            problems.append(_problem(rec, e))
            continue
        if prof.id in seen:
            problems.append(ProfileError(f"profile {rec}: field id: duplicate id {prof.id!r}; ids must be unique", record=rec, field="id"))
            continue
        seen.add(prof.id)
        out.append(prof)
    if strict and problems:
        raise problems[0]
    return out, problems


_NAMES = ["Alex", "Sam", "Jordan", "Maya", "Priya", "Tom", "Lena", "Omar", "Grace", "Diego", "Mei", "Noah", "Zara", "Ivan", "Aisha", "Ben"]
_JOBS = ["nurse", "student", "software developer", "teacher", "warehouse worker", "accountant", "chef", "retired", "unemployed", "sales assistant"]
_PROBLEMS = [
    ("low mood and loss of interest since a job loss", ["work", "sleep", "money"], ["I am a failure", "nothing will change"]),
    ("constant worry about health and family", ["phone calls at night", "news"], ["something bad will happen", "I must stay in control"]),
    ("panic attacks on public transport", ["crowds", "trains"], ["I will lose control", "people will judge me"]),
    ("grief after the death of a parent", ["anniversaries", "old photos"], ["I should have done more"]),
    ("drinking more to cope with stress", ["evenings alone", "arguments"], ["I can't cope without a drink"]),
    ("conflict with partner and loneliness", ["silence at home", "criticism"], ["I am unlovable"]),
    ("exam stress and perfectionism", ["deadlines", "grades"], ["if I'm not perfect I'm worthless"]),
    ("trouble sleeping and irritability after a car accident", ["driving", "loud noises"], ["the world is dangerous"]),
]
_STYLES = ["brief, guarded answers", "long stories with detours", "jokes to deflect", "precise and analytical", "apologetic and polite", "blunt and sceptical"]
_PERSONALITY = ["introverted and careful", "warm but self-critical", "restless and impatient", "dry humour, private", "anxious to please", "stubborn and proud"]
_RISKS = ["passive death wishes in the past", "family history of depression", "social isolation", "recent loss", "heavy drinking", "none known"]


def sample_profiles(n: int, seed: int = 0) -> list[ClientProfile]:
    """Draw ``n`` diverse profiles; the same seed gives the same profiles."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        problem, triggers, beliefs = rng.choice(_PROBLEMS)
        name = rng.choice(_NAMES)
        risk = rng.sample(_RISKS, k=rng.randint(1, 2))
        severe = rng.randint(3, 9)
        out.append(
            ClientProfile(
                id=f"c{seed}-{i:04d}",
                intake=IntakeForm(
                    name=name,
                    age=rng.randint(18, 70),
                    gender=rng.choice(["female", "male", "non-binary", "unspecified"]),
                    occupation=rng.choice(_JOBS),
                    presenting_problem=problem,
                    goals=[rng.choice(["feel less overwhelmed", "sleep better", "get back to work", "understand myself", "feel closer to people"])],
                ),
                hidden=HiddenProfile(
                    backstory=f"{name} has struggled with {problem} for about {rng.randint(2, 30)} months.",
                    core_beliefs=beliefs,
                    triggers=triggers,
                    personality=rng.choice(_PERSONALITY),
                    conversation_style=rng.choice(_STYLES),
                    archetype=rng.choice(ARCHETYPES),
                    risk_factors=risk,
                    undisclosed=rng.choice(["feels ashamed about money problems", "has not told anyone about the panic", "drinks alone most nights", "sometimes thinks everyone would be better off without them"]),
                ),
                initial_state=InnerState(
                    distress=severe,
                    hopelessness=max(0, severe - rng.randint(1, 4)),
                    anxiety=rng.randint(2, 9),
                    self_efficacy=rng.randint(2, 6),
                    trust=rng.randint(2, 5),
                    disclosure=rng.randint(0, 1),
                    wish_to_continue=rng.randint(5, 9),
                ),
            )
        )
    return out


def example_profiles() -> list[ClientProfile]:
    """Hand-written example profiles shipped with the package."""
    from importlib import resources

    text = (resources.files("therasim") / "data" / "example_profiles.yaml").read_text(encoding="utf-8")
    return [ClientProfile.model_validate(r) for r in yaml.safe_load(text)]
