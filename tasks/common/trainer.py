"""The training loop every table shares: a task supplies what is its own, `fit` does the rest.

A task is an object with:
    name                 its package under tasks/ ("lm_ptb"); checkpoints rebuild its model with
                         tasks.<name>.model.build_model(config, model_args)
    metric, mode         the evaluate() key that picks the best checkpoint, and "min" or "max"
    eval_split           the split evaluated after every epoch ("valid", "dev")
    test_split           the split evaluated once with the best weights (None: none)
    count_name           what step() counts ("tokens", "examples"): throughput is per second of it
    vocab, model_args    plain containers stored in every checkpoint
    build_model()                    -> nn.Module (called right after seeding)
    train_batches(epoch, ctx)        -> a list of this rank's batches for the epoch
    step(model, batch, carry)        -> (mean loss over `count` items, count, carry); carry is
                                        state kept across steps (TBPTT), None at epoch start
    evaluate(model, split, ctx)      -> {metric: value} (model in eval mode, no grad, autocast as
                                        in training); ctx.all_reduce sums this rank's shard
    train_metrics(mean_loss)         -> the epoch's training metrics, e.g. {"train_ppl": ...}
    objective_scale(batch)           -> optional: the loss that is optimised is step()'s mean loss
                                        times this (e.g. summed over time steps); reporting stays
                                        per item
    summary(history)                 -> optional: extra result.json keys from the epochs' entries

`fit` owns seeding and resumable RNG state, the optimiser and LR schedule, gradient clipping,
mixed precision (`precision=bf16|fp16` autocast), the non-finite-loss stop, early stopping
(`patience`), training seconds per epoch (evaluation excluded), throughput, progress, W&B, DDP
and the checkpoints: out_dir/last.pt every epoch (atomic; `resume=true` continues from it) and
out_dir/best.pt (see tasks.common.checkpoint), then out_dir/result.json.

Several processes (torchrun, SLURM): each rank trains on its shard of every global batch and
DDP averages gradients; the loss is weighted by each rank's share of the global count, so the
update is the one a single process makes on the whole batch. Batch order comes from an RNG
stream every rank shares; dropout from one per rank and epoch.
"""
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel

from sru import gemm
from tasks.common import checkpoint, contention, distributed
from tasks.common.errors import check_finite
from tasks.common.provenance import git_commit, machine_name, write_json_atomic
from tasks.common.runtime import seed_everything
from tasks.common.schedule import decayed_lr, plateau_decay_start
from tasks.common.wandb_logger import Logger

OPTIMIZERS = dict(sgd=torch.optim.SGD, adam=torch.optim.Adam, adamax=torch.optim.Adamax, adamw=torch.optim.AdamW)
PRECISIONS = dict(fp32=None, bf16=torch.bfloat16, fp16=torch.float16)


def trainer_checks(cfg):
    """Config checks for the keys the trainer reads (same names in every task)."""
    o = cfg.optim
    return [("optim.name", o.name in OPTIMIZERS, f"one of {sorted(OPTIMIZERS)}"),
            ("optim.lr", o.lr > 0, "> 0"),
            ("optim.weight_decay", o.weight_decay >= 0, ">= 0"),
            ("optim.clip", o.clip is None or o.clip > 0, "null (no clipping) or > 0"),
            ("optim.lr_decay", 0 < o.lr_decay <= 1, "in (0, 1]"),
            ("optim.decay_start", o.decay_start >= 0, ">= 0 (the last epoch at the full lr)"),
            ("optim.decay_on_plateau", isinstance(o.get("decay_on_plateau", False), bool), "true or false"),
            ("precision", cfg.precision in PRECISIONS, f"one of {sorted(PRECISIONS)}"),
            ("tf32", isinstance(cfg.get("tf32", False), bool), "true or false (TF32 for CUDA matmuls and cuDNN)"),
            ("onednn_linear", cfg.get("onednn_linear", "auto") in ("auto", True, False),
             "auto, true or false (nn.Linear on oneDNN in CPU runs)"),
            ("patience", cfg.patience is None or cfg.patience >= 1, "null (no early stopping) or >= 1"),
            ("profile.epochs", cfg.profile.epochs >= 1, ">= 1")]


