"""Devices and precision: bf16 on CPU, worker loading, length bucketing, OOM retry, GPU placement, memory."""

from __future__ import annotations

import pickle
import warnings
from unittest import mock

import numpy as np
import pytest
import torch
from joblib import Parallel, delayed
from PIL import Image
from sklearn.model_selection import GridSearchCV

import _counting
from sktransfer import PretrainedImageClassifier, PretrainedImageEmbedder, PretrainedTextClassifier, _device
from sktransfer._device import resolve_device, resolve_precision, wants_channels_last
from sktransfer._heads import TransferModule
from sktransfer._text_data import TextCollator

requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


# ------------------------------------------------------------ precision
def test_bf16_autocast_on_cpu_fits_and_predicts(tiny_image_params, image_data, monkeypatch):
    X, y = image_data[0][::2], image_data[1][::2]
    clf = PretrainedImageClassifier(
        **{**tiny_image_params, "max_epochs": 1}, freeze_layers="all", cache=False, precision="bf16", device="cpu",
    )
    seen = []
    _counting.uncount_fold_checks(monkeypatch, seen)  # a BatchNorm fold is checked in float32
    original = torch.nn.Conv2d.forward

    def spy(self, x):
        seen.append(torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16)
        return original(self, x)

    with mock.patch.object(torch.nn.Conv2d, "forward", spy):
        clf.fit(X, y)
        proba = clf.predict_proba(X)
    assert clf.precision_ == "bf16" and seen and all(seen)
    assert np.isfinite(proba).all()
    assert set(clf.predict(X)) <= {"dark", "light"}


def test_auto_precision_is_fp32_on_cpu(tiny_image_params, image_data):
    assert resolve_precision("auto", "cpu") == "fp32"
    clf = PretrainedImageClassifier(**{**tiny_image_params, "max_epochs": 1}, device="cpu").fit(*image_data)
    assert clf.precision_ == "fp32" and clf.net_.precision == "fp32"


# ------------------------------------------------------- input pipeline
def test_worker_loading_gives_the_same_results(tmp_path, image_data):
    paths = []
    for i, image in enumerate(image_data[0]):
        paths.append(str(tmp_path / f"{i}.png"))
        Image.fromarray(image).save(paths[-1])
    params = {"backbone": "test_efficientnet", "pretrained": False, "cache": False, "batch_size": 4}
    serial = PretrainedImageEmbedder(**params, num_workers=0).fit(paths)
    workers = PretrainedImageEmbedder(**params, num_workers=2).fit(paths)
    workers.encoder_.load_state_dict(serial.encoder_.state_dict())
    assert workers.num_workers_ == 2
    np.testing.assert_allclose(workers.transform(paths), serial.transform(paths), atol=1e-6)


def test_text_inference_is_length_sorted_and_returned_in_input_order(tiny_text_params, text_data, monkeypatch):
    X, y = text_data
    # no loader workers: the counting collator must run in this process (CUDA's default is 8 workers)
    params = {**tiny_text_params, "max_epochs": 1, "cache": False, "batch_size": 4, "num_workers": 0}
    clf = PretrainedTextClassifier(**params).fit(X, y)
    rng = np.random.default_rng(0)
    texts = [" ".join(rng.choice(["good", "bad", "film", "very"], size=n)) for n in rng.permutation(np.arange(1, 13))]
    padded = []
    call = TextCollator.__call__

    def counting(self, batch):
        x, target = call(self, batch)
        padded.append(x["input_ids"].numel())
        return x, target

    monkeypatch.setattr(TextCollator, "__call__", counting)
    sorted_proba = clf.predict_proba(texts)
    sorted_tokens, padded[:] = sum(padded), []
    monkeypatch.setattr(type(clf), "_inference_order", lambda self, items: np.arange(len(items)))
    unsorted_proba = clf.predict_proba(texts)
    lengths = sorted(len(ids) for ids in clf.tokenizer_(texts)["input_ids"])
    minimal = sum(max(lengths[i:i + 4]) * len(lengths[i:i + 4]) for i in range(0, len(lengths), 4))
    assert sorted_tokens == minimal < sum(padded)
    np.testing.assert_allclose(sorted_proba, unsorted_proba, atol=1e-5)


