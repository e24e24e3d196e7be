"""Run Table 5's rows and/or collect them: python -m tasks.speech.table [--profile smoke|full] [--collect-only].

Rows come from configs/speech/table5.yaml: the paper's four acoustic models (LSTM 5 layers, SRU 12
layers, and their bidirectional versions) with widths scaled to the data, each one run of
`python -m tasks.speech.train`. Writes results/table5.md and results/table5.json; each row's test
hypotheses and references are `uttid transcript` files (`hypotheses`, `references`).
"""
from pathlib import Path

from omegaconf import OmegaConf

from tasks.common.results import row_result, run_entry_point, table_arg_parser, write_table

ROOT = Path(__file__).resolve().parents[2]
EXPERIMENT = ROOT / "configs" / "speech" / "table5.yaml"
COLUMNS = [("model", "model", None), ("bidirectional", "bidirectional", None), ("layers", "layers", None),
           ("hidden", "hidden", None), ("paper's row", "paper", None), ("params (M)", "params_m", ".3f"),
           ("test WER", "wer", ".2f"), ("test CER", "cer", ".2f"), ("dev WER", "dev_wer", ".2f"),
           ("s/epoch", "sec_per_epoch", ".1f"), ("epochs", "epochs", None)]
KEYS = ["model", "layers", "hidden", "bidirectional", "params", "sec_per_epoch", "epochs", "profile", "data",
        "hypotheses", "references", "train_utterances", "test_utterances", "future_frames", "features", "output",
        "device", "commit"]


def row_name(row, profile, data="digits"):
    return f"{row['model']}-{row['layers']}x{row['hidden']}-bi{row['bidirectional']}-{data}-{profile}"


def collect(rows, profile, out_dir, outputs, data="digits"):
    table = []
    for row in rows:
        r = row_result(outputs, row_name(row, profile, data), "tasks.speech.table", profile)
        table.append(dict({k: r.get(k) for k in KEYS}, wer=r["test_wer"], cer=r["test_cer"], dev_wer=r["dev_wer"],
                          paper=row["paper"], params_m=r["params"] / 1e6, history=r["history"]))
    first = table[0]
    notes = "\n".join([
        f"- Data: {first['data']} ({first['train_utterances']:,} training, {first['test_utterances']:,} test utterances); "
        "the paper's Table 5 is Switchboard (licensed) with hybrid HMM models, so nothing here is comparable with its WER.",
        f"- Substitutions: end-to-end CTC over {first['output']} (no HMM, no alignments, no sMBR); "
        f"{first['features']}; widths scaled by 1/8, depths as the paper; unidirectional rows read "
        f"{next((r['future_frames'] for r in table if not r['bidirectional']), 0)} future frames (the authors' shift).",
        "- WER/CER: jiwer on corpus totals (edits / reference words), greedy CTC decoding; the best dev-WER epoch.",
        "- s/epoch: training only, median over epochs. Settings beside the paper's: docs/fidelity.md (Table 5)."])
    smoke = "160 training utterances, hidden / 4, 2 epochs" if profile == "smoke" else False
    text = write_table(table, COLUMNS, f"Table 5: acoustic models on {data}, LSTM vs SRU (CTC, WER)", out_dir,
                       "table5", smoke, notes=notes, metric="dev_wer")
    print(text)
    return table


def main(argv=None):
    args = table_arg_parser(__doc__, ROOT, "speech", "table5", "rows").parse_args(argv)
    data = next((a.split("=", 1)[1] for a in args.extra if a.startswith("data=")), "digits")
    rows = OmegaConf.to_container(OmegaConf.load(EXPERIMENT))["rows"]
    if not args.collect_only:
        for row in rows:
            out_dir = Path(args.outputs) / row_name(row, args.profile, data)
            run_entry_point("tasks.speech.train", [f"model={row['model']}", f"model.layers={row['layers']}",
                                                   f"model.hidden={row['hidden']}",
                                                   f"model.bidirectional={str(row['bidirectional']).lower()}",
                                                   f"profile={args.profile}", f"out_dir={out_dir}", *args.extra], ROOT)
    collect(rows, args.profile, args.out, args.outputs, data)


if __name__ == "__main__":
    main()
