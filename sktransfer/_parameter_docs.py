"""The parameter and input sections of the estimators' docstrings (numpydoc), assembled by :mod:`._docs`.

A new option's entry goes into the section of the class that owns it; the user guide's "Training options"
table is generated from these entries (docs/conf.py).
"""

# ------------------------------------------------------------------------------------------- parameters
IMAGE_BACKBONE_PARAM = """\
backbone : str, torch.nn.Module or fitted image model, default="efficientnet_lite0"
    "efficientnet_lite0" (ImageNet weights shipped with sktransfer, works offline), any timm or
    torchvision model name, a local timm model directory, your own ``nn.Module`` that maps
    (N, 3, H, W) images to features, or a fitted sktransfer image model (or a folder its ``save``
    wrote): a copy of its fitted backbone starts this model (sequential transfer)."""

TEXT_BACKBONE_PARAM = """\
backbone : str or fitted text model, default="all-MiniLM-L6-v2"
    "all-MiniLM-L6-v2" (sentence-transformers weights shipped with sktransfer, works offline), a
    Hugging Face model id (from the local cache, or the hub when online), a local directory
    saved with ``save_pretrained``, or a fitted sktransfer text model (or a folder its ``save``
    wrote): a copy of its fitted backbone, with its tokenizer, starts this model (sequential
    transfer). The model's own tokenizer is used."""

BACKBONE_PARAMS = """\
pretrained : bool, default=True
    Load pretrained weights; ``False`` starts from random weights (useful for tests).
keep_blocks : int or None, default=None
    Keep only the backbone's first ``keep_blocks`` blocks (stem or embeddings included, as
    ``n_backbone_blocks_`` counts them) and remove the others: fewer parameters, faster fits and
    predictions, smaller saved files. The embedding is the last kept block's pooled output (a text
    model's token states are those of its last kept layer); ``freeze_layers`` counts the kept blocks.
    None: the whole backbone.
batch_size : int, default=32
    Samples per batch for training and inference.
cache : bool, default=True
    Keep frozen-backbone embeddings in ``feature_cache`` for later fits, folds, grid points and
    predictions. Changes speed, never a result: without it they are computed once per fit (and per
    ``predict``) and not kept.
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
runtime : ONNXRuntime, OpenVINO, {"onnxruntime", "openvino"} or None, default=None
    Run inference (``transform``, ``predict``, ``predict_proba``) with the fitted backbone exported to
    ONNX and compiled by ONNX Runtime (``pip install sktransfer[onnx]``) or OpenVINO (``pip install
    sktransfer[openvino]``), on the CPU; training stays in PyTorch, and so does the head. ``fit``
    exports, checks the export against PyTorch on rows of ``X`` (``runtime_deviation_``; a float32
    export that differs raises) and compiles; ``save`` and pickles keep the compiled model.
    ``ONNXRuntime(int8=True)``/``OpenVINO(int8=True)`` quantise it to int8 with the runtime's own tools
    (see the user guide's "Deployment" for measured speed and accuracy). None: PyTorch.
verbose : int, default=0
    0 is silent; 1 shows a progress bar per epoch and a per-epoch table."""