class Run:
    """Rank-0-only output: a line to stdout and out_dir/train.log (created on first use)."""

    def __init__(self, out_dir, ctx):
        self.out_dir, self.ctx = Path(out_dir), ctx

    def say(self, msg):
        if self.ctx.is_main:
            print(msg, flush=True)
            self.out_dir.mkdir(parents=True, exist_ok=True)
            with open(self.out_dir / "train.log", "a") as f:
                f.write(msg + "\n")


def route_linear_layers(model, setting, device):
    """`onednn_linear`: put the model's nn.Linear layers on oneDNN's exact fp32 GEMM (sru.gemm) for a
    CPU run. Returns what result.json records: None on a GPU, else which GEMMs run where."""
    if device.type != "cpu":
        return None
    if setting is True and gemm.cpu_route() != "onednn":
        raise ValueError("onednn_linear=true, but sru.gemm does not take oneDNN here (SRU_CPU_GEMM=mkl, or no "
                         "usable oneDNN in this PyTorch build); use onednn_linear=auto or false")
    routed = gemm.use_onednn_linear(model) if setting is not False and gemm.cpu_route() == "onednn" else 0
    return f"SRU: {gemm.describe()}; nn.Linear: {gemm.describe() if routed else 'PyTorch default'} ({routed} layers)"


def _fmt(v):
    if not isinstance(v, (int, float)):
        return str(v)
    return f"{v:.2f}" if abs(v) >= 100 else f"{v:.4g}"


def _rank_seed(seed, epoch, rank):
    return int(np.random.SeedSequence([seed, epoch, rank]).generate_state(1)[0])


