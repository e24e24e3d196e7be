"""Train one Table 1 cell: python -m tasks.classification.train dataset=mr model=sru [profile=smoke].

A cell is every CV fold (MR, CR, SUBJ, MPQA) or every seed (TREC, SST) of one model on one dataset.
Each run trains with Adam for up to `profile.epochs`, keeps the test accuracy at its best dev epoch,
and writes out_dir/run<k>/{checkpoint.pt, result.json}; the cell writes out_dir/result.json with the
mean and std over runs. resume=true skips finished runs and continues an unfinished one.
"""
import json
import statistics
import sys
import time
from pathlib import Path

import hydra
import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf

from tasks.classification.data import DATASETS, PAD, encode, load_splits, make_batches, subsample
from tasks.classification.model import SentenceClassifier
from tasks.common.data import DataError
from tasks.common.harness import (Logger, NonFiniteLoss, Progress, check_config, check_finite, git_commit,
                                  load_training_state, pick_device, save_training_state, seed_everything,
                                  write_json_atomic)
from tasks.common.text import Vocab
from tasks.common.vectors import VectorsError, embedding_matrix


def validate_config(cfg):
    m = cfg.model
    checks = [("dataset", cfg.dataset in DATASETS, f"one of {sorted(DATASETS)}"),
              ("model.kind", m.kind in ("cnn", "lstm", "sru"), "'cnn', 'lstm' or 'sru'"),
              ("model.dropout", 0 <= m.dropout < 1, "in [0, 1)"),
              ("optim.lr", cfg.optim.lr > 0, "> 0"),
              ("optim.weight_decay", cfg.optim.weight_decay >= 0, ">= 0"),
              ("optim.batch_size", cfg.optim.batch_size >= 1, ">= 1"),
              ("folds", cfg.folds >= 2, ">= 2"),
              ("seeds", cfg.seeds >= 1, ">= 1"),
              ("dev_fraction", 0 < cfg.dev_fraction < 1, "in (0, 1)"),
              ("profile.epochs", cfg.profile.epochs >= 1, ">= 1"),
              ("profile.runs", cfg.profile.runs is None or cfg.profile.runs >= 1, "null (all) or >= 1"),
              ("profile.max_examples", cfg.profile.max_examples is None or cfg.profile.max_examples >= 10,
               "null (all) or >= 10")]
    if m.kind == "cnn":
        checks += [("model.widths", len(m.widths) > 0 and min(m.widths) >= 1, "a list of widths >= 1"),
                   ("model.maps", m.maps >= 1, ">= 1")]
    else:
        checks += [("model.layers", m.layers >= 1, ">= 1"), ("model.hidden", m.hidden >= 1, ">= 1")]
    check_config(cfg, checks)


def accuracy(model, batches, device):
    model.eval()
    correct = total = 0
    with torch.no_grad():
        for tokens, lengths, labels in batches:
            pred = model(tokens.to(device), lengths.to(device)).argmax(dim=1).cpu()
            correct += (pred == labels).sum().item()
            total += len(labels)
    return 100.0 * correct / total


