"""W&B logging for the trainer: offline unless WANDB_MODE says otherwise."""
import os


class Logger:
    """W&B when logger=wandb (offline unless WANDB_MODE says otherwise), else nothing."""

    def __init__(self, kind, config, run_dir, group, tags, name):
        self.run = None
        if kind == "wandb":
            os.environ.setdefault("WANDB_MODE", "offline")
            os.environ.setdefault("WANDB_SILENT", "true")
            import wandb
            self.run = wandb.init(project=os.environ.get("WANDB_PROJECT", "sru-repro"), config=config,
                                  dir=str(run_dir), group=group, tags=tags, name=name, reinit="finish_previous")
        elif kind != "none":
            raise ValueError(f"logger must be 'wandb' or 'none', got {kind!r}")

    def log(self, metrics, step=None):
        if self.run is not None:
            self.run.log(metrics, step=step)

    def summary(self, **values):
        if self.run is not None:
            self.run.summary.update(values)

    def finish(self):
        if self.run is not None:
            self.run.finish()
