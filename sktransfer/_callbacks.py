"""skorch callbacks that sktransfer adds: gradual unfreezing, learning-rate logging and the time limit."""

from __future__ import annotations

import time

from skorch.callbacks import Callback


class GradualUnfreezing(Callback):
    """Every ``every`` epochs, unfreeze one more backbone block from the top (ULMFiT style).

    Starts from the first ``n_frozen`` blocks that ``freeze_layers`` froze: epochs ``1..every``
    train with all of them frozen, then block ``n_frozen - 1`` opens, and so on down to block 0.
    The optimizer already holds every parameter, so unfreezing only turns gradients on. The number
    of blocks still frozen is recorded in the history as ``n_frozen_blocks``.
    """

    def __init__(self, blocks: list[list[str]], n_frozen: int, every: int):
        self.blocks = blocks
        self.n_frozen = n_frozen
        self.every = every

    def on_epoch_begin(self, net, **kwargs):
        epoch = len(net.history)  # the net's own on_epoch_begin has added this epoch's row
        still_frozen = max(0, self.n_frozen - (epoch - 1) // self.every)
        names = {name for block in self.blocks[still_frozen : self.n_frozen] for name in block}
        for name, param in net.module_.encoder.named_parameters():
            if name in names:
                param.requires_grad_(True)
        net.history.record("n_frozen_blocks", still_frozen)


class LRLogger(Callback):
    """Record, as ``lr``, the head's learning rate (the largest rate) at the start of each epoch."""

    def on_epoch_begin(self, net, **kwargs):
        net.history.record("lr", max(group["lr"] for group in net.optimizer_.param_groups))


class TimeLimit(Callback):
    """Stop training after the first training batch that ends past ``deadline`` (a ``time.monotonic()`` value).

    skorch ends ``fit`` at the ``KeyboardInterrupt`` and still runs ``on_train_end`` (early stopping then
    restores its best epoch). The unfinished epoch's history row, without its epoch scores, is dropped
    unless it is the first.
    ``reached_`` tells whether the limit stopped training.
    """

    def __init__(self, deadline: float):
        self.deadline = deadline

    def on_train_begin(self, net, **kwargs):
        self.reached_ = False

    def on_batch_end(self, net, training=True, **kwargs):
        if training and time.monotonic() >= self.deadline:
            self.reached_ = True
            if len(net.history) > 1 and "train_loss" not in net.history[-1]:
                del net.history[-1]
            raise KeyboardInterrupt