def fit(task, cfg, out_dir, ctx, seed, name, group, tags):
    """Train `task` for cfg.profile.epochs (or until early stopping), evaluate the best weights on
    the test split, write out_dir/result.json and return it."""
    out_dir, run = Path(out_dir), Run(out_dir, ctx)
    device, epochs = ctx.device, cfg.profile.epochs
    tf32 = bool(cfg.get("tf32", False))  # one switch for both, so LSTM (cuDNN) and SRU (matmul) GEMMs match
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = tf32
    seed_everything(seed, deterministic=cfg.deterministic)
    model = task.build_model().to(device)
    linear_route = route_linear_layers(model, cfg.get("onednn_linear", "auto"), device)
    trainable = [p for p in model.parameters() if p.requires_grad]
    params = sum(p.numel() for p in trainable)
    decoupled_wd = cfg.optim.get("decoupled_weight_decay", False) and cfg.optim.weight_decay > 0
    opt = OPTIMIZERS[cfg.optim.name](trainable, lr=cfg.optim.lr,
                                     weight_decay=0.0 if decoupled_wd else cfg.optim.weight_decay)
    amp_dtype = PRECISIONS[cfg.precision]
    scaler = torch.amp.GradScaler(device.type, enabled=cfg.precision == "fp16")
    train_model = model
    if ctx.distributed:
        train_model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    last_path, best_path = out_dir / "last.pt", out_dir / "best.pt"
    state = dict(epoch=0, best=None, best_epoch=0, bad_epochs=0, stopped=False, history=[], wall=0.0,
                 decay_start=cfg.optim.decay_start, elapsed=0.0)  # elapsed: training + evaluation seconds
    if cfg.resume and last_path.exists():
        ckpt = checkpoint.load(last_path)
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optim"])
        scaler.load_state_dict(ckpt["scaler"])
        checkpoint.set_rng_state(ckpt["rng"])
        state = dict(state, **ckpt["trainer"])  # keys a checkpoint from before they existed lacks keep their start
        run.say(f"{name}: resumed from {last_path} after epoch {state['epoch']}")
    elif last_path.exists():
        run.say(f"{name}: {last_path} exists; starting over (resume=true would continue it)")
    shared_rng = checkpoint.rng_state()  # the batch-order stream, identical on every rank

    def save(path, **extra):
        if ctx.is_main:
            checkpoint.save(path, task.name, model, cfg, task.vocab, task.model_args, epoch=state["epoch"],
                            metrics=state["history"][-1] if state["history"] else {}, **extra)

    def autocast():
        return torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None)

    def evaluate(split):
        model.eval()
        with torch.no_grad(), autocast():
            return task.evaluate(model, split, ctx)

    better = (lambda a, b: a < b) if task.mode == "min" else (lambda a, b: a > b)
    logger = Logger(cfg.logger if ctx.is_main else "none", checkpoint.to_plain(cfg), out_dir, group=group,
                    tags=tags, name=name)
    logger.summary(params=params, world_size=ctx.world_size)
    run.say(f"{name}: {params:,} trainable parameters, device {device} x {ctx.world_size}, "
            f"precision {cfg.precision}{', TF32' if tf32 else ''}, {epochs} epochs")
    busy = contention.busy_now() if device.type == "cpu" and ctx.is_main else None
    if busy is not None and busy > contention.CONTENDED:
        run.say(f"warning: other processes are using {busy:.0%} of this machine's CPU: epoch times will be slower "
                f"than on a quiet machine and are flagged in result.json (other_cpu per epoch)")
    for epoch in range(state["epoch"] + 1, epochs + 1):
        if state["stopped"]:
            break
        lr = decayed_lr(cfg.optim.lr, cfg.optim.lr_decay, state["decay_start"], epoch)
        for g in opt.param_groups:
            g["lr"] = lr
        train_model.train()
        if ctx.distributed:  # batch order from the shared stream, dropout from this rank's own
            checkpoint.set_rng_state(shared_rng)
        batches = task.train_batches(epoch, ctx)
        if ctx.distributed:
            shared_rng = checkpoint.rng_state()
            torch.manual_seed(_rank_seed(seed, epoch, ctx.rank))
        t0, loss_sum, counted, carry = time.perf_counter(), 0.0, 0, None
        cpu0 = contention.snapshot()
        bar = ctx.progress(total=len(batches), desc=f"{name} epoch {epoch}/{epochs}")
        for i, batch in enumerate(batches):
            with autocast():
                loss, count, carry = task.step(train_model, batch, carry)
            if ctx.distributed:  # the global mean: weight each rank's mean by its share of the count
                sums = ctx.all_reduce(dict(count=count, loss=loss.item() * count))
                value = sums["loss"] / sums["count"]
                loss = loss * (count * ctx.world_size / sums["count"])  # DDP then averages over ranks
                count = int(sums["count"])
            else:
                value = loss.item()  # one device sync per step
            check_finite(value, f"{name} epoch {epoch}, step {i}")
            opt.zero_grad(set_to_none=True)
            if hasattr(task, "objective_scale"):
                loss = loss * task.objective_scale(batch)
            scaler.scale(loss).backward()
            if cfg.optim.clip:
                scaler.unscale_(opt)
                torch.nn.utils.clip_grad_norm_(trainable, cfg.optim.clip)
            if decoupled_wd:  # p <- p (1 - wd), then the step (the authors' PTB script): no lr factor
                with torch.no_grad():
                    for p in trainable:
                        p.mul_(1.0 - cfg.optim.weight_decay)
            scaler.step(opt)
            scaler.update()
            loss_sum += value * count  # the epoch's loss: weighted by tokens / utterances / examples
            counted += count
            bar.update(1)
            bar.set_postfix(loss=f"{value:.4g}", refresh=False)
        seconds = time.perf_counter() - t0
        other = contention.other_cpu(cpu0, contention.snapshot())
        bar.close()
        state["wall"] += seconds
        metrics = evaluate(task.eval_split)
        entry = dict(epoch=epoch, **task.train_metrics(loss_sum / max(counted, 1)), **metrics,
                     seconds=seconds, wall=state["wall"], lr=lr, **{f"{task.count_name}_per_s": counted / seconds},
                     other_cpu=other)
        if cfg.optim.get("decay_on_plateau", False):
            previous = state["history"][-1][task.metric] if state["history"] else None
            state["decay_start"] = plateau_decay_start(state["decay_start"], epoch, metrics[task.metric], previous,
                                                       task.mode)
        state["history"].append(entry)
        state["epoch"] = epoch
        state["elapsed"] += time.perf_counter() - t0
        if state["best"] is None or better(metrics[task.metric], state["best"]):
            state.update(best=metrics[task.metric], best_epoch=epoch, bad_epochs=0)
            save(best_path)
        else:
            state["bad_epochs"] += 1
        state["stopped"] = cfg.patience is not None and state["bad_epochs"] >= cfg.patience
        save(last_path, optim=opt.state_dict(), scaler=scaler.state_dict(),
             rng=shared_rng if ctx.distributed else checkpoint.rng_state(), trainer=state)
        ctx.barrier()
        shown = " | ".join(f"{k} {_fmt(v)}" for k, v in entry.items() if k not in ("epoch", "wall"))
        run.say(f"{name} epoch {epoch:3d} | {shown} | best {task.metric} {_fmt(state['best'])} "
                f"(epoch {state['best_epoch']})")
        logger.log(dict(entry, **{f"best_{task.metric}": state["best"]}), step=epoch)
        if state["stopped"]:
            run.say(f"{name}: early stop, {cfg.patience} epochs without a better {task.metric}")

    final = {task.metric: state["best"]}
    if task.test_split:
        model.load_state_dict(checkpoint.load(best_path)["model"])
        run.say(f"{name}: evaluating the best weights (epoch {state['best_epoch']}) on {task.test_split}")
        final.update(evaluate(task.test_split))
    m = cfg.model
    result = dict(task=task.name, model=m.kind, layers=m.get("layers"), hidden=task.model_args.get("hidden"),
                  params=params, **final, best_epoch=state["best_epoch"], seed=seed, lr=cfg.optim.lr,
                  sec_per_epoch=statistics.median(e["seconds"] for e in state["history"]),
                  epochs=len(state["history"]), stopped_early=state["stopped"], profile=cfg.profile.name,
                  wall_s=round(state["elapsed"], 1), contended_epochs=contention.contended_epochs(state["history"]),
                  precision=cfg.precision, tf32=tf32, cpu_gemm=linear_route,
                  commit=git_commit(), device=str(device), machine=machine_name(device), world_size=ctx.world_size, run_name=name,
                  history=state["history"])
    if hasattr(task, "summary"):
        result.update(task.summary(state["history"]))
    if ctx.is_main:
        write_json_atomic(result, out_dir / "result.json")
    logger.summary(**final, best_epoch=state["best_epoch"])
    logger.finish()
    run.say(f"{name}: " + ", ".join(f"{k} {_fmt(v)}" for k, v in final.items()) + f" -> {out_dir}/result.json")
    return result


