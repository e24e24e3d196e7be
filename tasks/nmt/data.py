"""Parallel text for Table 4: Multi30k (raw, tokenised here with sacremoses) or WMT'14 En-De in the
Stanford NMT files (already Moses-tokenised, hyphens split as ##AT##-##AT##); word vocabularies;
length-bucketed batches.

A split is (source sentences, target sentences) as token lists, plus the target side's raw text
(the sacreBLEU reference) where it exists.
"""
import gzip
from collections import Counter
from pathlib import Path

import torch

from tasks.common.data import DataError, ensure_dataset

PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<s>", "</s>"
SPECIALS = (PAD, UNK, BOS, EOS)
MULTI30K_SPLITS = dict(train="train", valid="val", test="test_2016_flickr")
WMT14_SPLITS = dict(train="train", valid="newstest2013", test="newstest2014")


def read_lines(path):
    try:
        with (gzip.open if str(path).endswith(".gz") else open)(path, "rt", encoding="utf-8") as f:
            return [line.rstrip("\n") for line in f]
    except (OSError, UnicodeDecodeError, EOFError) as e:
        raise DataError(f"cannot read {path} ({e}); expected UTF-8 text, one sentence per line") from e


def read_parallel(src_path, tgt_path, limit=None):
    src, tgt = read_lines(src_path), read_lines(tgt_path)
    if len(src) != len(tgt):
        raise DataError(f"{src_path} has {len(src):,} lines but {tgt_path} has {len(tgt):,}: the two sides of a "
                        f"parallel corpus must be line-aligned")
    return (src[:limit], tgt[:limit]) if limit else (src, tgt)


class Tokenizer:
    """Moses tokenisation (sacremoses, no XML escaping), optionally lowercased; detokenise for sacreBLEU."""

    def __init__(self, lang, lowercase=False, pretokenized=False):
        from sacremoses import MosesDetokenizer, MosesTokenizer
        self.lowercase, self.pretokenized = lowercase, pretokenized
        self.tok, self.detok = MosesTokenizer(lang), MosesDetokenizer(lang)

    def __call__(self, line):
        line = line.lower() if self.lowercase else line
        return line.split() if self.pretokenized else self.tok.tokenize(line, escape=False)

    def detokenize(self, tokens):
        if self.pretokenized:  # the Stanford WMT files split hyphens as ##AT##-##AT##
            tokens = " ".join(tokens).replace(" ##AT##-##AT## ", "-").split()
        return self.detok.detokenize(tokens)


def load_corpus(cfg, data_dir, log=print):
    """{split: dict(src=[[tokens]], tgt=[[tokens]], tgt_raw=[str] or None)} and the two tokenizers."""
    d, limits = cfg.data, dict(train=cfg.profile.max_train_pairs, valid=cfg.profile.max_eval_pairs,
                               test=cfg.profile.max_eval_pairs)
    src_tok = Tokenizer(d.src, d.lowercase, d.name == "wmt14")
    tgt_tok = Tokenizer(d.tgt, d.lowercase, d.name == "wmt14")
    if d.name == "multi30k":
        paths = ensure_dataset("multi30k", data_dir, log=log)
        files = {s: (paths[f"{name}.{d.src}.gz"], paths[f"{name}.{d.tgt}.gz"]) for s, name in MULTI30K_SPLITS.items()}
    elif d.name == "wmt14":
        root = Path(d.path or "")
        files = {s: (root / f"{name}.{d.src}", root / f"{name}.{d.tgt}") for s, name in WMT14_SPLITS.items()}
        missing = [str(p) for pair in files.values() for p in pair if not p.is_file()]
        if not d.path or missing:
            raise DataError(f"data=wmt14 needs data.path=<dir> holding the Stanford NMT files "
                            f"(https://nlp.stanford.edu/projects/nmt/data/wmt14.en-de/: train, newstest2013, "
                            f"newstest2014 .en/.de); missing: {', '.join(missing) or 'data.path'}")
    else:
        raise DataError(f"data.name={d.name!r}: expected multi30k or wmt14")
    corpus = {}
    for split, (src_path, tgt_path) in files.items():
        src, tgt = read_parallel(src_path, tgt_path, limits[split])
        corpus[split] = dict(src=[src_tok(s) for s in src], tgt=[tgt_tok(t) for t in tgt],
                             tgt_raw=None if d.name == "wmt14" else tgt)
    return corpus, src_tok, tgt_tok


def build_vocab(sentences, min_freq, max_size):
    """Specials, then words by frequency (ties alphabetical), at least min_freq times, at most max_size."""
    counts = Counter(w for s in sentences for w in s)
    words = [w for w, c in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])) if c >= min_freq]
    return list(SPECIALS) + words[:max_size]


def encode(sentences, stoi, add_bos_eos):
    unk = stoi[UNK]
    ids = [[stoi.get(w, unk) for w in s] for s in sentences]
    return [[stoi[BOS]] + s + [stoi[EOS]] for s in ids] if add_bos_eos else ids


def bucketed_batches(src, tgt, batch_size, batch_tokens, order, pool=100):
    """Batches of sentence indices with similar lengths: `order` is cut into pools of `pool` batches,
    each pool sorted by (source, target) length and cut into batches of at most batch_size sentences
    and, if batch_tokens is set, at most batch_tokens padded tokens on either side."""
    batches = []
    for p in range(0, len(order), pool * batch_size):
        chunk = sorted(order[p:p + pool * batch_size], key=lambda i: (len(src[i]), len(tgt[i])))
        current, longest = [], 0
        for i in chunk:
            longest_if = max(longest, len(src[i]), len(tgt[i]))
            if current and (len(current) >= batch_size or (batch_tokens and longest_if * (len(current) + 1) > batch_tokens)):
                batches.append(current)
                current, longest_if = [], max(len(src[i]), len(tgt[i]))
            current.append(i)
            longest = longest_if
        if current:
            batches.append(current)
    return batches


def make_batch(indices, src, tgt):
    """src (B, S) with lengths, tgt (B, T) = <s> y </s>, right-padded with 0."""
    def pad(seqs):
        out = torch.zeros(len(seqs), max(len(s) for s in seqs), dtype=torch.long)
        for i, s in enumerate(seqs):
            out[i, :len(s)] = torch.tensor(s, dtype=torch.long)
        return out
    s = [src[i] for i in indices]
    return dict(src=pad(s), src_len=torch.tensor([len(x) for x in s]), tgt=pad([tgt[i] for i in indices]))
