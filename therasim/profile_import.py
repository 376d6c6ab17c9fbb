"""Import client profiles published in other formats (MindEval, Patient-Psi).

Nothing is dropped silently: every source attribute lands in a profile field,
in the client-visible "about me" details of the hidden profile, or in the
profile's ``extra`` section (all of them are also kept there verbatim), and a
value longer than its field is kept whole in ``extra`` with the cut recorded
under ``extra["_shortened"]``. The field mapping is in docs/profiles_import.md.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from therasim.errors import ProfileError
from therasim.profiles import ClientProfile

__all__ = ["FORMATS", "foreign_format", "from_mindeval", "from_patient_psi", "import_profiles"]

MINDEVAL_ATTRIBUTES = (
    "name", "sex", "gender_identity", "sexual_orientation", "age", "race", "thought_process", "general_outlook",
    "conversation_style", "recent_mood", "education", "profession", "employment_status", "financial_situation",
    "support_system", "siblings", "relationship_status", "living_situation", "exercise", "sleep_quality",
    "attitude_towards_mindfulness", "region", "depressive_symptoms", "anxious_symptoms", "program_goal",
)
# MindEval attributes with no intake/hidden field of their own: shown to the client as
# "about me" details (in the hidden profile) and kept in ``extra``.
MINDEVAL_DETAILS = (
    "sex", "sexual_orientation", "race", "region", "education", "employment_status", "financial_situation",
    "support_system", "siblings", "relationship_status", "living_situation", "exercise", "sleep_quality",
    "attitude_towards_mindfulness", "recent_mood", "thought_process", "general_outlook",
)
PSI_STYLES = {
    "plain": "plain, direct answers",
    "upset": "upset and frustrated, pushes back on the counselor",
    "verbose": "talkative, long answers with many details",
    "reserved": "reserved, short answers, needs encouragement to open up",
    "tangent": "drifts off topic into tangents",
    "pleasing": "eager to please, agrees readily even when unsure",
}


def _limit(field: str) -> int | None:
    """max_length of a dotted ClientProfile field (None when unbounded)."""
    model: Any = ClientProfile
    info = None
    for part in field.split("."):
        info = model.model_fields[part]
        model = info.annotation
    for m in (info.metadata if info is not None else []):
        if hasattr(m, "max_length") and m.max_length is not None:
            return int(m.max_length)
    return None


def _fit(value: str, field: str, extra: dict[str, Any]) -> str:
    """``value`` if it fits ``field``; else a cut version ending in "...", the whole value
    kept in ``extra`` and the cut recorded."""
    value = value.strip()
    n = _limit(field)
    if n is None or len(value) <= n:
        return value
    extra.setdefault("_shortened", {})[field] = {"kept_chars": n - 3, "full_chars": len(value), "full_value_in": f"extra.full.{field}"}
    extra.setdefault("full", {})[field] = value
    return value[: n - 3].rstrip() + "..."


def _text(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, str):
        return v.strip()
    if isinstance(v, list):
        return "; ".join(_text(x) for x in v if _text(x))
    if isinstance(v, dict):
        return "; ".join(f"{k}: {_text(x)}" for k, x in v.items() if _text(x))
    return str(v)


def _age(v: Any) -> int | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        return int(v)
    nums = [int(x) for x in re.findall(r"\d+", str(v or ""))]
    if not nums:
        return None
    return round(sum(nums[:2]) / len(nums[:2]))  # "35-44" -> 40


def _slug(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", s).strip("-.")[:40] or "x"


def _has_field(name: str) -> bool:
    return name in ClientProfile.model_fields


def from_mindeval(rec: dict[str, Any], index: int) -> dict[str, Any]:
    """One MindEval profile record -> a therasim profile dict (not yet validated)."""
    attrs = rec.get("member_attributes")
    if not isinstance(attrs, dict):
        raise ProfileError(f"record {index + 1}: member_attributes must be a mapping, found {type(attrs).__name__}", record=str(index + 1), field="member_attributes")
    narrative = _text(rec.get("member_narrative"))
    if not narrative:
        raise ProfileError(f"record {index + 1}: member_narrative is missing or empty", record=str(index + 1), field="member_narrative")
    extra: dict[str, Any] = {"source": "mindeval", "source_record": index + 1, "member_attributes": dict(attrs)}
    if rec.get("member_narrative_thinking_trace") is not None:
        extra["member_narrative_thinking_trace"] = rec["member_narrative_thinking_trace"]
    others = {k: v for k, v in rec.items() if k not in ("member_attributes", "member_narrative", "member_narrative_thinking_trace")}
    if others:
        extra["record_fields"] = others
    unknown = sorted(set(attrs) - set(MINDEVAL_ATTRIBUTES))
    name = _text(attrs.get("name")) or f"Member {index + 1}"
    age = _age(attrs.get("age"))
    if age is None:
        extra.setdefault("_defaults", {})["intake.age"] = "MindEval age missing or not a number; 35 used"
        age = 35
    symptoms = [f"{label}: {_text(attrs.get(k))}" for k, label in (("depressive_symptoms", "Depressive symptoms"), ("anxious_symptoms", "Anxious symptoms")) if _text(attrs.get(k))]
    presenting = ". ".join(symptoms) or _text(attrs.get("recent_mood")) or "low mood and worry"
    details = [f"{k.replace('_', ' ')}: {_text(attrs[k])}" for k in (*MINDEVAL_DETAILS, *unknown) if _text(attrs.get(k))]
    # the details first: if the narrative is longer than the field, its end is what is cut (and kept in extra)
    backstory = ("About me: " + "; ".join(details) + ".\n\n" if details else "") + narrative
    rid = rec.get("id") or rec.get("member_id")
    return {
        "id": f"mindeval-{_slug(str(rid))}" if rid is not None else f"mindeval-{index + 1:03d}",
        "intake": {
            "name": _fit(name, "intake.name", extra),
            "age": max(12, min(100, age)),
            "gender": _fit(_text(attrs.get("gender_identity")) or _text(attrs.get("sex")) or "unspecified", "intake.gender", extra),
            "occupation": _fit(_text(attrs.get("profession")) or _text(attrs.get("employment_status")) or "unspecified", "intake.occupation", extra),
            "presenting_problem": _fit(presenting, "intake.presenting_problem", extra),
            "goals": [_fit(_text(attrs.get("program_goal")), "intake.presenting_problem", extra)] if _text(attrs.get("program_goal")) else [],
            "referral": "MindEval profile",
        },
        "hidden": {
            "backstory": _fit(backstory, "hidden.backstory", extra),
            "personality": _fit("; ".join(x for x in (_text(attrs.get("general_outlook")), _text(attrs.get("thought_process"))) if x) or "reserved", "hidden.personality", extra),
            "conversation_style": _fit(_text(attrs.get("conversation_style")) or "brief, plain sentences", "hidden.conversation_style", extra),
        },
        "extra": extra,
    }


def from_patient_psi(rec: dict[str, Any], index: int) -> dict[str, Any]:
    """One Patient-Psi (PATIENT-Ψ-CM cognitive model) record -> a therasim profile dict."""
    if not any(k in rec for k in ("history", "helpless_belief", "auto_thought", "situation")):
        raise ProfileError(f"record {index + 1}: not a Patient-Psi cognitive model (no history, situation, auto_thought or *_belief fields)", record=str(index + 1))
    extra: dict[str, Any] = {"source": "patient-psi", "source_record": index + 1, "record": dict(rec)}
    extra["_defaults"] = {"intake.name": "Patient-Psi profiles have no name", "intake.age": "Patient-Psi profiles have no age; 35 used"}
    rid = rec.get("id") or rec.get("ID") or index + 1
    beliefs: list[str] = []
    for k in ("helpless_belief", "unlovable_belief", "worthless_belief"):
        v = rec.get(k)
        beliefs.extend([_text(x) for x in v] if isinstance(v, list) else ([_text(v)] if _text(v) else []))
    types = rec.get("type") or ["plain"]
    types = types if isinstance(types, list) else [types]
    style = "; ".join(PSI_STYLES.get(str(t).lower(), str(t)) for t in types)
    situation = _text(rec.get("situation"))
    cognition = "; ".join(f"{label}: {_text(rec.get(k))}" for k, label in (
        ("situation", "situation"), ("auto_thought", "automatic thought"), ("emotion", "emotion"), ("behavior", "behaviour"),
        ("intermediate_belief", "intermediate belief"), ("intermediate_belief_depression", "intermediate belief (depressed)"),
        ("coping_strategies", "coping strategies"),
    ) if _text(rec.get(k)))
    history = _text(rec.get("history")) or situation or "difficulties the client finds hard to put into words"
    return {
        "id": f"patientpsi-{_slug(str(rid))}",
        "intake": {
            "name": f"Client {_slug(str(rid))}"[:80],
            "age": 35,
            "presenting_problem": _fit(situation or history, "intake.presenting_problem", extra),
            "referral": "Patient-Psi cognitive model",
        },
        "hidden": {
            "backstory": _fit(history + (f"\n\nHow I think when it is bad: {cognition}." if cognition else ""), "hidden.backstory", extra),
            "core_beliefs": [_fit(b, "hidden.personality", extra) for b in beliefs[:10]],
            "triggers": [_fit(situation, "hidden.personality", extra)] if situation else [],
            "conversation_style": _fit(style, "hidden.conversation_style", extra),
        },
        "extra": extra,
    }


FORMATS = {"mindeval": from_mindeval, "patient-psi": from_patient_psi}


def _records(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise ProfileError(f"{path}: no such file", record=str(path))
    text = path.read_text(encoding="utf-8")
    s = text.lstrip()
    if s.startswith("["):
        data = json.loads(s)
        return list(data)
    if s.startswith("{") and "\n{" not in s.strip():
        obj = json.loads(s)
        return list(obj.get("profiles") or obj.get("data") or [obj]) if isinstance(obj, dict) else [obj]
    out = []
    for i, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise ProfileError(f"{path.name}:{i}: invalid JSON ({e.msg})", record=f"{path.name}:{i}") from None
    return out


def import_profiles(fmt: str, path: str | Path) -> tuple[list[ClientProfile], list[ProfileError]]:
    """Convert every record of a MindEval or Patient-Psi file; returns (profiles, problems)."""
    if fmt not in FORMATS:
        raise ProfileError(f"unknown profile format {fmt!r}; formats: {sorted(FORMATS)}")
    if not _has_field("extra"):  # pragma: no cover - the schema carries it
        raise ProfileError("this therasim's ClientProfile has no 'extra' section to keep unmapped attributes in")
    p = Path(path)
    try:
        records = _records(p)
    except json.JSONDecodeError as e:
        raise ProfileError(f"{p}: not JSON or JSONL ({e.msg})", record=str(p)) from None
    out: list[ClientProfile] = []
    problems: list[ProfileError] = []
    seen: set[str] = set()
    for i, rec in enumerate(records):
        where = f"{p.name} record {i + 1}"
        if not isinstance(rec, dict):
            problems.append(ProfileError(f"{where}: expected a mapping, found {type(rec).__name__}", record=where))
            continue
        try:
            d = FORMATS[fmt](rec, i)
            if d["id"] in seen:
                d["id"] = f"{d['id']}-{i + 1}"
            prof = ClientProfile.model_validate(d)
        except ProfileError as e:
            problems.append(ProfileError(f"{where}: {e}", record=where, field=e.field))
            continue
        except ValidationError as e:
            first = e.errors()[0]
            loc = ".".join(str(x) for x in first["loc"])
            problems.append(ProfileError(f"{where}: field {loc}: {first['msg']}", record=where, field=loc))
            continue
        seen.add(prof.id)
        out.append(prof)
    return out, problems


def foreign_format(obj: Any) -> str | None:
    """The importer for a record in a foreign profile format, or None."""
    if not isinstance(obj, dict) or "intake" in obj:
        return None
    if "member_attributes" in obj or "member_narrative" in obj:
        return "mindeval"
    if any(k in obj for k in ("helpless_belief", "unlovable_belief", "worthless_belief", "auto_thought", "intermediate_belief")):
        return "patient-psi"
    return None
