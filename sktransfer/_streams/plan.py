"""The fit plan's step for the training streams: their rows in one dataset, one sampler, one batch size."""

from __future__ import annotations

from typing import Any

import numpy as np

from .._domain import SOURCE_DOMAIN, TARGET_DOMAIN
from .._plan import FitPlan, Stage, precomputed_dataset
from .base import StreamRows, TrainingStream
from .data import SourceTargetSampler, StreamCollate, StreamDataset


def add_streams(estimator: Any, plan: FitPlan, streams: tuple[TrainingStream, ...], items: list,
                train_idx: np.ndarray, weighted: bool, unlabelled: list | None) -> FitPlan:
    """Give ``plan`` the streams' training rows: the labelled training rows, then the unlabelled rows if a
    stream uses them, each with its domain and every stream's per-row data; the batches mix both kinds."""
    for stream in streams:
        stream.check(estimator)
    unlabelled = list(unlabelled or []) if any(stream.uses_unlabelled for stream in streams) else []
    labelled = plan.train_data
    parts = [labelled]
    if unlabelled:
        # Their labels never reach the task's loss (their domain marks them): any valid label will do.
        y = np.zeros((len(unlabelled), *labelled.y.shape[1:]), dtype=labelled.y.dtype)
        weights = np.ones(len(unlabelled), dtype=np.float32) if weighted else None
        if plan.stage.precomputed:
            values = estimator._embed(unlabelled, plan.module.encoder, prefix=plan.prefix)
            parts.append(precomputed_dataset(plan.stage, values, y, weights))
        else:
            parts.append(estimator._make_dataset(unlabelled, y, weights, augment=estimator._augment()))
    rows = StreamRows([items[i] for i in train_idx] + unlabelled, n_labelled=len(labelled))
    data = {stream.key: stream.batch_data(estimator, rows) for stream in streams if stream.key is not None}
    domains = np.concatenate([np.full(len(labelled), SOURCE_DOMAIN), np.full(len(unlabelled), TARGET_DOMAIN)])
    plan.train_data = StreamDataset(parts, domains, data)
    plan.train_collate = StreamCollate(plan.collate)
    plan.streams = streams
    samplers = [sampler for stream in streams if (sampler := stream.sampler(labelled.y)) is not None]
    if len(samplers) > 1 or (samplers and unlabelled):
        names = [stream.name for stream in streams]
        raise ValueError(f"The training streams {names} each need their own order of the training rows and cannot "
                         "be combined in one fit: keep one of them.")
    if samplers:
        plan.sampler = samplers[0]
    elif unlabelled and any(stream.paired for stream in streams):
        plan.sampler = SourceTargetSampler(len(labelled), len(unlabelled))
        plan.train_batch_size = 2 * estimator.batch_size  # batch_size rows of each kind
    elif plan.stage is Stage.RAW:
        plan.sampler = estimator._train_sampler(rows.items)
    return plan
