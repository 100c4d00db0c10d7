"""The learning-rate range test (fastai's ``lr_find``): ``lr_find`` and ``lr="find"``.

The rate rises exponentially from ``start_lr`` to ``end_lr`` over ``num_iter`` training batches of the fit's
own plan (its module, trainable parts, precomputed inputs and training rows), the loss is smoothed by an
exponential moving average with bias correction, and the test stops once the smoothed loss exceeds
``diverge`` times its best. The suggestion is fastai's "valley" rule (its default since fastai 2.5, chosen
there over the steepest point, the minimum over ten and the slide rule): halfway into the longest falling
stretch of the smoothed curve. A longest stretch is a property of many points, where the steepest finite
difference of a noisy curve is set by one pair of them. The module's weights are restored afterwards, and
the random number generators run forked, so a fit with ``lr="find"`` trains as one with the suggested rate.
"""

from __future__ import annotations

import copy
import math
import random
from dataclasses import dataclass, fields, replace

import numpy as np
import torch
from skorch.callbacks import Callback
from torch.optim.lr_scheduler import LambdaLR

from ._device import cuda_indices
from ._persistence import register_parameter_object
from ._plan import FitPlan
from ._plotting import _pyplot

START_LR, END_LR, NUM_ITER = 1e-7, 10.0, 100
SMOOTHING, DIVERGE = 0.98, 4.0
_MIN_ITER = 20


@dataclass(frozen=True, eq=False)
class LRFinderResult:
    """The curve of a learning-rate range test and the rate it suggests.

    ``lr_find`` of a trained estimator returns one; a fit with ``lr="find"`` records its own as
    ``lr_finder_``. The rate of the backbone's last block (and of the head, unless ``head_lr`` fixes it)
    rose exponentially, one value per training batch, until the smoothed loss diverged.

    Parameters
    ----------
    rates : ndarray of shape (n_batches,)
        The learning rate of each batch.
    losses : ndarray of shape (n_batches,)
        The training loss after each batch, smoothed (exponential moving average, bias corrected).
    raw_losses : ndarray of shape (n_batches,)
        The training loss of each batch.
    suggestion : float
        The suggested rate: halfway into the longest falling stretch of ``losses`` (fastai's "valley").

    See Also
    --------
    PretrainedImageClassifier.lr_find : Run the test for an image classifier.
    PretrainedTextClassifier.lr_find : Run the test for a text classifier.

    Examples
    --------
    >>> from sktransfer import PretrainedImageClassifier, load_image_folder
    >>> X, y = load_image_folder("hymenoptera/train")  # doctest: +SKIP
    >>> result = PretrainedImageClassifier(freeze_layers=-2).lr_find(X, y)  # doctest: +SKIP
    >>> ax = result.plot()  # doctest: +SKIP
    >>> clf = PretrainedImageClassifier(freeze_layers=-2, lr=result.suggestion).fit(X, y)  # doctest: +SKIP
    """

    rates: np.ndarray
    losses: np.ndarray
    raw_losses: np.ndarray
    suggestion: float

    def get_params(self, deep: bool = False) -> dict:
        """Return the fields, as scikit-learn's objects return their parameters (what ``save`` writes).

        Parameters
        ----------
        deep : bool, default=False
            Ignored: the fields hold no nested objects.

        Returns
        -------
        params : dict
            The fields by name.
        """
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def plot(self, ax=None):
        """Plot the smoothed loss against the learning rate (log scale), marking the suggestion.

        Needs matplotlib (``pip install sktransfer[plot]``).

        Parameters
        ----------
        ax : matplotlib.axes.Axes, default=None
            Where to draw; None: a new figure's axes.

        Returns
        -------
        ax : matplotlib.axes.Axes
            The axes drawn on.
        """
        if ax is None:
            _, ax = _pyplot("LRFinderResult.plot").subplots()
        ax.plot(self.rates, self.losses, label="smoothed loss")
        at = int(np.argmin(np.abs(np.log(self.rates) - math.log(self.suggestion))))
        ax.plot([self.suggestion], [self.losses[at]], "o", color="red", label=f"suggestion {self.suggestion:.2g}")
        ax.set_xscale("log")
        ax.set_xlabel("learning rate")
        ax.set_ylabel("training loss")
        ax.legend()
        return ax


