"""Deterministic schema-valid JSON from a JSON schema (for test doubles and the stub server)."""

from __future__ import annotations

import random
from typing import Any

from therasim.structured import inline_refs

__all__ = ["instance_from_schema"]

_WORDS = (
    "calm worried tired hopeful stuck better work sleep family friend mother week plan "
    "small step breathing thought notice try talk feel today again maybe okay"
).split()


def instance_from_schema(schema: dict[str, Any], rng: random.Random, *, p_true: float = 0.3, p_true_by_name: dict[str, float] | None = None) -> Any:
    """An instance that validates against ``schema`` (the subset pydantic emits);
    booleans are true with probability ``p_true`` (per property name in ``p_true_by_name``)."""
    return _gen(inline_refs(schema), rng, 0, p_true, p_true_by_name or {})


def _gen(s: dict[str, Any], rng: random.Random, depth: int, p_true: float = 0.3, bias: dict[str, float] | None = None) -> Any:
    bias = bias or {}
    if "const" in s:
        return s["const"]
    if "enum" in s:
        return rng.choice(s["enum"])
    for key in ("anyOf", "oneOf"):
        if key in s:
            options = [o for o in s[key] if o.get("type") != "null"] or s[key]
            return _gen(rng.choice(options), rng, depth + 1, p_true, bias)
    if "allOf" in s and len(s["allOf"]) == 1:
        return _gen(s["allOf"][0], rng, depth + 1, p_true, bias)
    t = s.get("type")
    if isinstance(t, list):
        t = next((x for x in t if x != "null"), "null")
    if t == "object" or "properties" in s:
        props = s.get("properties", {})
        return {k: _gen(v, rng, depth + 1, bias.get(k, p_true) if v.get("type") == "boolean" else p_true, bias) for k, v in props.items()}
    if t == "array":
        lo = int(s.get("minItems", 0))
        hi = int(s.get("maxItems", max(lo, 2)))
        n = rng.randint(lo, max(lo, min(hi, lo + 2)))
        return [_gen(s.get("items", {"type": "string"}), rng, depth + 1, p_true, bias) for _ in range(n)]
    if t == "integer":
        lo = int(s.get("minimum", s.get("exclusiveMinimum", -1) + 1 if "exclusiveMinimum" in s else 0))
        hi = int(s.get("maximum", lo + 10))
        return rng.randint(lo, max(lo, hi))
    if t == "number":
        flo = float(s.get("minimum", 0.0))
        fhi = float(s.get("maximum", flo + 1.0))
        return round(rng.uniform(flo, fhi), 3)
    if t == "boolean":
        return rng.random() < p_true
    if t == "null":
        return None
    # string (or untyped)
    lo = int(s.get("minLength", 1))
    hi = int(s.get("maxLength", 60))
    words: list[str] = []
    while len(" ".join(words)) < max(lo, min(hi, 24)):
        words.append(rng.choice(_WORDS))
    text = " ".join(words)
    return text[: max(lo, min(hi, len(text)))]
