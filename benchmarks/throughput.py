"""Training and inference throughput of sktransfer against a hand-written PyTorch loop and plain skorch.

All three fine-tune the same backbone (every layer, 1 epoch, AdamW, batch 32) on the same data with
the same preprocessing, then predict it; the timed blocks include loading the packaged weights. Images:
synthetic 224x224 RGB arrays, efficientnet_lite0. Texts: SST-2 phrases (synthetic ones when the data is
absent), all-MiniLM-L6-v2 at max_length 128. On CUDA the loop also runs with AMP (bf16) + channels_last.
Each method first runs once on 4 items (2 per class) (imports, allocations), then all run interleaved, ``REPEATS``
times each; the fastest run of each counts (the least disturbed).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ._harness import (
    SHARED_DATA,
    headline,
    markdown_table,
    read_sst2,
    synthetic_texts,
    timed,
    tiny,
    tiny_text_backbone,
    write_result,
)

TINY = True
SIZES = {"tiny": (16, 16), "quick": (32, 64), "full": (256, 512)}  # (images, texts)
REPEATS = {"tiny": 1, "quick": 1, "full": 2}


def max_length() -> int:
    """Tokens per text: 128, or 64 for the tiny BERT (its positions stop there)."""
    return 64 if tiny() else 128
BATCH, LR = 32, 1e-4


def _images(n: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    side = 32 if tiny() else 224
    return rng.integers(0, 256, size=(n, side, side, 3), dtype=np.uint8), np.arange(n) % 2


def _texts(n: int) -> tuple[list[str], np.ndarray]:
    X, y = read_sst2("train", n) if (SHARED_DATA / "sst2").exists() and not tiny() else synthetic_texts(n)
    return X, np.asarray(y)


class _Pairs(torch.utils.data.Dataset):
    """(input, target) pairs with a per-item transform, as a hand-written loop would write it."""

    def __init__(self, items, y, transform=lambda item: item):
        self.items, self.y, self.transform = items, y, transform

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i):
        return self.transform(self.items[i]), int(self.y[i])


class _Model(torch.nn.Module):
    def __init__(self, encoder: torch.nn.Module, n_features: int, is_text: bool):
        super().__init__()
        self.encoder, self.linear, self.is_text = encoder, torch.nn.Linear(n_features, 2), is_text

    def forward(self, x=None, **inputs):  # skorch passes dict inputs as keyword arguments
        inputs = x if isinstance(x, dict) else inputs
        return self.linear(self.encoder(**inputs) if self.is_text else self.encoder(x))


def _setup(modality: str, device: str):
    """(model, per-item transform, collate) built from sktransfer's own backbone registry."""
    from sktransfer._backbones import resolve_image_backbone, resolve_text_backbone

    if modality == "images":
        import timm.data

        backbone = resolve_image_backbone(*(("test_efficientnet", False) if tiny() else ("efficientnet_lite0", True)))
        transform = timm.data.create_transform(**backbone.data_config, is_training=False)
        return _Model(backbone.encoder, backbone.num_features, False).to(device), \
            lambda a: transform(Image.fromarray(a)), None
    backbone = resolve_text_backbone(tiny_text_backbone() if tiny() else "all-MiniLM-L6-v2")
    tokenizer = backbone.tokenizer

    def collate(batch):
        texts, ys = zip(*batch)
        tokens = tokenizer(list(texts), padding=True, truncation=True, max_length=max_length(), return_tensors="pt")
        return dict(tokens), torch.as_tensor(ys)
    return _Model(backbone.encoder, backbone.num_features, True).to(device), lambda t: t, collate


def _to(x, device, channels_last=False):
    if isinstance(x, dict):
        return {k: v.to(device, non_blocking=True) for k, v in x.items()}
    memory_format = torch.channels_last if channels_last else torch.preserve_format
    return x.to(device, non_blocking=True, memory_format=memory_format)


