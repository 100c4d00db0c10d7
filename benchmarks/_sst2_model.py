"""MiniLM fine-tuned on SST-2: the start of the sequential-transfer benchmark and the distillation teacher.

The recipe is the accuracy benchmark's text fine-tuning (all 60,614 phrases, one epoch, full
fine-tuning, ``random_state=0``), about 35 minutes on the 2-core CPU. A full run therefore keeps the
fitted model in ``$SKTRANSFER_BENCH_CACHE`` (default ``~/.cache/sktransfer-benchmarks``), keyed on the
recipe, the training file's contents (not its date: a fresh copy of the data keeps the key) and the
versions of the libraries that shape the fit; a later full run with the same key loads it, and its
record says when and at which commit it was fitted. Delete the folder to refit. Quick and tiny modes
fit afresh, in a temporary folder.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import subprocess
import tempfile
from importlib import metadata
from pathlib import Path

from ._harness import ROOT, SHARED_DATA, read_sst2, run_isolated, synthetic_texts, timed, tiny, tiny_text_backbone
from .accuracy import TEXT_FINETUNE

RECIPE = {**{k: v for k, v in TEXT_FINETUNE.items() if k != "train_on"}, "random_state": 0}
CACHE_ENV = "SKTRANSFER_BENCH_CACHE"
_KEYED_PACKAGES = ("sktransfer", "torch", "transformers", "skorch")


def _params() -> dict:
    return {**RECIPE, "backbone": tiny_text_backbone(), "max_length": 16, "max_epochs": 2} if tiny() else RECIPE


def _data(quick: bool):
    if tiny():
        return (*synthetic_texts(48), *synthetic_texts(24, seed=1))
    return (*read_sst2("train", 2000 if quick else None), *read_sst2("test"))


def fit(folder: str, quick: bool) -> dict:
    """Fine-tune on SST-2 and save to ``folder``: training rows, fit seconds, SST-2 test accuracy."""
    import torch

    from sktransfer import PretrainedTextClassifier

    torch.manual_seed(0)
    X, y, X_test, y_test = _data(quick)
    model = PretrainedTextClassifier(**_params())
    record: dict = {"n_train": len(X)}
    with timed(record, "fit_s"):
        model.fit(X, y)
    record["sst2_accuracy"] = float(model.score(X_test, y_test))
    model.save(folder)
    return record


def _cache_folder() -> Path:
    train = hashlib.sha256((SHARED_DATA / "sst2" / "train.tsv").read_bytes()).hexdigest()
    key = json.dumps({"recipe": RECIPE, "train": train,
                      "versions": [metadata.version(p) for p in _KEYED_PACKAGES]}, sort_keys=True)
    root = Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "sktransfer-benchmarks")
    return root / f"sst2-minilm-{hashlib.sha256(key.encode()).hexdigest()[:16]}"


def fine_tuned_on_sst2(quick: bool) -> dict:
    """The fitted model's record (``fit``'s, plus ``folder``, ``fitted`` and ``cached``), fitted only when
    no full run has kept one under the same key."""
    if quick or tiny():
        folder = str(Path(tempfile.mkdtemp(prefix="sktransfer_sst2_")) / "model")
        return {**run_isolated("benchmarks._sst2_model:fit", folder=folder, quick=quick), "folder": folder,
                "fitted": "now", "cached": False}
    cache = _cache_folder()
    if (cache / "record.json").is_file():
        return {**json.loads((cache / "record.json").read_text()), "cached": True}
    record = run_isolated("benchmarks._sst2_model:fit", folder=str(cache / "model"), quick=False)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    record |= {"folder": str(cache / "model"), "cached": False,
               "fitted": f"{datetime.datetime.now().isoformat(timespec='minutes')}, commit "
                         f"{commit.stdout.strip() or 'unknown'}"}
    (cache / "record.json").write_text(json.dumps(record))
    return record
