"""SQuAD v1.1 for the DrQA reader: the official JSON -> spaCy tokens that keep their character offsets,
DrQA's manual features, a vocabulary over pretrained vectors, and padded batches with masks.

Tokenisation is the slow part, so each split is tokenised once and cached under
<data_dir>/squad/cache/, keyed by a hash of the file's bytes, the spaCy pipeline (name and version),
the question limit (and sample seed) and this module's CACHE_VERSION; change any of them and it is redone.
"""
import hashlib
import importlib.metadata
import json
import os
import pickle
import random
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from tasks.common.data import DataError, ensure_dataset, sha256
from tasks.common.errors import UserError
from tasks.common.vectors import read_vectors

CACHE_VERSION = 1
LAYOUT = ("{'data': [{'title', 'paragraphs': [{'context', 'qas': [{'id', 'question', "
          "'answers': [{'answer_start', 'text'}]}]}]}], 'version': '1.1'}")
PAD, UNK = "<pad>", "<unk>"


def squad_files(data_dir, log=print):
    """{'train': path, 'dev': path} fetched and verified; `rebuilt` says the mirror's rebuild was used."""
    paths = ensure_dataset("squad", data_dir, log=log)
    files = {"train": paths["train-v1.1.json"], "dev": paths["dev-v1.1.json"]}
    return files, any(".recon." in p.name for p in files.values())


