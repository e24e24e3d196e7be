"""Train one Table 1 cell: python -m tasks.classification.train dataset=mr model=sru [profile=smoke].

A cell is every CV fold (MR, CR, SUBJ, MPQA) or every seed (TREC, SST) of one model on one dataset.
Each run trains with Adam for up to `profile.epochs` on the shared trainer, keeps the test accuracy
of its best dev epoch (best.pt), and writes out_dir/run<k>/{last.pt, best.pt, result.json}; the cell
writes out_dir/result.json with the mean and std over runs. resume=true skips finished runs and
continues an unfinished one. Several GPUs: torchrun --nproc_per_node=N -m tasks.classification.train ...
"""
import json
import statistics
from pathlib import Path

import hydra
import torch.nn.functional as F
from omegaconf import DictConfig, open_dict

from tasks.classification.data import DATASETS, PAD, encode, load_splits, make_batches, majority_accuracy, subsample
from tasks.classification.model import build_model
from tasks.common import distributed
from tasks.common.errors import check_config, exit_on_user_error
from tasks.common.provenance import git_commit, write_json_atomic
from tasks.common.text import Vocab
from tasks.common.trainer import fit, trainer_checks
from tasks.common.vectors import embedding_matrix


def validate_config(cfg):
    m = cfg.model
    checks = trainer_checks(cfg) + [
              ("dataset", cfg.dataset in DATASETS, f"one of {sorted(DATASETS)}"),
              ("model.kind", m.kind in ("cnn", "lstm", "sru"), "'cnn', 'lstm' or 'sru'"),
              ("model.dropout", 0 <= m.dropout < 1, "in [0, 1)"),
              ("optim.batch_size", cfg.optim.batch_size >= 1, ">= 1"),
              ("folds", cfg.folds >= 2, ">= 2"),
              ("seeds", cfg.seeds >= 1, ">= 1"),
              ("dev_fraction", 0 < cfg.dev_fraction < 1, "in (0, 1)"),
              ("profile.runs", cfg.profile.runs is None or cfg.profile.runs >= 1, "null (all) or >= 1"),
              ("profile.max_examples", cfg.profile.max_examples is None or cfg.profile.max_examples >= 10,
               "null (all) or >= 10"),
              ("profile.dataset_epochs", all(k in DATASETS and v >= 1 for k, v in
                                             (cfg.profile.get("dataset_epochs") or {}).items()),
               f"a map from datasets ({sorted(DATASETS)}) to epochs >= 1")]
    if m.kind == "cnn":
        checks += [("model.widths", len(m.widths) > 0 and min(m.widths) >= 1, "a list of widths >= 1"),
                   ("model.maps", m.maps >= 1, ">= 1")]
    else:
        checks += [("model.layers", m.layers >= 1, ">= 1"), ("model.hidden", m.hidden >= 1, ">= 1")]
    check_config(cfg, checks)


class ClassificationTask:
    """One fold/seed of a cell: its split, the cell's vocabulary and vectors."""
    name, metric, mode = "classification", "dev_acc", "max"
    eval_split, test_split, count_name = "dev", "test", "examples"

    def __init__(self, cfg, split, vocab, vectors, classes):
        self.cfg, self.vectors = cfg, vectors
        self.vocab = dict(words=vocab.itos)
        self.model_args = dict(vocab_size=len(vocab), dim=int(vectors.shape[1]), classes=classes,
                               hidden=cfg.model.get("hidden"))
        self.min_len = max(cfg.model.widths) if cfg.model.kind == "cnn" else 1
        self.train_set = encode(split["train"], vocab)
        self.eval = {part: make_batches(encode(split[part], vocab), cfg.optim.eval_batch_size, shuffle=False,
                                        min_len=self.min_len) for part in ("dev", "test")}

    def build_model(self):
        return build_model(self.cfg, self.model_args, self.vectors)

    def train_batches(self, epoch, ctx):
        """Every rank draws the same global batches and keeps its slice of each (a last batch with fewer
        examples than ranks is dropped in multi-process runs)."""
        batches = make_batches(self.train_set, self.cfg.optim.batch_size, shuffle=True, min_len=self.min_len)
        if not ctx.distributed:
            return batches
        return [tuple(t.tensor_split(ctx.world_size)[ctx.rank] for t in b)
                for b in batches if len(b[2]) >= ctx.world_size]

    def step(self, model, batch, carry):
        tokens, lengths, labels = (t.to(self.device_of(model)) for t in batch)
        return F.cross_entropy(model(tokens, lengths), labels), len(labels), None

    @staticmethod
    def device_of(model):
        return next(model.parameters()).device

    def evaluate(self, model, split, ctx):
        correct = total = 0
        device = self.device_of(model)
        for tokens, lengths, labels in ctx.progress(self.eval[split][ctx.rank::ctx.world_size], desc=split):
            pred = model(tokens.to(device), lengths.to(device)).argmax(dim=1).cpu()
            correct += (pred == labels).sum().item()
            total += len(labels)
        sums = ctx.all_reduce(dict(correct=correct, total=total))
        return {f"{split}_acc": 100.0 * sums["correct"] / sums["total"]}

    def train_metrics(self, mean_loss):
        return dict(train_loss=mean_loss)


