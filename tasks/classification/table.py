"""Run Table 1's cells and/or collect them:
python -m tasks.classification.table [--profile smoke|cpu|full] [--datasets mr,cr] [--epoch-gap cr] [--publish]

Cells (dataset x model) come from configs/classification/table1.yaml. Writes results/table1.md,
results/table1.json and results/table1_fig2.png (Figure 2: dev accuracy vs training time). --publish:
the committed copy under docs/results/<profile>/ (tasks/common/results.py). --epoch-gap DATASET (for a
profile with fewer epochs than the paper's 100): also trains the dataset's first fold/seed of each
model for 100 epochs (--gap-epochs; `profile=full profile.runs=1`, under <outputs>/epoch-gap/), and the
table's notes compare its test accuracy with the same fold's at the profile's epoch count.
"""
import functools
import os
import statistics
import sys
from pathlib import Path

from omegaconf import OmegaConf

from tasks.classification.data import load_splits, majority_accuracy
from tasks.common.data import DataError
from tasks.common.results import publish_rows
from tasks.common.table import ROOT, Table, row_result, run_entry_point

# the datasets, models and the paper's SRU accuracies (the cells are every dataset x model)
EXPERIMENT = OmegaConf.to_container(OmegaConf.load(ROOT / "configs" / "classification" / "table1.yaml"))
NAMES = dict(mr="MR", cr="CR", subj="SUBJ", mpqa="MPQA", trec="TREC", sst1="SST-1", sst2="SST-2")
COLUMNS = [("model", "model", None), ("dataset", "dataset", None), ("test acc (mean)", "acc_mean", ".2f"),
           ("std", "acc_std", ".2f"), ("majority class", "majority_acc", ".1f"), ("runs", "runs_label", None),
           ("paper SRU", "paper_sru", None),
           ("s/epoch (median)", "sec_per_epoch", ".2f"), ("epochs", "epochs", None), ("params", "params", ","),
           ("vectors", "vectors", None), ("device", "device", None), ("profile", "profile", None),
           ("commit", "commit", None)]
BUDGET = ("every example, the paper's models; the first 2 folds/seeds, 50 epochs (SST: 3 epochs of its phrases) "
          "instead of 100")
GAP = "epoch-gap"  # <outputs>/epoch-gap/<dataset>-<model>-full-fold0: the --epoch-gap runs


def cell_name(cell, profile, data=None):
    return f"{cell['dataset']}-{cell['model']}-{profile}"


def gap_name(dataset, model):
    return f"{dataset}-{model}-full-fold0"


def cells(args, every):
    """The table's rows: every dataset x model cell of the datasets chosen (--datasets; default all, or the
    smoke list at profile=smoke), or of all datasets (every: what --publish collects)."""
    if every and args.publish:
        datasets = EXPERIMENT["datasets"]
    elif args.datasets:
        datasets = args.datasets.split(",")
    else:
        datasets = EXPERIMENT["smoke_datasets" if args.profile == "smoke" else "datasets"]
    unknown = set(datasets) - set(NAMES)
    if unknown:
        sys.exit(f"error: unknown datasets {sorted(unknown)}; expected some of {sorted(NAMES)}")
    return [dict(dataset=d, model=m) for d in datasets for m in EXPERIMENT["models"]]


def entry(r, cell, profile, data):
    dataset = cell["dataset"]
    return dict(runs_label=f"{r['runs']} {r['run_kind']}", dataset=NAMES[dataset],
                paper_sru=EXPERIMENT["paper_sru"].get(dataset) if cell["model"] == "sru" else None,
                majority_acc=r["majority_acc"] if "majority_acc" in r else majority_from_data(dataset, r["runs"]))


def shown(cells):
    """The datasets with a finished cell, in the table's order."""
    key = {name: d for d, name in NAMES.items()}
    return list(dict.fromkeys(key[c["dataset"]] for c in cells))