def torch_loop(modality: str, X, y, device: str, amp: bool = False) -> tuple[float, float]:
    """Hand-written fine-tuning and inference; returns (fit seconds, predict seconds)."""
    fit, predict = {}, {}
    autocast = torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=amp)
    with timed(fit):
        torch.manual_seed(0)
        model, transform, collate = _setup(modality, device)
        if amp and modality == "images":
            model = model.to(memory_format=torch.channels_last)
        optimizer = torch.optim.AdamW(model.parameters(), lr=LR)
        loader = torch.utils.data.DataLoader(_Pairs(X, y, transform), batch_size=BATCH, shuffle=True,
                                             collate_fn=collate)
        model.train()
        for xb, yb in loader:
            with autocast:
                loss = torch.nn.functional.cross_entropy(model(_to(xb, device, amp)).float(), yb.to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    with timed(predict):
        model.eval()
        outputs = []
        loader = torch.utils.data.DataLoader(_Pairs(X, y, transform), batch_size=BATCH, collate_fn=collate)
        with torch.inference_mode(), autocast:
            for xb, _ in loader:
                outputs.append(model(_to(xb, device, amp)).float().softmax(1).cpu())
        torch.cat(outputs).numpy()
    return fit["seconds"], predict["seconds"]


def skorch_default(modality: str, X, y, device: str) -> tuple[float, float]:
    """A default skorch NeuralNetClassifier on the same model and data."""
    from skorch import NeuralNetClassifier

    fit, predict = {}, {}
    with timed(fit):
        torch.manual_seed(0)
        model, transform, collate = _setup(modality, device)
        extra = ({} if collate is None
                 else {"iterator_train__collate_fn": collate, "iterator_valid__collate_fn": collate})
        net = NeuralNetClassifier(model, criterion=torch.nn.CrossEntropyLoss, optimizer=torch.optim.AdamW, lr=LR,
                                  batch_size=BATCH, max_epochs=1, train_split=None, device=device, verbose=0,
                                  iterator_train__shuffle=True, **extra)
        net.fit(_Pairs(X, y, transform), None)
    with timed(predict):
        net.predict_proba(_Pairs(X, y, transform))
    return fit["seconds"], predict["seconds"]


def sktransfer_fit(modality: str, X, y, device: str) -> tuple[float, float]:
    """sktransfer with the same recipe (fp32, features not cached, no DataLoader workers)."""
    from sktransfer import PretrainedImageClassifier, PretrainedTextClassifier

    fit, predict = {}, {}
    common = dict(freeze_layers="none", max_epochs=1, batch_size=BATCH, lr=LR, weight_decay=0.01, cache=False,
                  precision="fp32", num_workers=0, device=device, random_state=0)
    if modality == "images":
        clf = PretrainedImageClassifier(**common, **({"backbone": "test_efficientnet", "pretrained": False}
                                                     if tiny() else {}))
    else:
        clf = PretrainedTextClassifier(**common, max_length=max_length(),
                                       **({"backbone": tiny_text_backbone()} if tiny() else {}))
    with timed(fit):
        clf.fit(X, y)
    with timed(predict):
        clf.predict_proba(X)
    return fit["seconds"], predict["seconds"]


def run(quick: bool, out_dir: Path) -> Path:
    """Measure every method on images and texts; write ``throughput.md``; return its path."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    mode = "tiny" if tiny() else "quick" if quick else "full"
    methods = {"hand-written PyTorch loop (fp32)": lambda *a: torch_loop(*a, device),
               "skorch NeuralNetClassifier (defaults)": lambda *a: skorch_default(*a, device),
               "sktransfer": lambda *a: sktransfer_fit(*a, device)}
    if device == "cuda":
        methods["hand-written loop, AMP bf16 + channels_last"] = lambda *a: torch_loop(*a, device, amp=True)
    rows, ratios = [], {}
    for modality, n, data in (("images", SIZES[mode][0], _images), ("texts", SIZES[mode][1], _texts)):
        X, y = data(n)
        best = {name: (float("inf"), float("inf")) for name in methods}
        few = np.concatenate([np.flatnonzero(y == label)[:2] for label in (0, 1)])
        for method in methods.values():  # warm-up on 2 items per class: lazy imports, first allocations
            method(modality, [X[i] for i in few], y[few])
        for _ in range(REPEATS[mode]):
            for name, method in methods.items():
                best[name] = tuple(min(a, b) for a, b in zip(best[name], method(modality, X, y)))
        base_fit, base_predict = best["hand-written PyTorch loop (fp32)"]
        for name, (fit_s, predict_s) in best.items():
            rows.append({"data": f"{n} {modality}", "method": name, f"train {modality}/s": n / fit_s,
                         f"predict {modality}/s": n / predict_s, "train time vs loop": fit_s / base_fit,
                         "predict time vs loop": predict_s / base_predict})
        ratios[modality] = best["sktransfer"][0] / base_fit
    table = markdown_table([{k.replace("images/s", "items/s").replace("texts/s", "items/s"): v for k, v in r.items()}
                            for r in rows])
    body = (headline(f"sktransfer fine-tuning time {ratios['images']:.2f}x (images), {ratios['texts']:.2f}x (texts) "
                     f"of a hand-written PyTorch loop on {device}")
            + f"\nMode: {mode}; best of {REPEATS[mode]} interleaved run(s); times include loading the weights.\n\n"
            + table + "\n\n" + __doc__)
    return write_result("throughput", "Throughput: sktransfer vs a hand-written loop vs skorch", body, out_dir)