def test_text_training_batches_group_similar_lengths(tiny_text_params, monkeypatch):
    rng = np.random.default_rng(0)
    X = [" ".join(rng.choice(["good", "bad", "film", "very"], size=n)) for n in rng.integers(1, 30, size=96)]
    y = rng.choice(["pos", "neg"], size=len(X))
    params = {**tiny_text_params, "max_epochs": 2, "freeze_layers": "none", "batch_size": 4, "max_length": 64,
              "num_workers": 0}  # the counting collator must run in this process (CUDA's default is 8 workers)
    tokens = []
    call = TextCollator.__call__

    def counting(self, batch):
        x, target = call(self, batch)
        tokens.append((x["input_ids"].numel(), int(x["attention_mask"].sum())))
        return x, target

    monkeypatch.setattr(TextCollator, "__call__", counting)
    clf = PretrainedTextClassifier(**params).fit(X, y)
    grouped_padding = sum(total - real for total, real in tokens)
    sampler = clf._train_sampler(X)
    assert sorted(sampler) == sorted(sampler) == list(range(len(X)))  # every text once per epoch
    tokens[:] = []
    monkeypatch.setattr(PretrainedTextClassifier, "_train_sampler", lambda self, items: None)
    PretrainedTextClassifier(**params).fit(X, y)
    assert grouped_padding < 0.5 * sum(total - real for total, real in tokens)


# ------------------------------------------------------------- OOM retry
def test_out_of_memory_halves_the_micro_batch(tiny_text_params, text_data, monkeypatch):
    X, y = text_data
    params = {**tiny_text_params, "cache": False, "batch_size": 8, "max_epochs": 1, "C": None}  # trained by epochs
    reference = PretrainedTextClassifier(**params, grad_accum_steps=2).fit(X, y)
    forward = TransferModule.forward

    def small_batches_only(self, **inputs):
        batch = len(next(v for k, v in inputs.items() if k != "sample_weight"))
        if self.training and batch > 4:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return forward(self, **inputs)

    monkeypatch.setattr(TransferModule, "forward", small_batches_only)
    with pytest.warns(RuntimeWarning, match="Out of memory: retrying with micro-batches of about 4 samples and 2"):
        clf = PretrainedTextClassifier(**params).fit(X, y)
    assert clf.grad_accum_steps == 1 and clf.net_.grad_accum_steps == 2 and clf.net_.batch_size == 8
    assert clf.n_epochs_ == 1
    np.testing.assert_allclose(clf.predict_proba(X), reference.predict_proba(X), atol=1e-5)


def test_out_of_memory_with_single_sample_micro_batches_is_raised(tiny_text_params, text_data, monkeypatch):
    def always(self, *args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory (simulated)")

    monkeypatch.setattr(TransferModule, "forward", always)
    with warnings.catch_warnings(), pytest.raises(torch.OutOfMemoryError):
        warnings.simplefilter("ignore", RuntimeWarning)
        PretrainedTextClassifier(**tiny_text_params, freeze_layers="none", batch_size=2).fit(*text_data)


# ------------------------------------------------------- GPU placement
def _fake_gpus(n: int):
    return mock.patch.multiple(torch.cuda, is_available=lambda: True, device_count=lambda: n)


def _device_in_worker(n_gpus: int) -> tuple[str, int]:
    import os
    import time

    time.sleep(0.3)  # keep each worker busy, so that both get tasks
    with _fake_gpus(n_gpus):  # patched inside the worker only, and undone before it runs anything else
        return resolve_device("auto"), os.getpid()


def test_parallel_workers_spread_over_gpus():
    results = Parallel(n_jobs=2)(delayed(_device_in_worker)(4) for _ in range(6))
    by_worker = dict((pid, device) for device, pid in results)
    assert len(by_worker) == 2
    assert len(set(by_worker.values())) == 2, by_worker
    assert all(device.startswith("cuda:") for device in by_worker.values())


@pytest.mark.parametrize(("rank", "n_gpus", "expected"), [(0, 4, "cuda:0"), (5, 4, "cuda:1"), (3, 1, "cuda")])
def test_gpu_is_picked_round_robin_by_worker_rank(monkeypatch, rank, n_gpus, expected):
    monkeypatch.setenv("LOCAL_RANK", str(rank))
    with _fake_gpus(n_gpus):
        assert resolve_device("auto") == expected
        assert resolve_device("cuda") == expected
        assert resolve_device("cuda:0") == "cuda:0"  # an explicit index is kept


def test_fit_forks_the_rng_of_the_resolved_gpu(monkeypatch, tiny_image_params, image_data):
    # device="auto" that resolves to cuda:1 must fork (not reseed) cuda:1's generator, not none.
    forked = []

    class Stop(Exception):
        pass

    def spy(devices=None, **kwargs):
        forked.append(list(devices))
        raise Stop

    monkeypatch.setattr(torch.random, "fork_rng", spy)
    monkeypatch.setattr("sktransfer._training.resolve_device", lambda device: "cuda:1")
    with pytest.raises(Stop):
        PretrainedImageClassifier(**{**tiny_image_params, "device": "auto"}).fit(*image_data)
    assert forked == [[1]]
    assert _device.cuda_indices("cuda") == [0] and _device.cuda_indices("cpu") == []


def test_worker_rank_of_the_main_process_is_zero(monkeypatch):
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    assert _device.worker_rank() == 0


def test_channels_last_only_for_convolutional_backbones():
    cnn = torch.nn.Sequential(torch.nn.Conv2d(3, 64, 3), torch.nn.Conv2d(64, 64, 3), torch.nn.Linear(64, 8))
    vit_like = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 16), torch.nn.Linear(8, 512), torch.nn.Linear(512, 8))
    assert wants_channels_last(cnn, "cuda:1") and wants_channels_last(cnn, "cuda")
    assert wants_channels_last(cnn, "cpu")  # measured faster on CPU too (see wants_channels_last)
    assert not wants_channels_last(vit_like, "cuda") and not wants_channels_last(vit_like, "cpu")


