"""Shared numpydoc sections, and the ``document`` class decorator that assembles them.

Each estimator's class body starts with a literal one-line summary (what IDEs read statically);
``@document(IMAGE, CLASSIFIER, AUGMENT, ...)``, placed above ``@dataclass(...)``, appends what its
input and task contribute (a :class:`Part` each: extended text, parameters, fitted attributes) and its
See Also and Examples sections, in numpydoc's order, so that ``help()`` and Jupyter show the whole
text while every shared paragraph is written once, here. A new option's entry goes into the section
of the class that owns it (parameters in :mod:`._parameter_docs`); the user guide's "Training options" table
is generated from these entries (docs/conf.py).
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass

from ._parameter_docs import (
    AUGMENT_PARAM,
    BACKBONE_PARAMS,
    CLASSIFIER_PARAMS,
    CLASSIFIER_TARGETS,
    EMBEDDER_TRANSFORM,
    IMAGE_BACKBONE_PARAM,
    IMAGE_INPUT,
    REGRESSOR_TARGETS,
    TEXT_BACKBONE_PARAM,
    TEXT_INPUT,
    TEXT_PARAMS,
    TRAINED_TRANSFORM,
    TRAINING_PARAMS,
)

# ------------------------------------------------------------------------------------------- attributes
CLASSIFIER_ATTRIBUTES = """\
classes_ : ndarray of shape (n_classes,) or list of ndarray
    The labels seen in fit (``0 .. n_labels - 1``, the indicator columns, for multi-label targets;
    one array per output for multi-output targets).
multilabel_ : bool
    Whether ``y`` was a 2-D 0/1 indicator matrix (multi-label classification).
multioutput_ : bool
    Whether ``y`` had several label columns, one task each (multi-output classification).
output_names_ : ndarray of str or None
    Multi-output targets: the name of each output (a DataFrame's column names, else "0", "1" ...);
    None otherwise.
n_outputs_ : int
    Outputs of the head: the number of classes, of labels for multi-label targets, or the classes
    of all outputs together for multi-output targets.
n_target_rows_ : int
    Unlabelled target-domain rows the last fit adapted to (0 without ``domain_adaptation``).
n_unlabelled_rows_ : int
    Unlabelled rows the last fit learned from the teacher's predictions (0 without ``teacher``).
contrastive_ : Contrastive or None
    The contrastive fine-tuning the fit used ("auto" resolved; None: none).
semi_supervised_ : SelfTraining or None
    The self-training the fit used (None: none, also when ``y`` had no unlabelled rows).
n_pseudo_labelled_ : int
    Unlabelled rows that took a predicted label in the last self-training round where the head is
    solved (0 otherwise: the pseudo-label stream labels rows batch by batch)."""

REGRESSOR_ATTRIBUTES = """\
n_outputs_ : int
    Number of targets (columns of a 2-D ``y``; 1 for a 1-D ``y``).
y_mean_ : ndarray of shape (n_outputs_,)
    Mean of each target in fit; predictions are restored with it.
y_scale_ : ndarray of shape (n_outputs_,)
    Standard deviation of each target in fit (1 for a constant target).
y_ndim_ : int
    Dimensions of the ``y`` seen in fit (1 or 2); ``predict`` returns the same."""

BACKBONE_ATTRIBUTES = """\
base_model_ : estimator or None
    The fitted model whose backbone this one started from (``backbone`` given as a fitted model or
    a saved folder), kept so that pickles and saved folders need nothing else; else None.
backbone_identity_ : str
    Names the backbone's weights (source, name, pretrained, pooling) in the feature cache keys; random
    weights and user modules get a unique suffix, so their embeddings are never shared.
backbone_seed_ : int
    Seed of torch's generator while the model was built (drawn from ``random_state``; 0 for the
    embedders): random backbone weights and LoRA adapters are rebuilt from it on ``load``.
n_backbone_blocks_ : int
    Number of blocks the backbone is split into (the unit of ``freeze_layers``).
n_features_out_ : int
    Size of the backbone's pooled embedding: the columns of ``transform``'s output.
device_ : str
    The device used, e.g. "cpu" or "cuda:0".
precision_ : {"fp32", "bf16", "fp16"}
    The precision ``precision`` resolved to on ``device_``.
