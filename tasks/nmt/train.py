"""Train one Table 4 row: python -m tasks.nmt.train model=sru model.layers=5 [model.input_feed=false] [profile=smoke].

Several GPUs: torchrun --nproc_per_node=N -m tasks.nmt.train ... Writes to out_dir: last.pt, best.pt
(best valid perplexity, with both vocabularies and the config: `python -m tasks.nmt.translate`
needs nothing else), test.hyp.<tgt> (detokenised test translations of the best weights, one per
line, in test order), test.ref.<tgt> (the references scored against), result.json, train.log.
"""
import math

import torch
import torch.nn.functional as F

from tasks.common.errors import check_config
from tasks.common.models import rnn_model_checks
from tasks.common.trainer import entry_point, trainer_checks
from tasks.nmt import data
from tasks.nmt.model import build_model
from tasks.nmt.translate import bleu_scores, translate


def validate_config(cfg, world_size=1):
    m, o, d = cfg.model, cfg.optim, cfg.data
    check_config(cfg, trainer_checks(cfg) + rnn_model_checks(m) + [
        ("model.hidden", m.hidden >= 2 and m.hidden % 2 == 0, "even and >= 2 (the bidirectional encoder splits it)"),
        ("model.input_feed", not (m.input_feed and m.kind != "lstm"),
         "false with an SRU (input_feed=true needs the LSTM decoder: it cannot run over the target in one call)"),
        ("data.name", d.name in ("multi30k", "wmt14"), "multi30k or wmt14 (data=multi30k|wmt14)"),
        ("data.max_len", d.max_len >= 1, ">= 1 (tokens; longer training pairs are dropped)"),
        ("optim.batch_size", o.batch_size >= world_size, f">= the number of processes ({world_size})"),
        ("optim.loss_norm", o.loss_norm in ("sents", "tokens"), "sents (OpenNMT 2017) or tokens"),
        ("decode.beam", cfg.decode.beam >= 1, ">= 1 (1 = greedy)"),
        ("profile.size_divisor", cfg.profile.size_divisor >= 1, ">= 1")])


