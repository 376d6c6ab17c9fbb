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


def instance_from_schema(schema: dict[str, Any], rng: random.Random) -> Any:
    """An instance that validates against ``schema`` (the subset pydantic emits)."""
    return _gen(inline_refs(schema), rng, 0)


def _gen(s: dict[str, Any], rng: random.Random, depth: int) -> Any:
    if "const" in s:
        return s["const"]
    if "enum" in s:
        return rng.choice(s["enum"])
    for key in ("anyOf", "oneOf"):
        if key in s:
            options = [o for o in s[key] if o.get("type") != "null"] or s[key]
            return _gen(rng.choice(options), rng, depth + 1)
    if "allOf" in s and len(s["allOf"]) == 1:
        return _gen(s["allOf"][0], rng, depth + 1)
    t = s.get("type")
    if isinstance(t, list):
        t = next((x for x in t if x != "null"), "null")
    if t == "object" or "properties" in s:
        props = s.get("properties", {})
        return {k: _gen(v, rng, depth + 1) for k, v in props.items()}
    if t == "array":
        lo = int(s.get("minItems", 0))
        hi = int(s.get("maxItems", max(lo, 2)))
        n = rng.randint(lo, max(lo, min(hi, lo + 2)))
        return [_gen(s.get("items", {"type": "string"}), rng, depth + 1) for _ in range(n)]
    if t == "integer":
        lo = int(s.get("minimum", s.get("exclusiveMinimum", -1) + 1 if "exclusiveMinimum" in s else 0))
        hi = int(s.get("maximum", lo + 10))
        return rng.randint(lo, max(lo, hi))
    if t == "number":
        flo = float(s.get("minimum", 0.0))
        fhi = float(s.get("maximum", flo + 1.0))
        return round(rng.uniform(flo, fhi), 3)
    if t == "boolean":
        return rng.random() < 0.3
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