def read_squad(path, limit=None, sample_seed=None):
    """Official-format JSON -> (contexts, questions); questions are dicts with id, context (index),
    question, answers [(answer_start, text)], in file order: the first `limit` of them, or with
    `sample_seed` a random `limit` of them drawn with that seed from every article (the file
    groups questions by article: its first questions cover only the first few topics)."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"{path} is not readable JSON ({e}); expected the official SQuAD v1.1 file: delete it "
                        f"and fetch it again (python -m scripts.fetch_data squad)") from e
    every = []  # (context, qa) in file order
    try:
        for article in data["data"]:
            for paragraph in article["paragraphs"]:
                every.extend((paragraph["context"], qa) for qa in paragraph["qas"])
        if limit is not None and limit < len(every):
            keep = (sorted(random.Random(sample_seed).sample(range(len(every)), limit)) if sample_seed is not None
                    else range(limit))
            every = [every[i] for i in keep]
        contexts, questions = [], []
        for context, qa in every:
            if not contexts or contexts[-1] is not context:
                contexts.append(context)
            answers = [(int(a["answer_start"]), a["text"]) for a in qa["answers"]]
            if not answers:
                raise KeyError("answers (empty: SQuAD 2.0 unanswerable questions are not supported)")
            questions.append(dict(id=qa["id"], context=len(contexts) - 1, question=qa["question"], answers=answers))
    except (KeyError, TypeError) as e:
        raise DataError(f"{path} does not have the SQuAD v1.1 layout {LAYOUT}: {e} is missing or malformed") from e
    return contexts, questions


def load_tokenizer(name):
    """(spaCy pipeline, feature names). `blank`: spacy.blank('en') with the lookup lemmatizer of
    spacy-lookups-data (offline; no tagger); any other name: an installed trained pipeline
    (e.g. en_core_web_sm) or a pipeline directory (nlp.to_disk), whose POS and NER tags are used as well."""
    import spacy
    if name == "blank":
        nlp = spacy.blank("en")
        try:
            nlp.add_pipe("lemmatizer", config={"mode": "lookup"})
            nlp.initialize()
        except (ValueError, ImportError, OSError) as e:
            raise UserError(f"the lookup lemmatizer needs spacy-lookups-data ({e}): pip install spacy-lookups-data "
                            f"(it is in requirements.txt)") from e
        return nlp, ["exact_match", "exact_match_lower", "exact_match_lemma", "tf"]
    try:
        nlp = spacy.load(name, exclude=["parser"])
    except OSError as e:
        raise UserError(f"data.tokenizer={name!r}: no spaCy pipeline of that name is installed; install it "
                        f"(python -m spacy download {name}) or use data.tokenizer=blank") from e
    features = ["exact_match", "exact_match_lower", "exact_match_lemma", "tf"]
    return nlp, features + [f for f, pipe in (("pos", "tagger"), ("ner", "ner")) if pipe in nlp.pipe_names]


def tokenize(nlp, texts, progress, desc):
    """Per text: words, character offsets (L, 2) of each word in the text, lemmas, POS and NER tags.
    Whitespace tokens are dropped; text[start:end] == word for every token."""
    out = []
    for doc in progress(nlp.pipe(texts, batch_size=256), total=len(texts), desc=desc):
        tokens = [t for t in doc if not t.is_space]
        out.append(dict(words=[t.text for t in tokens],
                        offsets=np.array([(t.idx, t.idx + len(t.text)) for t in tokens], dtype=np.int32).reshape(-1, 2),
                        lemmas=[(t.lemma_ or t.text).lower() for t in tokens],
                        pos=[t.tag_ for t in tokens], ner=[t.ent_type_ for t in tokens]))
    return out


def token_span(offsets, start, end):
    """(first, last) token overlapping the characters [start, end), or None."""
    first = int(np.searchsorted(offsets[:, 1], start, side="right"))   # first token ending after start
    last = int(np.searchsorted(offsets[:, 0], end, side="left")) - 1   # last token starting before end
    return (first, last) if first <= last and first < len(offsets) else None


def pipeline_version(tokenizer):
    """The version that keys the cache: spaCy's for `blank`, else the installed pipeline's (read
    from package metadata: importing spaCy costs seconds and a cache hit needs none of it), or for a
    pipeline saved in a directory (nlp.to_disk), a hash of its meta.json and config.cfg."""
    if Path(tokenizer, "meta.json").is_file():
        files = [Path(tokenizer, name) for name in ("meta.json", "config.cfg") if Path(tokenizer, name).is_file()]
        return hashlib.sha256(b"".join(f.read_bytes() for f in files)).hexdigest()[:16]
    try:
        return importlib.metadata.version("spacy" if tokenizer == "blank" else tokenizer)
    except importlib.metadata.PackageNotFoundError:
        if tokenizer == "blank":
            raise UserError("spaCy is not installed: pip install -r requirements.txt") from None
        raise UserError(f"data.tokenizer={tokenizer!r}: no spaCy pipeline of that name is installed; install it "
                        f"(python -m spacy download {tokenizer}) or use data.tokenizer=blank") from None


def preprocess(path, tokenizer, limit, cache_dir, progress, log=print, sample_seed=None):
    """A split tokenised, with each answer's token span; cached when cache_dir is given (see the
    module docstring). limit, sample_seed: read_squad's. spaCy loads only when the cache misses."""
    key = json.dumps([sha256(path), tokenizer, pipeline_version(tokenizer), limit, CACHE_VERSION]
                     + ([sample_seed] if sample_seed is not None else []))  # old caches keep their keys
    cache = Path(cache_dir or ".") / f"{Path(path).stem}-{hashlib.sha256(key.encode()).hexdigest()[:16]}.pkl"
    if cache_dir and cache.exists():
        with open(cache, "rb") as f:
            return pickle.load(f)
    nlp, features = load_tokenizer(tokenizer)
    contexts, questions = read_squad(path, limit, sample_seed)
    log(f"tokenising {len(contexts):,} paragraphs and {len(questions):,} questions of {path} with spaCy "
        f"({tokenizer})" + (f"; cached in {cache}" if cache_dir else ""))
    context_tokens = tokenize(nlp, contexts, progress, f"{Path(path).stem} paragraphs")
    question_tokens = tokenize(nlp, [q["question"] for q in questions], progress, f"{Path(path).stem} questions")
    for q, tokens in zip(questions, question_tokens):
        offsets = context_tokens[q["context"]]["offsets"]
        q["tokens"], q["spans"], q["exact"] = tokens, [], []
        for start, text in q["answers"]:
            span = token_span(offsets, start, start + len(text))
            q["spans"].append(span)
            q["exact"].append(span is not None and offsets[span[0], 0] == start
                              and offsets[span[1], 1] == start + len(text))
    split = dict(contexts=contexts, context_tokens=context_tokens, questions=questions, features=features)
    if not cache_dir:
        return split
    cache.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=cache.parent, prefix=cache.name + ".")
    with os.fdopen(fd, "wb") as f:
        pickle.dump(split, f, protocol=pickle.HIGHEST_PROTOCOL)
    os.replace(tmp, cache)
    return split


def alignment(split):
    """Share of gold answers whose token span reproduces the answer text exactly."""
    flags = [e for q in split["questions"] for e in q["exact"]]
    return sum(flags) / max(len(flags), 1)


