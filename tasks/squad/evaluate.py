"""SQuAD v1.1 evaluation with the official script's semantics (evaluate-v1.1.py).

An answer is normalised by lowercasing, removing punctuation, removing the articles a/an/the and
collapsing whitespace. Exact match (EM) and token-level F1 of a prediction are the maxima over the
question's gold answers; both are averaged over every question of the dataset (an unanswered
question scores 0) and reported x100.

Command line, like the official script: python -m tasks.squad.evaluate dev-v1.1.json predictions.json
(predictions: {question_id: answer_text}) prints {"exact_match": ..., "f1": ...}.
"""
import argparse
import json
import re
import string
import sys
from collections import Counter

_PUNCTUATION = set(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(text):
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def f1_score(prediction, gold):
    pred, ref = normalize_answer(prediction).split(), normalize_answer(gold).split()
    same = sum((Counter(pred) & Counter(ref)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(ref)
    return 2 * precision * recall / (precision + recall)


def exact_match_score(prediction, gold):
    return float(normalize_answer(prediction) == normalize_answer(gold))


def score(prediction, golds):
    """(EM, F1) of one prediction against a question's gold answers: the best over the golds."""
    return (max(exact_match_score(prediction, g) for g in golds), max(f1_score(prediction, g) for g in golds))


def evaluate(golds, predictions):
    """golds: {question_id: [answer texts]}; predictions: {question_id: text}. Every gold question
    counts; a missing prediction scores 0 (as the official script, which warns about it)."""
    if not golds:
        raise ValueError("no questions to evaluate")
    em = f1 = 0.0
    for qid, answers in golds.items():
        if qid in predictions:
            e, f = score(predictions[qid], answers)
            em, f1 = em + e, f1 + f
    return {"exact_match": 100.0 * em / len(golds), "f1": 100.0 * f1 / len(golds)}


def golds_of(dataset):
    """{question_id: [answer texts]} of an official-format SQuAD JSON object."""
    return {qa["id"]: [a["text"] for a in qa["answers"]]
            for article in dataset["data"] for paragraph in article["paragraphs"] for qa in paragraph["qas"]}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dataset_file")
    p.add_argument("prediction_file")
    args = p.parse_args(argv)
    with open(args.dataset_file, encoding="utf-8") as f:
        golds = golds_of(json.load(f))
    with open(args.prediction_file, encoding="utf-8") as f:
        predictions = json.load(f)
    missing = sum(qid not in predictions for qid in golds)
    if missing:
        print(f"{missing} of {len(golds)} questions are unanswered and score 0", file=sys.stderr)
    print(json.dumps(evaluate(golds, predictions)))


if __name__ == "__main__":
    main()