def train_run(cfg, run, split, vocab, vectors, classes, device):
    """One fold/seed: up to profile.epochs epochs; the test accuracy at the best dev epoch."""
    run_dir = Path(cfg.out_dir) / f"run{run}"
    seed = cfg.seed + run
    seed_everything(seed, deterministic=cfg.deterministic)
    model = SentenceClassifier(vectors, classes, cfg.model).to(device)
    params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=cfg.optim.lr,
                           weight_decay=cfg.optim.weight_decay)
    min_len = max(cfg.model.widths) if cfg.model.kind == "cnn" else 1
    dev, test = (make_batches(encode(split[part], vocab), cfg.optim.eval_batch_size, shuffle=False,
                              min_len=min_len) for part in ("dev", "test"))
    train_set = encode(split["train"], vocab)

    ckpt_path = run_dir / "checkpoint.pt"
    state = dict(epoch=0, best_dev=-1.0, best_epoch=0, test_at_best=None, history=[], wall=0.0)
    if cfg.resume and ckpt_path.exists():
        state = load_training_state(ckpt_path, model, opt)
        print(f"run {run}: resumed from {ckpt_path} after epoch {state['epoch']}")
    name = f"{cfg.cell_name}-run{run}"
    logger = Logger(cfg.logger, dict(OmegaConf.to_container(cfg, resolve=True), run=run, run_seed=seed), run_dir,
                    group=f"{cfg.table}-{cfg.dataset}", tags=[cfg.model.kind, cfg.dataset, cfg.profile.name],
                    name=name)
    logger.summary(params=params, train_examples=len(split["train"]))
    for epoch in range(state["epoch"] + 1, cfg.profile.epochs + 1):
        model.train()
        batches = make_batches(train_set, cfg.optim.batch_size, shuffle=True, min_len=min_len)
        bar = Progress(len(batches), f"{name} epoch {epoch}/{cfg.profile.epochs}")
        t0, loss_sum = time.time(), 0.0
        for step, (tokens, lengths, labels) in enumerate(batches):
            loss = F.cross_entropy(model(tokens.to(device), lengths.to(device)), labels.to(device))
            value = loss.item()  # one device sync per step
            check_finite(value, f"run {run}, epoch {epoch}, step {step}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += value
            bar.update(1, int(lengths.sum()), loss=value)
        seconds = time.time() - t0
        state["wall"] += seconds
        dev_acc = accuracy(model, dev, device)
        if dev_acc > state["best_dev"]:   # the test set is looked at only when dev improves
            state.update(best_dev=dev_acc, best_epoch=epoch, test_at_best=accuracy(model, test, device))
        state["history"].append(dict(epoch=epoch, train_loss=loss_sum / len(batches), dev_acc=dev_acc,
                                     seconds=seconds, wall=state["wall"]))
        state["epoch"] = epoch
        print(f"{name} epoch {epoch:3d} | loss {loss_sum / len(batches):.4f} | dev {dev_acc:6.2f} | "
              f"best dev {state['best_dev']:6.2f} (epoch {state['best_epoch']}) test {state['test_at_best']:6.2f} | "
              f"{seconds:.1f}s")
        logger.log(dict(state["history"][-1], best_dev_acc=state["best_dev"], test_acc_at_best=state["test_at_best"]),
                   step=epoch)
        save_training_state(ckpt_path, model, opt, **state)
    logger.summary(test_acc=state["test_at_best"], best_dev_acc=state["best_dev"], best_epoch=state["best_epoch"])
    logger.finish()
    result = dict(run=run, seed=seed, test_acc=state["test_at_best"], best_dev_acc=state["best_dev"],
                  best_epoch=state["best_epoch"], epochs=state["epoch"], params=params,
                  sec_per_epoch=statistics.median(e["seconds"] for e in state["history"]), history=state["history"],
                  sizes={k: len(v) for k, v in split.items()})
    write_json_atomic(result, run_dir / "result.json")
    return result


def train(cfg: DictConfig):
    validate_config(cfg)
    device = pick_device(cfg.device)
    splits, classes = load_splits(cfg.dataset, cfg.data_dir, cfg.fold_seed, cfg.folds, cfg.dev_fraction)
    if cfg.profile.max_examples:  # smoke/tests only: a random subset of every split
        splits = [{k: subsample(v, cfg.profile.max_examples, cfg.fold_seed) for k, v in s.items()} for s in splits]
    fixed = DATASETS[cfg.dataset]["protocol"] == "fixed"
    n_runs = cfg.seeds if fixed else len(splits)
    n_runs = min(n_runs, cfg.profile.runs or n_runs)
    vocab = Vocab((w for s in splits for part in s.values() for _, words in part for w in words), specials=[PAD])
    vectors, found = embedding_matrix(cfg.vectors, vocab.itos, seed=cfg.fold_seed, normalize=cfg.normalize_vectors)
    print(f"{cfg.cell_name}: {n_runs} {'seeds' if fixed else 'folds'}, {classes} classes, "
          f"train/dev/test {len(splits[0]['train'])}/{len(splits[0]['dev'])}/{len(splits[0]['test'])}, "
          f"vocab {len(vocab):,} ({found:,} in {cfg.vectors}, dim {vectors.shape[1]}), device={device}")

    runs = []
    for run in range(n_runs):
        done = Path(cfg.out_dir) / f"run{run}" / "result.json"
        if cfg.resume and done.exists():
            earlier = json.loads(done.read_text())
            if earlier["epochs"] >= cfg.profile.epochs:
                runs.append(earlier)
                print(f"run {run}: finished earlier, test acc {earlier['test_acc']:.2f}")
                continue
        runs.append(train_run(cfg, run, splits[0 if fixed else run], vocab, vectors, classes, device))
    accs = [r["test_acc"] for r in runs]
    result = dict(dataset=cfg.dataset, model=cfg.model.kind, acc_mean=statistics.mean(accs),
                  acc_std=statistics.stdev(accs) if len(accs) > 1 else 0.0, runs=len(runs),
                  run_kind="seeds" if fixed else "folds", test_accs=accs,
                  sec_per_epoch=statistics.median(e["seconds"] for r in runs for e in r["history"]),
                  epochs=cfg.profile.epochs, params=runs[0]["params"], vectors=cfg.vectors,
                  normalize_vectors=cfg.normalize_vectors,
                  vector_dim=int(vectors.shape[1]), vocab=len(vocab), vocab_found=found, profile=cfg.profile.name,
                  commit=git_commit(), device=str(device), cell_name=cfg.cell_name,
                  histories=[r["history"] for r in runs])
    write_json_atomic(result, Path(cfg.out_dir) / "result.json")
    print(f"{cfg.cell_name}: test accuracy {result['acc_mean']:.2f} ± {result['acc_std']:.2f} over {len(runs)} "
          f"{result['run_kind']} -> {cfg.out_dir}/result.json")
    return result


@hydra.main(config_path="../../configs/classification", config_name="config", version_base="1.3")
def main(cfg: DictConfig):
    try:
        train(cfg)
    except (ValueError, DataError, VectorsError, NonFiniteLoss) as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    main()
