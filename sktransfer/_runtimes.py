"""Inference runtimes: a fitted model's backbone run by ONNX Runtime or OpenVINO (the ``runtime`` parameter).

At the end of ``fit`` the fitted backbone is exported to ONNX (:func:`~sktransfer._export.encoder_onnx`),
optionally quantised to int8 by the runtime's own tools, and compiled into a :class:`Session`: keyword
tensors in, pooled embeddings out, as the PyTorch encoder it replaces for ``transform``, ``predict`` and
``predict_proba`` (the head, a few matrix products, stays in PyTorch). Training always runs in PyTorch.
The export is checked against PyTorch on rows of the fit (``runtime_deviation_``); a float32 export that
differs by more than ``FP32_TOLERANCE`` raises, as does a backbone that does not export.

int8: ONNX Runtime quantises a transformer's weights dynamically (activations quantised on the fly) and
a convolutional network statically, its activation ranges calibrated on ``calibration_size`` rows drawn from
the fit; OpenVINO quantises both statically with NNCF (post-training quantisation, as sentence-transformers'
OpenVINO int8 export does).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator

from ._modes import evaluating
from ._persistence import register_parameter_object
from ._validation import StrOptions, positive_int, resolve_parameter_object

FP32_TOLERANCE = 1e-3  # relative L2 difference from PyTorch's embeddings above which a float32 export is refused


class Session:
    """A compiled backbone: keyword tensors in, pooled float32 embeddings out (a CPU torch tensor).

    Picklable: it keeps the bytes of its model files and compiles them again when unpickled.
    """

    def __init__(self, files: dict[str, bytes], threads: int):
        self.files, self.threads = files, threads
        self._start()

    def _start(self) -> None:
        raise NotImplementedError

    def _run(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        raise NotImplementedError

    def __call__(self, **inputs: torch.Tensor) -> torch.Tensor:
        arrays = {name: inputs[name].cpu().numpy() for name in self.input_names}
        return torch.from_numpy(np.ascontiguousarray(self._run(arrays), dtype=np.float32))

    def __getstate__(self) -> dict:
        return {"files": self.files, "threads": self.threads}

    def __setstate__(self, state: dict) -> None:
        self.__init__(**state)


class _ORTSession(Session):
    def _start(self) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self._session = ort.InferenceSession(self.files["model.onnx"], options, providers=["CPUExecutionProvider"])
        self.input_names = [i.name for i in self._session.get_inputs()]

    def _run(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        return self._session.run(None, inputs)[0]


class _OpenVINOSession(Session):
    def _start(self) -> None:
        import openvino as ov

        core = ov.Core()
        model = core.read_model(self.files["model.xml"].decode(), ov.Tensor(np.frombuffer(self.files["model.bin"],
                                                                                            dtype=np.uint8)))
        # f32: CPUs with bf16 units would otherwise run the unquantised parts in bf16 and change the numbers.
        self._compiled = core.compile_model(model, "CPU", {"INFERENCE_NUM_THREADS": self.threads,
                                                           "INFERENCE_PRECISION_HINT": "f32"})
        self._request = self._compiled.create_infer_request()
        self.input_names = [port.any_name for port in self._compiled.inputs]

    def _run(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        return self._request.infer(inputs)[0]


class _Runtime(BaseEstimator):
    """What ONNX Runtime and OpenVINO share: parameters, the import check, the export's verification."""

    name = ""
    package = ""
    extra = ""

    _parameter_constraints = {"int8": ["boolean"], "calibration_size": [positive_int], "threads": [positive_int, None]}

    def __init__(self, *, int8: bool = False, calibration_size: int = 128, threads: int | None = None):
        self.int8 = int8
        self.calibration_size = calibration_size
        self.threads = threads

    def _check_installed(self) -> None:
        """Raise an ImportError naming the extra to install when the runtime's package is missing."""
        try:
            __import__(self.package)
        except ImportError as err:
            raise ImportError(f"runtime={self.name!r} needs the {self.package} package: "
                              f"pip install sktransfer[{self.extra}]") from err

    def _compile(self, onnx_file: Path, calibration: list[dict[str, np.ndarray]], modality: str) -> Session:
        """The session running ``onnx_file`` (quantised with ``calibration``'s batches when ``int8``)."""
        raise NotImplementedError

    def _session(self, files: dict[str, bytes]) -> Session:
        """The session of model files written before (by :meth:`_compile`, read back by ``load``)."""
        return self._session_class(files, self.threads or torch.get_num_threads())


