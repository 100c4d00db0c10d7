"""Hooks of the gallery (docs/conf.py names them by import path, so that Sphinx can cache its config)."""

from __future__ import annotations


def reset_between_examples(gallery_conf, fname):
    """Before each example: at most 2 torch threads, and empty caches, so that each example stands alone."""
    import torch

    import sktransfer

    torch.set_num_threads(min(2, torch.get_num_threads()))
    sktransfer.feature_cache.clear()
