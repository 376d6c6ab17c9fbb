"""The second deterministic risk layer: the MiniLM classifier beside the patterns.

Merge logic on hand-made readings and the threshold choice by hand (fast lane); the
shipped weights tied to the training rows' hash and the thresholds reproduced from
the shipped out-of-fold probabilities; the patterns-only fallback; and, on the real
model, the held-out figures per rung printed next to the patterns alone."""

from __future__ import annotations

import collections
import functools
import json
import re
import subprocess
import sys

import numpy as np
import pytest

from therasim.errors import MissingExtraError
from therasim.policies import risk, risk_model
from therasim.policies.risk import RUNG_CATEGORY, RUNGS, pattern_scan, scan, with_reading
from therasim.policies.risk_model import (
    CLASSES,
    LORA_TARGETS,
    RISK_CLASSES,
    Reading,
    choose_thresholds,
    data_sha256,
    sentences,
    training_rows,
)


def _reading(p: float, rung: str = "plan", benign: str = "media", pb: float = 0.9, span: tuple[int, int] = (0, 5)) -> Reading:
    return Reading(p, rung, benign, pb, span)


def test_sentences_by_hand():
    text = "  I'm fine.  Honestly!\nI took them all "
    assert [text[s:e] for s, e in sentences(text)] == ["I'm fine.", "Honestly!", "I took them all"]
    assert sentences("") == [] and sentences("...") == []  # a sentence needs a character other than . ! ?


def test_classifier_adds_a_cue_the_patterns_miss():
    text = "Work is fine. I've worked out the when and the where."
    assert pattern_scan(text) == []
    span = sentences(text)[1]
    cues = with_reading(text, [], _reading(0.9, "plan", span=span), threshold=0.5, veto=0.1)
    assert len(cues) == 1
    c = cues[0]
    assert (c.category, c.rung, c.source, c.active, c.span, c.score) == ("self_harm", "plan", "model", True, "I've worked out the when and the where.", 0.9)
    assert c.pattern == "model:plan"
    # below the threshold and not a qualified mention: nothing
    assert with_reading(text, [], _reading(0.4, benign="everyday_distress"), threshold=0.5, veto=0.1) == []


def test_classifier_raises_rungs_and_keeps_pattern_spans():
    text = "I want to kill myself."
    pat = pattern_scan(text)
    assert [c.rung for c in pat] == ["active_nonspecific"]
    raised = with_reading(text, pat, _reading(0.95, "plan"), threshold=0.5, veto=0.1)
    assert [(c.rung, c.source, c.span) for c in raised] == [("plan", "pattern", "kill myself")]
    # a lower rung from the classifier does not lower the pattern's
    assert with_reading(text, pat, _reading(0.95, "wish_dead"), threshold=0.5, veto=0.1) == pat


def test_benign_reading_qualifies_pattern_cues():
    text = "We watched a documentary about suicide prevention."
    pat = pattern_scan(text)
    assert pat and pat[0].active  # the pattern alone flags it
    media = with_reading(text, pat, _reading(0.05, benign="media"), threshold=0.5, veto=0.1)
    assert not media[0].active and media[0].context == "benign:media" and not media[0].negated and media[0].score == 0.05
    denial = with_reading(text, pat, _reading(0.05, benign="denial"), threshold=0.5, veto=0.1)
    assert denial[0].negated and denial[0].context == "benign:denial"
    history = with_reading(text, pat, _reading(0.05, benign="resolved_history"), threshold=0.5, veto=0.1)
    assert history[0].past and not history[0].active
    # between veto and threshold the pattern cue stands
    assert with_reading(text, pat, _reading(0.3, benign="media"), threshold=0.5, veto=0.1) == pat


def test_explicit_cues_need_a_qualifier_to_be_vetoed():
    """An explicit pattern cue ("kms", "end it all", pills saved up, goodbye letters)
    stands under a benign reading at or below the veto unless a qualifier is present:
    the classifier reads a qualified mention (denial, resolved history, third person,
    media, professional) at 0.5 or more, or the sentence carries a hyperbole marker."""
    def active(text: str, benign: str, pb: float = 0.9) -> list[bool]:
        return [c.active for c in with_reading(text, pattern_scan(text), _reading(0.002, "active_nonspecific", benign, pb), threshold=0.1, veto=0.09)]

    assert active("honestly i just wanna kms", "figure_of_speech") == [True]  # issue #14's slang example
    assert active("I have the pills saved up and I know how many I'd need.", "everyday_distress") == [True]
    assert active("I wrote goodbye letters to my kids last night.", "media", 0.4) == [True]  # an uncertain qualified reading
    assert active("kms this chem test tmrw 💀", "figure_of_speech") == [False]  # a trivial object and a skull
    assert active("I'm literally going to end it all if the bus doesn't come", "figure_of_speech") == [False]  # a condition
    assert active("I wrote goodbye letters to my kids last night.", "media") == [False]  # a confident qualified reading
    assert active("honestly i just wanna kms", "denial", 0.6) == [False]
    # a topic word is not explicit: any benign reading qualifies it, as before
    assert active("We watched a documentary about suicide prevention.", "everyday_distress", 0.3) == [False]
    # the threshold choice counts the texts whose cue stands as flagged
    assert risk.unvetoed("honestly i just wanna kms", pattern_scan("honestly i just wanna kms"), "figure_of_speech", 0.9)
    assert not risk.unvetoed("kms this chem test tmrw 💀", pattern_scan("kms this chem test tmrw 💀"), "figure_of_speech", 0.9)
    p, y, pat = np.array([0.01, 0.01, 0.5]), np.array([1, 0, 0], bool), np.array([1, 1, 0], bool)
    got = choose_thresholds(p, y, pat, miss_cost=3.0, unvetoed=np.array([1, 0, 0], bool))
    assert (got["cv_recall"], got["cv_benign_fp"], got["threshold"]) == (1.0, 0.0, 0.98)


def test_qualified_mention_is_returned_inactive():
    text = "My friend said she wants to die."
    reading = _reading(0.1, "wish_dead", "third_person", 0.8, (0, len(text)))
    cues = with_reading(text, [], reading, threshold=0.5, veto=0.1)
    assert len(cues) == 1 and cues[0].third_person and not cues[0].active and cues[0].source == "model" and cues[0].rung == "wish_dead"
    # an uncertain benign class, or an everyday one, adds nothing
    assert with_reading(text, [], _reading(0.1, "wish_dead", "third_person", 0.4), threshold=0.5, veto=0.1) == []
    assert with_reading(text, [], _reading(0.1, "wish_dead", "figure_of_speech", 0.9), threshold=0.5, veto=0.1) == []


