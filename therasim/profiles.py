"""Client profiles: the intake form the counselor may see, kept apart from the
hidden profile and inner state only the client role-play sees.

Load from YAML or JSONL (errors name the record and field), draw diverse
profiles with a seeded sampler, or use the shipped examples.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from therasim.errors import ProfileError
from therasim.parsing import ParseError, iter_json_lines, load_yaml, short_repr
from therasim.policies.archetypes import ARCHETYPES as _ARCHETYPES

__all__ = [
    "ARCHETYPES",
    "ClientProfile",
    "HiddenProfile",
    "InnerState",
    "IntakeForm",
    "example_profiles",
    "has_risk_history",
    "load_profiles",
    "sample_profiles",
]

ARCHETYPES = tuple(_ARCHETYPES)
CORE_BELIEF_FAMILIES = ("helpless", "unlovable", "worthless")


class _Rec(BaseModel):
    model_config = ConfigDict(extra="forbid")


class IntakeForm(_Rec):
    """What the counselor may see."""

    name: str = Field(min_length=1, max_length=80)
    age: int = Field(ge=12, le=100)
    gender: str = Field("unspecified", max_length=40)
    occupation: str = Field("unspecified", max_length=80)
    presenting_problem: str = Field(min_length=3, max_length=1500)
    goals: list[str] = Field(default_factory=list, max_length=12)
    referral: str = Field("self-referred", max_length=300)


class InnerState(_Rec):
    """The client's hidden state: 0..10 scales (floats; the dynamics move them in
    small steps), disclosure level 0..4, exploring moves met so far. ``trust`` is
    accepted as the old name of ``alliance``."""

    distress: float = Field(6, ge=0, le=10)
    hopelessness: float = Field(4, ge=0, le=10)
    anxiety: float = Field(5, ge=0, le=10)
    self_efficacy: float = Field(4, ge=0, le=10)
    alliance: float = Field(4, ge=0, le=10)
    disclosure: int = Field(1, ge=0, le=4)
    wish_to_continue: float = Field(7, ge=0, le=10)
    explored: int = Field(0, ge=0, description="Exploring counselor moves met over the course (disclosure needs them).")
    wants_to_end: bool = False
    homework: str | None = None
    recent_events: list[str] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _trust_is_alliance(cls, data: Any) -> Any:
        if isinstance(data, dict) and "trust" in data:
            data = dict(data)
            t = data.pop("trust")
            data.setdefault("alliance", t)
        return data


class Situation(_Rec):
    """One situation of the cognitive model (PATIENT-Ψ): what happened, the
    automatic thought, the emotion and what the client did."""

    situation: str = Field(min_length=3, max_length=400)
    automatic_thought: str = Field(min_length=3, max_length=300)
    emotion: str = Field(min_length=2, max_length=120)
    behaviour: str = Field(min_length=3, max_length=300)


class Formulation(_Rec):
    """A 5P case formulation."""

    presenting: str = Field("", max_length=600)
    predisposing: str = Field("", max_length=600)
    precipitating: str = Field("", max_length=600)
    perpetuating: str = Field("", max_length=600)
    protective: str = Field("", max_length=600)


class HiddenProfile(_Rec):
    """Only the client role-play sees this, and only the layers its disclosure
    level has unlocked (:mod:`therasim.policies.disclosure`)."""

    backstory: str = Field(min_length=3, max_length=6000)
    feelings: str = Field("", max_length=2000, description="How the problem feels day to day, and its context.")
    history: str = Field("", max_length=4000, description="Relevant history (PATIENT-Ψ).")
    core_beliefs: list[str] = Field(default_factory=list, max_length=12)
    core_belief_family: list[Literal[CORE_BELIEF_FAMILIES]] = Field(default_factory=list, max_length=3)  # type: ignore[valid-type]
    intermediate_beliefs: list[str] = Field(default_factory=list, max_length=12)
    coping_strategies: list[str] = Field(default_factory=list, max_length=12)
    situations: list[Situation] = Field(default_factory=list, max_length=6)
    formulation: Formulation | None = None
    triggers: list[str] = Field(default_factory=list, max_length=12)
    personality: str = Field("reserved", max_length=400)
    conversation_style: str = Field("brief, plain sentences", max_length=400)
    archetype: Literal[ARCHETYPES] = "minimiser"  # type: ignore[valid-type]
    risk_factors: list[str] = Field(default_factory=list, max_length=12)
    risk_history: str = Field("", max_length=2000, description="Past self-harm, suicidal thoughts or attempts; empty if none.")
    undisclosed: str = Field("", max_length=2000, description="What the client holds back until the alliance grows.")


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


_NO_RISK = ("", "none", "none known", "no", "n/a")


def has_risk_history(profile: Any) -> bool:
    """Whether a profile (model or dict) records a risk history or risk factors of self-harm."""
    hidden = profile.get("hidden", {}) if isinstance(profile, dict) else profile.hidden.model_dump()
    if str(hidden.get("risk_history") or "").strip().lower() not in _NO_RISK:
        return True
    words = ("death", "dead", "suicid", "self-harm", "self harm", "hurting", "overdose", "better off without")
    return any(w in str(f).lower() for f in hidden.get("risk_factors") or [] for w in words)


def _problem(rec: str, e: ValidationError) -> ProfileError:
    first = e.errors()[0]
    loc = ".".join(str(p) for p in first["loc"]) or "(record)"
    found = short_repr(first.get("input"), 60)
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
    records: list[tuple[str, Any]] = []
    problems: list[ProfileError] = []
    if p.suffix in (".jsonl", ".ndjson"):
        # line by line, split on \n only (as main: a U+2028 inside a string is not a line end): a bad line (bad UTF-8, invalid or too-deep JSON) is that line's problem
        try:
            for i, obj in iter_json_lines(p):
                if isinstance(obj, ParseError):
                    problems.append(ProfileError(f"profile {obj}", record=f"{p.name}:{i}"))
                else:
                    records.append((f"{p.name}:{i}", obj))
        except OSError as e:
            raise ProfileError(f"{p}: cannot read it ({e.strerror})", record=str(p)) from None
    else:
        try:
            text = p.read_text(encoding="utf-8")
        except UnicodeDecodeError as e:
            raise ProfileError(f"{p}: not UTF-8 text ({e.reason} at byte {e.start})", record=str(p)) from None
        except OSError as e:
            raise ProfileError(f"{p}: cannot read it ({e.strerror})", record=str(p)) from None
        try:
            data = load_yaml(text, str(p))
        except ParseError as e:
            raise ProfileError(str(e), record=str(p)) from None
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
            rec = f"{rec} (id {short_repr(obj['id'], 70)})"
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


_NAMES = ["Alex", "Sam", "Jordan", "Maya", "Priya", "Tom", "Lena", "Omar", "Grace", "Diego", "Mei", "Noah", "Zara", "Ivan", "Aisha", "Ben", "Ruth", "Kofi", "Elena", "Marcus"]
_JOBS = ["nurse", "student", "software developer", "teacher", "warehouse worker", "accountant", "chef", "retired", "unemployed", "sales assistant", "bus driver", "carer"]
_STYLES = ["brief, guarded answers", "long stories with detours", "jokes to deflect", "precise and analytical", "apologetic and polite", "blunt and sceptical"]
_PERSONALITY = ["introverted and careful", "warm but self-critical", "restless and impatient", "dry humour, private", "anxious to please", "stubborn and proud"]


def _range(rng: random.Random, lo_hi: tuple[int, int]) -> int:
    return rng.randint(lo_hi[0], lo_hi[1])


def _sample_one(rng: random.Random, pid: str) -> ClientProfile:
    from therasim.policies.problems import PROBLEMS

    t = rng.choice(PROBLEMS)
    name = rng.choice(_NAMES)
    age = rng.randint(18, 70) if t.key != "perfectionism" else rng.randint(18, 26)
    job = "student" if t.key == "perfectionism" else ("unemployed" if t.key == "depression_job_loss" else rng.choice(_JOBS))
    history = rng.choice(t.history)
    precipitant = rng.choice(t.precipitant)
    risks = [f for f, p in t.risk_factors if rng.random() < p]
    risk_history = rng.choice(t.risk_history) if rng.random() < t.p_risk_history else ""
    secret = rng.choice(t.secrets)
    coping = rng.sample(t.coping, k=min(len(t.coping), 2 + rng.randint(0, 1)))
    sev = t.severity
    distress = _range(rng, sev.get("distress", (4, 8)))
    hopelessness = min(10, _range(rng, sev.get("hopelessness", (2, 6))) + (1 if risk_history else 0))
    arch = rng.choice(t.archetypes) if t.archetypes and rng.random() < 0.8 else rng.choice(ARCHETYPES)
    situations = [Situation(situation=s, automatic_thought=a, emotion=e, behaviour=b) for s, a, e, b in rng.sample(t.situations, k=rng.randint(2, 3))]
    backstory = (
        f"{name} is {age} and works as a {job}." if job not in ("unemployed", "retired", "student") else f"{name} is {age} and is {'a student' if job == 'student' else job}."
    ) + (
        f" {name} {precipitant}. {t.feelings} {history} Since then {name} has been coping by {', '.join(coping[:-1])} and {coping[-1]}."
        f" What keeps it going: {t.perpetuating}. What helps: {', '.join(t.protective)}."
    )
    return ClientProfile(
        id=pid,
        intake=IntakeForm(
            name=name,
            age=age,
            gender=rng.choice(["female", "male", "non-binary", "unspecified"]),
            occupation=job,
            presenting_problem=t.presenting,
            goals=rng.sample(t.goals, k=min(2, len(t.goals))),
        ),
        hidden=HiddenProfile(
            backstory=backstory,
            feelings=t.feelings,
            history=f"{history} {name} {precipitant}.",
            core_beliefs=list(t.core_beliefs),
            core_belief_family=list(t.families),
            intermediate_beliefs=list(t.intermediate),
            coping_strategies=coping,
            situations=situations,
            formulation=Formulation(
                presenting=t.presenting,
                predisposing=history,
                precipitating=precipitant,
                perpetuating=t.perpetuating,
                protective=", ".join(t.protective),
            ),
            triggers=list(t.triggers),
            personality=rng.choice(_PERSONALITY),
            conversation_style=rng.choice(_STYLES),
            archetype=arch,
            risk_factors=risks,
            risk_history=risk_history,
            undisclosed=secret,
        ),
        initial_state=InnerState(
            distress=distress,
            hopelessness=hopelessness,
            anxiety=_range(rng, sev.get("anxiety", (3, 7))),
            self_efficacy=_range(rng, sev.get("self_efficacy", (2, 6))),
            alliance=rng.randint(3, 5),
            disclosure=rng.randint(0, 1),
            wish_to_continue=rng.randint(5, 8),
        ),
        extra={"template": t.key},
    )


def sample_profiles(n: int, seed: int = 0) -> list[ClientProfile]:
    """Draw ``n`` coherent profiles: a presenting problem first (policies/problems.py),
    then its cognitive model, risk factors, risk history, secret, archetype and starting
    state conditioned on it. The same seed gives the same profiles."""
    rng = random.Random(seed)
    return [_sample_one(rng, f"c{seed}-{i:04d}") for i in range(n)]


def example_profiles() -> list[ClientProfile]:
    """Hand-written example profiles shipped with the package."""
    from importlib import resources

    text = (resources.files("therasim") / "data" / "example_profiles.yaml").read_text(encoding="utf-8")
    return [ClientProfile.model_validate(r) for r in yaml.safe_load(text)]
