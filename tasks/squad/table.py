"""Run Table 2's rows and/or collect them: python -m tasks.squad.table [--profile smoke|speed|full] [--collect-only] [--publish].

Rows come from configs/squad/table2.yaml; each is one run of `python -m tasks.squad.train model=<kind>
model.layers=<n>`, so the same rows also run as one Hydra sweep (e.g. on SLURM:
`-m hydra/launcher=slurm model=sru model.layers=3,4,5,6`), then --collect-only.
Writes results/table2.md and results/table2.json (dev predictions: each row's `predictions` file).
profile=speed trains each full-size model for one epoch on a slice of the data and extrapolates the
seconds per epoch to the full 87,599 training questions (labelled "extrapolated").
"""
from tasks.common.table import Table

FULL_TRAIN_QUESTIONS = 87_599
HIDDEN = 128  # every row's configured hidden size per direction (the run name carries it)
COLUMNS = [("model", "model", None), ("layers", "layers", None), ("hidden", "hidden", None),
           ("params w/o emb. (M)", "params_m", ".3f"), ("dev EM", "em", ".1f"), ("dev F1", "f1", ".1f"),
           ("paper EM", "paper_em", None), ("paper F1", "paper_f1", None), ("s/epoch", "sec_per_epoch", ".1f"),
           ("RNN s/epoch", "rnn_sec_per_epoch", ".1f"), ("epochs", "epochs", None), ("device", "device", None)]
SPEED_COLUMNS = [("full epoch s (extrapolated)", "full_epoch_sec_extrapolated", ".0f"),
                 ("RNN s (extrapolated)", "full_epoch_rnn_sec_extrapolated", ".0f")]
KEYS = ["model", "layers", "hidden", "params", "params_without_embeddings", "sec_per_epoch", "rnn_sec_per_epoch",
        "epochs", "profile", "vectors", "features", "tokenizer", "predictions", "train_questions", "train_sample_seed",
        "train_used", "dev_questions",
        "train_align_exact", "dev_align_exact", "rebuilt_data", "device", "precision", "commit"]


def row_name(row, profile, data=None):
    """The run name (and directory) of a row, as configs/squad/config.yaml builds it."""
    return f"{row['model']}-{row['layers']}x{HIDDEN}-{profile}"


def notes(table, profile, outputs=None):
    r = table[0]
    source = ("rebuilt from the official explorer pages (dev texts and ids official; about 2% of train "
              "answer_starts recomputed), see ../shared/data/squad/SOURCE.md" if r["rebuilt_data"] else "official JSON")
    lines = [f"- Data: SQuAD v1.1 {source}; {r['train_used']:,} training questions used, "
             f"{r['dev_questions']:,} dev questions scored.",
             f"- Vectors: {r['vectors']}" + (" (substitute: the paper uses GloVe 840B 300d)"
                                             if "840B" not in str(r["vectors"]) else "") + ".",
             f"- Features: {', '.join(r['features'])}" + ("" if "pos" in r["features"] else
                                                          " (no POS/NER: spacy.blank has no tagger; the paper uses "
                                                          "both)") + f"; tokenizer: spaCy {r['tokenizer']}.",
             f"- Token spans reproduce {100 * r['dev_align_exact']:.2f}% of the dev gold answers exactly "
             f"({100 * r['train_align_exact']:.2f}% of train).",
             "- EM/F1: the official v1.1 semantics (tasks/squad/evaluate.py), best dev-F1 epoch; "
             "each row's predictions file is in the official {id: answer} format.",
             "- s/epoch: training only, median over epochs; RNN s/epoch: time inside the two bi-RNN encoders, "
             "forward and backward (tasks/squad/model.py RNNClock). Paper (GTX 1070): RNN ~523 s LSTM vs ~88 s "
             "SRU; total ~700 s vs ~200 s.",
             "- Settings beside the paper's and the authors' code: docs/fidelity.md (Table 2)."]
    lines += speed_note(table)
    if profile == "cpu":
        lines.append("- CPU budget: only the cut in the title; full sizes and each source's recipe otherwise. Far "
                     "fewer updates than `full`: EM/F1 sit below what these readers reach in 50 epochs.")
    if profile == "speed":
        lines.append(f"- profile=speed: one epoch of each full-size model on {r['train_used']:,} questions; "
                     f"the full-epoch columns are extrapolated linearly to {FULL_TRAIN_QUESTIONS:,} questions, "
                     f"not measured. EM/F1 after one slice epoch mean nothing.")
    return "\n".join(lines)


def budget(table):
    """What profile=cpu cut, from the rows' results: the training subset and the epochs."""
    r = table[0]
    if r["train_questions"] >= FULL_TRAIN_QUESTIONS:
        subset = f"all {r['train_questions']:,} training questions"
    elif r.get("train_sample_seed") is not None:
        subset = (f"a random {r['train_questions']:,} of the {FULL_TRAIN_QUESTIONS:,} training questions (seed "
                  f"{r['train_sample_seed']}, from every article)")
    else:
        subset = f"the first {r['train_questions']:,} training questions"
    epochs = f"{r['epochs']} epoch{'s' if r['epochs'] != 1 else ''}"
    return f"{subset}, {r['train_used']:,} of them with a token-aligned answer; {epochs} instead of 50; every dev question"


def speed_note(table):
    """The paper's speed comparison, DrQA's 3-layer LSTM against the 5-layer SRU, as measured here."""
    by = {(r["model"], r["layers"]): r for r in table}
    lstm, sru = by.get(("lstm", 3)), by.get(("sru", 5))
    if lstm is None or sru is None or not sru["sec_per_epoch"] or not sru.get("rnn_sec_per_epoch"):
        return []
    return [f"- Speed: LSTM 3 layers / SRU 5 layers = {lstm['sec_per_epoch'] / sru['sec_per_epoch']:.2f}x per epoch, "
            f"{lstm['rnn_sec_per_epoch'] / sru['rnn_sec_per_epoch']:.2f}x in the RNN part, measured on "
            f"{sru.get('machine') or sru['device']}; the paper: ~3.5x and ~5.9x (GTX 1070, cuDNN LSTM)."]


def entry(result, row, profile, data):
    out = dict(em=result["dev_em"], f1=result["dev_f1"], paper_em=row.get("paper_em"), paper_f1=row.get("paper_f1"),
               paper_source=row.get("paper_source"), params_m=result["params_without_embeddings"] / 1e6)
    if profile == "speed":
        scale = FULL_TRAIN_QUESTIONS / result["train_used"]
        out.update(full_epoch_sec_extrapolated=result["sec_per_epoch"] * scale,
                   full_epoch_rnn_sec_extrapolated=result["rnn_sec_per_epoch"] * scale)
    return out


TABLE = Table("table2", "squad", "Table 2: SQuAD v1.1 dev EM / F1, DrQA reader with bi-LSTM or bi-SRU", COLUMNS, KEYS,
              "dev_f1", overrides=dict(model="model", layers="model.layers"), run_name=row_name, entry=entry,
              notes=notes, budget=budget, smoke="a few hundred questions, hidden / 4, 2 epochs",
              profile_columns=dict(speed=SPEED_COLUMNS),
              profile_titles=dict(speed=" -- SPEED RUN: full-size models, one epoch on a slice; EM/F1 not comparable "
                                        "with the paper"), doc=__doc__)

if __name__ == "__main__":
    TABLE.main()
