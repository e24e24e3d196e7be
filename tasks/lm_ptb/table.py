"""Run Table 3's rows and/or collect them: python -m tasks.lm_ptb.table [--profile smoke] [--collect-only] [--publish].

Rows come from configs/lm_ptb/table3.yaml, each a config of configs/lm_ptb/row/ (+row=<name>), so the
same rows also run as one Hydra sweep (e.g. on SLURM: see the README), then --collect-only.
Writes results/table3.md, results/table3.json and
results/table3_valid_ppl.png (valid perplexity vs wall-clock time, SRU vs LSTM).
"""
from pathlib import Path

from tasks.common.results import profile_rows, row_result, run_table, table_arg_parser, write_table

ROOT = Path(__file__).resolve().parents[2]
EXPERIMENT = ROOT / "configs" / "lm_ptb" / "table3.yaml"
COLUMNS = [("model", "model", None), ("layers", "layers", None), ("hidden", "hidden", None),
           ("params (M)", "params_m", ".2f"), ("valid ppl", "valid_ppl", ".2f"), ("test ppl", "test_ppl", ".2f"),
           ("paper test ppl", "paper_test_ppl", None), ("s/epoch", "sec_per_epoch", ".1f"),
           ("epochs", "epochs", None), ("profile", "profile", None), ("commit", "commit", None)]
FIDELITY = ("The authors' PTB recipe (summed loss, decoupled weight decay, their init, the SRU's dropout inside "
            "the highway); every setting beside the paper's and the authors' code: docs/fidelity.md")
BUDGET = dict(cpu="all of PTB, full widths, LSTM 2x950 and SRU 6x910 only, 3 epochs (lr decay from epoch 175 "
                  "never reached)")
KEYS = ["model", "layers", "hidden", "params", "valid_ppl", "test_ppl", "sec_per_epoch", "epochs", "profile",
        "commit"]


def row_name(row, profile):
    """The run name (and directory) of a row: <kind>-<layers>x<hidden>-<profile>, as the config builds it."""
    return f"{row['row']}-{profile}"


def collect(rows, profile, out_dir, outputs, missing_ok=False):
    table = []
    for row in rows:
        result = row_result(outputs, row_name(row, profile), "tasks.lm_ptb.table", profile, missing_ok)
        if result is not None:
            table.append(dict({k: result[k] for k in KEYS}, paper_test_ppl=row.get("paper_test_ppl"),
                              history=result["history"]))
    if not table:
        raise SystemExit(f"error: no finished row of Table 3 at profile={profile} in {outputs}: run them first "
                         f"(python -m tasks.lm_ptb.table --profile {profile})")
    smoke = profile == "smoke"
    rows_out = [dict(r, params_m=r["params"] / 1e6) for r in table]
    text = write_table(rows_out, COLUMNS, "Table 3: PTB language model (perplexity)", out_dir, "table3", smoke,
                       notes=FIDELITY, metric="valid_ppl", profile=profile,
                       budget=BUDGET.get(profile))
    out_dir = Path(out_dir)
    plot(table, out_dir / "table3_valid_ppl.png", smoke)
    print(text)
    return table


def plot(table, path, smoke):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for r in table:
        h = r["history"]
        ax.plot([e["wall"] for e in h], [e["valid_ppl"] for e in h], marker="o", ms=3,
                linestyle="--" if r["model"] == "lstm" else "-", label=f"{r['model'].upper()} {r['layers']}x{r['hidden']}")
    ax.set_xlabel("training wall-clock time (s)")
    ax.set_ylabel("valid perplexity")
    ax.set_yscale("log")
    ax.set_title("PTB: valid perplexity vs time" + (" (smoke run)" if smoke else ""))
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None):
    args = table_arg_parser(__doc__, ROOT, "lm_ptb", "table3", "rows").parse_args(argv)
    rows = profile_rows(EXPERIMENT, args.profile)
    runs = [(row_name(row, args.profile), [f"+row={row['row']}", f"profile={args.profile}"]) for row in rows]
    run_table(args, "table3", "tasks.lm_ptb.train", runs,
              lambda outputs, out, missing_ok: collect(rows, args.profile, out, outputs, missing_ok), ROOT)


if __name__ == "__main__":
    main()
