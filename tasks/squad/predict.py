"""Answer SQuAD-format questions with a trained reader: python -m tasks.squad.predict best.pt input.json out.json

The checkpoint carries everything (weights, every word vector of its vocabulary, the config with its
tokenizer and span limit), so nothing else is needed. Words outside the checkpoint's vocabulary read as
<unk>. Writes the official {question_id: answer} JSON; when the input has answers, prints the official
EM/F1 as well.
"""
import argparse
import json
import sys

import torch

from tasks.common.checkpoint import load_model
from tasks.common.errors import UserError
from tasks.squad import data
from tasks.squad.evaluate import evaluate
from tasks.squad.model import decode


def batches_by_length(split, paragraphs, size):
    """Question indices in batches of `size`, by paragraph length (less padding; answers unchanged)."""
    order = sorted(range(len(split["questions"])),
                   key=lambda i: len(paragraphs[split["questions"][i]["context"]]["ids"]))
    return [order[i:i + size] for i in range(0, len(order), size)]


@torch.no_grad()
def answers(model, split, encoded, chunks, max_span, progress=lambda x, **_: x, desc=None):
    """{question_id: answer text} for the questions in `chunks` (lists of indices into split)."""
    paragraphs, questions = encoded
    device, out = next(model.parameters()).device, {}
    for indices in progress(chunks, desc=desc):
        b = data.make_batch(indices, split, paragraphs, questions, False)
        starts, ends, _ = decode(*model({k: v.to(device) for k, v in b.items()}), max_span)
        for i, s, e in zip(indices, starts.tolist(), ends.tolist()):
            q = split["questions"][i]
            offsets = split["context_tokens"][q["context"]]["offsets"]
            out[q["id"]] = split["contexts"][q["context"]][offsets[s, 0]:offsets[e, 1]]
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint")
    p.add_argument("input", help="SQuAD v1.1-format JSON")
    p.add_argument("output", help="where the {question_id: answer} JSON goes")
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch-size", type=int, default=64)
    args = p.parse_args(argv)
    try:
        model, ckpt = load_model(args.checkpoint, args.device)
        cfg, vocab = ckpt["config"], ckpt["vocab"]
        split = data.preprocess(args.input, cfg["data"]["tokenizer"], None, None, lambda x, **_: x)
        encoded = data.encode(split, {w: i for i, w in enumerate(vocab["words"])}, vocab["lowercase"],
                              {t: i for i, t in enumerate(vocab["pos"])}, {t: i for i, t in enumerate(vocab["ner"])})
        predicted = answers(model, split, encoded, batches_by_length(split, encoded[0], args.batch_size),
                            ckpt["model_args"]["max_span"])
    except UserError as e:
        sys.exit(f"error: {e}")
    with open(args.output, "w", encoding="utf-8") as f:
        json.dump(predicted, f, ensure_ascii=False, indent=1)
    print(f"{len(predicted):,} answers -> {args.output}")
    golds = {q["id"]: [t for _, t in q["answers"]] for q in split["questions"]}
    print(json.dumps(evaluate(golds, predicted)))


if __name__ == "__main__":
    main()