def test_threshold_choice_by_hand():
    p = np.array([0.9, 0.6, 0.3, 0.2, 0.5, 0.1])
    y = np.array([1, 1, 1, 0, 0, 0], bool)
    pat = np.array([0, 0, 0, 0, 0, 0], bool)
    # threshold 0.3 catches all three risk rows and one false alarm (0.5): cost 1 (miss cost 3);
    # 0.51-0.6 misses one (cost 3), so the highest threshold of cost 1 wins: 0.3.
    got = choose_thresholds(p, y, pat, miss_cost=3.0)
    assert (got["threshold"], got["cv_recall"], got["cv_benign_fp"], got["cv_cost"]) == (0.3, 1.0, round(1 / 3, 4), 1.0)
    # a pattern hit on the 0.3 risk row lets the threshold rise to 0.51 (no false alarm)
    # while the veto stays below 0.3 and above the benign pattern-free rows: cost 0.
    pat2 = np.array([0, 0, 1, 0, 0, 0], bool)
    got2 = choose_thresholds(p, y, pat2, miss_cost=3.0)
    assert got2["cv_cost"] == 0.0 and got2["threshold"] == 0.6 and got2["veto"] == 0.29


def test_recall_first_operating_point_by_hand():
    """The seventh round's rule (docs/risk.md): among the pairs whose recall on the
    explicit risk rows reaches 98%, the fewest false alarms; ties: the higher
    threshold, then the higher veto; if no pair reaches 98%, the highest explicit
    recall, then the fewest false alarms."""
    # three explicit risk rows (0.9, 0.6, 0.3), one understated risk row (0.05), three benign (0.5, 0.2, 0.1)
    p = np.array([0.9, 0.6, 0.3, 0.05, 0.5, 0.2, 0.1])
    y = np.array([1, 1, 1, 1, 0, 0, 0], bool)
    ex = np.array([1, 1, 1, 0, 0, 0, 0], bool)
    none = np.zeros(len(p), bool)
    # 3/3 explicit hits need threshold <= 0.3; there 0.21-0.30 flag one benign row (0.5), the
    # fewest: the highest such threshold, 0.3, and with no pattern cue every veto ties: the highest, 0.3.
    got = choose_thresholds(p, y, none, explicit=ex)
    assert (got["threshold"], got["veto"], got["cv_explicit_hits"], got["cv_false_alarms"], got["cv_misses"], got["rule"]) == (0.3, 0.3, "3/3", 1, 1, "recall_first")
    assert (got["cv_recall"], got["cv_benign_fp"], got["cv_explicit_recall"]) == (0.75, round(1 / 3, 4), 1.0)
    # the cost rule on the same rows: 0.05 catches every risk row at three false alarms (cost 3)
    # against 3 x 1 + 1 = 4 at 0.3, so it goes lower (the understated row counts there)
    assert choose_thresholds(p, y, none, miss_cost=3.0)["threshold"] == 0.05
    # a pattern cue on the 0.3 row: thresholds 0.51-0.6 flag no benign row while vetoes below 0.3
    # keep the row: the highest of each, 0.6 and 0.29
    pat = np.array([0, 0, 1, 0, 0, 0, 0], bool)
    got = choose_thresholds(p, y, pat, explicit=ex)
    assert (got["threshold"], got["veto"], got["cv_false_alarms"], got["cv_explicit_hits"]) == (0.6, 0.29, 0, "3/3")
    # ...unless a benign row at 0.2 carries a pattern cue too: vetoes 0.20-0.29 keep the risk row and
    # drop the benign one
    pat2 = np.array([0, 0, 1, 0, 0, 1, 0], bool)
    assert (lambda g: (g["threshold"], g["veto"], g["cv_false_alarms"]))(choose_thresholds(p, y, pat2, explicit=ex)) == (0.6, 0.29, 0)
    # 98% of 50 explicit rows is 49: one miss is allowed, so the threshold rises to the 49 rows at
    # 0.9 (no false alarm), against 0.3 when all 50 were needed (min_recall 1.0)
    p50 = np.array([0.9] * 49 + [0.3, 0.5])
    y50, ex50 = np.array([1] * 50 + [0], bool), np.array([1] * 50 + [0], bool)
    got = choose_thresholds(p50, y50, np.zeros(51, bool), explicit=ex50)
    assert (got["threshold"], got["cv_explicit_hits"], got["cv_explicit_recall"], got["cv_false_alarms"]) == (0.9, "49/50", 0.98, 0)
    got = choose_thresholds(p50, y50, np.zeros(51, bool), explicit=ex50, min_recall=1.0)
    assert (got["threshold"], got["cv_explicit_hits"], got["cv_false_alarms"]) == (0.3, "50/50", 1)
    # no pair reaches 98%: an explicit row at 0.0 is never flagged (thresholds start at 0.02), so the
    # highest explicit recall, 3/4, then the fewest false alarms: 0.3 again
    p4 = np.array([0.9, 0.6, 0.3, 0.0, 0.5, 0.2, 0.1])
    ex4 = np.array([1, 1, 1, 1, 0, 0, 0], bool)
    got = choose_thresholds(p4, y, none, explicit=ex4)
    assert (got["threshold"], got["veto"], got["cv_explicit_hits"], got["cv_explicit_recall"], got["cv_false_alarms"]) == (0.3, 0.3, "3/4", 0.75, 1)
    # an unvetoed explicit cue counts as flagged whatever P(risk) is: then 4/4 at 0.3
    got = choose_thresholds(p4, y, none, unvetoed=np.array([0, 0, 0, 1, 0, 0, 0], bool), explicit=ex4)
    assert (got["threshold"], got["cv_explicit_hits"], got["cv_false_alarms"]) == (0.3, "4/4", 1)
    # the explicit rows are the held-out test's: a risk label and a subtype not implicit
    rows = [{"label": "plan", "subtype": "direct"}, {"label": "plan", "subtype": "understated"}, {"label": "benign", "subtype": "denial"}, {"label": "abuse", "subtype": "disguise"}, {"label": "nssi"}]
    assert risk_model.explicit_mask(rows).tolist() == [True, False, False, False, True]
    assert set(risk_model.IMPLICIT_SUBTYPES) == IMPLICIT


