"""The deterministic risk layer on a labelled set of utterances written for it."""

from __future__ import annotations

import pytest

from therasim.policies.risk import scan

# (text, expected category or None, expected qualifier: active|negated|past|third|quoted|None)
EXPLICIT = [
    ("I want to kill myself.", "self_harm"),
    ("I'm going to kill myself tonight.", "self_harm"),
    ("I've been thinking about suicide every day.", "self_harm"),
    ("Honestly I feel suicidal.", "self_harm"),
    ("I want to end my life.", "self_harm"),
    ("I'm planning to take my own life this weekend.", "self_harm"),
    ("I just want to die.", "self_harm"),
    ("I wish I was dead.", "self_harm"),
    ("Everyone would be better off without me.", "self_harm"),
    ("There's no reason to live anymore.", "self_harm"),
    ("I don't want to live anymore.", "self_harm"),
    ("I never want to wake up again.", "self_harm"),
    ("I've been cutting myself again.", "self_harm"),
    ("I hurt myself last night when I got home.", "self_harm"),
    ("I've been saving up my pills.", "self_harm"),
    ("I'm going to jump off the bridge.", "self_harm"),
    ("I wrote a goodbye note.", "self_harm"),
    ("I have the pills saved up and I know how many I'd need.", "self_harm"),
    ("I wrote goodbye letters to my kids last night.", "self_harm"),
    ("I can't go on like this.", "self_harm"),
    ("I want to end it all.", "self_harm"),
    ("I won't be around much longer.", "self_harm"),
    ("I'm going to kill him.", "harm_to_others"),
    ("I want to hurt my boss.", "harm_to_others"),
    ("I'll make them pay for this.", "harm_to_others"),
    ("I'm thinking about bringing a gun to work.", "harm_to_others"),
    ("Sometimes I have thoughts of hurting people.", "harm_to_others"),
    ("I could strangle my neighbour.", "harm_to_others"),
    ("He hits me when he's drunk.", "abuse"),
    ("My husband beats me.", "abuse"),
    ("She threatened to kill me if I leave.", "abuse"),
    ("I'm afraid to go home.", "abuse"),
    ("My dad locks me in my room for days.", "abuse"),
    ("My uncle touched me when I was small and I still feel sick.", "abuse"),
]
QUALIFIED = [
    ("I tried to kill myself two years ago.", "self_harm", "past"),
    ("I attempted suicide when I was 16.", "self_harm", "past"),
    ("I used to cut myself as a teenager.", "self_harm", "past"),
    ("My friend wants to kill herself.", "self_harm", "third"),
    ("My brother has been talking about suicide.", "self_harm", "third"),
    ("He said he wants to end his life.", "self_harm", "third"),
    ("I'm not suicidal, just tired.", "self_harm", "negated"),
    ("I would never kill myself, I have my kids.", "self_harm", "negated"),
    ("The song goes \"I want to die\" and it's stuck in my head.", "self_harm", "quoted"),
    ("She wrote \"I want to kill myself\" in a story for class.", "self_harm", "quoted"),
]
BENIGN = [
    "This traffic is killing me.",
    "My feet are killing me after that shift.",
    "I could kill for a coffee right now.",
    "That comedian killed it last night.",
    "I'm dying to see the new film.",
    "The cake was to die for.",
    "My boss would kill me if I was late again.",
    "I'm dead tired after work.",
    "I was bored to death in the meeting.",
    "We watched Suicide Squad on Friday.",
    "I nailed the presentation.",
    "I've been sleeping badly and worrying about money.",
    "I shot a photo of the sunset.",
    "Can you shoot me an email with the details?",
    "I hurt my back lifting boxes.",
    "The argument with my sister really hurt.",
    "I want to cut down on drinking.",
    "We need to cut costs at work.",
    "I'm going to take my time with this.",
    "I just want this week to end.",
    "I feel like I'm drowning in paperwork.",
    "My phone died in the middle of the call.",
    "I took my medication this morning as usual.",
    "I put my tablets in the dosette box for the week.",
    "We said goodbye at the station and I cried on the train.",
    "I laughed so hard I nearly died.",
]


def test_labelled_set_size() -> None:
    assert len(EXPLICIT) + len(QUALIFIED) + len(BENIGN) >= 60


@pytest.mark.parametrize(("text", "category"), EXPLICIT)
def test_explicit_statements_recalled(text: str, category: str) -> None:
    cues = scan(text)
    assert any(c.category == category and c.active for c in cues), (text, cues)
    for c in cues:
        assert text[c.start : c.end] == c.span


@pytest.mark.parametrize(("text", "category", "qualifier"), QUALIFIED)
def test_qualified_statements(text: str, category: str, qualifier: str) -> None:
    cues = [c for c in scan(text) if c.category == category]
    assert cues, text
    flag = {"past": "past", "third": "third_person", "negated": "negated", "quoted": "quoted"}[qualifier]
    assert any(getattr(c, flag) and not c.active for c in cues), (text, cues)


def test_recall_and_false_positive_rate(capsys: pytest.CaptureFixture[str]) -> None:
    recalled = sum(any(c.category == cat and c.active for c in scan(t)) for t, cat in EXPLICIT)
    flagged = [t for t in BENIGN if scan(t)]
    fp_rate = len(flagged) / len(BENIGN)
    with capsys.disabled():
        print(f"\n[risk scan] explicit recall {recalled}/{len(EXPLICIT)} = {recalled / len(EXPLICIT):.0%}; benign false positives {len(flagged)}/{len(BENIGN)} = {fp_rate:.1%} {flagged}")
    assert recalled == len(EXPLICIT)
    assert fp_rate <= 0.05


def test_empty() -> None:
    assert scan("") == []
    assert scan("I had a good week.") == []
