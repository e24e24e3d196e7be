"""Self-contained checkpoints: weights + the resolved config + vocabularies, loadable with one call.

Every checkpoint holds only tensors and plain containers (dict, list, str, int, float, bool, None),
so it loads with ``torch.load(..., weights_only=True)``: a checkpoint downloaded from someone else
cannot run code. ``best.pt`` is what evaluation and inference need::

    from tasks.common.checkpoint import load_model
    model, ckpt = load_model("outputs/lm_ptb/sru-6x910-full/best.pt")   # ready, in eval mode
    ckpt["config"], ckpt["vocab"], ckpt["metrics"]

``last.pt`` adds what resuming needs (optimiser, grad scaler, RNG states, the trainer's counters).
The model is rebuilt by ``tasks.<task>.model.build_model(config, model_args)``.
"""
import importlib
import os
import random
import tempfile
from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf

from tasks.common.errors import UserError

FORMAT = "sru-repro-checkpoint/1"


class CheckpointError(UserError):
    pass


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


def rng_state():
    """Every RNG a run draws from, as tensors and plain values (so weights_only loading works)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = dict(torch=torch.get_rng_state(), python=random.getstate(),
                 numpy=dict(kind=kind, keys=torch.from_numpy(keys.astype(np.int64)), pos=int(pos),
                            has_gauss=int(has_gauss), gauss=float(gauss)))
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state):
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def to_plain(config):
    """An OmegaConf config as plain resolved containers (what a checkpoint stores)."""
    return OmegaConf.to_container(config, resolve=True) if OmegaConf.is_config(config) else config


def save(path, task, model, config, vocab, model_args, **extra):
    """A checkpoint of `model` (unwrapped from DDP) that rebuilds without anything else."""
    model = getattr(model, "module", model)
    save_atomic(dict(format=FORMAT, task=task, config=to_plain(config), vocab=vocab, model_args=model_args,
                     model=model.state_dict(), **extra), path)


def load(path, map_location="cpu"):
    """A checkpoint's dict, loaded safely (weights_only=True); errors name the file and what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}: expected a best.pt or last.pt written by a training run")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # pickle errors, truncated files, code-carrying pickles
        raise CheckpointError(f"{path} is not a loadable checkpoint ({type(e).__name__}: {str(e)[:200]}); "
                              f"it is corrupt, from another program, or carries code") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a {FORMAT} checkpoint (an older bare state_dict?): retrain, "
                              f"or load its weights into a model you build yourself")
    return ckpt


def load_model(path, device="cpu"):
    """(model in eval mode on `device`, the checkpoint dict), built from what the checkpoint carries."""
    ckpt = load(path)
    builder = importlib.import_module(f"tasks.{ckpt['task']}.model").build_model
    model = builder(OmegaConf.create(ckpt["config"]), ckpt["model_args"])
    model.load_state_dict(ckpt["model"])
    return model.to(device).eval(), ckpt
