"""Self-report instruments as data: items, scale, subscales, bands, and how each
item is anchored to the simulated client's inner state.

The registry holds (from ``policies/data/instruments.yaml``) PHQ-9 and GAD-7 (answered before each session and once after
the last), WAI-SR and SRS (answered after each session). Item wording is our own
paraphrase; item counts, scales, subscales and bands follow the published
instruments (sources in docs/simulation.md). Users register their own with
:func:`register_instrument`.

Anchoring: every item names the inner-state variables that drive it (a weight per
variable; a negative weight means the item rises as the variable falls). The
weighted mean of the normalised variables (0..1) maps linearly onto the item's
scale; the client's answer is kept when it is within ``tolerance`` of that anchor
and moved to the nearest bound otherwise (the move is recorded). So a model that
answers at random still reports a score that follows the client's state, and a
model that answers well keeps its own answer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import yaml

from therasim._internal.registry import Registry

__all__ = [
    "INSTRUMENTS",
    "Instrument",
    "Item",
    "anchor",
    "get_instrument",
    "items_text",
    "load_instruments",
    "register_instrument",
    "score",
]

INNER_RANGE = 10.0  # inner-state variables run 0..10


@dataclass(frozen=True, slots=True)
class Item:
    key: str
    text: str
    drivers: Mapping[str, float]
    gate: str | None = None  # "risk_history": anchored at the scale minimum unless the profile has a risk history


@dataclass(frozen=True, slots=True)
class Instrument:
    name: str
    title: str
    prefix: str  # field prefix in the structured answer (phq_interest, ...)
    items: tuple[Item, ...]
    low: int
    high: int
    anchors: str  # how the scale points read, shown to the client
    period: str  # the time frame the client answers for
    tolerance: int = 1
    bands: tuple[tuple[int, str], ...] = ()  # (upper total, label)
    subscales: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    flag_below: tuple[int, str] | None = None  # (total, flag) e.g. SRS < 36
    source: str = ""

    @property
    def keys(self) -> list[str]:
        return [i.key for i in self.items]

    def field(self, key: str) -> str:
        return f"{self.prefix}_{key}"

    def item(self, key: str) -> Item:
        for i in self.items:
            if i.key == key:
                return i
        raise KeyError(key)

    def band(self, total: int) -> str | None:
        for hi, label in self.bands:
            if total <= hi:
                return label
        return self.bands[-1][1] if self.bands else None


INSTRUMENTS: Registry[Instrument] = Registry("instrument", hint="or register_instrument")


def register_instrument(inst: Instrument) -> None:
    """Add or replace an instrument by name."""
    if not inst.items:
        raise ValueError(f"instrument {inst.name!r} has no items")
    for it in inst.items:
        bad = [v for v in it.drivers if v not in ("distress", "hopelessness", "anxiety", "self_efficacy", "alliance", "wish_to_continue")]
        if bad or not it.drivers:
            raise ValueError(f"instrument {inst.name!r} item {it.key!r}: drivers must name inner-state variables, got {sorted(it.drivers)}")
    INSTRUMENTS[inst.name] = inst


def get_instrument(name: str) -> Instrument:
    return INSTRUMENTS.lookup(name)


def load_instruments(text: str) -> list[Instrument]:
    """Instruments from YAML (a list of mappings with the :class:`Instrument` fields;
    ``items`` as ``{key, text, drivers, gate?}``), as in ``policies/data/instruments.yaml``."""
    out = []
    for d in yaml.safe_load(text) or []:
        items = tuple(Item(it["key"], it["text"], dict(it["drivers"]), it.get("gate")) for it in d["items"])
        extra = {k: d[k] for k in ("tolerance", "source") if k in d}
        out.append(Instrument(
            name=d["name"], title=d["title"], prefix=d["prefix"], items=items, low=int(d["low"]), high=int(d["high"]),
            anchors=d["anchors"], period=d["period"], bands=tuple((int(hi), str(label)) for hi, label in d.get("bands") or ()),
            subscales={k: tuple(v) for k, v in (d.get("subscales") or {}).items()},
            flag_below=(int(d["flag_below"][0]), str(d["flag_below"][1])) if d.get("flag_below") else None, **extra,
        ))
    return out


for _inst in load_instruments((resources.files("therasim.policies") / "data" / "instruments.yaml").read_text(encoding="utf-8")):
    register_instrument(_inst)


def items_text(names: tuple[str, ...] = ("phq9", "gad7")) -> str:
    """The items of some instruments as ``- field: text`` lines (the client header lists the outcome items)."""
    return "\n".join(f"- {inst.field(i.key)}: {i.text}" for inst in map(get_instrument, names) for i in inst.items)


def anchor(inst: Instrument, item: Item, inner: Mapping[str, Any], *, risk_history: bool = False) -> float:
    """The item score the inner state implies (on the instrument's scale)."""
    if item.gate == "risk_history" and not risk_history:
        return float(inst.low)
    num = den = 0.0
    for var, w in item.drivers.items():
        x = min(max(float(inner.get(var, 5)), 0.0), INNER_RANGE) / INNER_RANGE
        num += abs(w) * (x if w > 0 else 1.0 - x)
        den += abs(w)
    latent = num / den if den else 0.5
    return inst.low + latent * (inst.high - inst.low)


def score(inst: Instrument, answers: Mapping[str, int | None], inner: Mapping[str, Any], *, risk_history: bool = False) -> dict[str, Any]:
    """Anchor every answer to the inner state and score the form.

    ``answers`` maps item key -> the client's answer (``None`` when that item's call
    failed). Missing items stay missing: the total is ``None`` and ``missing`` lists them.
    """
    items: dict[str, int | None] = {}
    moved: dict[str, dict[str, Any]] = {}
    for it in inst.items:
        a = answers.get(it.key)
        if a is None:
            items[it.key] = None
            continue
        target = anchor(inst, it, inner, risk_history=risk_history)
        tol = 0 if (it.gate == "risk_history" and not risk_history) else inst.tolerance
        lo, hi = max(inst.low, round(target) - tol), min(inst.high, round(target) + tol)
        kept = min(max(int(a), lo), hi)
        items[it.key] = kept
        if kept != a:
            moved[it.key] = {"answered": int(a), "kept": kept, "anchor": round(target, 2)}
    missing = [k for k, v in items.items() if v is None]
    out: dict[str, Any] = {"items": items, "total": None if missing else sum(v for v in items.values() if v is not None)}
    if missing:
        out["missing"] = missing
    if out["total"] is not None:
        if inst.bands:
            out["band"] = inst.band(out["total"])
        out["mean"] = round(out["total"] / len(inst.items), 3)
        if inst.flag_below and out["total"] < inst.flag_below[0]:
            out["flag"] = inst.flag_below[1]
    if inst.subscales:
        subs: dict[str, float | None] = {}
        for name, keys in inst.subscales.items():
            vals = [items[k] for k in keys]
            subs[name] = None if any(v is None for v in vals) else round(sum(v for v in vals if v is not None) / len(vals), 3)
        out["subscales"] = subs
    if moved:
        out["anchored"] = moved
    return out
