import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
MIRROR = Path(os.environ.get("SRU_DATA_MIRROR", ROOT.parent / "shared" / "data"))


def mirror_has(folder):
    """skipif marker: the test needs this folder of the data mirror."""
    return pytest.mark.skipif(not (MIRROR / folder).exists(), reason=f"no {folder} in the data mirror {MIRROR}")


def run_module(module, *args, timeout=600):
    """A task's real command-line entry point, in a subprocess, offline, data from the mirror."""
    env = dict(os.environ, SRU_DATA_MIRROR=str(MIRROR), WANDB_MODE="offline")
    return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


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
