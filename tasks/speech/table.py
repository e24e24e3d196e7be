"""Run Table 5's rows and/or collect them: python -m tasks.speech.table [--profile smoke|cpu|full] [--collect-only] [--publish].

Rows come from configs/speech/table5.yaml: the paper's four acoustic models (LSTM 5 layers, SRU 12
layers, and their bidirectional versions) with widths scaled to the data, each one run of
`python -m tasks.speech.train`. Writes results/table5.md and results/table5.json; each row's test
hypotheses and references are `uttid transcript` files (`hypotheses`, `references`). --publish: the
committed copy under docs/results/<profile>/ (tasks/common/results.py).
"""
import statistics

from omegaconf import OmegaConf

from tasks.common.table import ROOT, Table

COLUMNS = [("model", "model", None), ("bidirectional", "bidirectional", None), ("layers", "layers", None),
           ("hidden", "hidden", None), ("paper's row", "paper", None), ("LSTM f-gate bias", "forget_bias_text", None),
           ("seed", "seed", None), ("Adam lr", "lr", "g"), ("params (M)", "params_m", ".3f"),
           ("test WER", "wer", ".2f"), ("test CER", "cer", ".2f"), ("dev WER", "dev_wer", ".2f"),
           ("s/epoch", "sec_per_epoch", ".1f"), ("epochs", "epochs", None), ("commit", "commit", None)]
KEYS = ["model", "layers", "hidden", "bidirectional", "forget_bias", "params", "sec_per_epoch", "epochs", "profile",
        "data", "hypotheses", "references", "train_utterances", "test_utterances", "future_frames", "features", "output",
        "future_steps", "device", "commit"]
BUDGET = ("nothing cut from `full` (4,000 training utterances, 30 epochs, 60 for the unidirectional rows, the "
          "table's widths)")
BASE_SEED = OmegaConf.load(ROOT / "configs" / "common" / "base.yaml").seed  # a row without its own `seed`
BASE_LR = OmegaConf.load(ROOT / "configs" / "speech" / "config.yaml").optim.lr  # ... or its own `lr`
# a row's keys -> its run's overrides (forget_bias, seed, lr and the per-profile epochs are optional)
OVERRIDES = dict(model="model", layers="model.layers", hidden="model.hidden", bidirectional="model.bidirectional",
                 forget_bias="model.forget_bias", seed="seed", lr="optim.lr", epochs="profile.epochs")


def row_name(row, profile, data="digits"):
    fb = f"-fb{row['forget_bias']:g}" if row.get("forget_bias") is not None else ""
    lr = f"-lr{row['lr']:g}" if row.get("lr") is not None else ""
    seed = f"-seed{row['seed']}" if row.get("seed") is not None else ""
    return f"{row['model']}-{row['layers']}x{row['hidden']}-bi{row['bidirectional']}{fb}{lr}{seed}-{data}-{profile}"


def forget_bias_text(r):
    """The f-gate bias column: an LSTM's init, '-' for an SRU."""
    if r["model"] != "lstm":
        return "-"
    return "torch default" if r.get("forget_bias") is None else f"{r['forget_bias']:g}"


def entry(r, row, profile, data):
    # a result from before result.json kept its seed and lr ran at the row's (or the base config's)
    return dict(seed=r.get("seed", row.get("seed", BASE_SEED)), lr=r.get("lr", row.get("lr", BASE_LR)),
                wer=r["test_wer"], cer=r["test_cer"], dev_wer=r["dev_wer"], forget_bias_text=forget_bias_text(r),
                paper=row["paper"], params_m=r["params"] / 1e6)


def notes(table, profile, outputs=None):
    first = table[0]
    return "\n".join([
        f"- Data: {first['data']} ({first['train_utterances']:,} training, {first['test_utterances']:,} test utterances); "
        "the paper's Table 5 is Switchboard (licensed) with hybrid HMM models, so nothing here is comparable with its WER.",
        f"- Substitutions: end-to-end CTC over {first['output']} (no HMM, no alignments, no sMBR); "
        f"{first['features']}; widths scaled by 1/8, depths as the paper; unidirectional rows read "
        + lookahead(table) + "; bidirectional rows read the whole utterance (theirs are latency-controlled).",
        "- WER/CER: jiwer on corpus totals (edits / reference words), greedy CTC decoding; the best dev-WER epoch.",
        "- s/epoch: training only, median over epochs. Settings beside the paper's: docs/fidelity.md (Table 5)."]
        + (["- LSTM f-gate bias: `torch default` is b_ih, b_hh ~ U(+-1/sqrt(hidden)); a row with 1 sets the forget "
            "gate's bias to 1 at init (Jozefowicz et al. 2015), an added row, not the paper's (configs/speech/table5.yaml)."]
           if any(r.get("forget_bias") is not None for r in table) else [])
        + seed_notes(table)
        + (["- The rows ran at different commits (see the commit column), some on different days: this machine's "
            "speed moves by +-30% from day to day, so compare s/epoch only between rows trained the same day."]
           if len({r.get("commit") for r in table}) > 1 else []))


def seed_notes(table):
    """One line per configuration trained with more than one seed: every seed's test WER and how many
    reached the sanity bar (WER < 30), so that one lucky or unlucky run is not read as the model's result."""
    groups = {}
    for r in table:
        key = (r["model"], r["layers"], r["hidden"], r["bidirectional"], r.get("forget_bias"), r["lr"])
        groups.setdefault(key, []).append(r)
    lines = []
    for (model, layers, hidden, bi, fb, lr), rs in groups.items():
        if len({r["seed"] for r in rs}) < 2:
            continue
        wers = ", ".join(f"{r['wer']:.2f} (seed {r['seed']})" for r in sorted(rs, key=lambda r: r["seed"]))
        below = sum(r["wer"] < 30 for r in rs)
        init = ("" if model != "lstm" or fb is None else f", f-gate bias {fb:g}") + ("" if lr == BASE_LR else f", lr {lr:g}")
        lines.append(f"- {'bi-' if bi else ''}{model.upper()} {layers} x {hidden}{init} over {len(rs)} seeds: test WER "
                     f"{wers}; median {statistics.median(r['wer'] for r in rs):.2f}; {below} of {len(rs)} below 30.")
    return lines


def lookahead(table):
    uni = next((r for r in table if not r["bidirectional"]), None)
    if uni is None:
        return "no future frames"
    if uni.get("future_steps") is None:  # a run from before the lookahead counted raw frames
        return f"{uni['future_frames']} future model steps"
    return (f"{uni['future_frames']} raw 10-ms frames ahead ({10 * uni['future_frames']} ms, the authors' label "
            f"delay; {uni['future_steps']} model step{'' if uni['future_steps'] == 1 else 's'} after stacking, rounded down)")


TABLE = Table("table5", "speech", "Table 5: acoustic models on {data}, LSTM vs SRU (CTC, WER)", COLUMNS, KEYS,
              "dev_wer", overrides=OVERRIDES, run_name=row_name, entry=entry, notes=notes, budget=BUDGET,
              smoke="160 training utterances, hidden / 4, 2 epochs", data="digits", doc=__doc__)

if __name__ == "__main__":
    TABLE.main()