register_parameter_object(LRFinderResult)


def suggest_rate(rates: np.ndarray, losses: np.ndarray) -> float:
    """fastai's "valley": halfway into the longest decreasing run of the smoothed ``losses``, with fastai's
    trimming (the first tenth and the last five batches left out).

    Parameters
    ----------
    rates : ndarray of shape (n,)
        The rates, increasing.
    losses : ndarray of shape (n,)
        The smoothed loss at each rate.

    Returns
    -------
    rate : float
        The suggested rate.
    """
    start = len(rates) // 10
    rates, losses = rates[start:len(rates) - 5], losses[start:len(losses) - 5]
    if len(rates) < 2:
        raise ValueError(f"the range test stopped after {start + len(rates) + 5} batches, too few for a suggestion: "
                         "lower start_lr or end_lr, or raise num_iter.")
    longest = np.ones(len(losses), dtype=int)  # the longest decreasing subsequence ending at each point
    for i in range(1, len(losses)):
        below = losses[:i] > losses[i]
        if below.any():
            longest[i] = longest[:i][below].max() + 1
    end = int(np.argmax(longest))
    begin = end - int(longest[end]) + 1
    third = (end - begin) / 3
    return float(rates[begin + int(third) + int(third / 2)])


class _RangeTest(Callback):
    """Raise the rates exponentially batch by batch, record the loss, stop at ``num_iter`` or on divergence."""

    def __init__(self, start_lr: float, end_lr: float, num_iter: int, hold_head: bool):
        self.start_lr, self.end_lr, self.num_iter, self.hold_head = start_lr, end_lr, num_iter, hold_head

    def rate(self, step: int) -> float:
        return self.start_lr * (self.end_lr / self.start_lr) ** (step / (self.num_iter - 1))

    def on_train_begin(self, net, **kwargs):
        ramp = [(lambda step: 1.0) if self.hold_head and group.get("part") == "head"
                else (lambda step: self.rate(step) / self.start_lr) for group in net.optimizer_.param_groups]
        self.scheduler_ = LambdaLR(net.optimizer_, ramp)
        self.rates_, self.raw_losses_, self.losses_ = [], [], []
        self.average_, self.best_ = 0.0, math.inf

    def on_batch_end(self, net, batch=None, training=False, loss=None, **kwargs):
        if not training:
            return
        step = len(self.rates_)
        value = float(loss)
        self.average_ = SMOOTHING * self.average_ + (1 - SMOOTHING) * value
        smoothed = self.average_ / (1 - SMOOTHING ** (step + 1))
        self.rates_.append(self.rate(step))
        self.raw_losses_.append(value)
        self.losses_.append(smoothed)
        if not math.isfinite(smoothed) or smoothed > DIVERGE * self.best_ or step + 1 >= self.num_iter:
            raise KeyboardInterrupt  # skorch's way for a callback to end training (as EarlyStopping does)
        self.best_ = min(self.best_, smoothed)
        self.scheduler_.step()


def range_test(est, plan: FitPlan, *, start_lr: float, end_lr: float, num_iter: int) -> LRFinderResult:
    """Run the range test on ``plan``'s module and training rows; the module's weights and modes are restored."""
    if est.head_lr is not None and not plan.rates.family:  # lr="auto"/"find" name a family where the backbone trains
        raise ValueError("lr_find: no rate would rise, as no backbone weight trains and head_lr fixes the head's rate; "
                         "set head_lr=None to test the head's rate, or freeze_layers to fine-tune the backbone.")
    module = plan.module
    state = copy.deepcopy(module.state_dict())
    modes = [m.training for m in module.modules()]
    test = _RangeTest(start_lr, end_lr, num_iter, hold_head=est.head_lr is not None)
    rates = replace(plan.rates, head=est.head_lr or start_lr, backbone=start_lr, warmup=0.0)
    net = est._make_net(replace(plan, rates=rates, epochs=num_iter, valid_data=None))
    net.callbacks, net.verbose = [("range", test)], 0  # the fit's own callbacks (schedule, pruning ...) left out
    with torch.random.fork_rng(devices=cuda_indices(est.device_)):
        module.use_suffix(plan.suffix)
        try:
            net.fit(plan.train_data, plan.train_data.y)
        finally:
            module.use_suffix(None)
            module.load_state_dict(state)
            for m, training in zip(module.modules(), modes):
                m.training = training
            module.zero_grad(set_to_none=True)
    rates, losses = np.array(test.rates_), np.array(test.losses_)
    return LRFinderResult(rates=rates, losses=losses, raw_losses=np.array(test.raw_losses_),
                          suggestion=suggest_rate(rates, losses))


