"""Knowledge distillation on SST-2: small MiniLM students trained on labels alone or taught by the full model.

The teacher is all-MiniLM-L6-v2 fine-tuned as in the accuracy benchmark (all 60,614 training phrases,
``freeze_layers="none"``, lr 1e-4, head_lr 1e-3, one epoch, batch 32, max_length 64, linear schedule, warm-up
0.1); it is fitted once (and kept, see ``_sst2_model``), saved with ``save()`` and loaded by every student
run. Each student is a truncated copy of the teacher's fine-tuned backbone, ``backbone=teacher,
keep_blocks=k`` (the embeddings and the first ``k - 1`` of its 6 layers: 2 layers is ``keep_blocks=3``, 3
layers ``keep_blocks=4``), fully fine-tuned with the teacher's recipe, three ways: on the labels alone;
distilled (``teacher=teacher``, the defaults ``distill_temperature=2``, ``distill_weight=0.5``); distilled
with the 6,735 SST-2 dev phrases added as unlabelled rows (label -1). Accuracy on ``sst2/test.tsv`` (872
sentences); predict throughput on the CPU (the test sentences, after a warm-up batch); size: encoder and head
parameters, and the model's own weights file (``model.safetensors``, fp32; the folder's ``base/`` copy of the
teacher, kept for sequential transfer, is not counted).

Each fit runs in a fresh process. Quick mode: 2,000 training phrases and 1,000 dev phrases (a smoke test).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from ._harness import (
    headline,
    markdown_table,
    read_sst2,
    run_isolated,
    synthetic_texts,
    timed,
    tiny,
    write_result,
)
from ._sst2_model import RECIPE, fine_tuned_on_sst2

TINY = True
LAYERS = {"real": (2, 3), "tiny": (1,)}  # transformer layers the students keep (the tiny BERT has 2)
SIZES = {"quick": (2000, 1000), "full": (None, None)}  # training phrases, unlabelled dev phrases (None: all)
KINDS = ("labels alone", "distilled", "distilled + unlabelled dev phrases")


def _data(quick: bool):
    """(X, y, unlabelled X, X_test, y_test, description of the split)."""
    if tiny():
        X, y = synthetic_texts(48, seed=0)
        return (X, y, synthetic_texts(24, seed=2)[0], *synthetic_texts(24, seed=1),
                "synthetic, 48 train / 24 unlabelled / 24 test (tiny mode)")
    n_train, n_dev = SIZES["quick" if quick else "full"]
    X, y = read_sst2("train", n_train)
    unlabelled, _ = read_sst2("dev", n_dev)
    split = (f"{len(X):,} of 60,614 train phrases (+ {len(unlabelled):,} of 6,735 dev phrases, unlabelled) -> "
             "test.tsv (872)")
    return (X, y, unlabelled, *read_sst2("test"), split)


def _measure(model, folder: Path, X_test, y_test) -> dict:
    """Accuracy, CPU predict throughput and size of a fitted model saved in ``folder``."""
    import numpy as np

    from sktransfer import load

    record = {"accuracy": float(np.mean(np.asarray(model.predict(X_test)) == np.asarray(y_test)))}
    cpu = model if model.device_ == "cpu" else load(folder, device="cpu", teacher=None)
    cpu.predict(X_test[:32])  # warm-up
    with timed(record, "predict_s"):
        cpu.predict(X_test)
    record["predict_per_s"] = len(X_test) / record["predict_s"]
    module = cpu.net_.module_
    record["params_m"] = sum(p.numel() for p in module.parameters()) / 1e6
    record["weights_mb"] = (folder / "model.safetensors").stat().st_size / 2**20
    record["layers"] = int(cpu.n_backbone_blocks_) - 1
    return record


def measure_teacher(folder: str, quick: bool) -> dict:
    """The teacher's accuracy, throughput and size, measured in this run beside its students."""
    from sktransfer import load

    *_, X_test, y_test, _ = _data(quick)
    return _measure(load(folder), Path(folder), X_test, y_test)


def fit_student(teacher_folder: str, layers: int, kind: str, quick: bool) -> dict:
    """One student with ``layers`` of the teacher's layers, trained as ``kind`` says; measured."""
    import torch

    from sktransfer import PretrainedTextClassifier, load

    torch.manual_seed(0)
    X, y, unlabelled, X_test, y_test, _ = _data(quick)
    teacher = load(teacher_folder, teacher=None)
    params = {**RECIPE, **({"max_length": 16} if tiny() else {}), "backbone": teacher, "keep_blocks": layers + 1}
    if kind != "labels alone":
        params["teacher"] = teacher
    if kind == "distilled + unlabelled dev phrases":
        X, y = list(X) + list(unlabelled), list(y) + [-1] * len(unlabelled)
    student = PretrainedTextClassifier(**params)
    record: dict = {"n_train": len(X)}
    with timed(record, "fit_s"):
        student.fit(X, y)
    record["n_unlabelled"] = int(student.n_unlabelled_rows_)
    with tempfile.TemporaryDirectory() as folder:
        student.save(Path(folder) / "student")
        return {**record, **_measure(student, Path(folder) / "student", X_test, y_test)}


def _row(name: str, r: dict, teacher: dict) -> dict:
    return {"model": name, "layers": r["layers"], "train rows": r["n_train"], "accuracy %": 100 * r["accuracy"],
            "fit s": r["fit_s"], "CPU predict texts/s": r["predict_per_s"],
            "speed-up x teacher": r["predict_per_s"] / teacher["predict_per_s"], "params (M)": r["params_m"],
            "weights MiB": r["weights_mb"], "peak RSS MiB": r["peak_rss_mb"]}


def run(quick: bool, out_dir: Path) -> Path:
    """Fit the teacher once, then every student; write ``distillation.md``."""
    *_, split = _data(quick)
    fitted = fine_tuned_on_sst2(quick)
    teacher = {**fitted, **run_isolated("benchmarks.distillation:measure_teacher", folder=fitted["folder"],
                                        quick=quick)}
    rows = [_row("teacher", teacher, teacher)]
    results: dict = {}
    for layers in LAYERS["tiny" if tiny() else "real"]:
        for kind in KINDS:
            r = run_isolated("benchmarks.distillation:fit_student", teacher_folder=fitted["folder"], layers=layers,
                             kind=kind, quick=quick)
            results[layers, kind] = r
            rows.append(_row(f"student, {kind}", r, teacher))
    gains = [f"{layers} layers {100 * results[layers, KINDS[0]]['accuracy']:.1f} -> "
             f"{100 * max(results[layers, kind]['accuracy'] for kind in KINDS[1:]):.1f} %"
             for layers in LAYERS["tiny" if tiny() else "real"]]
    mode = "tiny" if tiny() else "quick" if quick else "full"
    top = headline(f"students, labels alone -> best distilled: {'; '.join(gains)} (teacher "
                   f"{100 * teacher['accuracy']:.1f} %, SST-2 test)")
    notes = (f"Mode: {mode}. Split: {split}. Teacher fitted {fitted['fitted']} (its fit s is of that run; its "
             "accuracy, speed and size are measured now).\n\n" + __doc__.split(chr(10) * 2)[1].replace("``", "`")
             + "\n\n")
    return write_result("distillation", "Knowledge distillation: small students taught by a fine-tuned MiniLM",
                        top + "\n" + notes + markdown_table(rows) + "\n", out_dir)
