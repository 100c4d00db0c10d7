"""Deployment speed: sktransfer's ``runtime`` (ONNX Runtime, OpenVINO; float32 and int8) against PyTorch and
against sentence-transformers' own torch, ONNX and OpenVINO backends, in one run on this CPU.

Texts: all-MiniLM-L6-v2 (packaged) on SST-2 ``test.tsv`` (872 sentences) and TREC ``test.tsv`` (500
questions), batch 32, each side with its defaults otherwise (sktransfer: max_length 128, batches of similar
lengths; sentence-transformers: 256 tokens, length-sorted too). sktransfer's embedders are fitted on 2,000
SST-2 train phrases (the int8 calibration rows: 128 of them); sentence-transformers' int8 exports are the
ones it documents (ONNX: dynamic, "avx512_vnni"; OpenVINO: static, calibrated on 300 of the same phrases,
where its function downloads GLUE SST-2 train). sentence-transformers runs in its own Python
(``--peer-python``, see ``_st_backends.py``: its ONNX backend needs transformers < 4.58), one process after
this one's arms, with the same thread count; without it its rows are left out.

Images: efficientnet_lite0 (packaged) on hymenoptera ``val`` (153 JPEGs): the bare forward of each
backend on tensors preprocessed beforehand (PyTorch in its fastest form: channels-last, BatchNorm folded),
and ``transform`` of sktransfer's embedders on the file paths (decoding included).

Per arm: items/s (the fastest of ``repeats`` passes), the accuracy of ``LogisticRegression`` trained on that
arm's embeddings (SST-2: 2,000 train phrases -> test; TREC: 2,000 train questions -> test; hymenoptera:
train -> val) and the size of the model each arm runs (its weight file: ONNX or OpenVINO bytes; PyTorch:
parameters and buffers). "Where the time goes": tokenising or decoding alone, timed the same way.
Run ``python -m benchmarks.backends [--full] [--peer-python PATH]``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from ._harness import (
    ROOT,
    SHARED_DATA,
    headline,
    markdown_table,
    read_hymenoptera,
    read_sst2,
    write_result,
)

SIZES = {"quick": dict(test=128, train=300, images=32, repeats=1), "full": dict(test=None, train=2000, images=None,
                                                                              repeats=3)}
BATCH = 32
PEER_ENV = "SKTRANSFER_ST_PYTHON"  # another way to name --peer-python (for python -m benchmarks)
SK_RUNTIMES = {"torch": None, "onnxruntime": ("onnxruntime", False), "onnxruntime int8": ("onnxruntime", True),
               "openvino": ("openvino", False), "openvino int8": ("openvino", True)}


def _runtime(spec):
    from sktransfer import ONNXRuntime, OpenVINO

    if spec is None:
        return None
    name, int8 = spec
    return (ONNXRuntime if name == "onnxruntime" else OpenVINO)(int8=int8)


def _model_mb(estimator) -> float:
    if estimator.runtime_ is not None:
        return sum(len(data) for data in estimator.runtime_.files.values()) / 1e6
    tensors = [*estimator.encoder_.parameters(), *estimator.encoder_.buffers()]
    return sum(t.numel() * t.element_size() for t in tensors) / 1e6


def _fastest(method, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        method()
        best = min(best, time.perf_counter() - start)
    return best


def _trec(split: str, n: int | None) -> tuple[list[str], list[str]]:
    import csv

    with open(SHARED_DATA / "trec" / f"{split}.tsv", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    if n is not None and n < len(rows):
        rows = [rows[i] for i in np.random.default_rng(0).choice(len(rows), n, replace=False)]
    return [r["text"] for r in rows], [r["label"] for r in rows]


def _accuracy(train: np.ndarray, y_train, test: np.ndarray, y_test) -> float:
    from sklearn.linear_model import LogisticRegression

    return 100 * LogisticRegression(max_iter=2000).fit(train, y_train).score(test, y_test)


def _text_sets(size: dict) -> dict[str, tuple]:
    def cut(data):
        return data if size["test"] is None else (data[0][:size["test"]], data[1][:size["test"]])

    return {"sst2": (read_sst2("train", n=size["train"]), cut(read_sst2("test"))),
            "trec": (_trec("train", size["train"]), cut(_trec("test", None)))}


def _sk_texts(sets: dict, repeats: int) -> list[dict]:
    from sktransfer import PretrainedTextEmbedder

    calibration = sets["sst2"][0][0]
    rows = []
    for name, spec in SK_RUNTIMES.items():
        embedder = PretrainedTextEmbedder(cache=False, batch_size=BATCH, runtime=_runtime(spec)).fit(calibration)
        embedder.transform(calibration[:BATCH])  # warm-up
        for set_name, ((X_train, y_train), (X_test, y_test)) in sets.items():
            seconds = _fastest(lambda: embedder.transform(X_test), repeats)  # noqa: B023
            rows.append({"set": set_name, "arm": f"sktransfer {name}", "texts/s": len(X_test) / seconds,
                         "accuracy %": _accuracy(embedder.transform(X_train), y_train, embedder.transform(X_test),
                                                 y_test), "model MB": _model_mb(embedder)})
        print(f"[backends] sktransfer {name}: done", flush=True)
    tokenizer = embedder.tokenizer_
    for set_name, (_, (X_test, _)) in sets.items():
        seconds = _fastest(lambda: [tokenizer(X_test[s:s + BATCH], padding=True, truncation=True,  # noqa: B023
                                              max_length=128) for s in range(0, len(X_test), BATCH)], repeats)  # noqa: B023
        rows.append({"set": set_name, "arm": "tokenising alone", "texts/s": len(X_test) / seconds,
                     "accuracy %": "", "model MB": ""})
    return rows


def _peer_texts(sets: dict, repeats: int, peer_python: str | None) -> list[dict]:
    if peer_python is None:
        return []
    from sktransfer._backbones import _text_source

    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        texts = {name: test[0] for name, (_, test) in sets.items()}
        texts.update({f"train_{name}": train[0] for name, (train, _) in sets.items()})
        (folder / "sets.json").write_text(json.dumps(texts))
        (folder / "calibration.json").write_text(json.dumps(sets["sst2"][0][0][:300]))
        command = [peer_python, str(ROOT / "benchmarks" / "_st_backends.py"), _text_source("all-MiniLM-L6-v2"),
                   str(folder / "sets.json"), str(folder / "calibration.json"), str(torch.get_num_threads()),
                   str(BATCH), str(repeats), str(folder)]
        proc = subprocess.run(command, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"sentence-transformers' run failed:\n{proc.stderr[-3000:]}")
        timings = json.loads((folder / "timings.json").read_text())
        sizes = json.loads((folder / "sizes.json").read_text())
        rows = []
        for key, seconds in timings.items():
            backend, set_name = key.split("|")
            if set_name.startswith("train_"):
                continue
            (_, y_train), (X_test, y_test) = sets[set_name]
            stem = backend.replace(" ", "_")
            train, test = (np.load(folder / f"{stem}__{s}.npy") for s in (f"train_{set_name}", set_name))
            rows.append({"set": set_name, "arm": f"sentence-transformers {backend}", "texts/s": len(X_test) / seconds,
                         "accuracy %": _accuracy(train, y_train, test, y_test), "model MB": sizes[backend]})
    return rows


def _images(size: dict, repeats: int) -> list[dict]:
    from sktransfer import PretrainedImageEmbedder
    from sktransfer._bn_folding import folded_for_inference

    (X_train, y_train), (X_val, y_val) = read_hymenoptera("train"), read_hymenoptera("val")
    if size["images"] is not None:
        train, val = (np.random.default_rng(0).permutation(len(X))[:n] for X, n in ((X_train, 64),
                                                                                     (X_val, size["images"])))
        X_train, y_train = [X_train[i] for i in train], [y_train[i] for i in train]
        X_val, y_val = [X_val[i] for i in val], [y_val[i] for i in val]
    rows = []
    embedders = {}
    for name, spec in SK_RUNTIMES.items():
        embedders[name] = PretrainedImageEmbedder(cache=False, batch_size=BATCH, runtime=_runtime(spec)).fit(X_train)
        embedders[name].transform(X_val[:4])
        rows.append({"set": "hymenoptera", "arm": f"sktransfer {name} transform (paths)", "images/s": 0.0,
                     "accuracy %": _accuracy(embedders[name].transform(X_train), y_train,
                                             embedders[name].transform(X_val), y_val),
                     "model MB": _model_mb(embedders[name])})
    base = embedders["torch"]
    loader = base._loader(base._make_dataset(X_val))
    decode = _fastest(lambda: list(loader), repeats)
    batches = [x["pixel_values"] for x, _ in loader]
    encoder = base.encoder_.to(memory_format=torch.channels_last)
    folded = folded_for_inference(encoder, {"pixel_values": batches[0][:1]})
    bare = {"torch": lambda: [folded(b.contiguous(memory_format=torch.channels_last)) for b in batches]}
    for name in SK_RUNTIMES:
        if name != "torch":
            bare[name] = lambda session=embedders[name].runtime_: [session(pixel_values=b) for b in batches]
    with torch.inference_mode():
        bare_seconds = {name: _fastest(method, repeats) for name, method in bare.items()}
    for row, name in zip(rows, SK_RUNTIMES):
        row["images/s"] = len(X_val) / _fastest(lambda: embedders[name].transform(X_val), repeats)  # noqa: B023
    fastest_bare = min(bare_seconds.values())
    for row in rows:
        row["x fastest bare forward"] = row["images/s"] * fastest_bare / len(X_val)
    rows += [{"set": "hymenoptera", "arm": f"bare forward {name} (tensors)", "images/s": len(X_val) / s,
              "accuracy %": "", "model MB": "", "x fastest bare forward": fastest_bare / s}
             for name, s in bare_seconds.items()]
    rows.append({"set": "hymenoptera", "arm": "decoding and preprocessing alone", "images/s": len(X_val) / decode,
                 "accuracy %": "", "model MB": "", "x fastest bare forward": fastest_bare / decode})
    return rows


def _format(rows: list[dict]) -> list[dict]:
    return [{k: (f"{v:.2f}" if isinstance(v, float) and k.startswith("x ") else
                 f"{v:.1f}" if isinstance(v, float) else v) for k, v in row.items()} for row in rows]


def run(quick: bool, out_dir: Path, peer_python: str | None = None) -> Path:
    size = SIZES["quick" if quick else "full"]
    peer_python = peer_python or os.environ.get(PEER_ENV)
    warnings.simplefilter("ignore")
    sets = _text_sets(size)
    text_rows = _sk_texts(sets, size["repeats"]) + _peer_texts(sets, size["repeats"], peer_python)
    for row in text_rows:
        st_torch = next((r for r in text_rows if r["set"] == row["set"] and r["arm"] == "sentence-transformers torch"),
                        None)
        row["x sentence-transformers torch"] = "" if st_torch is None else row["texts/s"] / st_torch["texts/s"]
    text_rows.sort(key=lambda r: r["set"])
    image_rows = _images(size, size["repeats"])
    best_text = max((r for r in text_rows if r["arm"].startswith("sktransfer") and "int8" not in r["arm"]
                     and r["set"] == "sst2"), key=lambda r: r["texts/s"])
    ratio = best_text["x sentence-transformers torch"]
    summary = (f"texts (SST-2): fastest float32 arm {best_text['arm']} at "
               f"{'n/a' if ratio == '' else f'{ratio:.2f}x'} sentence-transformers' torch encode; "
               f"images: transform at {max(r['x fastest bare forward'] for r in image_rows[:5]):.2f}x the "
               "fastest bare forward")
    body = (
        f"{headline(summary)}\n"
        f"Threads: {torch.get_num_threads()}. Batch {BATCH}. Fastest of {size['repeats']} passes. "
        f"{'Quick mode (subsets).' if quick else ''}"
        f"{'' if peer_python else ' sentence-transformers not run (no --peer-python).'}\n\n"
        "## Texts (all-MiniLM-L6-v2)\n\n" + markdown_table(_format(text_rows)) + "\n\n"
        "## Images (efficientnet_lite0, hymenoptera val)\n\n" + markdown_table(_format(image_rows)) + "\n"
    )
    return write_result("backends", "Deployment backends: ONNX Runtime and OpenVINO", body, out_dir)


if __name__ == "__main__":
    from ._harness import QUICK_RESULTS, RESULTS

    full = "--full" in sys.argv
    peer = next((a.split("=", 1)[1] for a in sys.argv if a.startswith("--peer-python=")), None)
    print(run(quick=not full, out_dir=RESULTS if full else QUICK_RESULTS, peer_python=peer))
