"""The shared trainer: DDP equals one process, safe self-contained checkpoints, early stopping,
Hydra launchers, and a failing table cell reported once."""
import json

import pytest
import torch
from omegaconf import OmegaConf

from tasks.common.checkpoint import CheckpointError, load, load_model, save_atomic
from tasks.common.distributed import Context
from helpers import ROOT, mirror_has, result_of, run_module

needs_ptb = mirror_has("ptb")
needs_mr = mirror_has("classification")
needs_squad = mirror_has("squad")
needs_multi30k = mirror_has("multi30k")
TINY = {"lm_ptb": ["profile=smoke", "profile.max_lines=200", "model.dropout=0", "model.rnn_dropout=0"],
        "classification": ["profile=smoke", "profile.max_examples=300", "profile.runs=1", "model.dropout=0"],
        "squad": ["profile=smoke", "profile.max_train_questions=64", "profile.max_dev_questions=32", "model.dropout=0",
                  "model.rnn_dropout=0", "model.embed_dropout=0"],
        "nmt": ["profile=smoke", "profile.max_train_pairs=200", "profile.max_eval_pairs=8", "decode.beam=1",
                "model.dropout=0", "model.layers=1"]}


def train(tmp_path, task, name, *overrides, launcher=()):
    proc = run_module(f"tasks.{task}.train", *TINY[task], "logger=none", "device=cpu", f"out_dir={tmp_path / name}",
                      f"data_dir={tmp_path / 'data'}", *overrides, launcher=launcher)
    return result_of(proc, tmp_path / name / "result.json")


def weights(path):
    return torch.load(path, weights_only=True)["model"]


# task: (checkpoint, epochs, the selection metric and its tolerance, weights' atol, weights left out,
#        the file rank 0 writes from every rank's shard and how many entries it must hold)
# SQuAD: Adamax's update is ~lr whatever the gradient's size, so summation-order noise shows at ~1e-6;
# the self-attention bias has a zero gradient in exact arithmetic (softmax ignores a shift): pure noise.
DDP = {"lm_ptb": ("last.pt", 2, "valid_ppl", dict(rel=1e-4), 1e-6, set(), None),
       "classification": ("run0/last.pt", 2, "acc_mean", dict(rel=1e-4), 1e-6, set(), None),
       "squad": ("last.pt", 1, "dev_f1", dict(abs=1e-6), 1e-5, {"question_attention.bias"},
                 ("predictions_dev.json", 32)),
       "nmt": ("last.pt", 1, None, None, 1e-6, set(), None)}


@pytest.mark.parametrize("task", [pytest.param("lm_ptb", marks=needs_ptb), pytest.param("classification", marks=needs_mr),
                                  pytest.param("squad", marks=needs_squad), pytest.param("nmt", marks=needs_multi30k)])
def test_two_process_ddp_ends_with_the_parameters_of_one_process(tmp_path, task):
    """gloo, 2 ranks x half the global batch vs 1 rank x the whole batch: the same updates. Dropout is
    off (ranks draw their own masks); classification's last batch is uneven (loss weighting); the
    translation loss is normalised by the global batch's sentences on every rank."""
    last, epochs, metric, tolerance, atol, left_out, gathered = DDP[task]
    one = train(tmp_path, task, "one", f"profile.epochs={epochs}")
    two = train(tmp_path, task, "two", f"profile.epochs={epochs}",
                launcher=["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"])
    assert one["world_size"] == 1 and two["world_size"] == 2
    history = one.get("history") or []
    assert "contended_epochs" in one and all("other_cpu" in e for e in history), "the epochs' CPU contention"
    a, b = weights(tmp_path / "one" / last), weights(tmp_path / "two" / last)
    assert a.keys() == b.keys()
    for key in set(a) - left_out:
        torch.testing.assert_close(b[key], a[key], rtol=1e-4, atol=atol, msg=lambda m: f"{task} {key}: {m}")
    if metric:
        assert two[metric] == pytest.approx(one[metric], **tolerance)
    if gathered:
        name, count = gathered
        assert len(json.loads((tmp_path / "two" / name).read_text())) == count


def schedule(task, valid, **override):
    """Per-epoch lr of a task's configured optimiser over validation metrics `valid` (one per epoch),
    computed as tasks.common.trainer.fit does (lr before the epoch, the plateau rule after it)."""
    from tasks.common.schedule import decayed_lr, plateau_decay_start
    o = OmegaConf.merge(OmegaConf.load("configs/common/base.yaml").optim, OmegaConf.load(f"configs/{task}/config.yaml").optim,
                        override)
    start, previous, lrs = o.decay_start, None, []
    for epoch, value in enumerate(valid, 1):
        lrs.append(decayed_lr(o.lr, o.lr_decay, start, epoch))
        if o.decay_on_plateau:
            start = plateau_decay_start(start, epoch, value, previous, "min")
        previous = value
    return lrs


