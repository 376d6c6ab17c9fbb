"""Deterministic schema-valid JSON from a JSON schema (for test doubles and the stub server)."""

from __future__ import annotations

import random
from typing import Any

from therasim.structured import inline_refs

__all__ = ["MAX_DEPTH", "MAX_ITEMS", "MAX_NODES", "MAX_STRING", "SchemaTooLarge", "instance_from_schema"]

# Bounds on what one schema may ask for: a request is small, its instance must be too.
MAX_STRING = 20_000  # characters of one string (minLength beyond this is refused)
MAX_ITEMS = 1_000  # items of one array (minItems beyond this is refused)
MAX_DEPTH = 32  # nesting of objects and arrays
MAX_NODES = 20_000  # values in one instance


class SchemaTooLarge(ValueError):
    """The schema asks for an instance past the sampler's bounds (or is not a schema)."""

_WORDS = (
    "calm worried tired hopeful stuck better work sleep family friend mother week plan "
    "small step breathing thought notice try talk feel today again maybe okay"
).split()


def instance_from_schema(schema: dict[str, Any], rng: random.Random, *, p_true: float = 0.3, p_true_by_name: dict[str, float] | None = None) -> Any:
    """An instance that validates against ``schema`` (the subset pydantic emits);
    booleans are true with probability ``p_true`` (per property name in ``p_true_by_name``)."""
    if not isinstance(schema, dict):
        raise SchemaTooLarge(f"a JSON schema must be an object, got {type(schema).__name__}")
    budget = [MAX_NODES]
    try:
        return _gen(inline_refs(schema), rng, 0, p_true, p_true_by_name or {}, budget)
    except SchemaTooLarge:
        raise
    except (ValueError, TypeError, KeyError, AttributeError, IndexError, OverflowError, RecursionError) as e:
        raise SchemaTooLarge(f"unsupported schema: {type(e).__name__}: {str(e)[:200]}") from None


def _int(s: dict[str, Any], key: str, default: int) -> int:
    v = s.get(key, default)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v != v or v in (float("inf"), float("-inf")):
        raise SchemaTooLarge(f"{key} must be a finite number, got {str(v)[:40]!r}")
    return int(v)


def _gen(s: dict[str, Any], rng: random.Random, depth: int, p_true: float = 0.3, bias: dict[str, float] | None = None, budget: list[int] | None = None) -> Any:
    bias = bias or {}
    budget = budget if budget is not None else [MAX_NODES]
    budget[0] -= 1
    if budget[0] < 0:
        raise SchemaTooLarge(f"the instance would have more than {MAX_NODES} values")
    if depth > MAX_DEPTH:
        raise SchemaTooLarge(f"the schema nests deeper than {MAX_DEPTH} levels")
    if not isinstance(s, dict):
        raise SchemaTooLarge(f"a subschema must be an object, got {type(s).__name__}")
    if "const" in s:
        return s["const"]
    if "enum" in s:
        return rng.choice(s["enum"])
    for key in ("anyOf", "oneOf"):
        if key in s:
            options = [o for o in s[key] if o.get("type") != "null"] or s[key]
            return _gen(rng.choice(options), rng, depth + 1, p_true, bias, budget)
    if "allOf" in s and len(s["allOf"]) == 1:
        return _gen(s["allOf"][0], rng, depth + 1, p_true, bias, budget)
    t = s.get("type")
    if isinstance(t, list):
        t = next((x for x in t if x != "null"), "null")
    if t == "object" or "properties" in s:
        props = s.get("properties", {})
        if not isinstance(props, dict):
            raise SchemaTooLarge("properties must be an object")
        return {k: _gen(v, rng, depth + 1, bias.get(k, p_true) if isinstance(v, dict) and v.get("type") == "boolean" else p_true, bias, budget) for k, v in props.items()}
    if t == "array":
        lo = _int(s, "minItems", 0)
        if lo > MAX_ITEMS:
            raise SchemaTooLarge(f"minItems {lo} is more than {MAX_ITEMS}")
        hi = _int(s, "maxItems", max(lo, 2))
        n = rng.randint(lo, max(lo, min(hi, lo + 2)))
        return [_gen(s.get("items", {"type": "string"}), rng, depth + 1, p_true, bias, budget) for _ in range(n)]
    if t == "integer":
        lo = _int(s, "minimum", _int(s, "exclusiveMinimum", -1) + 1 if "exclusiveMinimum" in s else 0)
        hi = _int(s, "maximum", lo + 10)
        return rng.randint(lo, max(lo, hi))
    if t == "number":
        flo = float(s.get("minimum", 0.0))
        fhi = float(s.get("maximum", flo + 1.0))
        if not (abs(flo) < 1e300 and abs(fhi) < 1e300):
            raise SchemaTooLarge("number bounds must be finite")
        return round(rng.uniform(flo, fhi), 3)
    if t == "boolean":
        return rng.random() < p_true
    if t == "null":
        return None
    # string (or untyped)
    lo = _int(s, "minLength", 1)
    if lo > MAX_STRING:
        raise SchemaTooLarge(f"minLength {lo} is more than {MAX_STRING}")
    hi = _int(s, "maxLength", 60)
    words: list[str] = []
    n = -1  # length of " ".join(words), kept as we go (linear, not quadratic)
    while n < max(lo, min(hi, 24)):
        w = rng.choice(_WORDS)
        words.append(w)
        n += len(w) + 1
    text = " ".join(words)
    return text[: max(lo, min(hi, len(text)))]