def run_finished(cfg, run_dir):
    """A run's result.json, if resume=true and the run finished with at least profile.epochs (or stopped early)."""
    done = run_dir / "result.json"
    if cfg.resume and done.exists():
        earlier = json.loads(done.read_text())
        if earlier["epochs"] >= cfg.profile.epochs or earlier["stopped_early"]:
            return earlier
    return None


def dataset_epochs(cfg):
    """The profile's epochs, or its `dataset_epochs` entry for this dataset (cpu: fewer for SST's phrases)."""
    epochs = (cfg.profile.get("dataset_epochs") or {}).get(cfg.dataset)
    if epochs is not None:
        with open_dict(cfg):
            cfg.profile.epochs = epochs


def train(cfg: DictConfig):
    ctx = distributed.init(cfg.device)
    try:
        validate_config(cfg)
        dataset_epochs(cfg)
        return train_cell(cfg, ctx)
    finally:
        distributed.shutdown()


def train_cell(cfg, ctx):
    splits, classes = load_splits(cfg.dataset, cfg.data_dir, cfg.fold_seed, cfg.folds, cfg.dev_fraction)
    if cfg.profile.max_examples:  # smoke/tests only: a random subset of every split
        splits = [{k: subsample(v, cfg.profile.max_examples, cfg.fold_seed) for k, v in s.items()} for s in splits]
    fixed = DATASETS[cfg.dataset]["protocol"] == "fixed"
    n_runs = cfg.seeds if fixed else len(splits)
    n_runs = min(n_runs, cfg.profile.runs or n_runs)
    vocab = Vocab((w for s in splits for part in s.values() for _, words in part for w in words), specials=[PAD])
    vectors, found = embedding_matrix(cfg.vectors, vocab.itos, seed=cfg.fold_seed, normalize=cfg.normalize_vectors)
    if ctx.is_main:
        print(f"{cfg.run_name}: {n_runs} {'seeds' if fixed else 'folds'}, {classes} classes, "
              f"train/dev/test {len(splits[0]['train'])}/{len(splits[0]['dev'])}/{len(splits[0]['test'])}, "
              f"vocab {len(vocab):,} ({found:,} in {cfg.vectors}, dim {vectors.shape[1]}), device={ctx.device}")

    runs = []
    for run in range(n_runs):
        run_dir = Path(cfg.out_dir) / f"run{run}"
        earlier = run_finished(cfg, run_dir)
        if earlier:
            runs.append(earlier)
            if ctx.is_main:
                print(f"run {run}: finished earlier, test acc {earlier['test_acc']:.2f}")
            continue
        split = splits[0 if fixed else run]
        task = ClassificationTask(cfg, split, vocab, vectors, classes)
        result = fit(task, cfg, run_dir, ctx, cfg.seed + run, f"{cfg.run_name}-run{run}",
                     group=f"{cfg.table}-{cfg.dataset}", tags=[cfg.model.kind, cfg.dataset, cfg.profile.name])
        runs.append(dict(result, run=run, seed=cfg.seed + run, sizes={k: len(v) for k, v in split.items()}))
    accs = [r["test_acc"] for r in runs]
    m = cfg.model
    result = dict(task="classification", dataset=cfg.dataset, model=m.kind, layers=m.get("layers"),
                  hidden=m.get("hidden"), params=runs[0]["params"], acc_mean=statistics.mean(accs),
                  acc_std=statistics.stdev(accs) if len(accs) > 1 else 0.0, runs=len(runs),
                  run_kind="seeds" if fixed else "folds", test_accs=accs,
                  majority_acc=statistics.mean(majority_accuracy(splits[0 if fixed else k]) for k in range(len(runs))),
                  sec_per_epoch=statistics.median(e["seconds"] for r in runs for e in r["history"]),
                  epochs=max(r["epochs"] for r in runs), stopped_early=any(r["stopped_early"] for r in runs),
                  profile=cfg.profile.name, precision=cfg.precision, vectors=cfg.vectors,
                  normalize_vectors=cfg.normalize_vectors, vector_dim=int(vectors.shape[1]), vocab=len(vocab),
                  vocab_found=found, commit=git_commit(), device=str(ctx.device), machine=runs[0].get("machine"),
                  world_size=ctx.world_size, contended_epochs=[e for r in runs for e in r.get("contended_epochs", [])],
                  run_name=cfg.run_name, history=runs[0]["history"], histories=[r["history"] for r in runs])
    if ctx.is_main:
        write_json_atomic(result, Path(cfg.out_dir) / "result.json")
        print(f"{cfg.run_name}: test accuracy {result['acc_mean']:.2f} ± {result['acc_std']:.2f} over {len(runs)} "
              f"{result['run_kind']} -> {cfg.out_dir}/result.json")
    return result


@hydra.main(config_path="../../configs/classification", config_name="config", version_base="1.3")
def main(cfg: DictConfig):
    exit_on_user_error(train, cfg)


if __name__ == "__main__":
    main()
