"""The baselines of the inference benchmark: a hand-written PyTorch loop and the backbone's bare forward.

A plain loop is what one writes by hand: PIL decode and timm's eval transform per image (the tokenizer
per batch of texts, padded to the longest, in the given order), a DataLoader, the model in its default
(NCHW) memory format; training: AdamW, cross-entropy, the same trainable blocks as sktransfer.
"""

from __future__ import annotations

import copy
import time

import numpy as np
import torch
from PIL import Image

from ._harness import tiny

BATCH, LR = 32, 1e-4


def _max_length() -> int:
    return 32 if tiny() else 128  # the tiny BERT reads 64 tokens at most


class _Files(torch.utils.data.Dataset):
    def __init__(self, items, y, transform):
        self.items, self.y, self.transform = items, y, transform

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i):
        return self.transform(self.items[i]), int(self.y[i])


def _pil_transform(data_config: dict):
    import timm.data

    transform = timm.data.create_transform(**data_config, is_training=False)
    return lambda path: transform(Image.open(path).convert("RGB"))


def _text_collate(tokenizer, padding="longest"):
    def collate(batch):
        texts, ys = zip(*batch)
        tokens = tokenizer(list(texts), padding=padding, truncation=True, max_length=_max_length(),
                           return_tensors="pt")
        return dict(tokens), torch.as_tensor(ys)
    return collate


def plain_predict(modality: str, X, backbone, padding: str = "longest") -> np.ndarray:
    """Embeddings by a hand-written inference loop (default memory format)."""
    if modality == "images":
        loader = torch.utils.data.DataLoader(_Files(X, np.zeros(len(X)), _pil_transform(backbone.data_config)),
                                             batch_size=BATCH)
    else:
        loader = torch.utils.data.DataLoader(_Files(X, np.zeros(len(X)), lambda t: t), batch_size=BATCH,
                                             collate_fn=_text_collate(backbone.tokenizer, padding))
    encoder = backbone.encoder.eval()
    with torch.inference_mode():
        return torch.cat([encoder(**xb) if isinstance(xb, dict) else encoder(xb) for xb, _ in loader]).numpy()


def plain_train(modality: str, X, y, backbone, freeze_layers) -> None:
    """One epoch of hand-written fine-tuning with sktransfer's split into trainable and frozen blocks."""
    from sktransfer._freezing import frozen_names

    encoder = copy.deepcopy(backbone.encoder)
    names = [name for name, _ in encoder.named_parameters()]
    frozen = set(frozen_names(backbone.blocks, freeze_layers, names))
    for name, param in encoder.named_parameters():
        param.requires_grad_(name not in frozen)
    head = torch.nn.Linear(backbone.num_features, 2)
    params = [p for p in [*encoder.parameters(), *head.parameters()] if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=LR)
    if modality == "images":
        dataset, collate = _Files(X, y, _pil_transform(backbone.data_config)), None
    else:
        dataset, collate = _Files(X, y, lambda t: t), _text_collate(backbone.tokenizer)
    loader = torch.utils.data.DataLoader(dataset, batch_size=BATCH, shuffle=True, collate_fn=collate,
                                         generator=torch.Generator().manual_seed(0))
    encoder.train()
    for xb, yb in loader:
        features = encoder(**xb) if isinstance(xb, dict) else encoder(xb)
        loss = torch.nn.functional.cross_entropy(head(features), yb)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


def bare_forward(modality: str, X, backbone) -> dict[str, float]:
    """Seconds of the backbone's forward alone, per memory format (preprocessing done beforehand); images
    also with BatchNorm folded into the convolutions (as sktransfer runs them)."""
    from sktransfer._bn_folding import folded_for_inference

    encoder = copy.deepcopy(backbone.encoder).eval()
    if modality == "texts":
        order = np.argsort([len(t) for t in X], kind="stable")
        collate = _text_collate(backbone.tokenizer)
        batches = [collate([(X[i], 0) for i in order[s:s + BATCH]])[0] for s in range(0, len(X), BATCH)]
        variants = {"default": (encoder, torch.contiguous_format)}
    else:
        transform = _pil_transform(backbone.data_config)
        tensors = torch.stack([transform(path) for path in X])
        batches = list(tensors.split(BATCH))
        last = copy.deepcopy(encoder).to(memory_format=torch.channels_last)
        variants = {"NCHW": (encoder, torch.contiguous_format), "channels_last": (last, torch.channels_last),
                    "channels_last, BatchNorm folded": (folded_for_inference(last, {"pixel_values": tensors[:1]}),
                                                        torch.channels_last)}
    seconds = {}
    for name, (module, memory_format) in variants.items():
        inputs = [b if isinstance(b, dict) else b.contiguous(memory_format=memory_format) for b in batches]
        with torch.inference_mode():
            module(**inputs[0]) if isinstance(inputs[0], dict) else module(inputs[0])
            start = time.perf_counter()
            for b in inputs:
                module(**b) if isinstance(b, dict) else module(b)
        seconds[name] = time.perf_counter() - start
    return seconds