def apply_found_rate(est, plan: FitPlan, *, reuse: bool) -> None:
    """``lr="find"``: run the range test (``reuse``: keep the previous fit's, for ``partial_fit``), train with its
    suggestion as ``lr`` (and as the head's rate unless ``head_lr``), record ``lr_`` and ``lr_finder_``."""
    reused = getattr(est, "lr_finder_", None) if reuse else None
    found = reused or range_test(est, plan, start_lr=START_LR, end_lr=END_LR, num_iter=NUM_ITER)
    plan.rates = replace(plan.rates, head=est.head_lr or found.suggestion, backbone=found.suggestion)
    est.lr_ = {"head": plan.rates.head, "backbone": plan.rates.backbone, "warmup": plan.rates.warmup}
    est.lr_finder_ = found


class _Found(Exception):  # noqa: N818 (a signal, not an error: the test ran, the fit stops before training)
    def __init__(self, result: LRFinderResult):
        super().__init__()
        self.result = result


def _check_range(start_lr, end_lr, num_iter) -> None:
    for name, value in (("start_lr", start_lr), ("end_lr", end_lr)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
            raise ValueError(f"lr_find: {name} must be a positive finite number, got {value!r}.")
    if start_lr >= end_lr:
        raise ValueError(f"lr_find: start_lr={start_lr!r} must be below end_lr={end_lr!r} (the rate rises from one "
                         "to the other); swap them.")
    if isinstance(num_iter, bool) or not isinstance(num_iter, (int, np.integer)) or num_iter < _MIN_ITER:
        raise ValueError(f"lr_find: num_iter must be an int of at least {_MIN_ITER} (fastai's default is 100), got "
                         f"{num_iter!r}.")


def lr_find(est, X, y, sample_weight=None, *, start_lr: float = START_LR, end_lr: float = END_LR,
            num_iter: int = NUM_ITER) -> LRFinderResult:
    """The range test on the plan that ``est.fit(X, y, sample_weight)`` would train with; ``est`` is left as it
    was (its parameters, fitted attributes and weights, and the random number generators)."""
    _check_range(start_lr, end_lr, num_iter)
    warm = est.warm_start and hasattr(est, "net_")
    probe = object.__new__(type(est))
    probe.__dict__.update(est.__dict__)
    probe.__dict__.update(lr="auto", random_state=copy.deepcopy(est.random_state))  # "auto": rates.family is set
    if warm:  # the fitted module is where a warm fit starts: test a copy of it
        probe.net_ = object.__new__(type(est.net_))
        probe.net_.__dict__.update(est.net_.__dict__, module_=copy.deepcopy(est.net_.module_))
    plan_fit = probe._plan_fit

    def test_the_plan(*args, **kwargs):
        # Where a fit with lr="find" runs the test: after the plan, with the fit's seeded random numbers.
        plan = plan_fit(*args, **kwargs)
        if plan.head_solver is not None:
            raise ValueError(f"lr_find: {type(est).__name__} solves its linear head to convergence here (C={est.C!r}, "
                             "the backbone frozen), with no learning rate; set C=None to train the head by epochs, "
                             "or freeze_layers to fine-tune the backbone.")
        raise _Found(range_test(probe, plan, start_lr=start_lr, end_lr=end_lr, num_iter=num_iter))

    probe._plan_fit = test_the_plan
    numpy_state, python_state = np.random.get_state(), random.getstate()
    try:
        probe._fit(X, y, sample_weight, warm=warm)
    except _Found as found:
        return found.result
    finally:
        np.random.set_state(numpy_state)
        random.setstate(python_state)
