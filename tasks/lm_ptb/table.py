"""Run Table 3's rows and/or collect them: python -m tasks.lm_ptb.table [--profile smoke] [--collect-only] [--publish].

Rows come from configs/lm_ptb/table3.yaml, each a config of configs/lm_ptb/row/ (+row=<name>), so the
same rows also run as one Hydra sweep (e.g. on SLURM: see docs/training.md), then --collect-only.
Writes results/table3.md, results/table3.json and
results/table3_valid_ppl.png (valid perplexity vs wall-clock time, SRU vs LSTM).
"""
import statistics

from tasks.common.table import Table

COLUMNS = [("model", "model", None), ("layers", "layers", None), ("hidden", "hidden", None),
           ("params (M)", "params_m", ".2f"), ("valid ppl", "valid_ppl", ".2f"), ("test ppl", "test_ppl", ".2f"),
           ("paper test ppl", "paper_test_ppl", None), ("s/epoch", "sec_per_epoch", ".1f"),
           ("tokens/s", "tokens_per_s", ".0f"), ("eval s/epoch", "eval_sec_per_epoch", ".1f"),
           ("epochs", "epochs", None), ("profile", "profile", None), ("commit", "commit", None)]
FIDELITY = ("The authors' PTB recipe (summed loss, decoupled weight decay, their init, the SRU's dropout inside "
            "the highway); every setting beside the paper's and the authors' code: docs/fidelity.md")
BUDGET = ("all of PTB, full widths, LSTM 2x950 and SRU 6x910 only, 3 epochs (lr decay from epoch 175 "
          "never reached)")
KEYS = ["model", "layers", "hidden", "params", "valid_ppl", "test_ppl", "sec_per_epoch", "epochs", "profile",
        "commit"]


def row_name(row, profile, data=None):
    """The run name (and directory) of a row: <kind>-<layers>x<hidden>-<profile>, as the config builds it."""
    return f"{row['row']}-{profile}"


def eval_cost(result):
    """Training tokens/s (median over epochs) and the seconds per epoch spent outside training: the batch-1
    validation pass (the protocol) and the checkpoint writes, from the run's wall time."""
    h = result["history"]
    outside = (result["wall_s"] - sum(e["seconds"] for e in h)) / len(h) if result.get("wall_s") else None
    return dict(tokens_per_s=statistics.median(e["tokens_per_s"] for e in h), eval_sec_per_epoch=outside)


def speed_note(table):
    """LSTM vs SRU s/epoch beside what the GEMM work predicts. Each model does about one multiply-add per
    parameter per token in its forward pass (every weight is used once per token, the tied softmax
    included; the embedding lookup is free), and backward twice that: so on a machine whose time goes to
    GEMMs the s/epoch ratio should be the parameter ratio. The paper's GPU speed-up comes instead from the
    SRU's time-parallel GEMM, which a GEMM-bound CPU does not reward."""
    lstm = [r for r in table if r["model"] == "lstm"]
    sru = [r for r in table if r["model"] == "sru" and r["layers"] == 6] or [r for r in table if r["model"] == "sru"]
    if not (lstm and sru):
        return ""
    a, b = lstm[0], sru[-1]
    return (f"\n- Speed: LSTM {a['layers']}x{a['hidden']} / SRU {b['layers']}x{b['hidden']} s/epoch = "
            f"{a['sec_per_epoch'] / b['sec_per_epoch']:.2f}x measured; the GEMM work per token (about the parameter "
            f"count, {a['params'] / 1e6:.1f}M vs {b['params'] / 1e6:.1f}M) predicts {a['params'] / b['params']:.2f}x "
            f"on a GEMM-bound CPU. The paper's GPU speed-up comes from the SRU's GEMM over all time steps at once, "
            f"which a CPU already at its GEMM peak does not reward.")


def notes(table, profile, outputs=None):
    return (f"- {FIDELITY}.\n- s/epoch: training only, the median over epochs (tokens/s likewise); eval s/epoch: the "
            "rest of each epoch's wall time, the batch-1 validation pass and the checkpoint writes." + speed_note(table))


def entry(result, row, profile, data):
    return dict(eval_cost(result), paper_test_ppl=row.get("paper_test_ppl"), params_m=result["params"] / 1e6)


def plot(table, out_dir, profile):
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
    ax.set_title("PTB: valid perplexity vs time" + (" (smoke run)" if profile == "smoke" else ""))
    ax.legend()
    fig.tight_layout()
    fig.savefig(out_dir / "table3_valid_ppl.png", dpi=110)
    plt.close(fig)


TABLE = Table("table3", "lm_ptb", "Table 3: PTB language model (perplexity)", COLUMNS, KEYS, "valid_ppl",
              overrides={"row": "+row"}, run_name=row_name, entry=entry, notes=notes, budget=BUDGET, figure=plot,
              doc=__doc__)

if __name__ == "__main__":
    TABLE.main()
