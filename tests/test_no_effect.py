"""A parameter that changes nothing in the configuration chosen warns, naming itself; one that changes the model does
not. Both directions are measured: the fit with the parameter set is compared with the fit without it."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from sktransfer import PretrainedImageClassifier

# One value other than the default for each parameter that can change a trained model. Left out: those that only
# change speed or resources (batch_size, num_workers, device, precision, cache, cache_dir, compile, verbose), the
# random seed, warm_start (a first fit has nothing to start from), and those checked elsewhere because they need
# other data (teacher, domain_adaptation, output_weights) or another backbone (pretrained, backbone, lora_*).
ALTERNATIVES = {
    "freeze_layers": -1,
    "keep_blocks": 1,
    "lr": 0.05,
    "max_epochs": 3,
    "weight_decay": 0.3,
    "dropout": 0.3,
    "head_hidden": (4,),
    "C": 0.01,
    "optimizer": "sgd",
    "lr_schedule": "cosine",
    "warmup": 0.5,  # 2 of the 4 steps: a warm-up of one step multiplies it by 1 and changes nothing
    "layer_decay": 0.5,
    "head_lr": 0.05,
    "unfreeze_every": 1,
    "freeze_bn_stats": False,
    "early_stopping": True,
    "validation_fraction": 0.3,
    "patience": 1,
    "monitor": "valid_acc",
    "refit_full": True,
    "weight_averaging": "ema",
    "grad_accum_steps": 2,
    "label_smoothing": 0.2,
    "class_weight": {"dark": 3.0, "light": 1.0},
    "threshold": 0.3,
    "adaptation_weight": 0.5,
    "distill_temperature": 4.0,
    "distill_weight": 0.9,
    "augment": "light",
}

# Batches of 2 (4 steps an epoch on the 8 images), so that a warm-up or a schedule spans several steps. Fine-tuning
# scans the options about what trains in the backbone and how fast.
BASES = {"converged head": ({}, list(ALTERNATIVES)),
         "epochs": ({"C": None, "max_epochs": 1, "batch_size": 2}, list(ALTERNATIVES)),
         "fine-tuning": ({"C": None, "freeze_layers": "none", "max_epochs": 1, "batch_size": 2},
                         ["lr", "head_lr", "warmup", "lr_schedule", "layer_decay", "unfreeze_every", "freeze_bn_stats",
                          "weight_decay", "C"])}


def _fit(params: dict, X, y) -> tuple[np.ndarray, list[str]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        proba = PretrainedImageClassifier(**params).fit(X, y).predict_proba(X)
    return proba, [str(w.message) for w in caught if "has no effect" in str(w.message)]


@pytest.mark.parametrize("base", list(BASES))
def test_a_parameter_warns_exactly_when_it_changes_nothing(image_data, base):
    X, y = image_data[0][::2], image_data[1][::2]
    settings, names = BASES[base]
    params = {"backbone": "test_efficientnet", "pretrained": False, "random_state": 0, **settings}
    reference, messages = _fit(params, X, y)
    assert messages == []  # the defaults (and the base's own settings) never warn
    wrong = []
    for name in names:
        value = ALTERNATIVES[name]
        if name in settings:
            continue
        proba, messages = _fit({**params, name: value}, X, y)
        unchanged = proba.shape == reference.shape and np.array_equal(proba, reference)
        warned = any(message.startswith(f"PretrainedImageClassifier: {name}=") for message in messages)
        if unchanged != warned:
            wrong.append(f"{name}={value!r}: {'unchanged' if unchanged else 'changed'}, "
                         f"{'warned' if warned else 'no warning'}")
    assert wrong == [], wrong


def test_the_warning_names_the_parameter_its_value_and_the_reason(image_data):
    X, y = image_data
    with pytest.warns(UserWarning, match=r"lr=0\.05 has no effect: the linear head .* solved to convergence .* "
                                         r"set C=None"):
        PretrainedImageClassifier(backbone="test_efficientnet", pretrained=False, lr=0.05).fit(X, y)