num_workers_ : int
    DataLoader worker processes used (``num_workers`` resolved on ``device_``).
runtime_ : Session or None
    The compiled backbone that ``runtime`` runs inference with (ONNX Runtime or OpenVINO); None:
    PyTorch.
runtime_deviation_ : float or None
    Relative L2 difference of ``runtime_``'s embeddings from PyTorch's, measured at fit on up to
    ``calibration_size`` of its rows (about 1e-6 in float32; int8 moves them more); None without a
    runtime."""

IMAGE_ATTRIBUTES = """\
data_config_ : dict
    The backbone's preprocessing: ``input_size`` (C, H, W), ``interpolation``, ``mean``, ``std``,
    ``crop_pct`` and ``crop_mode``, as timm resolves them (ImageNet's at 224 px for torchvision and user
    modules)."""

TEXT_ATTRIBUTES = """\
data_config_ : dict
    Empty: text backbones have no image preprocessing (``tokenizer_`` and ``max_length`` define theirs).
tokenizer_ : transformers.PreTrainedTokenizerBase
    The backbone's own tokenizer."""

EMBEDDER_ATTRIBUTES = """\
encoder_ : torch.nn.Module
    The backbone, frozen and in evaluation mode: it maps a batch of inputs to pooled embeddings."""

TRAINING_ATTRIBUTES = """\
backbone_tuned_ : bool
    Whether training changed the backbone (fine-tuned blocks or LoRA adapters); ``transform`` then
    returns the tuned backbone's embeddings, computed anew rather than read from the feature cache.
blocks_ : list of list of str
    The backbone's parameter names, block by block from the input to the output (what ``freeze_layers``
    counts and its patterns match).
freeze_layers_ : "all", "none", int or list of str
    The ``freeze_layers`` the fit used ("auto" resolved).
n_trainable_backbone_params_ : int
    Backbone parameters (elements) that training updated: 0 with ``freeze_layers="all"``, the adapters'
    with LoRA.
lora_target_modules_ : list of str
    With ``adapter="lora"``: the full names of the modules that got adapters.
lr_ : dict
    The rates the fit used: ``"head"`` and ``"backbone"`` learning rates (``"backbone"`` None when
    ``lr="auto"`` and no backbone weight trained) and the ``"warmup"`` fraction.
lr_finder_ : LRFinderResult or None
    With ``lr="find"``: the range test that chose the rate (its curve, suggestion and ``plot()``); None
    otherwise.
net_ : skorch.NeuralNet
    The fitted skorch net (module, optimizer, history).
history_ : skorch.History
    Per-epoch train loss, valid loss and accuracy (with early stopping), learning rate, duration.
n_epochs_ : int
    Epochs run (completed ones, when ``time_limit`` stopped training).
time_limit_reached_ : bool
    Whether ``time_limit`` stopped training before ``max_epochs``.
best_epoch_ : int
    Epoch whose weights were kept (the last one without early stopping, or with ``refit_full``).
validation_history_ : skorch.History
    With ``refit_full``: the early-stopping fit's history, with its validation scores.
C_ : float, ndarray or None
    The penalty of the converged linear head (per label for a multi-label ``C="cv"``); None when the
    head trained by mini-batch epochs.
features_cached_ : bool
    Whether the head trained on cached embeddings of a frozen backbone.
prefix_cached_ : bool
    Whether partial fine-tuning trained the top blocks on cached outputs of the frozen lower ones."""

# --------------------------------------------------------------------------------------------- see also
_RELATED = {
    "Classifier": "Classification (binary, multiclass or multi-label) with a new head.",
    "Regressor": "Regression on one or several continuous targets with a new head.",
    "Embedder": "The pretrained backbone's pooled embeddings, with no training.",
}


def related(modality: str, *kinds: str) -> str:
    """Return See Also entries for the sibling estimators of ``modality`` ("Image" or "Text").

    Parameters
    ----------
    modality : {"Image", "Text"}
        The input the estimators take.
    *kinds : {"Classifier", "Regressor", "Embedder"}
        The siblings to list.

    Returns
    -------
    str
        One ``name : description`` entry per sibling.
    """
    return "\n".join(f"Pretrained{modality}{kind} : {_RELATED[kind]}" for kind in kinds)