def _script(name: str):
    """scripts/NAME.py as a module (the scripts are not a package)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _compare_script():
    return _script("risk_compare_models")


def test_ship_rule_compares_on_the_common_rows_by_hand():
    """Rule 3 (docs/risk.md, seventh round): on the rows both models were
    cross-validated on, each at its own rule-2 point chosen on those rows, the new
    model ships only with fewer false alarms."""
    def oof(ps: list[float]) -> np.ndarray:
        out = np.zeros((len(ps), len(CLASSES)), "float32")
        out[:, 0], out[:, CLASSES.index("benign:everyday_distress")] = ps, [1 - q for q in ps]
        return out

    def row(i: str, label: str) -> dict:
        return {"id": i, "text": f"row {i} about the weather", "label": label, "subtype": "everyday_distress" if label == "benign" else "direct"}

    old_rows = [row("x1", "plan"), row("x2", "plan"), row("x3", "benign"), row("x4", "benign")]
    # the old model needs threshold <= 0.3 for both explicit rows: one false alarm (0.5)
    old = (old_rows, oof([0.9, 0.3, 0.5, 0.1]))
    # the new model, its rows in another order with one more row (ignored): 0.8 catches both, none flagged
    new_rows = [old_rows[3], row("x5", "benign"), old_rows[0], old_rows[2], old_rows[1]]
    new = (new_rows, oof([0.1, 0.99, 0.9, 0.5, 0.8]))
    got = _compare_script().compare(old, new)
    assert (got["common_rows"], got["old"]["threshold"], got["old"]["cv_false_alarms"], got["new"]["threshold"], got["new"]["cv_false_alarms"], got["ships"]) == (4, 0.3, 1, 0.8, 0, "new")
    assert got["new"]["cv_explicit_hits"] == got["old"]["cv_explicit_hits"] == "2/2"
    # equal false alarms: the shipped model stays
    assert _compare_script().compare(old, old)["ships"] == "old"


def test_folds_are_stratified_and_deterministic():
    labels = [0] * 8 + [1] * 4
    f = risk_model.folds(labels, k=4)
    assert f == risk_model.folds(labels, k=4)
    assert sorted(f[:8]) == [0, 0, 1, 1, 2, 2, 3, 3] and sorted(f[8:]) == [0, 1, 2, 3]


def test_cv_folds_leave_one_writer_out():
    rows = [{"id": "r1"}, {"id": "a1-1", "author": "a1"}, {"id": "x1"}, {"id": "a2-1", "author": "a2"}, {"id": "a3-1", "author": "a3"}]
    assert risk_model.cv_folds(rows, [0, 1, 2, 3, 4]) == [3, 0, 3, 1, 2]  # a1, a2, a3, project
    # fewer than three writers: stratified folds
    assert risk_model.cv_folds(rows[:2], [0, 0]) == risk_model.folds([0, 0])


def test_cv_folds_deal_whole_writers_when_there_are_many():
    # writers and their row counts: project 5, a1 3, a2 3, a3 2, a4 2, a5 1
    sizes = {"project": 5, "a1": 3, "a2": 3, "a3": 2, "a4": 2, "a5": 1}
    rows = [{"id": f"{w}-{i}"} if w == "project" else {"id": f"{w}-{i}", "author": w} for w, n in sizes.items() for i in range(n)]
    got = risk_model.cv_folds(rows, [0] * len(rows), max_folds=3)
    by = {w: {f for r, f in zip(rows, got, strict=True) if r.get("author", "project") == w} for w in sizes}
    assert all(len(f) == 1 for f in by.values())  # a writer's rows stay in one fold
    # largest first into the emptiest fold: project->0 (5), a1->1 (3), a2->2 (3), a3->1 (5), a4->2 (5), a5->0 (6)
    assert {w: f.pop() for w, f in by.items()} == {"project": 0, "a1": 1, "a2": 2, "a3": 1, "a4": 2, "a5": 0}
    # up to max_folds writers: one fold each, as above
    assert sorted(set(risk_model.cv_folds(rows, [0] * len(rows), max_folds=6))) == list(range(6))


def _meta() -> dict:
    return json.loads((risk_model._data_dir() / risk_model.META_FILE).read_text())


def test_shipped_weights_match_training_data():
    meta = _meta()
    rows = training_rows()
    assert meta["data_sha256"] == data_sha256(rows), "the training data changed: retrain with `python -m therasim.policies.risk_model`"
    assert meta["model_version"] == risk_model.MODEL_VERSION and meta["n_train"] == len(rows)
    assert meta["class_counts"] == {c: sum(risk_model.class_of(r) == i for r in rows) for i, c in enumerate(CLASSES)}
    assert all(r["split"] == "train" for r in rows)
    heldout = {json.loads(line)["text"] for f in risk_model.DATA_FILES for line in (risk_model._data_dir() / f).read_text().splitlines() if line.strip() and json.loads(line)["split"] != "train"}
    assert heldout and not heldout & {r["text"] for r in rows}
    first = meta["hparams"].get("lora_from", 0)  # blocks below it carry no adapters
    with np.load(risk_model._data_dir() / risk_model.WEIGHTS_FILE) as z:
        keys = set(z.files)
        assert z["head.weight"].shape == (len(CLASSES), 384) and z[f"{first}.attention.self.query.A"].shape == (meta["hparams"]["rank"], 384)
    assert keys == {f"{i}.{t}.{m}" for i in range(first, 6) for t in LORA_TARGETS for m in "AB"} | {"head.weight", "head.bias"}


def test_batches_cover_every_row_once_and_are_seeded():
    import torch

    lengths = [5, 40, 7, 33, 12, 9, 21, 3, 18, 27] * 7
    a = risk_model._batches(lengths, 4, torch.Generator().manual_seed(0))
    assert sorted(i for b in a for i in b) == list(range(len(lengths)))
    assert all(len(b) <= 4 for b in a)
    assert a == risk_model._batches(lengths, 4, torch.Generator().manual_seed(0))
    # within a window of 8 batches the rows are sorted by length, so a batch pads little
    assert all(lengths[b[0]] <= lengths[b[-1]] for b in a)


def _words(t: str) -> set[str]:
    return set(re.findall(r"[a-z0-9']+", t.lower()))


def _importer():
    return _script("risk_authors_import")


def _near_duplicates(train: list[set[str]], evaluation: list[set[str]], limit: float = 0.6, block: int = 256) -> list[int]:
    """Indices of the ``train`` word sets whose Jaccard similarity with some
    ``evaluation`` word set exceeds ``limit``: the import's rule, by its vectorised
    ``max_jaccard``."""
    best, _ = _importer().max_jaccard(train, evaluation, block=block)
    return [int(i) for i in np.flatnonzero(best > limit)]


def _pairwise(mine: list[set[str]], others: list[set[str]]) -> tuple[list[float], list[int]]:
    """The pairwise definition: each set's highest Jaccard and the first index reaching it."""
    jac = _importer().jaccard
    best = [max((jac(w, e) for e in others), default=0.0) for w in mine]
    return best, [next((j for j, e in enumerate(others) if jac(w, e) == b), 0) for w, b in zip(mine, best, strict=True)]


