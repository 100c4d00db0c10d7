"""Shared numpydoc sections, so each estimator documents every parameter without copying the text."""

from __future__ import annotations

BACKBONE_PARAMS = """\
pretrained : bool, default=True
    Load pretrained weights; ``False`` starts from random weights (useful for tests).
batch_size : int, default=32
    Samples per batch for training and inference.
cache : bool, default=True
    Reuse frozen-backbone embeddings across epochs, folds and grid points (see ``feature_cache``).
cache_dir : str or None, default=None
    Also keep cached embeddings on disk here, shared by parallel workers.
precision : {"auto", "fp32", "bf16", "fp16"}, default="auto"
    bf16 autocast on GPUs that support it, fp16 with a gradient scaler on older GPUs, fp32 on CPU.
num_workers : int or None, default=None
    DataLoader worker processes; None: none on CPU, up to 8 on CUDA.
device : {"auto", "cpu", "cuda"} or "cuda:N", default="auto"
    Where to run; "auto" uses CUDA when available. With several GPUs, "auto" and "cuda" put parallel
    worker processes (``n_jobs``, dask) on ``cuda:{rank % n_gpus}`` round robin (``LOCAL_RANK`` pins
    one); convolutional backbones run channels-last on CUDA.
verbose : int, default=0
    0 is silent; 1 shows a progress bar per epoch and a per-epoch table."""

TRAINING_PARAMS = """\
freeze_layers : "all", "none", int or list of str, default="all"
    "all": train only the head (feature extraction); "none" or 0: full fine-tuning; ``k > 0``:
    freeze the first ``k`` backbone blocks (``n_backbone_blocks_`` tells how many there are);
    ``-k``: freeze all but the last ``k``; a list of glob patterns freezes matching parameter names.
lr : float, default=1e-3
    Learning rate (of the backbone's last block and, unless ``head_lr``, of the head).
max_epochs : int, default=10
    Passes over the training data.
weight_decay : float, default=0.01
    Decoupled weight decay; never applied to biases and normalisation weights.
dropout : float, default=0.0
    Dropout before each linear layer of the head.
head_hidden : tuple of int, default=()
    Hidden layer sizes of the head, e.g. ``(1024,)``.
optimizer : {"adamw", "adam", "sgd"}, default="adamw"
    SGD uses momentum 0.9.
lr_schedule : {"constant", "cosine", "linear", "onecycle"}, default="constant"
    Per-step schedule; cosine and linear decay to zero.
warmup : float, default=0.0
    Fraction of the steps spent warming the rate up linearly.
layer_decay : float or None, default=None
    Layer-wise rate decay: each block further from the head gets the rate multiplied once more.
head_lr : float or None, default=None
    Learning rate of the head; None: ``lr``.
unfreeze_every : int or None, default=None
    Gradual unfreezing: unfreeze one more block from the top every this many epochs.
freeze_bn_stats : bool, default=True
    Keep the backbone's BatchNorm layers in inference mode while fine-tuning: their running
    statistics stay the pretrained ones (their scale and shift still train), as Keras advises for
    fine-tuning on small data. False: trainable BatchNorm layers normalise with batch statistics
    and update their running ones. No effect on backbones without BatchNorm.
early_stopping : bool, default=False
    Hold out ``validation_fraction`` of the data (stratified, seeded by ``random_state``), stop
    when ``monitor`` has not improved for ``patience`` epochs, and restore the best epoch's weights.
validation_fraction : float, default=0.1
    Share of the training data held out when ``early_stopping``.
patience : int, default=5
    Epochs without improvement before stopping.
monitor : {"valid_loss", "valid_acc"}, default="valid_loss"
    What early stopping watches.
refit_full : bool, default=False
    With ``early_stopping``: once it has found the best epoch, train again from the start on all
    the data (the held-out part included) for that many epochs. Costs a second fit; uses every
    sample, which matters on small data sets. The first fit's history is kept in
    ``validation_history_``.
grad_accum_steps : int, default=1
    Split each batch into this many micro-batches and accumulate their gradients: same result,
    less memory.
warm_start : bool, default=False
    Start ``fit`` from the weights of the previous fit instead of a fresh head and backbone.
random_state : int, RandomState or None, default=None
    Seeds weight initialisation, shuffling and the validation split; two CPU fits with the same
    value give identical predictions.
adapter : {"lora"} or None, default=None
    "lora": parameter-efficient fine-tuning with LoRA adapters (needs ``pip install sktransfer[lora]``).
    The backbone's own weights stay frozen; only the adapters and the head train, so a saved or
    pickled model stores just those. ``freeze_layers`` then says where adapters go: "all" and "none"
    put them in every block, ``k``/``-k``/patterns keep them out of the blocks those values freeze.
    Cannot be combined with ``unfreeze_every``; features are never cached.
lora_r : int, default=8
    Rank of the LoRA updates.
lora_alpha : float, default=16
    LoRA scaling: the update is multiplied by ``lora_alpha / lora_r``.
lora_dropout : float, default=0.0
    Dropout on the adapters' inputs.
lora_target_modules : list of str, str or None, default=None
    Layers to adapt: names or name suffixes (e.g. ``["query", "value"]``), or a regular expression
    over full module names. None: the attention projections (query/key/value, qkv ...), or, for
    backbones without any (CNNs), every linear layer and 1x1 convolution. Only linear layers and
    1x1 convolutions can be adapted; ``lora_target_modules_`` lists the ones chosen.
compile : bool, default=False
    Train the module through ``torch.compile`` (skorch's ``compile``): faster steps on GPUs after a
    one-off compilation, which needs a C++ compiler and costs seconds to minutes. The fitted model
    is stored uncompiled."""

CLASSIFIER_PARAMS = """\
label_smoothing : float, default=0.0
    Label smoothing of the cross-entropy loss.
class_weight : dict, "balanced" or None, default=None
    Weights of the classes in the loss, as in scikit-learn.
threshold : float, default=0.5
    Decision threshold of each label for multi-label targets (``y`` a 2-D 0/1 indicator matrix;
    ``predict_proba`` then gives one independent probability per label). For lists of label lists,
    encode with ``Y = MultiLabelBinarizer().fit_transform(lists)`` and decode predictions with
    ``mlb.inverse_transform(clf.predict(X))`` (``sklearn.preprocessing``)."""

COMMON_ATTRIBUTES = """\
n_backbone_blocks_ : int
    Number of blocks the backbone is split into (the unit of ``freeze_layers``).
n_features_out_ : int
    Size of the backbone's pooled embedding.
device_ : str
    The device used.
net_ : skorch.NeuralNet
    The fitted skorch net (module, optimizer, history).
history_ : skorch.History
    Per-epoch train loss, valid loss and accuracy (with early stopping), learning rate, duration.
n_epochs_ : int
    Epochs run.
best_epoch_ : int
    Epoch whose weights were kept (the last one without early stopping, or with ``refit_full``).
validation_history_ : skorch.History
    With ``refit_full``: the early-stopping fit's history, with its validation scores.
features_cached_ : bool
    Whether the head trained on cached embeddings of a frozen backbone.
prefix_cached_ : bool
    Whether partial fine-tuning trained the top blocks on cached outputs of the frozen lower ones."""


def compose(summary: str, *sections: str, examples: str = "") -> str:
    """Assemble a class docstring from a summary, parameter sections and an Examples section."""
    params = "\n".join(s for s in sections if s)
    text = f"{summary}\n\nParameters\n----------\n{params}\n"
    if examples:
        text += f"\nExamples\n--------\n{examples}\n"
    return text
