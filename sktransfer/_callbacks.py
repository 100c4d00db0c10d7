"""skorch callbacks that sktransfer adds: gradual unfreezing and learning-rate logging."""

from __future__ import annotations

from skorch.callbacks import Callback


class GradualUnfreezing(Callback):
    """Every ``every`` epochs, unfreeze one more backbone block from the top (ULMFiT style).

    Starts from the blocks ``freeze_layers`` froze; the optimizer already holds every parameter, so
    unfreezing only turns gradients on.
    """

    def __init__(self, blocks: list[list[str]], n_frozen: int, every: int):
        self.blocks = blocks
        self.n_frozen = n_frozen
        self.every = every

    def on_epoch_begin(self, net, **kwargs):
        epoch = len(net.history)
        n_unfrozen = (epoch - 1) // self.every
        first_frozen_to_open = max(0, self.n_frozen - n_unfrozen)
        names = {name for block in self.blocks[first_frozen_to_open : self.n_frozen] for name in block}
        for name, param in net.module_.encoder.named_parameters():
            if name in names:
                param.requires_grad_(True)
        net.module_.train()
        net.history.record("n_frozen_blocks", first_frozen_to_open)


class LRLogger(Callback):
    """Record the head's learning rate (the largest rate) in the history at each epoch's end."""

    def on_epoch_end(self, net, **kwargs):
        net.history.record("lr", max(group["lr"] for group in net.optimizer_.param_groups))
