"""Training-loop pieces every task shares: seeding, device, atomic checkpoints, progress, logging."""
import json
import math
import os
import random
import subprocess
import sys
import tempfile
import time
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


def rng_state():
    """Every RNG a run draws from, so a resumed run continues with the same dropout masks."""
    state = dict(torch=torch.get_rng_state(), numpy=np.random.get_state(), python=random.getstate())
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state):
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def decayed_lr(base, decay, start, epoch):
    """base until epoch `start`, then x decay per epoch (the paper's PTB schedule: 0.98 from 175)."""
    return base * decay ** max(0, epoch - start)


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


def save_atomic(obj, path):
    """torch.save to a temp file in the same directory, fsync, then rename over `path`:
    a kill at any moment leaves either the old checkpoint or the new one, never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def save_training_state(path, model, optim, **state):
    """Everything a resumed run needs (weights, optimiser, every RNG, the caller's counters), atomically."""
    save_atomic(dict(model=model.state_dict(), optim=optim.state_dict(), rng=rng_state(), **state), path)


def load_training_state(path, model, optim):
    """Restore what save_training_state wrote into model/optim and the RNGs; return the caller's counters."""
    ckpt = torch.load(path, weights_only=False, map_location="cpu")
    model.load_state_dict(ckpt.pop("model"))
    optim.load_state_dict(ckpt.pop("optim"))
    set_rng_state(ckpt.pop("rng"))
    return ckpt


def write_json_atomic(obj, path):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1))
    os.replace(tmp, path)


class Progress:
    """A one-line progress bar with tokens/s and ETA (to stderr), refreshed at most every 0.5 s."""

    def __init__(self, total, desc, stream=sys.stderr):
        self.total, self.desc, self.stream = total, desc, stream
        self.start = self.last = time.time()
        self.done = self.tokens = 0

    def update(self, steps=1, tokens=0, **info):
        self.done += steps
        self.tokens += tokens
        now = time.time()
        if now - self.last < 0.5 and self.done < self.total:
            return
        self.last = now
        elapsed = max(now - self.start, 1e-9)
        eta = elapsed / self.done * (self.total - self.done)
        bar = "#" * int(20 * self.done / max(self.total, 1))
        extra = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in info.items())
        self.stream.write(f"\r{self.desc} [{bar:<20}] {self.done}/{self.total} "
                          f"{self.tokens / elapsed:,.0f} tok/s ETA {eta:,.0f}s {extra}   ")
        if self.done >= self.total:
            self.stream.write("\n")
        self.stream.flush()


class NonFiniteLoss(RuntimeError):
    pass


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