# --------------------------------------------------------------- compile
def test_compile_is_passed_to_skorch_and_the_fitted_module_is_plain(tiny_image_params, image_data, monkeypatch):
    compiled = []

    class Compiled(torch.nn.Module):  # what torch.compile returns, without minutes of compilation on CPU
        def __init__(self, module):
            super().__init__()
            self._orig_mod = module

        def forward(self, *args, **kwargs):
            return self._orig_mod(*args, **kwargs)

        def __getattr__(self, name):
            try:
                return super().__getattr__(name)
            except AttributeError:
                return getattr(self._orig_mod, name)

    def fake_compile(module, **kwargs):
        compiled.append(module)
        return Compiled(module)

    monkeypatch.setattr(torch, "compile", fake_compile)
    clf = PretrainedImageClassifier(**{**tiny_image_params, "max_epochs": 1}, compile=True).fit(*image_data)
    assert clf.net_.compile is True and any(isinstance(m, TransferModule) for m in compiled)
    assert type(clf.net_.module_) is TransferModule and not isinstance(clf.net_.criterion_, Compiled)
    pickle.loads(pickle.dumps(clf)).predict(image_data[0])


# --------------------------------------------------------- memory hygiene
def test_after_fit_only_the_model_is_kept(tiny_image_params, image_data):
    clf = PretrainedImageClassifier(
        **{**tiny_image_params, "max_epochs": 1}, freeze_layers=-1, early_stopping=True, validation_fraction=0.25,
    ).fit(*image_data)
    assert clf.n_trainable_backbone_params_ > 0
    assert all(p.grad is None for p in clf.net_.module_.parameters())
    assert not clf.net_.optimizer_.state
    assert dict(clf.net_.callbacks_)["early_stopping"].best_model_weights_ is None


@requires_cuda
def test_peak_gpu_memory_does_not_grow_with_the_number_of_candidates(tiny_image_params, image_data):
    def peak(n_candidates: int) -> int:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        grid = {"lr": list(np.geomspace(1e-4, 1e-2, n_candidates))}
        GridSearchCV(PretrainedImageClassifier(**tiny_image_params, freeze_layers="none", device="cuda"), grid, cv=2)\
            .fit(*image_data)
        return torch.cuda.max_memory_allocated()

    peak(1)  # warm-up: CUDA context, cuDNN workspaces
    assert peak(6) <= 1.2 * peak(2)


@pytest.mark.parametrize("case", ["image, fine-tuned", "text, class weights", "text, dann"])
def test_a_pickled_net_maps_every_tensor_through_skorchs_device_fallback(case, tiny_image_params, tiny_text_params,
                                                                          image_data, text_data):
    # skorch unpickles its device-dependent attributes with a CPU fallback; a tensor pickled any other way keeps
    # its CUDA storage and cannot be unpickled without CUDA (found on an H200: the module passed as an instance)
    if case.startswith("image"):
        clf = PretrainedImageClassifier(**tiny_image_params, freeze_layers="none").fit(*image_data)
    elif case.endswith("weights"):
        clf = PretrainedTextClassifier(**tiny_text_params, class_weight="balanced", C=None).fit(*text_data)
    else:
        X, y = text_data
        y = np.array(y, dtype=object)
        y[::3] = None  # target-domain rows: unlabelled
        clf = PretrainedTextClassifier(**tiny_text_params, domain_adaptation="dann", freeze_layers="none").fit(X, y)

    def plain_storage(data):
        raise AssertionError("a tensor was pickled outside skorch's device-dependent attributes")

    blob = pickle.dumps(clf.net_)
    with mock.patch.object(torch.storage, "_load_from_bytes", plain_storage):
        loaded = pickle.loads(blob)
    assert loaded.module is loaded.module_


@requires_cuda
def test_model_fitted_on_cuda_pickles_and_loads_on_cpu(tiny_image_params, image_data):
    X, y = image_data
    clf = PretrainedImageClassifier(**tiny_image_params, freeze_layers="none", device="cuda").fit(X, y)
    expected = clf.predict_proba(X)
    blob = pickle.dumps(clf)
    with mock.patch.object(torch.cuda, "is_available", lambda: False):
        loaded = pickle.loads(blob)
        assert loaded.device_ == "cpu"
        assert all(p.device.type == "cpu" for p in loaded.net_.module_.parameters())
        np.testing.assert_allclose(loaded.predict_proba(X), expected, atol=2e-2)
