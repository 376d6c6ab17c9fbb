"""Build ``policies/data/risk_utterances_authors.jsonl`` from the rows the independent
training authors wrote (policies/data/README.md), reproducibly:

    python scripts/risk_authors_import.py /work/riskauthors/a1/rows.jsonl /work/riskauthors/a2/rows.jsonl ...

Each source file is one author (the folder name is the ``author`` field, and each
author is its own writer in the leave-one-writer-out cross-validation). Every row
is validated (a unique id, non-empty text, a label of the set, a benign subtype of
the seven, ``split: "train"``); invalid rows (a line still being written, say) are
reported and left out. A row is dropped as a near duplicate of an evaluation
sentence (the ``heldout`` split of ``risk_utterances.jsonl``, the whole unseen set
and every unseen-authors set) when the Jaccard similarity of the lowercased word
sets exceeds 0.6 or the MiniLM cosine exceeds 0.92; exact repeats of a training
sentence or of an earlier author row are dropped too. The source files are only read.
Every pair is compared at once (:func:`max_jaccard`, an incidence-matrix product that
equals the pairwise definition; tests/test_risk_detector.py checks it against that
definition and a planted near duplicate): seconds instead of minutes for every author
row against every evaluation sentence.

With ``--eval`` the rows become an evaluation set instead
(``risk_utterances_unseen_authors3.jsonl``, or ``--out`` another name of
:data:`EVAL_FILES`; ``split: "unseen"``): they are compared with every training row
(the same Jaccard and cosine limits, and exact repeats), so that no evaluation row
is a near duplicate of what the classifier was trained on:

    python scripts/risk_authors_import.py --eval --out risk_utterances_unseen_authors2.jsonl /work/riskauthors/a13/rows.jsonl /work/riskauthors/a14/rows.jsonl
    python scripts/risk_authors_import.py --eval --out risk_utterances_unseen_authors3.jsonl /work/riskauthors/a15/rows.jsonl /work/riskauthors/a16/rows.jsonl
    python scripts/risk_authors_import.py --eval --out risk_utterances_unseen_authors4.jsonl /work/riskauthors/a33/rows.jsonl /work/riskauthors/a34/rows.jsonl
    python scripts/risk_authors_import.py --eval --out risk_utterances_unseen_authors5.jsonl /work/riskauthors/a48/rows.jsonl /work/riskauthors/a49/rows.jsonl
    python scripts/risk_authors_import.py --eval --out risk_utterances_unseen_authors6.jsonl /work/riskauthors/a55/rows.jsonl /work/riskauthors/a56/rows.jsonl
    python scripts/risk_authors_import.py --eval --out risk_utterances_unseen_authors7.jsonl /work/riskauthors/a61/rows.jsonl /work/riskauthors/a62/rows.jsonl
    python scripts/risk_authors_import.py --eval --out risk_utterances_unseen_authors8.jsonl /work/riskauthors/a67/rows.jsonl /work/riskauthors/a68/rows.jsonl
    python scripts/risk_authors_import.py --eval --out risk_utterances_unseen_authors9.jsonl /work/riskauthors/a73/rows.jsonl /work/riskauthors/a74/rows.jsonl
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from therasim.memory.embeddings import MiniLMEmbedding
from therasim.policies.risk_model import BENIGN_SUBTYPES, RISK_CLASSES, _data_dir

JACCARD_MAX = 0.6
COSINE_MAX = 0.92
OUT = "risk_utterances_authors.jsonl"
EVAL_OUT = "risk_utterances_unseen_authors3.jsonl"
# every evaluation-only author set; training rows are kept apart from all of them (the
# first one, a4+a5, moved into training in the third round: policies/data/README.md)
EVAL_FILES = ("risk_utterances_unseen_authors2.jsonl", EVAL_OUT, "risk_utterances_unseen_authors4.jsonl", "risk_utterances_unseen_authors5.jsonl", "risk_utterances_unseen_authors6.jsonl", "risk_utterances_unseen_authors7.jsonl", "risk_utterances_unseen_authors8.jsonl", "risk_utterances_unseen_authors9.jsonl")
_WORD = re.compile(r"[a-z0-9']+")


def words(text: str) -> set[str]:
    return set(_WORD.findall(text.lower()))


def jaccard(a: set[str], b: set[str]) -> float:
    """The pairwise definition: ``len(a & b) / len(a | b)``, 0 for two empty sets."""
    return len(a & b) / len(a | b) if a | b else 0.0


def _intersections(gathered: list[set[str]], indexed: list[set[str]], block: int) -> Iterator[tuple[int, np.ndarray]]:
    """``(start, inter)`` per block of ``gathered``: ``inter[i, j] = len(gathered[start + i] & indexed[j])``.
    Each row sums the rows of a word-by-set incidence matrix of ``indexed`` over its
    words (a gather and ``np.add.reduceat``); every row also gathers a last, all-zero
    row, so that no segment is empty."""
    vocab = {w: i for i, w in enumerate(sorted(set().union(*indexed)))}
    incidence = np.zeros((len(vocab) + 1, len(indexed)), np.uint8)
    for j, e in enumerate(indexed):
        incidence[[vocab[w] for w in e], j] = 1
    for b0 in range(0, len(gathered), block):
        idx = [[vocab[w] for w in t if w in vocab] + [len(vocab)] for t in gathered[b0 : b0 + block]]
        starts = np.cumsum([0] + [len(i) for i in idx[:-1]])
        yield b0, np.add.reduceat(incidence[np.concatenate(idx)], starts, axis=0, dtype=np.int32).astype(np.int64)


def max_jaccard(mine: list[set[str]], others: list[set[str]], block: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """For each word set of ``mine``, its highest :func:`jaccard` with a set of
    ``others`` and the index of the first set that reaches it (``(0.0, 0)`` when
    ``others`` is empty): every pair at once, the same float64 division as the
    pairwise definition. The incidence matrix is built over the shorter list and the
    longer one is gathered in blocks, so memory stays small either way round."""
    best, arg = np.zeros(len(mine)), np.zeros(len(mine), np.int64)
    if not mine or not others:
        return best, arg
    size_m, size_o = (np.array([len(s) for s in x], np.int64) for x in (mine, others))
    swap = len(others) > len(mine)  # index mine, gather the others
    best[:] = -1.0
    for b0, inter in _intersections(others if swap else mine, mine if swap else others, block):
        if swap:  # rows: others[b0:], columns: mine
            union = size_o[b0 : b0 + len(inter), None] + size_m[None, :] - inter
        else:
            union = size_m[b0 : b0 + len(inter), None] + size_o[None, :] - inter
        jac = np.where(union > 0, inter / np.maximum(union, 1), 0.0)
        if swap:
            top, where = jac.max(axis=0), jac.argmax(axis=0) + b0
            better = top > best  # strictly: the earliest index wins a tie, as in the pairwise scan
            best[better], arg[better] = top[better], where[better]
        else:
            best[b0 : b0 + len(inter)], arg[b0 : b0 + len(inter)] = jac.max(axis=1), jac.argmax(axis=1)
    return best, arg


def _rows(path: Path) -> list[dict[str, Any]]:
    """The rows of a JSONL file (none when it does not exist)."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def problem(row: object, seen: set[str]) -> str:
    """Why ``row`` is invalid ("" when it is valid)."""
    if not isinstance(row, dict):
        return "not a JSON object"
    if not isinstance(row.get("id"), str) or not row["id"] or row["id"] in seen:
        return f"id {row.get('id')!r} missing or repeated"
    if not isinstance(row.get("text"), str) or not row["text"].strip():
        return "empty text"
    if row.get("label") not in (*RISK_CLASSES, "benign"):
        return f"label {row.get('label')!r} is not one of {(*RISK_CLASSES, 'benign')}"
    if row["label"] == "benign" and row.get("subtype") not in BENIGN_SUBTYPES:
        return f"benign subtype {row.get('subtype')!r} is not one of {BENIGN_SUBTYPES}"
    if row.get("split", "train") != "train":
        return f"split {row.get('split')!r} is not 'train'"
    return ""


