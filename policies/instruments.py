"""Self-report instruments as data: items, scale, subscales, bands, and how each
item is anchored to the simulated client's inner state.

The registry holds PHQ-9 and GAD-7 (answered before each session and once after
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
from typing import Any

from therasim.errors import UnknownNameError

__all__ = [
    "INSTRUMENTS",
    "Instrument",
    "Item",
    "anchor",
    "get_instrument",
    "items_text",
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


def _items(rows: list[tuple[str, str, dict[str, float]]], gates: dict[str, str] | None = None) -> tuple[Item, ...]:
    return tuple(Item(k, t, d, (gates or {}).get(k)) for k, t, d in rows)


_FREQ = "0 = not at all, 1 = several days, 2 = more than half the days, 3 = nearly every day"

INSTRUMENTS: dict[str, Instrument] = {}


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
    try:
        return INSTRUMENTS[name]
    except KeyError:
        raise UnknownNameError(f"unknown instrument {name!r}; known: {sorted(INSTRUMENTS)} (or register_instrument)") from None


register_instrument(Instrument(
    name="phq9",
    title="PHQ-9 (depression)",
    prefix="phq",
    items=_items([
        ("interest", "little interest or pleasure in doing things", {"hopelessness": 0.5, "distress": 0.5}),
        ("down", "feeling down, depressed or hopeless", {"distress": 0.5, "hopelessness": 0.5}),
        ("sleep", "trouble falling or staying asleep, or sleeping too much", {"distress": 0.6, "anxiety": 0.4}),
        ("tired", "feeling tired or having little energy", {"distress": 0.7, "self_efficacy": -0.3}),
        ("appetite", "poor appetite or overeating", {"distress": 0.7, "anxiety": 0.3}),
        ("failure", "feeling bad about yourself, or that you are a failure", {"hopelessness": 0.4, "self_efficacy": -0.6}),
        ("concentration", "trouble concentrating on things", {"anxiety": 0.5, "distress": 0.5}),
        ("psychomotor", "moving or speaking slowly, or being fidgety and restless", {"distress": 0.5, "anxiety": 0.5}),
        ("self_harm", "thoughts that you would be better off dead or of hurting yourself", {"hopelessness": 1.0}),
    ], gates={"self_harm": "risk_history"}),
    low=0, high=3, anchors=_FREQ, period="over the last two weeks",
    bands=((4, "minimal"), (9, "mild"), (14, "moderate"), (19, "moderately severe"), (27, "severe")),
    source="Kroenke, Spitzer & Williams (2001)",
))
register_instrument(Instrument(
    name="gad7",
    title="GAD-7 (anxiety)",
    prefix="gad",
    items=_items([
        ("nervous", "feeling nervous, anxious or on edge", {"anxiety": 0.8, "distress": 0.2}),
        ("cant_stop_worry", "not being able to stop or control worrying", {"anxiety": 0.9, "hopelessness": 0.1}),
        ("worry_too_much", "worrying too much about different things", {"anxiety": 1.0}),
        ("trouble_relaxing", "trouble relaxing", {"anxiety": 0.6, "distress": 0.4}),
        ("restless", "being so restless that it is hard to sit still", {"anxiety": 0.8, "distress": 0.2}),
        ("irritable", "becoming easily annoyed or irritable", {"distress": 0.5, "anxiety": 0.5}),
        ("afraid", "feeling afraid as if something awful might happen", {"anxiety": 0.7, "hopelessness": 0.3}),
    ]),
    low=0, high=3, anchors=_FREQ, period="over the last two weeks",
    bands=((4, "minimal"), (9, "mild"), (14, "moderate"), (21, "severe")),
    source="Spitzer, Kroenke, Williams & Löwe (2006)",
))
_GOAL = {"alliance": 0.6, "wish_to_continue": 0.4}
_TASK = {"alliance": 0.7, "self_efficacy": 0.3}
_BOND = {"alliance": 1.0}
register_instrument(Instrument(
    name="wai_sr",
    title="WAI-SR (working alliance, client form)",
    prefix="wai",
    items=_items([
        ("new_views", "what we do in sessions gives me new ways of looking at my problem", _TASK),
        ("appreciates", "I feel my counselor appreciates me", _BOND),
        ("agree_work_on", "my counselor and I agree on what is important for me to work on", _GOAL),
        ("cares", "my counselor cares about me even when I do things they do not approve of", _BOND),
        ("right_way", "I believe the way we are working on my problem is right", _TASK),
        ("shared_goals", "we are working towards goals we both agree on", _GOAL),
        ("respect", "my counselor and I respect each other", _BOND),
        ("helps_handle", "what I do in counselling helps me handle my problem", _TASK),
        ("agree_want", "we agree on what I want to get out of counselling", _GOAL),
        ("trust", "I trust my counselor", _BOND),
        ("agree_tasks", "we agree on the things I need to do to improve", _TASK),
        ("same_direction", "my counselor and I are heading in the same direction", _GOAL),
    ]),
    low=1, high=5, anchors="1 = seldom, 2 = sometimes, 3 = fairly often, 4 = very often, 5 = always", period="in today's session",
    subscales={
        "goal": ("agree_work_on", "shared_goals", "agree_want", "same_direction"),
        "task": ("new_views", "right_way", "helps_handle", "agree_tasks"),
        "bond": ("appreciates", "cares", "respect", "trust"),
    },
    source="Hatcher & Gillaspy (2006), after Horvath & Greenberg (1989)",
))
register_instrument(Instrument(
    name="srs",
    title="SRS (session rating)",
    prefix="srs",
    items=_items([
        ("relationship", "I felt heard, understood and respected", {"alliance": 1.0}),
        ("goals_topics", "we worked on and talked about what I wanted to", {"alliance": 0.6, "wish_to_continue": 0.4}),
        ("approach", "the counselor's approach is a good fit for me", {"alliance": 0.7, "wish_to_continue": 0.3}),
        ("overall", "overall, today's session was right for me", {"alliance": 0.5, "wish_to_continue": 0.3, "distress": -0.2}),
    ]),
    low=0, high=10, anchors="0 = not at all, 10 = completely", period="today's session", tolerance=2,
    flag_below=(36, "below 36: the alliance may need attention"),
    source="Duncan, Miller, Sparks et al. (2003)",
))


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
