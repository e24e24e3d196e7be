"""The Triton kernels compile for real GPUs (sm_80, sm_90) with the installed triton, no GPU needed:
no spills, and the time loops software-pipelined (async copies in the compiled TTGIR). Run as the
command line (`python -m sru.compile_check`) in a process without TRITON_INTERPRET, which the tests set."""
import json
import os
import subprocess
import sys

from helpers import ROOT


def compile_check(*args):
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    return subprocess.run([sys.executable, "-m", "sru.compile_check", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)


def test_kernels_compile_for_sm80_and_sm90_pipelined_without_spills(tmp_path):
    proc = compile_check("--arch", "80,90", "--quick", "--json", str(tmp_path / "c.json"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = json.loads((tmp_path / "c.json").read_text())["rows"]
    assert len(rows) == 2 * 2 * 2   # archs x variants x (forward, backward)
    for r in rows:
        assert r["registers"] > 0 and r["spill_bytes"] == 0, r
        assert r["async_copies"] > 0, f"not pipelined: {r}"          # cp.async loads ahead of the step
        assert r["shared_bytes"] > 0, r                               # their staging buffers


def test_compile_failure_exits_nonzero_and_says_what_failed(monkeypatch, capsys):
    from sru import compile_check as cc

    def broken(*a, **k):
        raise RuntimeError("ptxas fatal: this kernel cannot be compiled")
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    monkeypatch.setattr(cc, "compile_one", broken)
    assert cc.main(["--arch", "90", "--quick"]) == 1
    assert "ptxas fatal" in capsys.readouterr().err
