"""Device and precision resolution (CUDA when there is one, CPU otherwise)."""

from __future__ import annotations

import os

import torch


def resolve_device(device: str) -> str:
    """Turn ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` into a concrete device string."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(f"device={device!r} but CUDA is not available here; use device='auto' or 'cpu'.")
        index = device.partition(":")[2]
        if index and int(index) >= torch.cuda.device_count():
            raise ValueError(
                f"device={device!r} but only {torch.cuda.device_count()} CUDA device(s) are visible."
            )
    return device


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
