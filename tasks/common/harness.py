"""Small pieces every task shares: config checks, seeding, device, commit, JSON, the loss check, W&B.

The loop itself is tasks.common.trainer; checkpoints are tasks.common.checkpoint."""
import json
import math
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch


def check_config(cfg, checks):
    """checks: (key, ok, what was expected). The first failure raises naming the key, its value and the fix."""
    from omegaconf import OmegaConf
    for key, ok, want in checks:
        if not ok:
            raise ValueError(f"bad config value {key}={OmegaConf.select(cfg, key)!r}: expected {want}")


def seed_everything(seed, deterministic=False):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


def decayed_lr(base, decay, start, epoch):
    """The lr of (1-based) `epoch`: `base` through epoch `start` (optim.decay_start, the last epoch at
    the full lr), then x `decay` per epoch: epoch start + k trains at base * decay**k. One meaning for
    every task: the authors' PTB script (decay before 0-based epoch >= 175, so 1-based epoch 176 is the
    first at 0.98) is start=175; OpenNMT-py (decay after 1-based epoch >= 8, so epoch 9 is the first at
    0.5) is start=8."""
    return base * decay ** max(0, epoch - start)


def plateau_decay_start(start, epoch, current, previous, mode):
    """OpenNMT-py's second rule (onmt/Optim.py updateLearningRate at 649322cc): once the validation
    metric of `epoch` is worse than the previous epoch's (ppl > last_ppl), the decay starts after this
    epoch and, like the epoch rule, never stops. Returns the decay start that holds from now on."""
    worse = previous is not None and (current > previous if mode == "min" else current < previous)
    return min(start, epoch) if worse else start


def pick_device(name="auto"):
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device={name} was asked for but CUDA is not available; use device=auto or cpu")
    return torch.device(name)


def git_commit():
    try:
        return subprocess.run(["git", "describe", "--always", "--dirty", "--abbrev=7"], capture_output=True, text=True,
                              cwd=Path(__file__).parent, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def machine_name(device):
    """The card's or the CPU's name and thread count, as the benchmark prints it (result.json: machine)."""
    from sru.machine import machine_info
    return machine_info(device)["device"]


def write_json_atomic(obj, path):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1))
    os.replace(tmp, path)


class UserError(RuntimeError):
    """Bad input, data or config: the entry point prints the message (which names the fix), no traceback."""


class NonFiniteLoss(UserError):
    pass


def exit_on_user_error(fn, *args):
    """Run a task's entry function; a user error or bad config value exits non-zero with one clear line."""
    try:
        return fn(*args)
    except (ValueError, UserError) as e:
        sys.exit(f"error: {e}")


def check_finite(loss, where):
    if not math.isfinite(loss):
        raise NonFiniteLoss(f"loss became {loss} at {where}; stopping. The last good checkpoint is kept: "
                            f"lower the learning rate or clip harder, then resume=true")


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