def test_lr_schedules_are_opennmts_for_table4_and_the_authors_for_table3():
    """OpenNMT-py 649322cc: updateLearningRate after each epoch halves once epoch >= 8 (epochs 1-8 at 1,
    9 at 0.5, 13 at 1/32) or, for good, once valid ppl rises. train_lm.py@147847f: x 0.98 before 0-based
    epoch >= 175, i.e. 1-based 176 is the first decayed epoch; no plateau rule."""
    improving = [100.0 - e for e in range(13)]
    assert schedule("nmt", improving) == [1.0] * 8 + [0.5, 0.25, 0.125, 1 / 16, 1 / 32]
    rises_at_5 = [50, 40, 30, 20, 25, 15, 10, 9, 8, 7, 6, 5, 4]
    assert schedule("nmt", rises_at_5) == [1.0] * 5 + [0.5 ** k for k in range(1, 9)]
    assert schedule("nmt", rises_at_5, decay_on_plateau=False) == schedule("nmt", improving)
    ptb = schedule("lm_ptb", [100.0 + e for e in range(178)])     # rising valid ppl: no plateau rule here
    assert ptb[:175] == [1.0] * 175 and ptb[175] == pytest.approx(0.98) and ptb[177] == pytest.approx(0.98 ** 3)


class RunsCode:
    def __reduce__(self):
        return (print, ("this checkpoint ran code",))