# ---------------------------------------------------------------------------------------------- parts
@dataclass(frozen=True)
class Part:
    """What one side of an estimator (its input, its task) adds to the class docstring."""

    params: tuple[str, ...] = ()
    extended: tuple[str, ...] = ()
    attributes: tuple[str, ...] = ()


IMAGE = Part((IMAGE_BACKBONE_PARAM, BACKBONE_PARAMS), (IMAGE_INPUT,), (BACKBONE_ATTRIBUTES, IMAGE_ATTRIBUTES))
TEXT = Part((TEXT_BACKBONE_PARAM, BACKBONE_PARAMS, TEXT_PARAMS), (TEXT_INPUT,), (BACKBONE_ATTRIBUTES, TEXT_ATTRIBUTES))
AUGMENT = Part((AUGMENT_PARAM,))
CLASSIFIER = Part((TRAINING_PARAMS, CLASSIFIER_PARAMS), (CLASSIFIER_TARGETS, TRAINED_TRANSFORM),
                  (CLASSIFIER_ATTRIBUTES, TRAINING_ATTRIBUTES))
REGRESSOR = Part((TRAINING_PARAMS,), (REGRESSOR_TARGETS, TRAINED_TRANSFORM),
                 (REGRESSOR_ATTRIBUTES, TRAINING_ATTRIBUTES))
EMBEDDER = Part(extended=(EMBEDDER_TRANSFORM,), attributes=(EMBEDDER_ATTRIBUTES,))


# ------------------------------------------------------------------------------------------- assembly
def _entries(sections: Sequence[str]) -> list[str]:
    """Split numpydoc sections into entries: a ``name : type`` line and its indented description."""
    entries: list[str] = []
    for line in "\n".join(section.strip("\n") for section in sections if section).splitlines():
        if line and not line[0].isspace():
            entries.append(line)
        elif entries:
            entries[-1] += "\n" + line
    return entries


def _section(title: str, entries: Sequence[str]) -> str:
    body = "\n".join(entry.strip("\n") for entry in entries if entry)
    return f"{title}\n{'-' * len(title)}\n{body}" if body else ""


def document(*parts: Part | str, see_also: str = "", examples: str = ""):
    """Return a class decorator that completes the class's summary docstring with numpydoc sections.

    The class body must start with a literal summary docstring (one line, ending in a period): static
    tools (IDEs) read it from the source. The decorator replaces ``__doc__`` by that summary followed
    by the parts' extended paragraphs, then the Parameters (in the order of the constructor's
    signature), Attributes, See Also and Examples sections, in numpydoc's order. Place it above
    ``@dataclass(...)``, which sets a docstring only when the class has none.

    Parameters
    ----------
    *parts : Part or str
        What the class's input, task and options contribute (e.g. ``IMAGE, CLASSIFIER, AUGMENT``); a
        str holds parameter entries (``name : type, default=...`` and an indented description).
    see_also : str, default=""
        See Also entries (``name : description``), e.g. from :func:`related`.
    examples : str, default=""
        Doctest lines of the Examples section.

    Returns
    -------
    callable
        The decorator: it sets the class's ``__doc__`` and returns the class.
    """
    parts = tuple(Part((part,)) if isinstance(part, str) else part for part in parts)

    def decorate(cls: type) -> type:
        own = cls.__dict__.get("__doc__")
        if not own or own.startswith(f"{cls.__name__}("):  # none, or the signature dataclass puts there
            raise TypeError(
                f"{cls.__name__} needs a literal summary docstring as the first statement of its body, and "
                "@document(...) must be above @dataclass(...)."
            )
        order = list(inspect.signature(cls).parameters)
        params = _entries([text for part in parts for text in part.params])
        params.sort(key=lambda entry: order.index(name) if (name := entry.split(" :")[0]) in order else len(order))
        doc = [
            inspect.cleandoc(own),
            *(paragraph.strip("\n") for part in parts for paragraph in part.extended),
            _section("Parameters", params),
            _section("Attributes", _entries([text for part in parts for text in part.attributes])),
            _section("See Also", [see_also]),
            _section("Examples", [examples]),
        ]
        cls.__doc__ = "\n\n".join(section for section in doc if section) + "\n"
        return cls

    return decorate