TRAINING_PARAMS = """\
freeze_layers : "auto", "all", "none", int or list of str, default="auto"
    "all": train only the head (feature extraction); "none" or 0: full fine-tuning; ``k > 0``:
    freeze the first ``k`` backbone blocks (``n_backbone_blocks_`` tells how many there are);
    ``-k``: freeze all but the last ``k``; a list of glob patterns freezes matching parameter names.
    "auto": "all", except under a classifier's contrastive fine-tuning (``contrastive``), which then
    trains a text backbone whole and an image backbone's top three blocks; ``freeze_layers_``
    records the value used.
lr : float, "auto" or "find", default="auto"
    Learning rate of the backbone's last block and, unless ``head_lr``, of the head. "auto": the rate
    published fine-tuning recipes use for each part: 1e-3 for the new head, 1e-4 for a convolutional
    backbone, 3e-5 for a transformer, 1e-3 for LoRA adapters (``lr_`` records the rates used). "find":
    the rate ``lr_find``'s range test on the fit's training rows suggests, used as a float ``lr`` would
    be (``lr_finder_`` records the test; about 100 more training batches), with the warm-up of "auto";
    no effect where the head is solved to convergence (``C``).
max_epochs : int, default=10
    Passes over the training data.
time_limit : float or None, default=None
    Seconds the whole ``fit`` call may take (loading, embedding and training; both fits with
    ``refit_full``): training stops after the first batch that ends past it, with the weights it has
    (with ``early_stopping``: the best epoch's). ``time_limit_reached_`` tells whether it stopped
    training. Only training by epochs stops: a head solved to convergence (``C``) ignores it. The
    warm-up and ``lr_schedule`` are planned over ``max_epochs``: set it to what training should be
    without the limit, not to a large number (the warm-up would never end).
weight_decay : float, default=0.01
    Decoupled weight decay; never applied to biases and normalisation weights.
dropout : float, default=0.0
    Dropout before each linear layer of the head.
head_hidden : tuple of int, default=()
    Hidden layer sizes of the head, e.g. ``(1024,)``.
C : float, "auto", "cv" or None, default="auto"
    How a linear head on a frozen backbone's cached embeddings trains: to convergence, with
    scikit-learn's full-batch solvers, as ``LogisticRegression(C=C)`` (single- or multi-label; per
    output, its loss scaled by ``output_weights``, for multi-output) or
    ``Ridge(alpha=1 / C)`` (regressors) on the standardised embeddings; deterministic, and it takes
    ``class_weight`` and ``sample_weight``. "auto" is ``n_classes / mean ||x||^2`` of the standardised
    embeddings (2 per label for multi-label, 1 for regressors): ``LogisticRegression(C=n_classes)``
    on embeddings rescaled to unit mean squared norm, whatever the backbone's width; the penalty
    weakens as the classes multiply, as each class's weights see only its share of the samples.
    "cv" picks C by a 5-fold cross-validation of the log-loss (leave-one-out error for regressors)
    over "auto" times 1e-2 ... 1e3. None: train the head by mini-batch epochs
    like any head. Mini-batch training is always used when the backbone trains, with ``head_hidden``,
    ``label_smoothing``, ``augment``, a domain adaptation, a ``teacher``, or ``partial_fit``; ``max_epochs``, early
    stopping and the schedules then apply. ``C_`` records the C used (None after mini-batch training).
optimizer : {"adamw", "adam", "sgd"}, default="adamw"
    SGD uses momentum 0.9.
lr_schedule : {"constant", "cosine", "linear", "onecycle"}, default="constant"
    Per-step schedule; cosine and linear decay to zero.
warmup : float or "auto", default="auto"
    Fraction of the steps spent warming the rate up linearly. "auto": 0.1 when ``lr="auto"`` and
    backbone weights (or adapters) train, else 0.
layer_decay : float or None, default=None
    Layer-wise rate decay: each block further from the head gets the rate multiplied once more.
head_lr : float or None, default=None
    Learning rate of the head; None: ``lr`` (1e-3 with ``lr="auto"``).
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
weight_averaging : {"ema", "swa", "soup"} or None, default=None
    Predict with an average of the weights that train by epochs (pickles and ``save`` keep it): "ema",
    an exponential moving average of every step's weights, its window a tenth of the fit's steps;
    "swa", the mean of the weights at the end of each epoch of the second half of training (at least
    the last two); "soup", the mean of the 3 best epochs' weights by ``monitor`` under
    ``early_stopping`` (AutoGluon's checkpoint averaging; without it, the last 3 epochs). Under
    ``early_stopping``, "ema" and "swa" give the average as it stood at the best epoch. Held in memory
    (one copy of the trainable weights, three for "soup"); BatchNorm statistics that training updates
    (``freeze_bn_stats=False``) are recomputed for the average in one pass over the training data.
    No effect on a head solved to convergence (``C``). None: the last (or best) epoch's weights.
grad_accum_steps : int, default=1
    Split each batch into this many micro-batches and accumulate their gradients: same result,
    less memory.
warm_start : bool, default=False
    Start ``fit`` from the weights of the previous fit instead of a fresh head and backbone.
random_state : int, RandomState or None, default=None
    Seeds weight initialisation, shuffling and the validation split; two CPU fits with the same
    value give identical predictions.
adapter : LoRA, "lora" or None, default=None
    Parameter-efficient fine-tuning with LoRA adapters (a ``LoRA``, whose rank, scaling, dropout
    and target layers are its own parameters, searchable as ``adapter__r`` ...; "lora" is ``LoRA()``;
    needs ``pip install sktransfer[lora]``). The backbone's own weights stay frozen; only the adapters
    and the head train, so a saved or pickled model stores just those. ``freeze_layers`` then says
    where adapters go: "all" and "none" put them in every block, ``k``/``-k``/patterns keep them out
    of the blocks those values freeze; ``lora_target_modules_`` lists the layers adapted. Cannot be
    combined with ``unfreeze_every``; features are never cached.
compile : bool, default=False
    Train the module through ``torch.compile`` (skorch's ``compile``): faster steps on GPUs after a
    one-off compilation, which needs a C++ compiler and costs seconds to minutes. The fitted model
    is stored uncompiled."""

