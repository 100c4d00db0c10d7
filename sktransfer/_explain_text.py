"""Text attributions per word: occlusion (each word left out in turn) and integrated gradients over the token
embeddings, the tokens' scores summed into the whitespace-separated words of the original text."""

from __future__ import annotations

import re

import numpy as np
import torch
from torch import nn

from ._explain import IG_STEPS, _import_captum, batches, output_values, result, scores_of
from ._explanation import Explanation

_WORD = re.compile(r"\S+")


def explain_texts(model, module: nn.Module, items: list[str], picker, describe, method: str) -> Explanation:
    """One score per word of each text (see :func:`sktransfer.explain`)."""
    method = "occlusion" if method == "auto" else method
    spans = [[m.span() for m in _WORD.finditer(text)] for text in items]
    scores_per_word, columns, values = [], [], []
    for part in batches(model, len(items)):
        texts = items[part]
        with torch.no_grad():
            scores = _forward(model, module, _encode(model, texts))
        target = picker(scores)
        if method == "occlusion":
            found = _occlusion(model, module, texts, spans[part], scores, target)
        else:
            found = _integrated_gradients(model, module, texts, spans[part], target)
        scores_per_word += found
        columns += target.tolist()
        values += output_values(model, scores).gather(1, target[:, None])[:, 0].tolist()
    words = [[text[start:stop] for start, stop in s] for text, s in zip(items, spans)]
    return result("text", method, scores_per_word, columns, values, describe, words=words)


def _encode(model, texts: list[str], offsets: bool = False) -> dict[str, torch.Tensor]:
    """The model's own tokenisation of ``texts`` (as its collate does), on the model's device."""
    encoded = model.tokenizer_(list(texts), padding=True, truncation=True, max_length=model.max_length,
                               return_tensors="pt", return_offsets_mapping=offsets)
    return {k: v if k == "offset_mapping" else v.to(model.device_) for k, v in encoded.items()}


def _forward(model, module: nn.Module, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    return scores_of(model, module.head(module.encoder(**inputs)))


def _occlusion(model, module, texts: list[str], spans: list, scores: torch.Tensor, target: torch.Tensor) -> list:
    """Each word's score: the explained score's drop when the word is left out of the text."""
    variants, owners = [], []
    for row, (text, words) in enumerate(zip(texts, spans)):
        variants += [text[:start] + text[stop:] for start, stop in words]
        owners += [row] * len(words)
    owners = torch.as_tensor(owners, dtype=torch.long, device=scores.device)
    occluded = []
    for start in range(0, len(variants), model.batch_size):
        with torch.no_grad():
            occluded.append(_forward(model, module, _encode(model, variants[start:start + model.batch_size])))
    drops = (scores.gather(1, target[:, None])[owners, 0]
             - torch.cat(occluded).gather(1, target[owners][:, None])[:, 0]).cpu().numpy()
    return np.split(drops.astype(np.float32), np.cumsum([len(words) for words in spans])[:-1])


def _integrated_gradients(model, module, texts: list[str], spans: list, target: torch.Tensor) -> list:
    """Integrated gradients over the token embeddings from a baseline whose words are padding tokens."""
    attr = _import_captum()
    inputs = _encode(model, texts, offsets=True)
    offsets = inputs.pop("offset_mapping").numpy()
    names = [name for name in inputs if name != "input_ids"]
    in_words = torch.as_tensor(offsets[:, :, 1] > offsets[:, :, 0], device=model.device_)
    filler = model.tokenizer_.pad_token_id
    filler = model.tokenizer_.unk_token_id if filler is None else filler
    baseline = torch.where(in_words, torch.full_like(inputs["input_ids"], filler), inputs["input_ids"])

    def forward(input_ids, *rest):
        return _forward(model, module, {"input_ids": input_ids, **dict(zip(names, rest))})

    explainer = attr.LayerIntegratedGradients(forward, module.encoder.model.get_input_embeddings())
    found = explainer.attribute(inputs["input_ids"], baselines=baseline, target=target,
                                additional_forward_args=tuple(inputs[n] for n in names),
                                n_steps=IG_STEPS["text"], internal_batch_size=model.batch_size)
    per_token = found.detach().float().sum(-1).cpu().numpy()
    return [_merge(tokens, offsets[row], spans[row]) for row, tokens in enumerate(per_token)]


def _merge(tokens: np.ndarray, offsets: np.ndarray, words: list) -> np.ndarray:
    """Token scores summed into the words (character spans) that hold each token's first character."""
    merged = np.zeros(len(words), dtype=np.float32)
    starts = np.asarray([start for start, _ in words])
    inside = offsets[:, 1] > offsets[:, 0]
    np.add.at(merged, np.searchsorted(starts, offsets[inside, 0], side="right") - 1, tokens[inside])
    return merged
