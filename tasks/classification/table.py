"""Run Table 1's cells and/or collect them: python -m tasks.classification.table [--profile smoke].

Cells (dataset x model) come from configs/classification/table1.yaml. Writes results/table1.md,
results/table1.json and results/table1_fig2.png (Figure 2: dev accuracy vs training time).
"""
import json
import sys
from pathlib import Path

from omegaconf import OmegaConf

from tasks.common.results import run_entry_point, table_arg_parser, write_table

ROOT = Path(__file__).resolve().parents[2]
EXPERIMENT = ROOT / "configs" / "classification" / "table1.yaml"
NAMES = dict(mr="MR", cr="CR", subj="SUBJ", mpqa="MPQA", trec="TREC", sst1="SST-1", sst2="SST-2")
COLUMNS = [("model", "model", None), ("dataset", "dataset", None), ("test acc (mean)", "acc_mean", ".2f"),
           ("std", "acc_std", ".2f"), ("runs", "runs_label", None), ("paper SRU", "paper_sru", None),
           ("s/epoch (median)", "sec_per_epoch", ".2f"), ("epochs", "epochs", None), ("params", "params", ","),
           ("vectors", "vectors", None), ("device", "device", None), ("profile", "profile", None),
           ("commit", "commit", None)]
SMOKE = "2 epochs (not 100), the first 2 folds, MR only"


def collect(exp, datasets, profile, out_dir, outputs):
    cells = []
    for dataset in datasets:
        for model in exp["models"]:
            path = Path(outputs) / f"{dataset}-{model}-{profile}" / "result.json"
            if not path.exists():
                sys.exit(f"error: {path} is missing: run the cell first (python -m "
                         f"tasks.classification.table --profile {profile})")
            r = json.loads(path.read_text())
            cells.append(dict(r, runs_label=f"{r['runs']} {r['run_kind']}", dataset=NAMES[dataset],
                              paper_sru=exp["paper_sru"].get(dataset) if model == "sru" else None))
    rows = [{k: v for k, v in c.items() if k != "histories"} for c in cells]
    vectors = sorted({c["vectors"] for c in cells})
    notes = [f"Vectors: {', '.join(vectors)} (frozen; OOV ~ U(-0.25, 0.25)). The paper used 300d word2vec, so "
             f"our accuracies are expected to sit below its numbers. Test accuracy at the best dev epoch; "
             f"mean and sample std over CV folds (MR, CR, SUBJ, MPQA) or seeds (TREC, SST). "
             f"s/epoch = median training time of an epoch (evaluation excluded). The paper's per-row v1 values are not available: ranges. "
             f"Every setting beside the paper's and the authors' code: docs/fidelity.md.", "",
             "| model | " + " | ".join(NAMES[d] for d in datasets) + " |", "|---" * (len(datasets) + 1) + "|"]
    for model in exp["models"]:
        by = {c["dataset"]: c for c in cells if c["model"] == model}
        notes.append(f"| {model.upper()} | " + " | ".join(
            f"{by[NAMES[d]]['acc_mean']:.1f} ± {by[NAMES[d]]['acc_std']:.1f}" for d in datasets) + " |")
    notes.append("| SRU (paper) | " + " | ".join(exp["paper_sru"].get(d) or "-" for d in datasets) + " |")
    smoke = SMOKE if profile != "full" else False
    text = write_table(rows, COLUMNS, "Table 1: sentence classification (test accuracy, %)", out_dir, "table1",
                       smoke, notes="\n".join(notes), metric="dev_acc")
    plot(cells, datasets, Path(out_dir) / "table1_fig2.png", profile, vectors)
    print(text)
    return cells


def plot(cells, datasets, path, profile, vectors):
    """Figure 2: dev accuracy vs cumulative training time of each model's first run, per dataset."""
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
                 f"device {cells[0]['device']}{', SMOKE RUN' if profile != 'full' else ''}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None):
    p = table_arg_parser(__doc__, ROOT, "classification", "table1")
    p.add_argument("--datasets", help="comma-separated subset of the table's datasets, e.g. mr,cr "
                                      "(default: all for full, the smoke list for smoke)")
    args = p.parse_args(argv)
    exp = OmegaConf.to_container(OmegaConf.load(EXPERIMENT))
    datasets = args.datasets.split(",") if args.datasets else exp["smoke_datasets" if args.profile == "smoke"
                                                                   else "datasets"]
    unknown = set(datasets) - set(NAMES)
    if unknown:
        p.error(f"unknown datasets {sorted(unknown)}; expected some of {sorted(NAMES)}")
    if not args.collect_only:
        for dataset in datasets:
            for model in exp["models"]:
                run_entry_point("tasks.classification.train",
                                [f"dataset={dataset}", f"model={model}", f"profile={args.profile}",
                                 f"out_dir={args.outputs}/{dataset}-{model}-{args.profile}", *args.extra], ROOT)
    collect(exp, datasets, args.profile, args.out, args.outputs)


if __name__ == "__main__":
    main()