CLASSIFIER_PARAMS = """\
label_smoothing : float, default=0.0
    Label smoothing of the cross-entropy loss.
class_weight : dict, "balanced" or None, default=None
    Weights of the classes in the loss, as in scikit-learn. For a multi-output ``y``, "balanced"
    balances each output's classes (a dict is refused).
threshold : float, default=0.5
    Decision threshold of each label for multi-label targets (``y`` a 2-D 0/1 indicator matrix;
    ``predict_proba`` then gives one independent probability per label). For lists of label lists,
    encode with ``Y = MultiLabelBinarizer().fit_transform(lists)`` and decode predictions with
    ``mlb.inverse_transform(clf.predict(X))`` (``sklearn.preprocessing``).
output_weights : list of float or None, default=None
    Multi-output ``y`` (several label columns, one task each): the weight of each output's
    cross-entropy in the summed loss, one positive number per column. None: all 1. With AdamW or
    Adam, which rescale each parameter's steps, they balance what the outputs share (the backbone,
    ``head_hidden`` layers): an output's own last-layer units step alike whatever its weight.
domain_adaptation : {"dann", "coral", "mmd"} or None, default=None
    Unsupervised domain adaptation to the unlabelled target rows of ``X`` (``sample_domain < 0``, or
    labels masked with -1, None for string labels): "dann" trains a domain discriminator behind a
    gradient-reversal layer (ramped up over training), "coral" matches the feature covariances (and
    means) of the two domains, "mmd" their multi-kernel maximum mean discrepancy. Every training batch holds
    ``batch_size`` source and as many target rows. The aligned features are the input of the head's
    last linear layer: the last hidden layer's output with ``head_hidden``, else the backbone's
    embedding; so a frozen backbone (``freeze_layers="all"``) needs ``head_hidden``. None: target
    rows, if ``sample_domain`` marks any, are left out.
adaptation_weight : float, default=1.0
    Weight of the adaptation loss against the source rows' classification loss (0: source only, with
    the same batches). Choose it without target labels with skada's scorers (see the user guide's "Domain adaptation").
teacher : estimator or None, default=None
    Knowledge distillation: a fitted classifier with ``predict_proba`` and the same ``classes_`` (a
    fine-tuned sktransfer classifier, a Pipeline ...) whose soft predictions the model learns from. Its
    probabilities on the training rows are computed once per fit; rows with masked labels (-1, None for
    string labels) are unlabelled rows that learn from the teacher alone. It is never refitted or changed
    (``clone`` passes it on as it is) nor needed after fit: ``save`` leaves it out (``load`` gives
    ``teacher=None``). The head then trains by mini-batch epochs; early stopping watches the true labels.
    With ``domain_adaptation`` the unlabelled rows are the target rows: aligned, and taught by the teacher.
    Not with a multi-label ``y``.
distill_temperature : float, default=2.0
    Temperature T: the teacher's probabilities p become soft targets proportional to ``p ** (1 / T)``
    (the softmax of its logits over T), matched by the softmax of the model's logits over T; the term is
    scaled by T squared, as in Hinton et al. (2015).
distill_weight : float, default=0.5
    Weight w of the teacher: a labelled row's loss is (1 - w) times the cross-entropy of its label plus w
    times the distillation term (the KL divergence to the soft targets); an unlabelled row has the second
    term only. 1: the teacher alone; 0: the labels alone.
contrastive : "auto", Contrastive, {"cosine", "supcon", "triplet"} or None, default="auto"
    Contrastive few-shot fine-tuning (SetFit's idea; a name is ``Contrastive(loss=name)``): the backbone
    is tuned so that same-class training rows get similar embeddings and other rows dissimilar ones,
    on every pair of rows within each training batch (no pair list is stored), then the linear head
    is solved to convergence on the tuned embeddings (``C``). Needs trainable backbone weights
    (``freeze_layers`` "auto", other than "all", or ``adapter``), a single-label ``y`` and at least 2
    rows of each class. With ``C=None``, ``head_hidden`` or ``label_smoothing`` the head trains by
    epochs beside the contrastive term instead. "auto": ``Contrastive()`` for a text classifier whose
    median class has at most 16 labelled rows (and at least 2 in every class), where measured to help
    (the user guide's "Few labels"), when nothing else is chosen that trains the backbone or adds rows
    (``freeze_layers`` left "auto", no ``adapter``, ``teacher``, ``domain_adaptation``, ``early_stopping``
    or ``warm_start``/``partial_fit``) and the head is solved (``C``); else None. ``contrastive_``
    records the choice.
semi_supervised : SelfTraining, "self_training" or None, default=None
    Train on the unlabelled rows too: rows of ``X`` whose label is masked (-1, or None/NaN for string
    labels) learn the labels the model predicts for them with confidence (``SelfTraining``'s
    ``threshold``). A solved head (``C``) self-trains in rounds on the embeddings computed once, whose
    standardisation the unlabelled rows join (``n_pseudo_labelled_`` counts the rows labelled so); a
    head trained by epochs learns the confident predictions of the unlabelled half of each batch.
    Composes with ``contrastive`` (its tuned embeddings self-train), ``teacher`` (the unlabelled rows
    learn from both) and ``domain_adaptation`` (the target rows are the unlabelled ones). None: masked
    rows are left out. Single-label ``y`` only."""