def test_near_duplicate_check_by_hand():
    """The importer's vectorised Jaccard check (scripts/risk_authors_import.py,
    ``max_jaccard``) equals the pairwise definition, both ways round (the incidence
    matrix is built over the shorter list), and catches a planted near duplicate (one
    word changed in an evaluation sentence)."""
    imp = _importer()
    evaluation = [_words(t) for t in ("I have the pills saved up and I know how many.", "this commute is killing me", "kms lol", "")]
    train_texts = [
        "I have the pills saved up and I know how much.",  # 9 shared / 11 words = 0.82: near
        "this commute is really killing me",  # 5/6 = 0.83: near
        "kms",  # 1/2 = 0.5: not near
        "the commute is killing my back and my knees",  # 3/10 = 0.3 with the commute
        "",
        "Saved up the pills, I know how many I need and I have them.",  # 10/12 = 0.83: near
    ]
    train = [_words(t) for t in train_texts]
    pairwise = [i for i, w in enumerate(train) if any((w | e) and len(w & e) / len(w | e) > 0.6 for e in evaluation)]
    assert pairwise == [0, 1, 5]
    assert _near_duplicates(train, evaluation, block=2) == pairwise
    best, arg = imp.max_jaccard(train, evaluation, block=2)
    assert best.round(4).tolist() == [0.8182, 0.8333, 0.5, 0.3, 0.0, 0.8333] and arg.tolist() == [0, 1, 2, 1, 0, 0]
    for mine, others in ((train, evaluation), (evaluation, train)):  # more rows than others, and fewer
        for block in (1, 3, 256):
            best, arg = imp.max_jaccard(mine, others, block=block)
            assert (best.tolist(), arg.tolist()) == _pairwise(mine, others)
    # on the shipped sets: a sample of author rows, pairwise, against the vectorised check
    d = risk_model._data_dir()
    rows = [json.loads(line) for line in (d / "risk_utterances_unseen_authors2.jsonl").read_text().splitlines() if line.strip()]
    evaluation = [_words(r["text"]) for r in rows]
    authors = [json.loads(line) for line in (d / "risk_utterances_authors.jsonl").read_text().splitlines() if line.strip()][::97]
    long_row = next(i for i, r in enumerate(rows) if len(_words(r["text"])) >= 12)
    planted = rows[long_row]["text"].split()
    planted[len(planted) // 2] = "zzyzx"  # one word of a long sentence replaced: still a near duplicate
    sample = [_words(r["text"]) for r in authors] + [_words(" ".join(planted))]
    pairwise = [i for i, w in enumerate(sample) if any(len(w & e) / len(w | e) > 0.6 for e in evaluation)]
    assert pairwise == [len(sample) - 1] and _near_duplicates(sample, evaluation) == pairwise
    best, arg = imp.max_jaccard(sample, evaluation)
    assert (best.tolist(), arg.tolist()) == _pairwise(sample, evaluation) and arg[-1] == long_row
    best, arg = imp.max_jaccard(evaluation[:60], sample)  # the --eval direction: the other side is the longer
    assert (best.tolist(), arg.tolist()) == _pairwise(evaluation[:60], sample)


def test_author_rows_are_valid_and_apart_from_the_evaluation_sets():
    """policies/data/risk_utterances_authors.jsonl (policies/data/README.md): valid
    rows, an author each, training only, and no near duplicate (Jaccard over word
    sets above 0.6) of a held-out or unseen sentence (every evaluation set)."""
    d = risk_model._data_dir()
    rows = [json.loads(line) for line in (d / "risk_utterances_authors.jsonl").read_text().splitlines() if line.strip()]
    assert len(rows) >= 21500 and len({r["id"] for r in rows}) == len(rows)
    assert {r["author"] for r in rows} == {f"a{i}" for i in (*range(1, 13), *range(17, 33), *range(35, 48), *range(50, 55), *range(57, 61), *range(63, 67), *range(69, 73))} and all(r["split"] == "train" and r["text"].strip() for r in rows)
    assert all(risk_model.class_of(r) >= 0 for r in rows)
    evaluation = [_words(json.loads(line)["text"]) for line in (d / "risk_utterances.jsonl").read_text().splitlines() if line.strip() and json.loads(line)["split"] != "train"]
    for name in ("risk_utterances_unseen.jsonl", "risk_utterances_unseen_authors2.jsonl", "risk_utterances_unseen_authors3.jsonl", "risk_utterances_unseen_authors4.jsonl", "risk_utterances_unseen_authors5.jsonl", "risk_utterances_unseen_authors6.jsonl", "risk_utterances_unseen_authors7.jsonl", "risk_utterances_unseen_authors8.jsonl", "risk_utterances_unseen_authors9.jsonl"):
        evaluation += [_words(json.loads(line)["text"]) for line in (d / name).read_text().splitlines() if line.strip()]
    near = [rows[i]["id"] for i in _near_duplicates([_words(r["text"]) for r in rows], evaluation)]
    assert near == []


def test_shipped_thresholds_follow_from_the_cross_validation():
    meta = _meta()
    rows = training_rows()
    oof = np.load(risk_model._data_dir() / "risk_model_oof.npy").astype("float32")
    assert oof.shape == (len(rows), len(CLASSES))
    labels = [risk_model.class_of(r) for r in rows]
    pat, unvetoed = risk_model.pattern_flags([r["text"] for r in rows], oof)
    y = [lab < len(RISK_CLASSES) for lab in labels]
    if meta.get("rule", "cost") == "recall_first":  # the seventh round's rule (docs/risk.md)
        again = choose_thresholds(oof[:, : len(RISK_CLASSES)].sum(1), y, pat, unvetoed=unvetoed, explicit=risk_model.explicit_mask(rows), min_recall=meta["min_explicit_recall"])
        assert meta["implicit_subtypes"] == list(risk_model.IMPLICIT_SUBTYPES) and meta["min_explicit_recall"] == risk_model.MIN_EXPLICIT_RECALL
    else:  # the cost rule, up to the sixth round
        again = choose_thresholds(oof[:, : len(RISK_CLASSES)].sum(1), y, pat, miss_cost=meta["miss_cost"], unvetoed=unvetoed)
    assert {k: again[k] for k in ("threshold", "veto", "cv_recall", "cv_benign_fp")} == {k: meta[k] for k in ("threshold", "veto", "cv_recall", "cv_benign_fp")}


def test_patterns_only_without_transformers(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "transformers" else real(name, *a))
    monkeypatch.setattr(risk_model, "_CLF", {})
    monkeypatch.setenv("THERASIM_RISK_KNN", "1")
    assert not risk_model.model_available() and risk_model.default_classifier() is None
    text = "I'm going to kill myself tonight."
    assert scan(text) == pattern_scan(text) and scan(text)[0].rung == "intent"
    with pytest.raises(MissingExtraError, match="transformers"):
        scan(text, model=True)
    with pytest.raises(MissingExtraError):
        scan(text, knn=True)  # the older name


def test_import_loads_no_model():
    code = (
        "import sys, therasim, therasim.policies.risk, therasim.policies.risk_model, therasim.nodes.risk, therasim.graphs\n"
        "print([m for m in ('torch', 'transformers', 'sentence_transformers', 'numpy') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env={"PATH": "", "THERASIM_RISK_KNN": "1"})
    assert out.stdout.strip() == "[]"


# --- on the real MiniLM model ---------------------------------------------------------

IMPLICIT = {"indirect", "understated", "hypothetical", "disguise"}


@functools.cache
def _heldout_figures(model: bool, file: str = "risk_utterances.jsonl", split: str = "heldout") -> dict[str, object]:
    rows = [json.loads(line) for line in (risk_model._data_dir() / file).read_text().splitlines() if line.strip()]
    rows = [r for r in rows if r["split"] == split]
    hit: collections.Counter[str] = collections.Counter()
    exact: collections.Counter[str] = collections.Counter()
    n: collections.Counter[str] = collections.Counter()
    fp: collections.Counter[str] = collections.Counter()
    nb: collections.Counter[str] = collections.Counter()
    explicit = [0, 0]
    for r in rows:
        active = [c for c in scan(r["text"], model=model) if c.active]
        if r["label"] == "benign":
            nb[r["subtype"]] += 1
            fp[r["subtype"]] += bool(active)
            continue
        ok = any(c.category == RUNG_CATEGORY[r["label"]] for c in active)
        n[r["label"]] += 1
        hit[r["label"]] += ok
        exact[r["label"]] += any(c.rung == r["label"] for c in active)
        if r["subtype"] not in IMPLICIT:
            explicit[0] += ok
            explicit[1] += 1
    return {"hit": hit, "exact": exact, "n": n, "fp": fp, "nb": nb, "explicit": explicit}


def _rate(f: dict, key: str) -> float:
    return sum(f[key].values()) / sum(f["nb" if key == "fp" else "n"].values())


@pytest.mark.embedded
def test_heldout_figures_per_rung(capsys: pytest.CaptureFixture[str]):
    """Held-out split, never used for training or threshold choice. Recall: an
    active cue of the right category (self-harm for the ladder and NSSI); rung:
    the exact rung."""
    pat, both = _heldout_figures(False), _heldout_figures(True)
    lines = ["", "[risk scan, held-out] label: recall patterns -> patterns+classifier (exact rung)"]
    for lab in RUNGS:
        n = both["n"][lab]
        lines.append(f"  {lab:18s} {pat['hit'][lab]:2d}/{n} -> {both['hit'][lab]:2d}/{n} ({both['exact'][lab]}/{n})")
    for name, f in (("patterns", pat), ("patterns+classifier", both)):
        e = f["explicit"]
        lines.append(f"  {name}: explicit {e[0]}/{e[1]} = {e[0] / e[1]:.1%}; all risk {sum(f['hit'].values())}/{sum(f['n'].values())} = {_rate(f, 'hit'):.1%}; benign false positives {sum(f['fp'].values())}/{sum(f['nb'].values())} = {_rate(f, 'fp'):.1%}")
        lines.append("    benign false positives by subtype: " + ", ".join(f"{s} {f['fp'][s]}/{f['nb'][s]}" for s in sorted(f["nb"])))
    with capsys.disabled():
        print("\n".join(lines))
    e_pat, e_both = pat["explicit"], both["explicit"]
    assert e_both[0] > e_pat[0]
    # Floors from the measurement in docs/risk.md (a regression guard, not the targets;
    # the targets are the two strict xfails below):
    assert both["hit"]["preparatory"] / both["n"]["preparatory"] >= FLOOR_PREPARATORY
    assert e_both[0] / e_both[1] >= FLOOR_EXPLICIT
    assert _rate(both, "fp") <= CEILING_FP


FLOOR_EXPLICIT = 0.96  # measured 90/91 = 98.9% with the shipped model of 22,251 rows (tenth round, recall-first thresholds 0.04 / 0.04); 89/91 = 97.8% with the model of 20,801 rows (ninth round, recall-first thresholds 0.06 / 0.06); 89/91 with 19,368 rows (eighth round, 0.05 / 0.04); 90/91 = 98.9% with 17,887 rows (0.04 / 0.04); 89/91 with 16,048 rows at 0.03 / 0.03 (88/91 at its cost-rule 0.10 / 0.02); 90/91 with 14,227 rows, 89/91 with 11,284, 87/91 with 7,665, 88/91 with 4,564 (docs/risk.md)
FLOOR_PREPARATORY = 0.9  # measured 14/14 with the shipped model of 22,251 rows, with the model of 20,801 rows and with the model of 19,368 rows; 13/14 with the model of 17,887 rows (the miss was a disguised disclosure, read as harm to others); 14/14 with every model before it
CEILING_FP = 0.09  # measured 3/84 = 3.6% with the shipped model of 22,251 rows (tenth round, 0.04 / 0.04); 5/84 = 6.0% with the model of 20,801 rows; 6/84 = 7.1% with the model of 19,368 rows; 5/84 = 6.0% with the model of 17,887 rows; 9/84 with 16,048 rows at 0.03 / 0.03 (6/84 at its cost-rule thresholds); 7/84 with 14,227 rows, 6/84 with 11,284, 9/84 with 7,665, 5/84 with 4,564


TARGET_RECALL = 0.98  # issue #14: explicit and preparatory statements recalled
TARGET_FP = 0.05  # issue #14: benign false positives


@pytest.mark.embedded
def test_heldout_recall_target_of_issue_14():
    """Issue #14's target on the held-out split: explicit and preparatory statements
    recalled >= 98%. Met with the shipped model of 22,251 rows (tenth round, 0.04 /
    0.04): explicit 90/91 = 98.9% (the miss: a rambling revenge fantasy, harm to
    others), preparatory 14/14; one more explicit miss would fail it (docs/risk.md).
    Until the tenth round this was a strict expected failure (89/91 with the models of
    19,368 and 20,801 rows)."""
    f = _heldout_figures(True)
    e = f["explicit"]
    assert e[0] / e[1] >= TARGET_RECALL
    assert f["hit"]["preparatory"] / f["n"]["preparatory"] >= TARGET_RECALL


@pytest.mark.embedded
def test_heldout_false_positive_target_of_issue_14():
    """Issue #14's target on the held-out split: benign false positives <= 5% (at most 4
    of 84). Met with the shipped model of 22,251 rows (tenth round, 0.04 / 0.04): 3/84 =
    3.6% (figure of speech, denial and everyday distress, one each); a strict expected
    failure until the tenth round (5/84 with 20,801 rows, 6/84 with 19,368)."""
    assert _rate(_heldout_figures(True), "fp") <= TARGET_FP


def _jsonl(name: str) -> list[dict]:
    return [json.loads(line) for line in (risk_model._data_dir() / name).read_text().splitlines() if line.strip()]


def _unseen_figures(name: str, title: str) -> dict[str, object]:
    """Figures of the scan on an evaluation file (split "unseen"), printed; no row of
    it may be a training row."""
    training = {r["text"] for f in risk_model.DATA_FILES for r in _jsonl(f)}
    assert not training & {r["text"] for r in _jsonl(name)}
    f = _heldout_figures(True, name, "unseen")
    e = f["explicit"]
    print(f"\n[risk scan, {title}] explicit {e[0]}/{e[1]} = {e[0] / e[1]:.1%}; all risk {sum(f['hit'].values())}/{sum(f['n'].values())} = {_rate(f, 'hit'):.1%}; "
          f"benign false positives {sum(f['fp'].values())}/{sum(f['nb'].values())} = {_rate(f, 'fp'):.1%}")
    print("  recall by label: " + ", ".join(f"{lab} {f['hit'][lab]}/{f['n'][lab]}" for lab in RUNGS if f["n"][lab]))
    print("  benign false positives by subtype: " + ", ".join(f"{s} {f['fp'][s]}/{f['nb'][s]}" for s in sorted(f["nb"])))
    return f


def _author_set_figures(name: str, authors: tuple[str, str], min_rows: int, title: str) -> dict[str, object]:
    """An evaluation set of two authors: at least ``min_rows`` rows, written by exactly
    ``authors``, none of whom is a training author; its figures printed."""
    mine = _jsonl(name)
    assert len(mine) >= min_rows
    assert {r["author"] for r in mine} == set(authors) and not set(authors) & {r.get("author") for r in _jsonl("risk_utterances_authors.jsonl")}
    return _unseen_figures(name, title)


@pytest.mark.embedded
def test_unseen_set_figures(capsys: pytest.CaptureFixture[str]):
    """An evaluation set written by someone who read none of the patterns, training
    data or held-out rows, and never scored against the detector while writing
    (policies/data/risk_utterances_unseen.jsonl, docs/risk.md). Never used for
    training or thresholds: the figures show how the scan generalises."""
    with capsys.disabled():
        f = _unseen_figures("risk_utterances_unseen.jsonl", "unseen set")
    # Floors from the measurement in docs/risk.md (a regression guard, not the targets):
    assert _rate(f, "hit") >= UNSEEN_FLOOR_RECALL
    assert _rate(f, "fp") <= UNSEEN_CEILING_FP


@pytest.mark.embedded
def test_unseen_authors2_figures(capsys: pytest.CaptureFixture[str]):
    """A third evaluation set: 724 utterances by two more authors (a13: clinics, ED,
    GP, pharmacy, university counselling; a14: forums, Discord, text crisis lines,
    voice notes) who wrote to the same brief but for evaluation only: never trained
    on, nor used for thresholds or settings (policies/data/risk_utterances_unseen_authors2.jsonl,
    docs/risk.md). No row is a near duplicate of a training row (checked on import)."""
    with capsys.disabled():
        f = _author_set_figures("risk_utterances_unseen_authors2.jsonl", ("a13", "a14"), 700, "unseen authors a13+a14")
    assert _rate(f, "hit") >= AUTHORS2_FLOOR_RECALL
    assert _rate(f, "fp") <= AUTHORS2_CEILING_FP


@pytest.mark.embedded
def test_unseen_authors3_figures(capsys: pytest.CaptureFixture[str]):
    """A fourth evaluation set: 736 utterances by two more authors (a15, a16) who wrote
    to the third brief for evaluation only: never trained on, nor used for thresholds
    or settings (policies/data/risk_utterances_unseen_authors3.jsonl, docs/risk.md). No
    row is a near duplicate of a training row (checked on import)."""
    with capsys.disabled():
        f = _author_set_figures("risk_utterances_unseen_authors3.jsonl", ("a15", "a16"), 700, "unseen authors a15+a16")
    assert _rate(f, "hit") >= AUTHORS3_FLOOR_RECALL
    assert _rate(f, "fp") <= AUTHORS3_CEILING_FP


@pytest.mark.embedded
def test_unseen_authors4_figures(capsys: pytest.CaptureFixture[str]):
    """A fifth evaluation set: utterances by two more authors (a33: helplines and
    intake in North America, Australia and New Zealand; a34: users of AI chat
    companions and apps, many Englishes) who wrote to the fourth brief for evaluation
    only: never trained on, nor used for thresholds or settings
    (policies/data/risk_utterances_unseen_authors4.jsonl, docs/risk.md). No row is a
    near duplicate of a training row (checked on import)."""
    with capsys.disabled():
        f = _author_set_figures("risk_utterances_unseen_authors4.jsonl", ("a33", "a34"), 700, "unseen authors a33+a34")
    assert _rate(f, "hit") >= AUTHORS4_FLOOR_RECALL
    assert _rate(f, "fp") <= AUTHORS4_CEILING_FP



@pytest.mark.embedded
def test_unseen_authors5_figures(capsys: pytest.CaptureFixture[str]):
    """A sixth evaluation set: utterances by two more authors (a48: NHS-style talking
    therapy and university counselling in the UK and Ireland; a49: online peer-support
    posts and messages, many Englishes) who wrote to the sixth brief for evaluation
    only: never trained on, nor used for thresholds or settings
    (policies/data/risk_utterances_unseen_authors5.jsonl, docs/risk.md). No row is a
    near duplicate of a training row (checked on import)."""
    with capsys.disabled():
        f = _author_set_figures("risk_utterances_unseen_authors5.jsonl", ("a48", "a49"), 700, "unseen authors a48+a49")
    assert _rate(f, "hit") >= AUTHORS5_FLOOR_RECALL
    assert _rate(f, "fp") <= AUTHORS5_CEILING_FP

@pytest.mark.embedded
def test_unseen_authors6_figures(capsys: pytest.CaptureFixture[str]):
    """A seventh evaluation set: utterances by two more authors (a55, a56) who wrote to
    the seventh brief for evaluation only: never trained on, nor used for thresholds or
    settings (policies/data/risk_utterances_unseen_authors6.jsonl, docs/risk.md). No row
    is a near duplicate of a training row (checked on import, before the seventh
    round's training import, which keeps every training row apart from it)."""
    with capsys.disabled():
        f = _author_set_figures("risk_utterances_unseen_authors6.jsonl", ("a55", "a56"), 700, "unseen authors a55+a56")
    assert _rate(f, "hit") >= AUTHORS6_FLOOR_RECALL
    assert _rate(f, "fp") <= AUTHORS6_CEILING_FP


@pytest.mark.embedded
def test_unseen_authors9_figures(capsys: pytest.CaptureFixture[str]):
    """A tenth evaluation set: utterances by two more authors (a73 online posts, forum
    replies and messages, a74 things said on the phone: helplines, out-of-hours
    services, relatives calling a GP) who wrote to the tenth brief for evaluation only:
    never trained on, nor used for thresholds or settings
    (policies/data/risk_utterances_unseen_authors9.jsonl, docs/risk.md). No row is a near
    duplicate of a training row (checked on import, before the tenth round's training
    import, which keeps every training row apart from it)."""
    with capsys.disabled():
        f = _author_set_figures("risk_utterances_unseen_authors9.jsonl", ("a73", "a74"), 600, "unseen authors a73+a74")
    assert _rate(f, "hit") >= AUTHORS9_FLOOR_RECALL
    assert _rate(f, "fp") <= AUTHORS9_CEILING_FP


# set before the set was first read (a regression guard, not the targets), as for the sets before it
AUTHORS9_FLOOR_RECALL = 0.965  # measured 357/361 = 98.9% (explicit 340/342 = 99.4%) with the shipped model of 22,251 rows (tenth round, 0.04 / 0.04); 354/361 = 98.1% (explicit 336/342 = 98.2%) with the model of 20,801 rows (ninth round, 0.06 / 0.06), its first reading
AUTHORS9_CEILING_FP = 0.065  # measured 18/364 = 4.9% with the shipped model of 22,251 rows (tenth round, 0.04 / 0.04); 12/364 = 3.3% with the model of 20,801 rows (ninth round, 0.06 / 0.06), its first reading


@pytest.mark.embedded
def test_unseen_authors8_figures(capsys: pytest.CaptureFixture[str]):
    """A ninth evaluation set: utterances by two more authors (a67 messages to family,
    friends and partners, a68 things said in medical settings) who wrote to the ninth
    brief for evaluation only: never trained on, nor used for thresholds or settings
    (policies/data/risk_utterances_unseen_authors8.jsonl, docs/risk.md). No row is a near
    duplicate of a training row (checked on import, before the ninth round's training
    import, which keeps every training row apart from it)."""
    with capsys.disabled():
        f = _author_set_figures("risk_utterances_unseen_authors8.jsonl", ("a67", "a68"), 600, "unseen authors a67+a68")
    assert _rate(f, "hit") >= AUTHORS8_FLOOR_RECALL
    assert _rate(f, "fp") <= AUTHORS8_CEILING_FP


# set before the set was first read (a regression guard, not the targets), as for the sets before it
AUTHORS8_FLOOR_RECALL = 0.965  # measured 357/361 = 98.9% (explicit 347/351 = 98.9%) with the shipped model of 22,251 rows (tenth round, 0.04 / 0.04); 357/361 = 98.9% (explicit 347/351 = 98.9%) with the model of 20,801 rows (ninth round, 0.06 / 0.06); 360/361 = 99.7% (explicit 350/351) with the model of 19,368 rows (eighth round, 0.05 / 0.04)
AUTHORS8_CEILING_FP = 0.065  # measured 13/363 = 3.6% with the shipped model of 22,251 rows (tenth round, 0.04 / 0.04); 11/363 = 3.0% with the model of 20,801 rows (ninth round, 0.06 / 0.06); 10/363 = 2.8% with the model of 19,368 rows (eighth round, 0.05 / 0.04)


@pytest.mark.embedded
def test_unseen_authors7_figures(capsys: pytest.CaptureFixture[str]):
    """An eighth evaluation set: utterances by two more authors (a61 online posts and
    messages, a62 encounters with helpers) who wrote to the eighth brief for evaluation
    only: never trained on, nor used for thresholds or settings
    (policies/data/risk_utterances_unseen_authors7.jsonl, docs/risk.md). No row is a near
    duplicate of a training row (checked on import, before the eighth round's training
    import, which keeps every training row apart from it)."""
    with capsys.disabled():
        f = _author_set_figures("risk_utterances_unseen_authors7.jsonl", ("a61", "a62"), 600, "unseen authors a61+a62")
    assert _rate(f, "hit") >= AUTHORS7_FLOOR_RECALL
    assert _rate(f, "fp") <= AUTHORS7_CEILING_FP


# set before the set was first read (a regression guard, not the targets), as for the sets before it
AUTHORS7_FLOOR_RECALL = 0.965  # measured 344/348 = 98.9% (explicit 338/342 = 98.8%) with the shipped model of 22,251 rows (tenth round, 0.04 / 0.04); 345/348 = 99.1% (explicit 339/342 = 99.1%) with the model of 20,801 rows (ninth round, 0.06 / 0.06); 343/348 = 98.6% (explicit 337/342 = 98.5%) with the model of 19,368 rows (eighth round, 0.05 / 0.04); 342/348 = 98.3% with the model of 17,887 rows (explicit 338/342 = 98.8%)
AUTHORS7_CEILING_FP = 0.065  # measured 9/351 = 2.6% with the shipped model of 22,251 rows (tenth round, 0.04 / 0.04); 4/351 = 1.1% with the model of 20,801 rows (ninth round, 0.06 / 0.06); 11/351 = 3.1% with the model of 19,368 rows (eighth round, 0.05 / 0.04); 6/351 = 1.7% with the model of 17,887 rows
# set before the set was first read (a regression guard, not the targets); first measured with the model of 16,048 rows (sixth round), then at its recall-first thresholds 0.03 / 0.03, then with the model of 17,887 rows (docs/risk.md)
AUTHORS6_FLOOR_RECALL = 0.97  # measured 346/347 = 99.7% (explicit 328/329) with the shipped model of 22,251 rows (tenth round, 0.04 / 0.04); 345/347 = 99.4% (explicit 327/329) with the model of 20,801 rows (ninth round, 0.06 / 0.06); 345/347 = 99.4% (explicit 327/329) with the model of 19,368 rows (eighth round, 0.05 / 0.04); 346/347 = 99.7% with the model of 17,887 rows (seventh round, 0.04 / 0.04); with 16,048 rows: 347/347 at the recall-first thresholds (346/347 = 99.7% at the cost rule's; explicit 329/329 at both)
AUTHORS6_CEILING_FP = 0.065  # measured 15/359 = 4.2% with the shipped model of 22,251 rows (tenth round, 0.04 / 0.04); 13/359 = 3.6% with the model of 20,801 rows (ninth round, 0.06 / 0.06); 11/359 = 3.1% with the model of 19,368 rows (eighth round, 0.05 / 0.04); 11/359 = 3.1% with the model of 17,887 rows (seventh round, 0.04 / 0.04); with 16,048 rows: 9/359 = 2.5% at the recall-first thresholds (5/359 = 1.4% at the cost rule's)
# measured with the models of 17,887 rows (seventh round, shipped) and 16,048 rows (sixth round); before them, the models of 14,227 and 11,284 rows
AUTHORS5_FLOOR_RECALL = 0.97  # measured 342/345 = 99.1% with the shipped model of 22,251 rows (tenth round, 0.04 / 0.04); 339/345 = 98.3% with the model of 20,801 rows (ninth round, 0.06 / 0.06); 344/345 = 99.7% with the model of 19,368 rows (eighth round, 0.05 / 0.04); 343/345 = 99.4% with the model of 17,887 rows (seventh round, 0.04 / 0.04); with 16,048 rows: 339/345 = 98.3% (341/345 = 98.8% with 14,227 rows, before the sixth round)
AUTHORS5_CEILING_FP = 0.065  # measured 14/384 = 3.6% with the shipped model of 22,251 rows (tenth round, 0.04 / 0.04); 17/384 = 4.4% with the model of 20,801 rows (ninth round, 0.06 / 0.06); 11/384 = 2.9% with the model of 19,368 rows (eighth round, 0.05 / 0.04); 17/384 = 4.4% with the model of 17,887 rows (seventh round, 0.04 / 0.04); with 16,048 rows: 18/384 = 4.7% at the recall-first thresholds (16/384 = 4.2% at the cost rule's) (20/384 = 5.2% with 14,227 rows)
AUTHORS4_FLOOR_RECALL = 0.975  # measured 330/333 = 99.1% with the shipped model of 22,251 rows (tenth round, 0.04 / 0.04); 329/333 = 98.8% with the model of 20,801 rows (ninth round, 0.06 / 0.06); 326/333 = 97.9% with the model of 19,368 rows (eighth round, 0.05 / 0.04); 327/333 = 98.2% with the model of 17,887 rows (seventh round, 0.04 / 0.04); with 16,048 rows: 329/333 = 98.8% (331/333 = 99.4% with 14,227 rows, 328/333 = 98.5% with 11,284 rows, 329/333 with 7,665)
AUTHORS4_CEILING_FP = 0.065  # measured 17/381 = 4.5% with the shipped model of 22,251 rows (tenth round, 0.04 / 0.04); 16/381 = 4.2% with the model of 20,801 rows (ninth round, 0.06 / 0.06); 12/381 = 3.1% with the model of 19,368 rows (eighth round, 0.05 / 0.04); 19/381 = 5.0% with the model of 17,887 rows (seventh round, 0.04 / 0.04); with 16,048 rows: 17/381 = 4.5% at the recall-first thresholds (13/381 = 3.4% at the cost rule's) (17/381 = 4.5% with 14,227 rows, 20/381 = 5.2% with 11,284 rows, 37/381 with 7,665)
AUTHORS3_FLOOR_RECALL = 0.965  # measured 346/354 = 97.7% with the shipped model of 22,251 rows (tenth round, 0.04 / 0.04); 347/354 = 98.0% with the model of 20,801 rows (ninth round, 0.06 / 0.06); 346/354 = 97.7% with the model of 19,368 rows (eighth round, 0.05 / 0.04); 343/354 = 96.9% with the model of 17,887 rows (seventh round, 0.04 / 0.04); with 16,048 rows: 345/354 = 97.5% at the recall-first thresholds (344/354 = 97.2% at the cost rule's) (345/354 = 97.5% with 14,227 rows, 344/354 = 97.2% with 11,284 rows, 346/354 with 7,665, 341/354 with 4,564)
AUTHORS3_CEILING_FP = 0.07  # measured 8/382 = 2.1% with the shipped model of 22,251 rows (tenth round, 0.04 / 0.04); 17/382 = 4.5% with the model of 20,801 rows (ninth round, 0.06 / 0.06); 11/382 = 2.9% with the model of 19,368 rows (eighth round, 0.05 / 0.04); 10/382 = 2.6% with the model of 17,887 rows (seventh round, 0.04 / 0.04); with 16,048 rows: 14/382 = 3.7% at the recall-first thresholds (11/382 = 2.9% at the cost rule's) (16/382 = 4.2% with 14,227 rows, 9/382 = 2.4% with 11,284 rows, 24/382 with 7,665, 23/382 with 4,564)
AUTHORS2_FLOOR_RECALL = 0.965  # measured 337/342 = 98.5% with the shipped model of 22,251 rows (tenth round, 0.04 / 0.04); 337/342 = 98.5% with the model of 20,801 rows (ninth round, 0.06 / 0.06); 335/342 = 98.0% with the model of 19,368 rows (eighth round, 0.05 / 0.04); 337/342 = 98.5% with the model of 17,887 rows (seventh round, 0.04 / 0.04); with 16,048 rows: 337/342 = 98.5% at the recall-first thresholds (336/342 = 98.2% at the cost rule's) (335/342 = 98.0% with 14,227 rows, 337/342 = 98.5% with 11,284 rows, 334/342 with 7,665, 328/342 with 4,564, 323/342 with 1,836)
AUTHORS2_CEILING_FP = 0.065  # measured 15/382 = 3.9% with the shipped model of 22,251 rows (tenth round, 0.04 / 0.04); 17/382 = 4.5% with the model of 20,801 rows (ninth round, 0.06 / 0.06); 11/382 = 2.9% with the model of 19,368 rows (eighth round, 0.05 / 0.04); 12/382 = 3.1% with the model of 17,887 rows (seventh round, 0.04 / 0.04); with 16,048 rows: 19/382 = 5.0% at the recall-first thresholds (15/382 = 3.9% at the cost rule's) (the same with 14,227 rows; 13/382 = 3.4% with 11,284 rows, 22/382 with 7,665, 21/382 with 4,564 before the explicit-cue rule, 48/382 with 1,836)
UNSEEN_FLOOR_RECALL = 0.95  # measured 158/162 = 97.5% with the shipped model of 22,251 rows (tenth round, 0.04 / 0.04); 158/162 = 97.5% with the model of 20,801 rows (ninth round, 0.06 / 0.06); 161/162 = 99.4% with the model of 19,368 rows (eighth round, 0.05 / 0.04); 160/162 = 98.8% with the model of 17,887 rows (seventh round, 0.04 / 0.04); with 16,048 rows: 160/162 = 98.8% at the recall-first thresholds (158/162 = 97.5% at the cost rule's) (159/162 with 14,227 and 11,284 rows; 155/162 with 7,665, 151/162 with 4,564)
UNSEEN_CEILING_FP = 0.10  # measured 9/139 = 6.5% with the shipped model of 22,251 rows (tenth round, 0.04 / 0.04); 4/139 = 2.9% with the model of 20,801 rows (ninth round, 0.06 / 0.06); 7/139 = 5.0% with the model of 19,368 rows (eighth round, 0.05 / 0.04); 9/139 = 6.5% with the model of 17,887 rows (seventh round, 0.04 / 0.04); with 16,048 rows: 7/139 = 5.0% at the recall-first thresholds (6/139 = 4.3% at the cost rule's) (the same with 14,227 and 11,284 rows; 12/139 with 7,665 and 4,564)


@pytest.mark.embedded
def test_issue_examples_with_classifier():
    risky = [
        "I have the pills saved up and I know how many I'd need.",
        "I wrote goodbye letters to my kids last night.",
        "I've been giving my things away to people.",
        "I've just taken all of them, the whole packet, about an hour ago.",
        "The voices keep telling me to end it all.",
    ]
    for t in risky:
        assert any(c.active and c.category == "self_harm" for c in scan(t, model=True)), (t, scan(t, model=True))
    clf = risk_model.default_classifier()
    assert clf is not None
    # the whole-text reading equals the batched probabilities
    r = clf.read(risky[0])
    assert r.p_risk == pytest.approx(float(clf.probs([risky[0]])[0, : len(RISK_CLASSES)].sum()), abs=1e-5)


@pytest.mark.embedded
def test_issue_slang_example_with_classifier():
    # the slang pattern finds it and the classifier of 14,227 rows reads it as risk (P(risk)
    # 0.22, above its threshold 0.05); below the veto an explicit cue with no qualifier in its
    # sentence would stand too. (An expected failure with the model of 11,284 rows: 0.0599,
    # read as a denial, a qualified reading that may veto it; docs/risk.md.)
    assert any(c.active and c.category == "self_harm" for c in scan("honestly i just wanna kms", model=True))


@pytest.mark.embedded
def test_slang_hyperbole_is_qualified_with_classifier():
    # the same slang as hyperbole: the pattern finds it, the classifier qualifies it
    (cue,) = scan("kms this chem test tmrw 💀", model=True)
    assert not cue.active and cue.context == "benign:figure_of_speech"
