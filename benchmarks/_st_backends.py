"""The peer of ``benchmarks/backends.py``: sentence-transformers' ``encode`` on its torch, ONNX and OpenVINO backends.

Run by ``backends.py`` in a separate Python (``--peer-python``): sentence-transformers' ONNX backend needs
optimum-onnx, which needs transformers < 4.58, and sktransfer's environment has transformers 5. Its
arguments: the model folder, a JSON file of {name: texts} to encode, the calibration texts (static int8
for OpenVINO), threads, batch size, repeats, and the output folder. For each backend it writes the
embeddings of every text set (``.npy``), ``timings.json`` (the fastest of ``repeats`` passes per set) and
``sizes.json`` (MB of the weight file each backend runs).

The int8 variants are those sentence-transformers documents: ONNX with ``export_dynamic_quantized_onnx_model``
(its "avx512_vnni" configuration), OpenVINO with static post-training quantisation as its
``export_static_quantized_openvino_model`` does it (OVQuantizer, default OVQuantizationConfig, texts
padded to 384 tokens), calibrated on the given texts instead of the GLUE SST-2 download that function makes.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def _int8_openvino(model, folder: Path, calibration: list[str]) -> str:
    """Quantise as ``export_static_quantized_openvino_model`` does; returns the file name to load."""
    from datasets import Dataset
    from optimum.intel.openvino import OVConfig, OVQuantizationConfig, OVQuantizer

    config = OVQuantizationConfig()
    quantizer = OVQuantizer.from_pretrained(model[0].auto_model)
    texts = calibration[: config.num_samples or 300]
    encoded = model.tokenizer(texts, padding="max_length", max_length=384, truncation=True)
    with tempfile.TemporaryDirectory() as save_dir:
        quantizer.quantize(Dataset.from_dict(dict(encoded)), save_directory=save_dir,
                           ov_config=OVConfig(quantization_config=config))
        nested = Path(save_dir) / "openvino" if (Path(save_dir) / "openvino").is_dir() else Path(save_dir)
        (folder / "openvino").mkdir(parents=True, exist_ok=True)
        for suffix in (".xml", ".bin"):
            target = folder / "openvino" / f"openvino_model_qint8_quantized{suffix}"
            shutil.move(nested / f"openvino_model{suffix}", target)
    return "openvino/openvino_model_qint8_quantized.xml"


def main() -> None:
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.backend import export_dynamic_quantized_onnx_model

    source, sets_file, calibration_file, threads, batch, repeats, out = sys.argv[1:8]
    threads, batch, repeats, out = int(threads), int(batch), int(repeats), Path(out)
    torch.set_num_threads(threads)
    sets = json.loads(Path(sets_file).read_text())
    calibration = json.loads(Path(calibration_file).read_text())
    work = out / "models"
    shutil.copytree(source, work / "base", dirs_exist_ok=True)
    models = {
        "torch": lambda: SentenceTransformer(str(work / "base"), device="cpu"),
        "onnx": lambda: SentenceTransformer(str(work / "base"), device="cpu", backend="onnx"),
        "openvino": lambda: SentenceTransformer(str(work / "base"), device="cpu", backend="openvino"),
    }
    onnx_model = models["onnx"]()
    onnx_model.save(str(work / "onnx"))
    export_dynamic_quantized_onnx_model(onnx_model, "avx512_vnni", str(work / "onnx"))
    models["onnx int8"] = lambda: SentenceTransformer(
        str(work / "onnx"), device="cpu", backend="onnx",
        model_kwargs={"file_name": "onnx/model_qint8_avx512_vnni.onnx"})
    ov_file = _int8_openvino(models["openvino"](), work / "base", calibration)
    models["openvino int8"] = lambda: SentenceTransformer(
        str(work / "base"), device="cpu", backend="openvino", model_kwargs={"file_name": ov_file})
    models["openvino"]().save(str(work / "openvino"))
    files = {"torch": work / "base" / "model.safetensors", "onnx": work / "onnx" / "onnx" / "model.onnx",
             "onnx int8": work / "onnx" / "onnx" / "model_qint8_avx512_vnni.onnx",
             "openvino": work / "openvino" / "openvino" / "openvino_model.bin",
             "openvino int8": (work / "base" / ov_file).with_suffix(".bin")}
    (out / "sizes.json").write_text(json.dumps({name: path.stat().st_size / 1e6 for name, path in files.items()}))
    timings = {}
    for name, build in models.items():
        model = build()
        model.encode(list(sets.values())[0][:batch], batch_size=batch)  # warm-up
        for set_name, texts in sets.items():
            best = float("inf")
            for _ in range(repeats):
                start = time.perf_counter()
                embeddings = model.encode(texts, batch_size=batch, convert_to_numpy=True)
                best = min(best, time.perf_counter() - start)
            np.save(out / f"{name.replace(' ', '_')}__{set_name}.npy", embeddings.astype(np.float32))
            timings[f"{name}|{set_name}"] = best
            print(f"[st] {name} {set_name}: {len(texts) / best:.0f} texts/s", flush=True)
    (out / "timings.json").write_text(json.dumps(timings, indent=1))


if __name__ == "__main__":
    main()
