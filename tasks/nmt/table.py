"""Run Table 4's rows and/or collect them: python -m tasks.nmt.table [--profile smoke|speed|full] [--collect-only] [--publish].

Rows come from configs/nmt/table4.yaml; each is one run of `python -m tasks.nmt.train model=<kind>
model.layers=<n> model.input_feed=<bool>` (a Hydra sweep runs the same, e.g. on SLURM). Writes
results/table4.md and results/table4.json; each row's detokenised test translations and references
are the files named in its `hypotheses` and `references`. profile=speed trains each full-width model
for one epoch on 640 pairs and extrapolates the epoch to the whole corpus (labelled), with the
marginal cost of one more layer, LSTM vs SRU (the paper: ~23 vs ~4 minutes per epoch on WMT'14).
profile=cpu (configs/nmt/profile/cpu.yaml) trains all of Multi30k at widths / 2 for 4 epochs: `--rows`
runs it in parts.
"""
from omegaconf import OmegaConf

from tasks.common.table import ROOT, Table

FULL_PAIRS = {"multi30k": 29_000, "wmt14": 4_500_966}
COLUMNS = [("model", "model", None), ("layers", "layers", None), ("hidden", "hidden", None),
           ("input feed", "input_feed", None),
           ("params (M)", "params_m", ".2f"), ("w/o emb. (M)", "params_no_emb_m", ".2f"),
           ("valid ppl", "valid_ppl", ".2f"), ("sacreBLEU", "bleu", ".2f"), ("tok. BLEU", "bleu_tok", ".2f"),
           ("s/epoch", "sec_per_epoch", ".1f"), ("epochs", "epochs", None), ("data", "data", None),
           ("commit", "commit", None)]
FULL = dict(hidden=500, epochs=13, decay_start=8)  # OpenNMT's recipe (configs/nmt, profile=full)


def budget(table):
    """What profile=cpu cut, from the rows' results (a row from before results kept decay_start ran at the cpu
    profile's)."""
    r = table[0]
    decay = r.get("decay_start")
    if decay is None:
        decay = OmegaConf.load(ROOT / "configs" / "nmt" / "profile" / "cpu.yaml").decay_start
    pairs = "all" if r["train_pairs"] >= FULL_PAIRS[r["data"]] else "the first"
    return (f"{pairs} {r['train_pairs']:,} {r['data']} training pairs, every test sentence, beam {r['beam']}; width {r['hidden']} "
            f"instead of {FULL['hidden']}, {r['epochs']} epochs instead of {FULL['epochs']}, lr halving from epoch "
            f"{decay} instead of {FULL['decay_start']}")
SPEED_COLUMNS = [("full epoch s (extrapolated)", "full_epoch_sec_extrapolated", ".0f")]
KEYS = ["model", "layers", "hidden", "input_feed", "params", "params_no_emb", "valid_ppl", "bleu", "bleu_tok",
        "sacrebleu_signature", "sec_per_epoch", "epochs", "profile", "data", "hypotheses", "references", "train_pairs",
        "beam", "decay_start", "device", "precision", "commit"]


def row_name(row, profile, data="multi30k"):
    """The run name (and directory) of a row, as configs/nmt/config.yaml builds it."""
    return f"{row['model']}-{row['layers']}x500-feed{row['input_feed']}-{data}-{profile}"


def marginal_layer_costs(table, key):
    """Seconds per epoch of one more layer, for each of LSTM and SRU (no input feeding): the slope between the
    shallowest and the deepest row of that model (LSTM 2 -> 3, SRU 3 -> 10 at profile=speed; SRU 3 -> 5 at cpu).
    None where a model has one depth only."""
    costs = {}
    for model in ("lstm", "sru"):
        t = {r["layers"]: r[key] for r in table if r["model"] == model and not r["input_feed"]}
        lo, hi = min(t, default=0), max(t, default=0)
        costs[model] = (t[hi] - t[lo]) / (hi - lo) if hi > lo else None
    return costs["lstm"], costs["sru"]


