"""Device and precision resolution (CUDA when there is one, CPU otherwise), GPU placement and hygiene.

Several GPUs: ``device="auto"`` or ``"cuda"`` picks ``cuda:{rank % device_count()}``, where ``rank`` is

1. the ``LOCAL_RANK`` environment variable when set (torchrun's convention; set it to pin a process), else
2. the worker number of a child process started by multiprocessing (joblib's loky workers, dask's
   nanny-started workers and ``multiprocessing.Pool`` workers are numbered 1, 2, ... by their parent), else
3. 0: the main process uses the first GPU.

So ``GridSearchCV(n_jobs=k)`` puts its k worker processes on the GPUs round robin, never all on GPU 0.
With one GPU the workers share it. Threads (``prefer="threads"``) share their process's GPU.
``"cuda:N"`` is always used as given.
"""

from __future__ import annotations

import multiprocessing
import os

import torch


def worker_rank() -> int:
    """This process's rank among parallel workers (see the module docstring); 0 in the main process."""
    local_rank = os.environ.get("LOCAL_RANK", "")
    if local_rank.isdigit():
        return int(local_rank)
    identity = multiprocessing.current_process()._identity  # (k,) in the k-th child of a parent, () in the main process
    return identity[0] - 1 if identity else 0


def resolve_device(device: str) -> str:
    """Turn ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` into a concrete device string."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(f"device={device!r} but CUDA is not available here; use device='auto' or 'cpu'.")
        index = device.partition(":")[2]
        if index and int(index) >= torch.cuda.device_count():
            raise ValueError(
                f"device={device!r} but only {torch.cuda.device_count()} CUDA device(s) are visible."
            )
        if not index and torch.cuda.device_count() > 1:
            return f"cuda:{worker_rank() % torch.cuda.device_count()}"
    return device


def cuda_indices(device: str) -> list[int]:
    """The CUDA device indices a resolved ``device`` string uses (for ``torch.random.fork_rng``)."""
    return [torch.device(device).index or 0] if device.startswith("cuda") else []


def resolve_precision(precision: str, device: str) -> str:
    """``"auto"``: bf16 on GPUs that support it, fp16 on older GPUs, fp32 on CPU."""
    if precision != "auto":
        if precision == "fp16" and not device.startswith("cuda"):
            raise ValueError("precision='fp16' needs a CUDA device; use 'bf16' or 'fp32' on CPU.")
        return precision
    if device.startswith("cuda"):
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "fp32"


def resolve_num_workers(num_workers: int | None, device: str) -> int:
    """DataLoader workers: by default none on CPU (the cores compute), up to 8 feeding a GPU."""
    if num_workers is not None:
        return num_workers
    return min(8, os.cpu_count() or 1) if device.startswith("cuda") else 0


def wants_channels_last(module: torch.nn.Module, device: str) -> bool:
    """Whether ``module`` should run in channels-last memory format on ``device``.

    Yes for convolutional networks (most weights in 2-D convolutions), on CUDA, where tensor cores
    prefer NHWC, and on CPU, where oneDNN's convolutions then skip reordering every layer's input and
    output. Measured on 2 CPU cores (batch of 8, forward / forward + backward, channels-last speed-up):
    EfficientNet-Lite0 1.28x / 1.41x, ResNet-18 1.28x / 1.36x, ResNet-50 1.45x / 1.12x, RegNetY-800MF
    1.09x / 1.20x, timm MobileNetV3-Large 1.08x / 1.04x, torchvision ResNet-18 1.25x / 1.07x and
    MobileNetV3-Small 1.54x / 1.36x. No for transformers (a ViT's single patch-embedding conv does not
    count; ViT-Tiny 0.99x for inference) nor for ConvNeXt-like networks whose weights are mostly in
    Linear layers (ConvNeXt-T 1.40x for inference but 0.88x for training).
    """
    from ._optim import architecture

    return device.startswith(("cuda", "cpu")) and architecture(module) == "convolutional"


def to_device(module: torch.nn.Module, device: str) -> torch.nn.Module:
    """Move ``module`` to ``device``, in channels-last format where :func:`wants_channels_last` says so."""
    if wants_channels_last(module, device):
        return module.to(device, memory_format=torch.channels_last)
    return module.to(device)


def release_cuda_cache(device: str) -> None:
    """Give the CUDA caching allocator's unused blocks back (after a fit, an OOM, a deleted model)."""
    if device.startswith("cuda") and torch.cuda.is_available():
        torch.cuda.empty_cache()