def notes(cells, profile, outputs):
    datasets, models = shown(cells), EXPERIMENT["models"]
    vectors = sorted({c["vectors"] for c in cells})
    notes = [f"Vectors: {', '.join(vectors)} (frozen; OOV ~ U(-0.25, 0.25)). The paper used 300d word2vec, so "
             f"our accuracies are expected to sit below its numbers. Test accuracy at the best dev epoch; "
             f"mean and sample std over CV folds (MR, CR, SUBJ, MPQA) or seeds (TREC, SST). "
             f"s/epoch = median training time of an epoch (evaluation excluded). The paper's per-row v1 values are not available: ranges. "
             f"Every setting beside the paper's and the authors' code: docs/fidelity.md.", "",
             "| model | " + " | ".join(NAMES[d] for d in datasets) + " |", "|---" * (len(datasets) + 1) + "|"]
    for model in models:
        by = {c["dataset"]: c for c in cells if c["model"] == model}
        notes.append(f"| {model.upper()} | " + " | ".join(
            f"{by[NAMES[d]]['acc_mean']:.1f} ± {by[NAMES[d]]['acc_std']:.1f}" if NAMES[d] in by else "-"
            for d in datasets) + " |")
    notes.append("| SRU (paper) | " + " | ".join(EXPERIMENT["paper_sru"].get(d) or "-" for d in datasets) + " |")
    notes += floor_notes(cells) + speed_notes(cells, datasets) + gap_notes(cells, outputs / GAP, models)
    if len({c.get("commit") for c in cells}) > 1:
        notes.append("\nThe cells ran at different commits (see the commit column): this machine's speed moves by "
                     "+-30% from day to day, so compare s/epoch only between cells of one run.")
    return "\n".join(notes)


@functools.lru_cache(maxsize=None)
def majority_from_data(dataset, runs):
    """The majority-class test accuracy over a cell's first `runs` splits, for results written before cells
    recorded it (None without the data)."""
    cfg = OmegaConf.load(ROOT / "configs" / "classification" / "config.yaml")  # the splits' defaults
    data_dir = ROOT / os.environ.get("SRU_DATA_DIR", "data")  # base.yaml's data_dir, as the cells resolve it
    try:
        splits, _ = load_splits(dataset, data_dir, cfg.fold_seed, cfg.folds, cfg.dev_fraction)
    except DataError:
        return None
    return statistics.mean(majority_accuracy(s) for s in splits[:runs])


def floor_notes(cells):
    """The sanity floor: every cell at least 10 points above always answering the majority class."""
    known = [c for c in cells if c.get("majority_acc") is not None]
    low = [f"{c['model'].upper()} on {c['dataset']} ({c['acc_mean']:.1f} vs {c['majority_acc']:.1f})" for c in known
           if c["acc_mean"] < c["majority_acc"] + 10]
    if not known:
        return []
    return ["", "Majority class: the test accuracy of always answering the training split's most frequent label. "
                + ("Every cell is at least 10 points above it." if not low else
                   "Less than 10 points above it: " + "; ".join(low) + ".")]


def speed_notes(cells, datasets):
    """Per dataset: the LSTM's and the CNN's s/epoch over the SRU's."""
    lines = []
    for d in datasets:
        by = {c["model"]: c["sec_per_epoch"] for c in cells if c["dataset"] == NAMES[d]}
        if "sru" in by and ("lstm" in by or "cnn" in by):
            lines.append(f"{NAMES[d]} " + ", ".join(f"{m.upper()}/SRU {by[m] / by['sru']:.2f}x" for m in ("lstm", "cnn")
                                                     if m in by))
    return ["", "Training time per epoch over the SRU's (from the s/epoch column): " + "; ".join(lines) + "."] if lines else []


def gap_notes(cells, gap_dir, models):
    """What cutting the epochs cost on one dataset: its first fold/seed trained for 100 epochs (--epoch-gap)
    against the same fold/seed (same seed, same split) in this table's cell."""
    lines, head = [], None
    for c in cells:
        dataset = next(k for k, v in NAMES.items() if v == c["dataset"])
        r = row_result(gap_dir, gap_name(dataset, c["model"]), "tasks.classification.table", "full", missing_ok=True)
        if r is None or c["epochs"] >= r["epochs"]:
            continue
        n, long_run = c["epochs"], r["histories"][0]
        same = [e["dev_acc"] for e in long_run[:n]] == [e["dev_acc"] for e in c["histories"][0]]
        best = max(long_run, key=lambda e: e["dev_acc"])  # the first best, as the trainer keeps it
        lines.append(f"| {c['model'].upper()} | {c['test_accs'][0]:.2f} | {r['test_accs'][0]:.2f} | "
                     f"{r['test_accs'][0] - c['test_accs'][0]:+.2f} | {best['epoch']} | {'yes' if same else 'no'} |")
        head = head or (c["dataset"], c["run_kind"][:-1], n, r["epochs"])
    if not lines:
        return []
    name, kind, n, long_epochs = head
    return ["", f"Epoch gap ({name}, {kind} 0): test accuracy at the best dev epoch of the first {n} epochs (this "
                f"table's cell) and of {long_epochs} epochs (`--epoch-gap {name.lower().replace('-', '')}`, the paper's "
                f"budget), same split and seed; 'identical' = the first {n} epochs' dev accuracies agree exactly.", "",
            f"| model | test acc, {n} epochs | test acc, {long_epochs} epochs | gap | best dev epoch of {long_epochs} | "
            f"first {n} epochs identical |", "|---|---|---|---|---|---|", *lines]