class ONNXRuntime(_Runtime):
    """Run the fitted backbone with ONNX Runtime for inference: the value of the estimators' ``runtime``.

    ``fit`` exports the fitted backbone to ONNX and compiles it into an ONNX Runtime session (all graph
    optimisations, on the CPU); ``transform``, ``predict`` and ``predict_proba`` then run it, and the
    head stays in PyTorch. Its parameters are the estimator's nested parameters (``runtime__int8``).

    Parameters
    ----------
    int8 : bool, default=False
        Quantise to int8 with ONNX Runtime's tools: a transformer's weights dynamically (activations
        quantised on the fly), a convolutional backbone statically (activation ranges calibrated on
        ``calibration_size`` rows of the fit). Faster on CPUs with int8 units; changes the numbers a
        little (``runtime_deviation_``; the user guide's "Deployment" gives measured accuracy changes).
    calibration_size : int, default=128
        Rows drawn from the fit to calibrate static int8 quantisation and to check the export.
    threads : int or None, default=None
        Threads of the session; None: PyTorch's (``torch.get_num_threads()``).

    See Also
    --------
    OpenVINO : The same with Intel's OpenVINO runtime.

    Examples
    --------
    >>> from sktransfer import ONNXRuntime, PretrainedTextEmbedder
    >>> embedder = PretrainedTextEmbedder(runtime=ONNXRuntime(int8=True))
    >>> embedder.get_params()["runtime__int8"]
    True
    """

    name, package, extra = "onnxruntime", "onnxruntime", "onnx"
    _session_class = _ORTSession

    def _compile(self, onnx_file: Path, calibration: list[dict[str, np.ndarray]], modality: str) -> Session:
        if self.int8:
            quantised = onnx_file.with_name("int8.onnx")
            _ort_quantize(onnx_file, quantised, calibration, static=modality == "image")
            onnx_file = quantised
        return self._session({"model.onnx": onnx_file.read_bytes()})


class OpenVINO(_Runtime):
    """Run the fitted backbone with OpenVINO for inference: the value of the estimators' ``runtime``.

    ``fit`` exports the fitted backbone to ONNX, reads it into OpenVINO and compiles it for the CPU (in
    float32, also where the CPU has bf16 units); ``transform``, ``predict`` and ``predict_proba`` then
    run it, and the head stays in PyTorch. Its parameters are the estimator's nested parameters
    (``runtime__int8``).

    Parameters
    ----------
    int8 : bool, default=False
        Quantise to int8 with NNCF's post-training quantisation (static: activation ranges
        calibrated on ``calibration_size`` rows of the fit), for images and texts. Changes the
        numbers a little (``runtime_deviation_``).
    calibration_size : int, default=128
        Rows drawn from the fit to calibrate int8 quantisation and to check the export.
    threads : int or None, default=None
        Inference threads; None: PyTorch's (``torch.get_num_threads()``).

    See Also
    --------
    ONNXRuntime : The same with Microsoft's ONNX Runtime.

    Examples
    --------
    >>> from sktransfer import OpenVINO, PretrainedImageEmbedder
    >>> embedder = PretrainedImageEmbedder(runtime=OpenVINO())
    >>> embedder.get_params()["runtime__int8"]
    False
    """

    name, package, extra = "openvino", "openvino", "openvino"
    _session_class = _OpenVINOSession

    def _compile(self, onnx_file: Path, calibration: list[dict[str, np.ndarray]], modality: str) -> Session:
        import openvino as ov

        model = ov.Core().read_model(str(onnx_file))
        if self.int8:
            model = _nncf_quantize(model, calibration, transformer=modality == "text")
        xml = onnx_file.with_name("model.xml")
        ov.save_model(model, str(xml), compress_to_fp16=False)
        return self._session({"model.xml": xml.read_bytes(), "model.bin": xml.with_suffix(".bin").read_bytes()})


