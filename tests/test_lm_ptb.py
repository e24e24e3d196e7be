"""Table 3's harness: verified data, the smoke rows through the real entry point, resume, bad config."""
import gzip
import shutil

import pytest

from tasks.common.data import MANIFEST, DataError, ensure_dataset
from tasks.common.errors import NonFiniteLoss, check_finite
from helpers import MIRROR, check_dashboard_keys, mirror_has, result_of, run_module

needs_ptb = mirror_has("ptb")


@mirror_has("ptb")
def test_fetch_from_mirror_verifies_and_rejects_corruption(tmp_path):
    paths = ensure_dataset("ptb", tmp_path / "data", mirror=MIRROR, log=lambda *_: None)
    assert sorted(paths) == ["ptb.test.txt", "ptb.train.txt", "ptb.valid.txt"]
    # a corrupted copy already in the data dir is refused, naming the file and the expected hash
    target = paths["ptb.valid.txt"]
    target.write_bytes(target.read_bytes()[:-10] + b"corrupted!")
    with pytest.raises(DataError) as info:
        ensure_dataset("ptb", tmp_path / "data", mirror=MIRROR, log=lambda *_: None)
    entry = next(e for e in MANIFEST["ptb"]["files"] if e["path"].endswith("valid.txt"))
    assert "ptb.valid.txt" in str(info.value) and entry["sha256"] in str(info.value)
    # a corrupted mirror is refused too, and nothing half-written is left behind
    bad_mirror = tmp_path / "mirror"
    shutil.copytree(MIRROR / "ptb", bad_mirror / "ptb")
    with gzip.open(bad_mirror / "ptb" / "ptb.test.txt.gz", "wb") as f:
        f.write(b" not the real test set\n")
    with pytest.raises(DataError, match="expected sha256"):
        ensure_dataset("ptb", tmp_path / "fresh", mirror=bad_mirror, log=lambda *_: None)
    assert not (tmp_path / "fresh" / "ptb" / "ptb.test.txt").exists()
    with pytest.raises(DataError, match="not found in the mirror"):
        ensure_dataset("ptb", tmp_path / "other", mirror=tmp_path / "empty", log=lambda *_: None)


def train(tmp_path, name, *overrides, check=True):
    proc = run_module("tasks.lm_ptb.train", "profile=smoke", "profile.max_lines=300", "profile.epochs=2",
                      f"out_dir={tmp_path / name}", f"data_dir={tmp_path / 'data'}", *overrides)
    return result_of(proc, tmp_path / name / "result.json") if check else proc


@needs_ptb
@pytest.mark.parametrize("model", ["sru", "lstm"])
def test_smoke_row_through_the_entry_point(tmp_path, model):
    proc = train(tmp_path, model, f"model={model}", "logger=wandb", check=False)
    result = result_of(proc, tmp_path / model / "result.json")
    for key in ("task", "model", "layers", "hidden", "params", "valid_ppl", "test_ppl", "sec_per_epoch", "epochs",
                "profile", "commit", "device", "world_size", "history"):
        assert key in result
    assert result["task"] == "lm_ptb" and result["world_size"] == 1
    assert result["model"] == model and result["profile"] == "smoke" and result["epochs"] == 2
    assert 1 < result["test_ppl"] < 10000  # it learned something: uniform over 10k words is 10000
    from sru import gemm
    if gemm.cpu_route() == "onednn":  # onednn_linear=auto: the decoder (softmax) layer is routed, and says so
        assert "nn.Linear: oneDNN" in result["cpu_gemm"] and "(1 layers)" in result["cpu_gemm"], result["cpu_gemm"]
    assert list((tmp_path / model / "wandb").glob("offline-run-*")), "no offline W&B run was written"
    check_dashboard_keys(tmp_path / model, "table3")   # the W&B view reads only keys this run logged
    assert "\r" not in proc.stderr       # not a terminal: progress as plain lines, no carriage returns
    assert "epoch   2 |" in (tmp_path / model / "train.log").read_text()


@needs_ptb
def test_bf16_autocast_run_through_the_entry_point(tmp_path):
    result = train(tmp_path, "bf16", "model=sru", "logger=none", "precision=bf16", "profile.epochs=1")
    assert result["precision"] == "bf16" and 1 < result["test_ppl"] < 20000


@needs_ptb
def test_resume_after_a_stop_reaches_the_same_result(tmp_path):
    whole = train(tmp_path, "whole", "logger=none")
    train(tmp_path, "split", "logger=none", "profile.epochs=1")  # stopped after epoch 1
    resumed = train(tmp_path, "split", "logger=none", "resume=true")
    assert resumed["epochs"] == 2
    assert resumed["valid_ppl"] == whole["valid_ppl"] and resumed["test_ppl"] == whole["test_ppl"]


@needs_ptb
@pytest.mark.parametrize("override, message", [
    ("model.layers=0", "bad config value model.layers=0: expected >= 1"),
    ("model.dropout=-0.1", "bad config value model.dropout=-0.1: expected in [0, 1)"),
    ("model.kind=gru", "bad config value model.kind='gru': expected one of ('lstm', 'sru')"),
    ("precision=fp8", "bad config value precision='fp8'"),
    ("onednn_linear=sometimes", "bad config value onednn_linear='sometimes'"),
    ("optim.name=lbfgs", "bad config value optim.name='lbfgs'"),
    ("model=gru", "Could not find 'model/gru'"),             # an unknown config option: Hydra's own check
])
def test_bad_config_fails_fast_naming_the_key(tmp_path, override, message):
    proc = train(tmp_path, "bad", override, "logger=none", check=False)
    assert proc.returncode != 0 and message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert not (tmp_path / "bad" / "train.log").exists()     # a failed start leaves no empty log


def test_non_finite_loss_stops_with_a_message():
    check_finite(2.5, "step 1")
    with pytest.raises(NonFiniteLoss, match="last good checkpoint"):
        check_finite(float("nan"), "epoch 3, step 7")


def test_checkpoint_write_is_atomic(tmp_path):
    import torch

    from tasks.common.checkpoint import save_atomic

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("killed mid-write")

    path = tmp_path / "checkpoint.pt"
    save_atomic({"epoch": 1}, path)
    with pytest.raises(RuntimeError, match="killed mid-write"):
        save_atomic({"epoch": 2, "boom": Unpicklable()}, path)
    assert torch.load(path) == {"epoch": 1}          # the old checkpoint survives intact
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]  # no temp files left


def test_paper_lr_schedule():
    from tasks.common.schedule import decayed_lr
    assert decayed_lr(1.0, 0.98, 175, 1) == 1.0 and decayed_lr(1.0, 0.98, 175, 175) == 1.0
    assert decayed_lr(1.0, 0.98, 175, 177) == pytest.approx(0.98 ** 2)


def test_table3_runs_the_rows_of_its_profile(monkeypatch, tmp_path):
    """profile=cpu takes the two rows the paper's claim rests on; the other profiles every row."""
    from tasks.common import table as skeleton
    from tasks.lm_ptb import table
    runs = {}
    monkeypatch.setattr(skeleton, "run_table", lambda args, stem, module, rows, *a, **k: runs.update(
        {args.profile: [name for name, _ in rows]}))
    for profile in ("cpu", "smoke"):
        table.TABLE.main(["--profile", profile, "--outputs", str(tmp_path)])
    assert runs["cpu"] == ["lstm-2x950-cpu", "sru-6x910-cpu"]
    assert runs["smoke"] == ["lstm-2x950-smoke", "sru-3x1180-smoke", "sru-4x1060-smoke", "sru-5x980-smoke",
                             "sru-6x910-smoke"]
