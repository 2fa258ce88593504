"""The Monitor as a PyTorch Lightning callback (`pip install 'losslab[lightning]'`):

    trainer = pl.Trainer(callbacks=[MonitorCallback(probe=(x, y), loss=F.cross_entropy, every=100,
                                                    measures=["step_grad_norm", "sharpness"])])

Every option is the Monitor's: `forward=f` instead of `loss` for dict batches (a Hugging Face
model's). The monitor is made at the start of training on the LightningModule and its first optimizer,
steps after every training batch with the loss the training step returned (Lightning calls the
hook after the optimizer's step), and closes at the end of training, or as failed when training
raises.
"""

from __future__ import annotations

import pytorch_lightning as pl

from losslab.monitor import Monitor


class MonitorCallback(pl.Callback):
    def __init__(self, probe, loss=None, **monitor_options):
        self.probe, self.loss, self.options = probe, loss, monitor_options
        self.monitor: Monitor | None = None

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.monitor = Monitor(pl_module, trainer.optimizers[0], self.probe, self.loss, **self.options)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        self.monitor.step(loss)

    def on_train_end(self, trainer, pl_module) -> None:
        self.monitor.close()

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        if self.monitor is not None:
            self.monitor.close("failed")