def plot(cells, out_dir, profile):
    """Figure 2: dev accuracy vs cumulative training time of each model's first run, per dataset."""
    datasets, vectors = shown(cells), sorted({c["vectors"] for c in cells})
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    cols = min(4, len(datasets))
    rows = -(-len(datasets) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(max(6.0, 4.2 * cols), 0.6 + 3.4 * rows), squeeze=False)
    for ax in axes.flat[len(datasets):]:
        ax.axis("off")
    style = dict(cnn=":", lstm="--", sru="-")
    for ax, dataset in zip(axes.flat, datasets):
        for c in cells:
            if c["dataset"] == NAMES[dataset]:
                h = c["histories"][0]
                ax.plot([e["wall"] for e in h], [e["dev_acc"] for e in h], style.get(c["model"], "-"),
                        marker="o", ms=3, label=c["model"].upper())
        ax.set_title(NAMES[dataset])
        ax.set_xlabel("training time (s)")
        ax.set_ylabel("dev accuracy (%)")
        ax.legend()
    fig.suptitle(f"Figure 2: dev accuracy vs training time (first fold/seed)\n{', '.join(vectors)} vectors, "
                 f"device {cells[0]['device']}{', SMOKE RUN' if profile == 'smoke' else ''}"
                 f"{', CPU BUDGET' if profile == 'cpu' else ''}", fontsize=10)
    fig.tight_layout()
    fig.savefig(out_dir / "table1_fig2.png", dpi=110)
    plt.close(fig)


def arguments(p):
    p.add_argument("--datasets", help="comma-separated subset of the table's datasets, e.g. mr,cr "
                                      "(default: all for full, the smoke list for smoke)")
    p.add_argument("--epoch-gap", metavar="DATASET", choices=sorted(NAMES),
                   help="also train DATASET's first fold/seed for --gap-epochs and compare (see above)")
    p.add_argument("--gap-epochs", type=int, default=100, help="the --epoch-gap runs' epochs (the paper's: 100)")


def epoch_gap(args):
    """--epoch-gap: the dataset's first fold/seed of each model for --gap-epochs, beside the table's cells."""
    gap_dir, published_gap = Path(args.outputs) / GAP, args.published / GAP
    for model in EXPERIMENT["models"] if args.epoch_gap and not args.collect_only else []:
        name = gap_name(args.epoch_gap, model)
        if (gap_dir / name / "result.json").exists() or (args.publish and (published_gap / name).exists()):
            continue
        run_entry_point("tasks.classification.train",
                        [f"dataset={args.epoch_gap}", f"model={model}", "profile=full", "profile.runs=1",
                         f"run_name={name}", f"out_dir={gap_dir / name}", *args.extra,
                         f"profile.epochs={args.gap_epochs}"])
    if args.publish:  # every dataset's cells are named, so that a table published in parts says what is missing
        publish_rows(gap_dir, [gap_name(d, m) for d in NAMES for m in EXPERIMENT["models"]], published_gap, ROOT)


TABLE = Table("table1", "classification", "Table 1: sentence classification (test accuracy, %)", COLUMNS, None,
              "dev_acc", overrides=dict(dataset="dataset", model="model"), run_name=cell_name, entry=entry,
              notes=notes, budget=BUDGET, smoke="2 epochs (not 100), the first 2 folds, MR only", unwritten=("histories",),
              figure=plot, rows=cells, arguments=arguments, before=epoch_gap, what="cell", doc=__doc__)

if __name__ == "__main__":
    TABLE.main()
