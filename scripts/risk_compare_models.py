"""Which risk classifier ships: the seventh round's rule 3 (docs/risk.md).

    python scripts/risk_compare_models.py OLD_DIR [NEW_DIR]

Each directory holds a model's ``risk_model.json`` and ``risk_model_oof.npy`` (its
out-of-fold probabilities, one row per training row in order); ``OLD_DIR`` also holds
the ``risk_utterances_authors.jsonl`` it was trained on (the other training files are
read from ``policies/data``), and ``NEW_DIR`` defaults to ``policies/data``. Each
model's rows are checked against the SHA-256 in its metadata. On the rows both were
cross-validated on (the same id and text), each model's operating point is chosen by
rule 2 (``recall_first``: :func:`therasim.policies.risk_model.choose_thresholds`) on
those rows alone, from its own out-of-fold probabilities; the new model ships if it
has fewer false alarms there. Prints both operating points and the verdict as JSON.
Nothing is written.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from therasim.policies import risk_model
from therasim.policies.risk_model import META_FILE, _data_dir, data_sha256, training_rows


def model_rows(model_dir: Path) -> tuple[list[dict[str, Any]], Any, dict[str, Any]]:
    """The training rows a model was cross-validated on, its out-of-fold probabilities
    and its metadata. The rows are ``policies/data``'s training files, with
    ``model_dir``'s own ``risk_utterances_authors.jsonl`` when it has one."""
    meta = json.loads((model_dir / META_FILE).read_text(encoding="utf-8"))
    data = _data_dir()
    with tempfile.TemporaryDirectory() as tmp:
        for name in risk_model.DATA_FILES:
            src = model_dir / name if (model_dir / name).exists() else data / name
            if src.exists():
                shutil.copy(src, Path(tmp) / name)
        rows = training_rows(Path(tmp))
    if data_sha256(rows) != meta["data_sha256"]:
        raise SystemExit(f"{model_dir}: the training rows do not match {META_FILE}'s data_sha256; put the authors file the model was trained on beside it")
    oof = np.load(model_dir / "risk_model_oof.npy").astype("float32")
    if oof.shape != (len(rows), len(risk_model.CLASSES)):
        raise SystemExit(f"{model_dir}: risk_model_oof.npy has shape {oof.shape}, expected ({len(rows)}, {len(risk_model.CLASSES)})")
    return rows, oof, meta


def operating_point(rows: list[dict[str, Any]], oof: Any) -> dict[str, Any]:
    """Rule 2 on these rows: the pair chosen and the figures it gives."""
    return risk_model.figures(rows, oof, rule="recall_first")


def compare(old: tuple[list[dict[str, Any]], Any], new: tuple[list[dict[str, Any]], Any]) -> dict[str, Any]:
    """Rule 3 on the rows both models were cross-validated on (matched by id and text,
    in the old model's order)."""
    new_at = {(r["id"], r["text"]): i for i, r in enumerate(new[0])}
    common = [i for i, r in enumerate(old[0]) if (r["id"], r["text"]) in new_at]
    rows = [old[0][i] for i in common]
    old_point = operating_point(rows, old[1][common])
    new_point = operating_point(rows, new[1][[new_at[(r["id"], r["text"])] for r in rows]])
    winner = "new" if new_point["cv_false_alarms"] < old_point["cv_false_alarms"] else "old"
    return {"common_rows": len(rows), "old_rows": len(old[0]), "new_rows": len(new[0]), "old": old_point, "new": new_point, "ships": winner}


def main(argv: list[str]) -> int:
    if not 1 <= len(argv) <= 2:
        print(__doc__, file=sys.stderr)
        return 2
    old_dir = Path(argv[0])
    new_dir = Path(argv[1]) if len(argv) > 1 else _data_dir()
    old_rows, old_oof, _ = model_rows(old_dir)
    new_rows, new_oof, _ = model_rows(new_dir)
    print(json.dumps(compare((old_rows, old_oof), (new_rows, new_oof)), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