def notes(table, profile, outputs=None):
    r = table[0]
    lines = [f"- Data: {r['data']} ({r['train_pairs']:,} training pairs used)" +
             ("; the paper's Table 4 is WMT'14 newstest2014, so its BLEU is not comparable with these rows."
              if r["data"] != "wmt14" else "."),
             f"- BLEU: sacreBLEU on detokenised output ({r['sacrebleu_signature']}) and tokenised BLEU on the "
             f"Moses-tokenised references (multi-bleu.perl's, via sacreBLEU tokenize=none); beam {r['beam']}. "
             f"Valid perplexity picks the epoch.",
             "- s/epoch: training only, median over epochs. Settings beside OpenNMT's and the paper's: "
             "docs/fidelity.md (Table 4)."]
    if profile == "cpu":
        lines.append(f"- CPU budget: {budget(table)} (configs/nmt/profile/cpu.yaml: OpenNMT's halving rescaled "
                     f"to the epochs, still also on a valid-perplexity rise). Smaller and shorter-trained than "
                     f"the recipe: BLEU below what these models reach after 13 epochs at width 500.")
        pair = {(r["model"], r["layers"], r["input_feed"]): r["sec_per_epoch"] for r in table}
        if ("lstm", 2, False) in pair and ("sru", 3, False) in pair:
            lines.append(f"- Speed: LSTM 2 layers (no input feeding) / SRU 3 layers s/epoch = "
                         f"{pair[('lstm', 2, False)] / pair[('sru', 3, False)]:.2f}x measured on this CPU (whole models, "
                         f"the 19k-word softmax and the attention included, which cost both the same).")
        _, sru = marginal_layer_costs(table, "sec_per_epoch")
        if sru is not None:
            lines.append(f"- One more SRU layer costs {sru:.0f} s/epoch (SRU 3 -> 5 layers, width 250). The LSTM's "
                         f"marginal layer, and so the paper's comparable quantity (the speed ratio of an added layer), "
                         f"comes from profile=speed at full width (docs/benchmarks.md, Table 4).")
    if profile == "speed":
        lstm, sru = marginal_layer_costs(table, "full_epoch_sec_extrapolated")
        lines.append(f"- profile=speed: one epoch of each full-width model on {r['train_pairs']:,} pairs, extrapolated "
                     f"linearly to {FULL_PAIRS[r['data']]:,} pairs (not measured). Translation quality after it means nothing.")
        if lstm is not None and sru is not None:
            lines.append(f"- One more layer costs {lstm:.0f} s/epoch for the LSTM and {sru:.0f} s/epoch for the SRU "
                         f"(ratio {lstm / sru:.1f}x; the paper: ~23 vs ~4 min on WMT'14, ~5.8x), extrapolated.")
    return "\n".join(lines)


def entry(result, row, profile, data):
    out = dict(params_m=result["params"] / 1e6, params_no_emb_m=result["params_no_emb"] / 1e6)
    if profile == "speed":
        out["full_epoch_sec_extrapolated"] = result["sec_per_epoch"] * FULL_PAIRS[data] / result["train_pairs"]
    return out


TABLE = Table("table4", "nmt", "Table 4: {data} En->De translation, OpenNMT-style encoder-decoder, LSTM vs SRU",
              COLUMNS, KEYS, "valid_ppl", overrides=dict(model="model", layers="model.layers", input_feed="model.input_feed"),
              run_name=row_name, entry=entry, notes=notes, budget=budget, data="multi30k",
              smoke="3,000 training pairs, widths / 8, one epoch, 100 test sentences",
              profile_columns=dict(speed=SPEED_COLUMNS),
              profile_titles=dict(speed=" -- SPEED RUN: full widths, one epoch on a slice; BLEU not meaningful"),
              doc=__doc__)

if __name__ == "__main__":
    TABLE.main()