def build_vocab(train, dev, vectors):
    """Words with a pretrained vector, DrQA-style: <pad>, <unk>, then the train and dev questions' words
    by frequency (the first `tune_partial` of them are fine-tuned; the authors' prepro.py@32efbce counts
    the questions of both), then every other word of train and dev by frequency. Words without a vector map to <unk>. Lowercased when the vectors are (GloVe 6B).
    Returns (itos, matrix (V, dim) float32, lowercase)."""
    def words(split):
        yield from (w for t in split["context_tokens"] for w in t["words"])
        yield from (w for q in split["questions"] for w in q["tokens"]["words"])
    every = Counter(w for s in (train, dev) for w in words(s))
    found, dim = read_vectors(vectors, set(every) | {w.lower() for w in every})
    lowercase = not any(w != w.lower() for w in found)
    norm = str.lower if lowercase else str
    by_freq = lambda counts: [w for w, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])) if w in found]
    question_words = by_freq(Counter(norm(w) for s in (train, dev) for q in s["questions"] for w in q["tokens"]["words"]))
    rest = by_freq(Counter(norm(w) for w in every.elements()))
    itos = [PAD, UNK] + question_words
    seen = set(itos)
    itos += [w for w in rest if w not in seen]
    matrix = np.zeros((len(itos), dim), dtype=np.float32)
    for i, w in enumerate(itos[2:], 2):
        matrix[i] = found[w]
    return itos, matrix, lowercase


def tag_vocab(train, kind):
    """Tag -> id (0: padding, 1: unseen), from the training paragraphs."""
    tags = sorted({t for tokens in train["context_tokens"] for t in tokens[kind]})
    return {t: i for i, t in enumerate(["<pad>", "<unk>"] + tags)}


def encode(split, stoi, lowercase, pos_ids, ner_ids):
    """Integer arrays per paragraph and per question, DrQA's features per question:
    paragraph: ids, pos, ner, tf (the word's frequency in the paragraph / its length, lowercased);
    question: ids, em (paragraph length, 3): the paragraph word occurs in the question as is,
    lowercased, as a lemma."""
    norm = str.lower if lowercase else str
    unk = stoi[UNK]
    paragraphs = []
    for t in split["context_tokens"]:
        lower = [w.lower() for w in t["words"]]
        counts = Counter(lower)
        paragraphs.append(dict(
            ids=np.array([stoi.get(norm(w), unk) for w in t["words"]], dtype=np.int64),
            tf=np.array([counts[w] / max(len(lower), 1) for w in lower], dtype=np.float32),
            pos=np.array([pos_ids.get(p, 1) for p in t["pos"]], dtype=np.int64),
            ner=np.array([ner_ids.get(n, 1) for n in t["ner"]], dtype=np.int64),
            lower=lower, lemmas=t["lemmas"], words=t["words"]))
    questions = []
    for q in split["questions"]:
        p, words = paragraphs[q["context"]], q["tokens"]["words"]
        asked = (set(words), {w.lower() for w in words}, set(q["tokens"]["lemmas"]))
        em = np.array([(w in asked[0], lw in asked[1], lm in asked[2])
                       for w, lw, lm in zip(p["words"], p["lower"], p["lemmas"])], dtype=np.float32).reshape(-1, 3)
        questions.append(dict(ids=np.array([stoi.get(norm(w), unk) for w in words], dtype=np.int64), em=em))
    return paragraphs, questions


def _pad(arrays, dtype):
    out = torch.zeros((len(arrays), max(max(len(a) for a in arrays), 1)) + arrays[0].shape[1:], dtype=dtype)
    for i, a in enumerate(arrays):
        out[i, :len(a)] = torch.from_numpy(a)
    return out


def make_batch(indices, split, paragraphs, questions, with_targets):
    """Padded tensors for the questions `indices` (masks True at padding):
    doc (B, Ld), doc_features (B, Ld, 4), doc_pos, doc_ner (B, Ld), doc_mask, question (B, Lq),
    question_mask, and with targets start, end (B) = the first answer's token span."""
    qs = [split["questions"][i] for i in indices]
    ps = [paragraphs[q["context"]] for q in qs]
    doc = _pad([p["ids"] for p in ps], torch.long)
    features = _pad([np.concatenate([questions[i]["em"], p["tf"][:, None]], axis=1) for i, p in zip(indices, ps)],
                    torch.float32)
    question = _pad([questions[i]["ids"] for i in indices], torch.long)
    lengths = torch.tensor([len(p["ids"]) for p in ps])
    q_lengths = torch.tensor([len(questions[i]["ids"]) for i in indices])
    batch = dict(doc=doc, doc_features=features, doc_pos=_pad([p["pos"] for p in ps], torch.long),
                 doc_ner=_pad([p["ner"] for p in ps], torch.long),
                 doc_mask=torch.arange(doc.size(1))[None, :] >= lengths[:, None], question=question,
                 question_mask=torch.arange(question.size(1))[None, :] >= q_lengths[:, None],
                 index=torch.tensor(indices))
    if with_targets:
        batch["start"] = torch.tensor([q["spans"][0][0] for q in qs])
        batch["end"] = torch.tensor([q["spans"][0][1] for q in qs])
    return batch