@needs_ptb
def test_best_checkpoint_is_self_contained_safe_and_reproduces_the_test_metric(tmp_path):
    from tasks.lm_ptb.train import LanguageModelTask
    result = train(tmp_path, "lm_ptb", "run", "profile.epochs=1")
    for name in ("best.pt", "last.pt"):
        torch.load(tmp_path / "run" / name, weights_only=True)  # plain containers and tensors only
    model, ckpt = load_model(tmp_path / "run" / "best.pt")
    assert ckpt["task"] == "lm_ptb" and len(ckpt["vocab"]["words"]) == 10000 and not model.training
    config = OmegaConf.create(ckpt["config"])                  # no training config needed
    assert config.model.kind == "sru" and config.profile.max_lines == 200
    task = LanguageModelTask(config, Context())
    with torch.no_grad():
        again = task.evaluate(model, "test", Context())["test_ppl"]
    assert again == pytest.approx(result["test_ppl"], rel=1e-9)

    torch.save({"format": "sru-repro-checkpoint/1", "x": RunsCode()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="carries code"):
        load(tmp_path / "evil.pt")
    save_atomic(model.state_dict(), tmp_path / "bare.pt")
    with pytest.raises(CheckpointError, match="bare state_dict"):
        load(tmp_path / "bare.pt")
    with pytest.raises(CheckpointError, match="no checkpoint"):
        load(tmp_path / "missing.pt")


@needs_mr
def test_early_stopping_after_patience_epochs_without_improvement(tmp_path):
    # lr ~ 0: the dev accuracy cannot improve after epoch 1, so patience=1 stops after epoch 2
    result = train(tmp_path, "classification", "stop", "profile.epochs=6", "patience=1", "optim.lr=1e-12")
    assert result["epochs"] == 2 and result["stopped_early"]
    run = json.loads((tmp_path / "stop" / "run0" / "result.json").read_text())
    assert run["epochs"] == 2 and run["stopped_early"] and run["best_epoch"] == 1
    resumed = train(tmp_path, "classification", "stop", "profile.epochs=6", "patience=1", "optim.lr=1e-12",
                    "resume=true")                             # a stopped run stays stopped
    assert resumed["histories"][0] == result["histories"][0]


@needs_ptb
def test_multirun_through_the_submitit_local_launcher_writes_every_job(tmp_path):
    proc = run_module("tasks.lm_ptb.train", "-m", "hydra/launcher=local", "model.layers=1,2", *TINY["lm_ptb"],
                      "profile.epochs=1", "logger=none", f"data_dir={tmp_path / 'data'}",
                      f"hydra.sweep.dir={tmp_path / 'sweep'}", f"out_dir={tmp_path / 'sweep'}/${{run_name}}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    for layers in (1, 2):
        result = result_of(proc, tmp_path / "sweep" / f"sru-{layers}x910-smoke" / "result.json")
        assert result["layers"] == layers
    assert list((tmp_path / "sweep" / ".submitit").iterdir())   # the jobs ran under submitit


def test_slurm_launcher_config_composes():
    proc = run_module("tasks.lm_ptb.train", "hydra/launcher=slurm", "hydra.launcher.partition=gpu",
                      "hydra.launcher.gpus_per_node=4", "--cfg", "hydra")
    assert proc.returncode == 0, proc.stderr[-3000:]
    launcher = OmegaConf.create(proc.stdout).hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher") and launcher.partition == "gpu"
    assert launcher.gpus_per_node == launcher.tasks_per_node == 4   # one DDP process per GPU


@needs_ptb
def test_a_failing_table_cell_prints_its_error_once_and_no_traceback(tmp_path):
    proc = run_module("tasks.lm_ptb.table", "--profile", "smoke", "--out", str(tmp_path / "res"), "--outputs",
                      str(tmp_path / "out"), "model.layers=0", "logger=none")
    assert proc.returncode != 0
    assert proc.stderr.count("bad config value model.layers") == 1 and "this cell failed" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "res" / "table3.md").exists()


@pytest.mark.parametrize("task", ["classification", "lm_ptb", "nmt", "speech", "squad"])
def test_collecting_a_table_with_no_finished_row_names_the_command_that_trains_them(tmp_path, task):
    proc = run_module(f"tasks.{task}.table", "--profile", "smoke", "--collect-only", "--publish", "--publish-dir",
                      str(tmp_path / "published"), "--outputs", str(tmp_path / "empty"))
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert f"run them first (python -m tasks.{task}.table --profile smoke)" in proc.stderr, proc.stderr


@pytest.mark.parametrize("task", sorted(p.parent.parent.name for p in (ROOT / "configs").glob("*/profile/cpu.yaml")))
def test_cpu_profile_composes_and_passes_the_config_checks(task):
    """Every task with a CPU-budget profile composes with it and its checks accept it (the run itself is
    never a test: it takes hours)."""
    import importlib

    from hydra import compose, initialize_config_dir
    with initialize_config_dir(config_dir=str(ROOT / "configs" / task), version_base="1.3"):
        cfg = compose("config", overrides=["profile=cpu"])
    assert cfg.profile.name == "cpu"
    importlib.import_module(f"tasks.{task}.train").validate_config(cfg)


TABLE_TASKS = ["classification", "squad", "lm_ptb", "nmt", "speech"]


@pytest.mark.parametrize("task", TABLE_TASKS)
def test_every_row_of_every_table_becomes_a_run_its_task_accepts(task):
    """Rows are given one way (tasks/common/table.py): at every profile, each row's overrides compose into a
    config of the task's entry point that its checks accept, whose run name is the directory the table collects
    (the config's own run name too, for a row with no optional keys), and whose keys carry the row's values."""
    import importlib
    from types import SimpleNamespace

    from hydra import compose, initialize_config_dir
    table = importlib.import_module(f"tasks.{task}.table").TABLE
    train = importlib.import_module(f"tasks.{task}.train")
    profiles = sorted(p.stem for p in (ROOT / "configs" / task / "profile").glob("*.yaml"))
    with initialize_config_dir(config_dir=str(ROOT / "configs" / task), version_base="1.3"):
        for profile in profiles:
            args = SimpleNamespace(profile=profile, publish=False, datasets=None)
            rows = table.rows(args, False) if table.rows else table.profile_rows(profile)
            assert rows, (task, profile)
            for row in rows:
                overrides = table.overrides_of(row, profile, table.data)
                cfg = compose("config", overrides=overrides)
                train.validate_config(cfg)
                name = table.run_name(row, profile, table.data)
                assert cfg.run_name == name and cfg.profile.name == profile
                plain = compose("config", overrides=[o for o in overrides if not o.startswith("run_name=")])
                if not any(k in row for k in ("seed", "lr", "forget_bias")):
                    assert plain.run_name == name, (plain.run_name, name)
                for key, target in table.overrides.items():
                    value = row.get(key)
                    value = value.get(profile) if isinstance(value, dict) else value
                    if value is not None and not target.startswith("+"):
                        assert OmegaConf.select(cfg, target if target != "model" else "model.kind") == value, target


def test_contention_is_measured_and_flagged():
    """other_cpu: what other processes used of the machine's CPU over an interval; a busy epoch is named, and a
    table row with one gets a note."""
    import os
    import time
    from tasks.common import contention
    before = (0.0, 100.0, 10.0)
    after = (2.0, 103.0, 11.0)            # 3 busy CPU-seconds in 2 s, 1 of them ours, on 2 cores
    assert contention.other_cpu(before, after, cores=2) == 0.5
    assert contention.other_cpu((0.0, None, 0.0), after, cores=2) is None
    history = [dict(epoch=1, other_cpu=0.02), dict(epoch=2, other_cpu=0.6), dict(epoch=3, other_cpu=None)]
    assert contention.contended_epochs(history) == [2]
    note = contention.contention_note([dict(run_name="sru-x", epochs=3, contended_epochs=[2]), dict(run_name="y")])
    assert "CONTENDED TIMINGS" in note and "sru-x (1 of 3 epochs)" in note and "y" not in note.split("of ")[-1]
    if os.path.exists("/proc/stat"):  # a real interval: our own busy loop is not "other"
        start = contention.snapshot()
        end_t = time.perf_counter() + 0.3
        while time.perf_counter() < end_t:
            pass
        share = contention.other_cpu(start, contention.snapshot())
        assert share is not None and 0.0 <= share <= 1.0
