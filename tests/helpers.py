import json
import os
import subprocess
import sys
import urllib.request
from functools import lru_cache
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
MIRROR = Path(os.environ.get("SRU_DATA_MIRROR", ROOT.parent / "shared" / "data"))


def mirror_has(folder):
    """skipif marker: the test reads this folder of the data mirror itself."""
    return pytest.mark.skipif(not (MIRROR / folder).exists(),
                              reason=f"no {folder}/ in the data mirror {MIRROR}: set SRU_DATA_MIRROR=<shared/data>")


@lru_cache(maxsize=None)
def _reachable(url):
    try:
        urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=10).close()
        return True
    except Exception:  # offline, DNS, HTTP errors: all mean "cannot download here"
        return False


def needs_data(dataset, folder):
    """skipif marker: the test needs `dataset`, taken from the data mirror when it has `folder`, else
    downloaded from the canonical URL (no mirror). Skipped, saying why, when neither can work."""
    if (MIRROR / folder).exists():
        return pytest.mark.skipif(False, reason="")
    from tasks.common.data import manifest_files
    url = manifest_files(dataset)[0]["url"]
    if not MIRROR.exists() and _reachable(url):
        return pytest.mark.skipif(False, reason="")
    return pytest.mark.skipif(True, reason=f"no {folder}/ in the data mirror {MIRROR} and the canonical {url} "
                                           f"cannot be used: set SRU_DATA_MIRROR=<path to shared/data> or go online")


def run_module(module, *args, timeout=600, launcher=()):
    """A task's real command-line entry point (or `launcher` + it, e.g. torchrun) in a subprocess, W&B
    offline, data from the mirror when there is one (else downloaded)."""
    env = dict(os.environ, SRU_DATA_MIRROR=str(MIRROR) if MIRROR.exists() else "", WANDB_MODE="offline")
    return subprocess.run([sys.executable, *launcher, "-m", module, *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)


def result_of(proc, path):
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(Path(path).read_text())


def assert_close_scaled(actual, expected, rel, name=""):
    """Elementwise |a - e| <= rel * (|e| + max|e|): relative to each value and to the tensor's scale."""
    expected = expected.to(actual.dtype) if expected.dtype != actual.dtype else expected
    scale = expected.abs().max().item() if expected.numel() else 0.0
    torch.testing.assert_close(actual.float(), expected.float(), rtol=rel, atol=rel * max(scale, 1e-6),
                               msg=lambda m: f"{name}: {m}")


def kernel_device():
    """Where the 'gpu' backend runs in this test session: CUDA if asked for, else the interpreter on CPU."""
    import os
    return "cuda" if os.environ.get("SRU_TEST_CUDA") == "1" else "cpu"