AUGMENT_PARAM = """\
augment : {"light", "standard"}, callable or None, default=None
    Training-time augmentation (torchvision transforms v2): "light" is a random resized crop and flip,
    "standard" adds colour jitter; a callable is applied to each PIL image before the backbone's
    preprocessing. Never applied at predict time; disables the feature cache."""

TTA_PARAM = """\
tta : int, TTA or None, default=None
    Test-time augmentation (fastai's ``tta``): ``predict``, ``predict_proba`` and ``score`` blend the
    outputs of each image with the mean outputs of ``n_views`` views of it (mirrored, zoomed-in regions),
    ``beta * plain + (1 - beta) * mean(views)``; an int ``n`` is ``TTA(n_views=n)`` (``beta=0.25``). Each
    view costs one more backbone pass (a frozen backbone's views are cached). Read at prediction, so
    ``set_params`` on a fitted model applies it without refitting; ``transform`` and ``export_onnx`` keep
    the plain pass. None: the plain pass alone."""

TEXT_PARAMS = """\
max_length : int, default=128
    Texts are truncated to this many tokens; batches are padded to their longest text (training batches
    group texts of similar length, predictions run in length order).
pooling : {"mean", "cls"}, default="mean"
    How token states become one embedding: attention-masked mean, or the first ([CLS]) token."""

# ---------------------------------------------------------------------------------------- extended text
IMAGE_INPUT = """\
Images may be a list, array or pandas Series of file paths, PIL images or uint8 arrays (H, W) or
(H, W, C), or one (N, H, W, C) array. Paths are read lazily, batch by batch. Grayscale, palette,
16-bit, CMYK and RGBA images are converted to RGB (alpha over white; first frame of an animation).
Float arrays are read as [0, 1] when their maximum is at most 1, else as [0, 255]. Preprocessing
(resize, crop, mean and std) follows the backbone's own data config (``data_config_``)."""

TEXT_INPUT = """\
Texts may be a list, 1-D array or pandas Series (or one-column DataFrame) of non-empty str; the
backbone's own tokenizer (``tokenizer_``) reads them."""

CLASSIFIER_TARGETS = """\
A 1-D ``y`` of any labels is single-label (binary or multiclass: softmax, cross-entropy); a 2-D 0/1
indicator ``y`` is multi-label (one sigmoid per label; ``threshold`` decides). Any other 2-D ``y`` of
labels, an array or a DataFrame whose columns are outputs (scikit-learn's "multiclass-multioutput":
a column with more than two values, or string labels), is multi-task: one shared backbone, one
softmax per column, trained on the sum of the outputs' losses (weighted by ``output_weights``;
``class_weight="balanced"`` per output). As with ``MultiOutputClassifier``, ``predict`` then gives
(n_samples, n_outputs) labels, ``predict_proba`` and ``classes_`` a list with one entry per output,
and ``score`` the share of rows whose every output is right. A 2-D ``y`` of 0/1 numbers is always
multi-label: to read binary columns as separate tasks, pass them as strings (``y.astype(str)``)."""

REGRESSOR_TARGETS = """\
``y`` holds one (1-D) or several (2-D) continuous targets; they are standardised for training and
restored on the scale of ``y`` by ``predict``."""

TRAINED_TRANSFORM = """\
``transform`` returns the fitted backbone's pooled embeddings, not the head's outputs: the
fine-tuned backbone when training changed its weights (``backbone_tuned_``), else the pretrained
one. The estimator is thus also a feature extractor, e.g. in a ``Pipeline`` or a ``FeatureUnion``."""

EMBEDDER_TRANSFORM = """\
``fit`` only validates the parameters and loads the backbone, whose weights never change;
``transform`` returns its pooled embeddings, (n_samples, ``n_features_out_``), cached as the
``cache`` parameter says."""
