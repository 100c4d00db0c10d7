"""Training a linear head on a frozen backbone's embeddings to convergence, inside the skorch net.

The fit plan chooses this when the backbone is frozen and its embeddings are precomputed, the head
is linear, and the task's loss is a plain (weighted) logistic or squared loss: the head's final layer
is then the solution of a convex problem, which :func:`~sktransfer._solver.fit_linear_head` finds with
scikit-learn's full-batch solvers. The solution goes into the same head, the net is initialised as
for any fit, and the history gets one row (the train and validation losses of the solved head), so
predicting, saving, pickling and ONNX export work as after mini-batch training.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from ._multitask import fit_multioutput_head
from ._plan import SAMPLE_WEIGHT, FitPlan, Stage
from ._semi_supervised import self_train
from ._solver import fit_linear_head


def _loss(net, data) -> float:
    """The net's weighted mean loss on a dataset of precomputed embeddings."""
    with torch.inference_mode():
        y_pred = net.forward(data, training=False, device=net.device)  # where the criterion's class weights are
        return float(net.get_loss(y_pred, data.y, X=data.X, training=False))


def _solve_into(head, standardised: np.ndarray, y: np.ndarray, weights, criterion, *, kind: str, C: float | str,
                seed: int) -> float | np.ndarray:
    """Solve the linear problem on standardised features and put the solution into ``head``'s last layer."""
    if kind == "multioutput":  # one softmax slice per output, each solved on its own column
        solution = fit_multioutput_head(standardised, y, criterion, sample_weight=weights, C=C, random_state=seed)
    else:
        solution = fit_linear_head(standardised, y, kind=kind, n_outputs=head.layers[-1].out_features,
                                   sample_weight=weights, C=C, random_state=seed)
    with torch.no_grad():
        head.layers[-1].weight.copy_(torch.as_tensor(solution.weight))
        head.layers[-1].bias.copy_(torch.as_tensor(solution.bias))
    return solution.C


def _standardised(head, features) -> np.ndarray:
    features = torch.as_tensor(features)
    with torch.no_grad():
        return ((features.float() - head.mean.cpu()) / head.scale.cpu()).numpy()


def _solve_rows(head, criterion, plan: FitPlan, labelled: np.ndarray, y: np.ndarray, weights, unlabelled, *,
                kind: str, C: float | str, seed: int):
    """Solve the head on standardised labelled features, self-training on the unlabelled ones (in rounds, see
    :func:`~sktransfer._semi_supervised.self_train`) where the plan says so; return the C used and the
    unlabelled rows' pseudo-labels (None without self-training)."""
    def solve(features, targets, w):
        return _solve_into(head, features, targets, w, criterion, kind=kind, C=C, seed=seed)

    if plan.self_training is None:
        return solve(labelled, y, weights), None
    return self_train(solve, head, labelled, y, weights, _standardised(head, unlabelled), plan.self_training)


def solve_head(net, plan: FitPlan, *, kind: str, C: float | str, seed: int):
    """Put the converged linear head into ``plan.module`` and initialise ``net`` around it; return the C used
    and the unlabelled rows' pseudo-labels (None without self-training)."""
    start = time.perf_counter()
    head = plan.module.head
    data = plan.train_data
    C_used, pseudo = _solve_rows(head, net.criterion, plan, _standardised(head, data.X[Stage.EMBEDDINGS.value]),
                                 np.asarray(data.y), data.X.get(SAMPLE_WEIGHT), plan.unlabelled_values,
                                 kind=kind, C=C, seed=seed)
    net.initialize()
    net.history.new_epoch()
    net.history.record("epoch", 1)
    net.history.record("train_loss", _loss(net, data))
    if plan.valid_data is not None:
        net.history.record("valid_loss", _loss(net, plan.valid_data))
    net.history.record("dur", time.perf_counter() - start)
    return C_used, pseudo


def _tuned_embeddings(est, items: list, plan: FitPlan) -> np.ndarray:
    encoder = plan.module.encoder
    if plan.prefix is None:
        return est._embed(items, encoder, use_cache=False)
    # The frozen prefix's outputs are the fit's own (cached): only the trained suffix runs.
    return est._embed_prefix_outputs(est._embed(items, encoder, prefix=plan.prefix), plan.prefix, encoder)


def solve_tuned_head(est, net, plan: FitPlan, *, C: float | str, seed: int):
    """After the backbone trained: standardise on, and solve the linear head to convergence on, the tuned
    backbone's embeddings of the labelled training rows (``plan.tuned_rows``) and of the unlabelled rows it
    self-trains on; return the C used and their pseudo-labels (None without self-training)."""
    head, rows = plan.module.head, plan.tuned_rows
    features = _tuned_embeddings(est, rows.items, plan)
    unlabelled = None if plan.self_training is None else _tuned_embeddings(est, plan.unlabelled_items, plan)
    head.fit_standardization(torch.as_tensor(features if unlabelled is None else np.concatenate([features, unlabelled]),
                                             device=est.device_))
    return _solve_rows(head, net.criterion, plan, _standardised(head, features), rows.y, rows.weights, unlabelled,
                       kind=plan.tuned_head, C=C, seed=seed)
