"""Decoding and BLEU for Table 4: greedy and batched beam search over Seq2Seq.decode_step, and
sacreBLEU twice: on detokenised output against the raw references (the signature is printed) and on
the tokenised output against the tokenised references with tokenize="none" (what multi-bleu.perl
computed in 2017).

    python -m tasks.nmt.translate best.pt input.en output.de [--beam 5]
translates raw text with a checkpoint alone (it carries the vocabularies and the config).
"""
import argparse
import sys

import torch

from tasks.nmt.data import BOS, EOS, Tokenizer, encode, make_batch
from tasks.nmt.model import reorder


def limits(max_len, batch):
    """max_len: one limit for the batch, or one per sentence (a sentence's translation must not depend on
    the other sentences it is decoded with)."""
    return [int(max_len)] * batch if isinstance(max_len, int) else [int(n) for n in max_len]


@torch.no_grad()
def greedy(model, src, src_len, bos, eos, max_len):
    state = model.start(src, src_len)
    limit = torch.tensor(limits(max_len, src.size(0)), device=src.device)
    words = torch.full((src.size(0),), bos, dtype=torch.long, device=src.device)
    out, done = [], torch.zeros(src.size(0), dtype=torch.bool, device=src.device)
    for step in range(1, int(limit.max()) + 1):
        logp, state = model.decode_step(words, state)
        words = logp.argmax(-1)
        out.append(words.masked_fill(done, eos))
        done |= (words == eos) | (step >= limit)
        if done.all():
            break
    return [strip(seq, eos) for seq in torch.stack(out, 1).tolist()]


def strip(seq, eos):
    return seq[:seq.index(eos)] if eos in seq else seq


@torch.no_grad()
def beam_search(model, src, src_len, bos, eos, max_len, beam, length_penalty=0.0):
    """Best hypothesis per sentence, without </s>. Scores are summed log-probabilities divided by
    length ** length_penalty when finished (0: none, OpenNMT-py 2017's default). max_len: see `limits`."""
    B, K, device = src.size(0), beam, src.device
    limit = limits(max_len, B)
    state = reorder(model.start(src, src_len), torch.arange(B, device=device).repeat_interleave(K))
    scores = torch.zeros(B, K, device=device)
    scores[:, 1:] = float("-inf")                                  # all beams start as one
    history = torch.full((B * K, 0), bos, dtype=torch.long, device=device)
    words = torch.full((B * K,), bos, dtype=torch.long, device=device)
    finished = [[] for _ in range(B)]                              # (normalised score, tokens)
    for step in range(1, max(limit) + 1):
        logp, state = model.decode_step(words, state)
        V = logp.size(-1)
        total = (scores.view(-1, 1) + logp).view(B, K * V)
        top, flat = total.topk(2 * K, dim=1)                       # K might end here: keep 2K candidates
        rows = (torch.arange(B, device=device)[:, None] * K + flat // V).tolist()
        top, tokens = top.tolist(), (flat % V).tolist()
        keep_rows, keep_words, keep_scores = [], [], []
        for b in range(B):
            alive = []
            for j in range(2 * K):
                if top[b][j] == float("-inf"):
                    break
                if tokens[b][j] == eos and j >= K:                 # an ending outside the top K: not taken
                    continue
                if tokens[b][j] == eos or step == limit[b]:
                    if len(finished[b]) < K:
                        seq = history[rows[b][j]].tolist() + ([] if tokens[b][j] == eos else [tokens[b][j]])
                        finished[b].append((top[b][j] / max(len(seq) + 1, 1) ** length_penalty, seq))
                elif len(alive) < K:
                    alive.append(j)
            if len(finished[b]) >= K:                              # done: K dead placeholder rows
                alive = []
            pad = K - len(alive)
            keep_rows += [rows[b][j] for j in alive] + [rows[b][0]] * pad
            keep_words += [tokens[b][j] for j in alive] + [eos] * pad
            keep_scores += [top[b][j] for j in alive] + [float("-inf")] * pad
        index = torch.tensor(keep_rows, device=device)
        words = torch.tensor(keep_words, device=device)
        history = torch.cat([history.index_select(0, index), words[:, None]], dim=1)
        scores = torch.tensor(keep_scores, device=device).view(B, K)
        state = reorder(state, index)
        if all(len(f) >= K for f in finished) or torch.isinf(scores).all():
            break
    return [max(f, key=lambda x: x[0])[1] if f else [] for f in finished]


def translate(model, sentences, src_stoi, tgt_itos, cfg, device, progress=lambda x, **_: x, desc=None):
    """Token lists in -> token lists out (in the input order), batched by length."""
    d = cfg.decode
    bos, eos = tgt_itos.index(BOS), tgt_itos.index(EOS)
    ids = encode(sentences, src_stoi, add_bos_eos=False)
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    out = [None] * len(ids)
    src, no_target = [s or [0] for s in ids], [[0]] * len(ids)   # an empty line reads as one pad
    chunks = [order[i:i + d.batch_size] for i in range(0, len(order), d.batch_size)]
    for chunk in progress(chunks, desc=desc):
        b = make_batch(chunk, src, no_target)
        src_batch, src_len = b["src"].to(device), b["src_len"].to(device)
        max_len = (src_len * d.max_len_ratio + d.max_len_extra).tolist()   # each sentence its own limit
        if d.beam > 1:
            hyps = beam_search(model, src_batch, src_len, bos, eos, max_len, d.beam, d.length_penalty)
        else:
            hyps = greedy(model, src_batch, src_len, bos, eos, max_len)
        for i, h in zip(chunk, hyps):
            out[i] = [tgt_itos[w] for w in h]
    return out


def bleu_scores(hypotheses_tok, references_tok, detokenize, references_raw):
    """(sacreBLEU on detokenised text, its signature, tokenised BLEU as multi-bleu.perl)."""
    from sacrebleu.metrics import BLEU
    detok = [detokenize(h) for h in hypotheses_tok]
    sacre = BLEU()
    raw = references_raw if references_raw is not None else [detokenize(r) for r in references_tok]
    score = sacre.corpus_score(detok, [raw]).score
    tok = BLEU(tokenize="none").corpus_score([" ".join(h) for h in hypotheses_tok],
                                            [[" ".join(r) for r in references_tok]]).score
    return score, sacre.get_signature().format(), tok, detok


def main(argv=None):
    from omegaconf import OmegaConf

    from tasks.common.checkpoint import load_model
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint")
    p.add_argument("input", help="raw source text, one sentence per line")
    p.add_argument("output", help="detokenised translations, one per line")
    p.add_argument("--beam", type=int, default=None, help="default: the checkpoint's decode.beam")
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    model, ckpt = load_model(args.checkpoint, args.device)
    cfg = OmegaConf.create(ckpt["config"])
    if args.beam is not None:
        cfg.decode.beam = args.beam
    src_tok = Tokenizer(cfg.data.src, cfg.data.lowercase, cfg.data.name == "wmt14")
    tgt_tok = Tokenizer(cfg.data.tgt, cfg.data.lowercase, cfg.data.name == "wmt14")
    with open(args.input, encoding="utf-8") as f:
        sentences = [src_tok(line.rstrip("\n")) for line in f]
    vocab = ckpt["vocab"]
    out = translate(model, sentences, {w: i for i, w in enumerate(vocab["src"])}, vocab["tgt"], cfg,
                    torch.device(args.device))
    with open(args.output, "w", encoding="utf-8") as f:
        f.writelines(tgt_tok.detokenize(h) + "\n" for h in out)
    print(f"{len(out):,} translations -> {args.output}", file=sys.stderr)


if __name__ == "__main__":
    main()