def entry_point(task, validate_config, make_task):
    """(train, main) of a single-task module: train(cfg) runs it (see `run`); main() is its Hydra
    command line over configs/<task>/config.yaml, bad input ending in one clear line."""
    import functools

    import hydra

    from tasks.common.errors import exit_on_user_error
    train = functools.partial(run, validate_config=validate_config, make_task=make_task)
    configs = Path(__file__).resolve().parents[2] / "configs" / task

    @hydra.main(config_path=str(configs), config_name="config", version_base="1.3")
    def main(cfg):
        exit_on_user_error(train, cfg)
    return train, main


def run(cfg, validate_config, make_task):
    """A single-task entry point's train(cfg): join the run (DDP when launched so), check the config
    (validate_config(cfg, world_size)), build the task (make_task(cfg, ctx)) and fit it, grouped in
    W&B by the table and tagged by model, depth and profile."""
    ctx = distributed.init(cfg.device)
    try:
        validate_config(cfg, ctx.world_size)
        task, m = make_task(cfg, ctx), cfg.model
        return fit(task, cfg, cfg.out_dir, ctx, cfg.seed, cfg.run_name, group=cfg.table,
                   tags=[m.kind, f"{m.layers}-layers", cfg.profile.name])
    finally:
        distributed.shutdown()
