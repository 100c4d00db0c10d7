"""The skorch net of one fit, built from its plan alone (the estimator supplies the task's net and settings)."""

from __future__ import annotations

import torch
from skorch.helper import predefined_split

from ._optim import HEAD_LR, Rates
from ._plan import FitPlan


def build_net(est, plan: FitPlan):
    """The task's skorch net (``est._net_class``) for ``plan``: its module, rates, loaders and callbacks."""
    rates = plan.rates or Rates(head=HEAD_LR, backbone=HEAD_LR, warmup=0.0)
    iterator = {"num_workers": plan.num_workers, "pin_memory": est.device_.startswith("cuda")}
    if plan.collate is not None:
        iterator["collate_fn"] = plan.collate
    train_iterator = {**iterator, "batch_size": plan.train_batch_size or est.batch_size}
    if plan.train_collate is not None:
        train_iterator["collate_fn"] = plan.train_collate
    return est._net_class(
        module=plan.module,
        criterion=est._criterion(),
        lr=rates.backbone,
        max_epochs=plan.epochs,
        batch_size=est.batch_size,
        train_split=None if plan.valid_data is None else predefined_split(plan.valid_data),
        callbacks=plan.callbacks,
        device=est.device_,
        verbose=est.verbose,
        iterator_train__shuffle=plan.sampler is None,
        iterator_train__sampler=plan.sampler,
        **{f"iterator_train__{k}": v for k, v in train_iterator.items()},
        **{f"iterator_valid__{k}": v for k, v in iterator.items()},
        iterator_valid__generator=torch.Generator(),  # predicting never draws from the global RNG fits seed
        blocks=plan.blocks,
        optimizer_name=est.optimizer,
        group_options={
            "weight_decay": est.weight_decay,
            "layer_decay": est.layer_decay,
            "head_lr": rates.head,
            "include_frozen": est.unfreeze_every is not None,
        },
        precision=est.precision_,
        grad_accum_steps=est.grad_accum_steps,
        warm_start=False,
        compile=est.compile,
        streams=plan.streams,
        total_steps=plan.steps,
        **est._net_kwargs(),
    )