def main(sources: list[str]) -> int:
    evaluate = "--eval" in sources
    sources = [s for s in sources if s != "--eval"]
    out = EVAL_OUT if evaluate else OUT
    if "--out" in sources:  # --out NAME: another evaluation file of EVAL_FILES
        i = sources.index("--out")
        out = sources[i + 1] if i + 1 < len(sources) else ""
        del sources[i : i + 2]
        if not evaluate or out not in EVAL_FILES:
            print(f"--out takes one of {EVAL_FILES}, with --eval (got {out!r})", file=sys.stderr)
            return 2
    d = _data_dir()
    own, extra, unseen = (_rows(d / f) for f in ("risk_utterances.jsonl", "risk_utterances_extra.jsonl", "risk_utterances_unseen.jsonl"))
    eval_authors = [r for f in EVAL_FILES for r in _rows(d / f)]
    evaluation = [r["text"] for r in own if r["split"] != "train"] + [r["text"] for r in unseen + eval_authors]
    training = {r["text"].strip().lower() for r in own + extra if r["split"] == "train"}
    if evaluate:  # compare with everything the classifier trains on
        authors = _rows(d / OUT)
        evaluation = [r["text"] for r in own + extra + authors if r["split"] == "train"]
        others = [r for f in EVAL_FILES if f != out for r in _rows(d / f)]
        training = {t.strip().lower() for t in evaluation} | {r["text"].strip().lower() for r in own + unseen + others if r["split"] != "train"}

    rows: list[dict[str, object]] = []
    seen: set[str] = set()
    invalid: list[str] = []
    for src in sources:
        author = Path(src).parent.name
        for n, line in enumerate(Path(src).read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                invalid.append(f"{src}:{n}: not JSON ({e.msg})")
                continue
            why = problem(row, seen)
            if why:
                invalid.append(f"{src}:{n}: {why}")
                continue
            seen.add(row["id"])
            rows.append({"id": row["id"], "text": row["text"].strip(), "label": row["label"], "subtype": str(row.get("subtype") or ""), "split": "unseen" if evaluate else "train", "author": author})

    embed = MiniLMEmbedding()
    ev = np.asarray(embed(evaluation))
    mine = np.asarray(embed([str(r["text"]) for r in rows])) if rows else np.zeros((0, ev.shape[1]))
    cos_best, cos_arg = np.zeros(len(rows)), np.zeros(len(rows), np.int64)
    for b0 in range(0, len(rows), 1024):  # the highest cosine per row, a block of rows at a time
        cos = mine[b0 : b0 + 1024] @ ev.T
        cos_arg[b0 : b0 + len(cos)] = cos.argmax(axis=1)
        cos_best[b0 : b0 + len(cos)] = cos[np.arange(len(cos)), cos_arg[b0 : b0 + len(cos)]]
    jac_best, jac_arg = max_jaccard([words(str(r["text"])) for r in rows], [words(t) for t in evaluation])
    kept: list[dict[str, object]] = []
    dropped: dict[str, list[str]] = {"jaccard": [], "cosine": [], "exact": []}
    texts: set[str] = set(training)
    for i, r in enumerate(rows):
        t = str(r["text"])
        if jac_best[i] > JACCARD_MAX:
            dropped["jaccard"].append(f"{r['id']} ({jac_best[i]:.2f} to {evaluation[jac_arg[i]][:50]!r}): {t[:70]}")
        elif cos_best[i] > COSINE_MAX:
            dropped["cosine"].append(f"{r['id']} ({cos_best[i]:.3f} to {evaluation[cos_arg[i]][:50]!r}): {t[:70]}")
        elif t.lower() in texts:
            dropped["exact"].append(f"{r['id']}: {t[:70]}")
        else:
            texts.add(t.lower())
            kept.append(r)
    (d / out).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in kept), encoding="utf-8")
    print(json.dumps({"read": len(rows) + len(invalid), "invalid": invalid, "dropped": dropped, "kept": len(kept)}, indent=1, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