class TranslationTask:
    name, metric, mode = "nmt", "valid_ppl", "min"
    eval_split, test_split, count_name = "valid", "test", "target_tokens"

    def __init__(self, cfg, ctx):
        self.cfg, d, p = cfg, cfg.data, cfg.profile
        corpus, self.src_tok, self.tgt_tok = data.load_corpus(cfg, cfg.data_dir, log=print if ctx.is_main else
                                                                lambda *_: None)
        train = corpus["train"]
        keep = [i for i, (s, t) in enumerate(zip(train["src"], train["tgt"]))
                if 0 < len(s) <= d.max_len and 0 < len(t) <= d.max_len]     # OpenNMT: pairs <= 50 tokens
        src_itos = data.build_vocab([train["src"][i] for i in keep], d.min_freq, d.src_vocab_size)
        tgt_itos = data.build_vocab([train["tgt"][i] for i in keep], d.min_freq, d.tgt_vocab_size)
        keep = keep[:p.get("train_slice")]   # speed runs: full vocabularies (softmax size), a slice to train on
        self.src_stoi = {w: i for i, w in enumerate(src_itos)}
        tgt_stoi = {w: i for i, w in enumerate(tgt_itos)}
        self.corpus = corpus
        self.ids = {s: (data.encode(c["src"], self.src_stoi, False), data.encode(c["tgt"], tgt_stoi, True))
                    for s, c in corpus.items()}
        self.train_ids = keep
        self.vocab = dict(src=src_itos, tgt=tgt_itos)
        emb, hidden = (max(2, v // p.size_divisor) for v in (cfg.model.emb, cfg.model.hidden))
        hidden += hidden % 2
        self.model_args = dict(src_vocab=len(src_itos), tgt_vocab=len(tgt_itos), emb=emb, hidden=hidden)
        self.info = dict(data=d.name, train_pairs=len(keep), test_sentences=len(corpus["test"]["src"]),
                         src_vocab=len(src_itos), tgt_vocab=len(tgt_itos), input_feed=cfg.model.input_feed,
                         beam=cfg.decode.beam, decay_start=cfg.optim.decay_start)
        eval_order = {s: sorted(range(len(self.ids[s][0])), key=lambda i: len(self.ids[s][0][i])) for s in ("valid", "test")}
        self.eval_batches = {s: [o[i:i + cfg.decode.batch_size] for i in range(0, len(o), cfg.decode.batch_size)]
                             for s, o in eval_order.items()}
        if ctx.is_main:
            print(f"{cfg.run_name}: {cfg.model.kind} {cfg.model.layers} layers, emb {emb}, hidden {hidden}, input_feed "
                  f"{cfg.model.input_feed}; {d.name} {d.src}->{d.tgt}: {len(keep):,} training pairs, vocab "
                  f"{len(src_itos):,}/{len(tgt_itos):,}, profile={p.name}", flush=True)
        self.model = None

    def build_model(self):
        self.model = build_model(self.cfg, self.model_args)
        return self.model

    def train_batches(self, epoch, ctx):
        """Length-bucketed global batches in a random order; each rank keeps its slice of each, with
        the global batch's target tokens per sentence (the loss normalisation, see objective_scale)."""
        src, tgt = self.ids["train"]
        order = [self.train_ids[i] for i in torch.randperm(len(self.train_ids)).tolist()]
        batches = data.bucketed_batches(src, tgt, self.cfg.optim.batch_size, self.cfg.optim.batch_tokens, order)
        batches = [batches[i] for i in torch.randperm(len(batches)).tolist()]
        return [(b[ctx.rank::ctx.world_size], sum(len(tgt[i]) - 1 for i in b) / len(b))
                for b in batches if len(b) >= ctx.world_size]

    def loss(self, model, indices, split):
        src, tgt = self.ids[split]
        batch = data.make_batch(indices, src, tgt)
        tokens = int((batch["tgt"][:, 1:] != 0).sum())  # counted on the host tensor: no device sync
        b = {k: v.to(next(model.parameters()).device) for k, v in batch.items()}
        logp = model(b["src"], b["src_len"], b["tgt"][:, :-1])
        gold = b["tgt"][:, 1:]
        nll = F.nll_loss(logp.reshape(-1, logp.size(-1)), gold.reshape(-1), ignore_index=0, reduction="sum")
        return nll, tokens

    def step(self, model, batch, carry):
        nll, tokens = self.loss(model, batch[0], "train")
        return nll / tokens, tokens, None

    def objective_scale(self, batch):
        """OpenNMT-py (2017) sums the loss over the batch's target tokens and divides by its sentences:
        the per-token mean times the global batch's tokens per sentence."""
        return batch[1] if self.cfg.optim.loss_norm == "sents" else 1.0

    def evaluate(self, model, split, ctx):
        """Perplexity (teacher-forced); on the test split also BLEU of beam search, and the files."""
        nll, tokens = 0.0, 0
        for indices in ctx.progress(self.eval_batches[split][ctx.rank::ctx.world_size], desc=f"{split} ppl"):
            n, t = self.loss(model, indices, split)
            nll, tokens = nll + n.item(), tokens + t
        sums = ctx.all_reduce(dict(nll=nll, tokens=tokens))
        metrics = {f"{split}_ppl": math.exp(sums["nll"] / max(sums["tokens"], 1))}
        if split == "test" and ctx.is_main:
            metrics.update(self.test_bleu(model, ctx))
        return metrics

    def test_bleu(self, model, ctx):
        c, tgt_lang = self.corpus["test"], self.cfg.data.tgt
        hyps = translate(model, c["src"], self.src_stoi, self.vocab["tgt"], self.cfg, next(model.parameters()).device,
                         ctx.progress, desc=f"test beam {self.cfg.decode.beam}")
        bleu, signature, bleu_tok, detok = bleu_scores(hyps, c["tgt"], self.tgt_tok.detokenize, c["tgt_raw"])
        refs = c["tgt_raw"] if c["tgt_raw"] is not None else [self.tgt_tok.detokenize(r) for r in c["tgt"]]
        out = self.cfg.out_dir
        for name, lines in ((f"test.hyp.{tgt_lang}", detok), (f"test.ref.{tgt_lang}", refs)):
            with open(f"{out}/{name}", "w", encoding="utf-8") as f:
                f.writelines(line + "\n" for line in lines)
        print(f"sacreBLEU {bleu:.2f} ({signature}); tokenised BLEU {bleu_tok:.2f}", flush=True)
        return dict(bleu=bleu, bleu_tok=bleu_tok, sacrebleu_signature=signature)

    def train_metrics(self, mean_loss):
        return dict(train_loss=mean_loss, train_ppl=math.exp(mean_loss))

    def summary(self, history):
        m = self.model   # "embeddings": every vocabulary-sized matrix (both embeddings and the output layer)
        embeddings = {id(p) for part in (m.encoder.embed, m.decoder.embed, m.generator) for p in part.parameters()}
        no_emb = sum(p.numel() for p in m.parameters() if id(p) not in embeddings)
        out = self.cfg.out_dir
        return dict(self.info, params_no_emb=no_emb, hypotheses=f"{out}/test.hyp.{self.cfg.data.tgt}",
                    references=f"{out}/test.ref.{self.cfg.data.tgt}")


train, main = entry_point("nmt", validate_config, TranslationTask)

if __name__ == "__main__":
    main()