def _ort_quantize(source: Path, target: Path, calibration: list[dict[str, np.ndarray]], *, static: bool) -> None:
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    prepared = source.with_name("prepared.onnx")
    quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
    if not static:
        quantize_dynamic(prepared, target, per_channel=True, weight_type=QuantType.QInt8)
        return

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter(calibration)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.batches, None)

    # Symmetric int8 activations: asymmetric uint8 ones moved efficientnet_lite0's embeddings 5x as much (measured).
    quantize_static(prepared, target, Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                    extra_options={"ActivationSymmetric": True})


def _nncf_quantize(model: Any, calibration: list[dict[str, np.ndarray]], *, transformer: bool) -> Any:
    try:
        import nncf
    except ImportError as err:
        raise ImportError("OpenVINO(int8=True) quantises with NNCF: pip install sktransfer[openvino]") from err
    kwargs = {"model_type": nncf.ModelType.TRANSFORMER} if transformer else {}
    return nncf.quantize(model, nncf.Dataset(calibration), subset_size=len(calibration), **kwargs)


register_parameter_object(ONNXRuntime)
register_parameter_object(OpenVINO)

_SPELLED = {"onnxruntime": ONNXRuntime, "openvino": OpenVINO}
RUNTIME_PARAMETERS = {"runtime": [StrOptions(set(_SPELLED)), ONNXRuntime, OpenVINO, None]}


def resolve_runtime(value: Any) -> _Runtime | None:
    """The runtime object of a ``runtime`` value (None: PyTorch), its parameters checked, its package installed."""
    runtime = resolve_parameter_object(value, lambda name: _SPELLED[name]())
    if runtime is not None:
        runtime._check_installed()
    return runtime


def compile_runtime(estimator, items: list) -> Session | None:
    """Export ``estimator``'s fitted backbone, compile it for its ``runtime`` and check it against PyTorch.

    Sets ``runtime_deviation_`` (the relative L2 difference of the session's embeddings from PyTorch's on
    up to ``calibration_size`` rows of ``items``); returns None without a runtime.
    """
    runtime = resolve_runtime(estimator.runtime)
    if runtime is None:
        estimator.runtime_deviation_ = None
        return None
    import onnx

    from ._export import encoder_onnx

    rows = np.random.default_rng(0).permutation(len(items))[:runtime.calibration_size]
    sample = [items[i] for i in np.sort(rows)]
    encoder = estimator._fitted_encoder()
    batches = [{k: v.numpy() for k, v in x.items()} for x, _ in estimator._loader(estimator._make_dataset(sample))]
    with tempfile.TemporaryDirectory() as folder:
        onnx_file = encoder_onnx(estimator, encoder, Path(folder) / "model.onnx")
        names = [node.name for node in onnx.load(str(onnx_file)).graph.input]
        batches = [{name: batch[name] for name in names} for batch in batches]  # e.g. no token_type_ids
        session = runtime._compile(onnx_file, batches, estimator._modality)
    with evaluating(encoder), torch.inference_mode():  # float32, whatever the estimator's precision
        reference = torch.cat([encoder(**{k: torch.as_tensor(v, device=estimator.device_) for k, v in b.items()})
                               .float().cpu() for b in batches])
    produced = torch.cat([session(**{k: torch.as_tensor(v) for k, v in b.items()}) for b in batches])
    deviation = float(torch.linalg.norm(produced - reference) / torch.linalg.norm(reference).clamp_min(1e-12))
    if not runtime.int8 and not deviation <= FP32_TOLERANCE:
        raise ValueError(f"runtime={runtime.name!r}: the exported backbone's embeddings differ from PyTorch's by "
                         f"{deviation:.2g} (relative L2, more than {FP32_TOLERANCE}); this backbone does not convert "
                         "faithfully. Use runtime=None.")
    estimator.runtime_deviation_ = deviation
    return session
