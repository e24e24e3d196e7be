"""Train one Table 2 row: python -m tasks.squad.train model=sru model.layers=5 [profile=smoke].

Several GPUs: torchrun --nproc_per_node=N -m tasks.squad.train ... (each batch of 32 questions is
split over the ranks). Writes to out_dir: last.pt (every epoch, atomic), best.pt (best dev F1, with
its vocabulary and config), predictions_dev.json (the official {question_id: answer} format, from
the best weights at the end), result.json, train.log.
"""
import numpy as np
import torch
import torch.nn.functional as F

from tasks.common.errors import check_config
from tasks.common.provenance import write_json_atomic
from tasks.common.models import rnn_model_checks
from tasks.common.trainer import entry_point, trainer_checks
from tasks.squad import data
from tasks.squad.evaluate import evaluate as squad_scores
from tasks.squad.model import build_model
from tasks.squad.predict import answers, batches_by_length


def validate_config(cfg, world_size=1):
    m, o, d = cfg.model, cfg.optim, cfg.data
    check_config(cfg, trainer_checks(cfg) + rnn_model_checks(m) + [
        ("model.rnn_dropout", 0 <= m.rnn_dropout < 1, "in [0, 1)"),
        ("model.embed_dropout", 0 <= m.embed_dropout < 1, "in [0, 1)"),
        ("data.tune_partial", d.tune_partial >= 0, ">= 0 (the number of question words fine-tuned)"),
        ("data.max_span", d.max_span >= 1, ">= 1 (tokens)"),
        ("optim.batch_size", o.batch_size >= world_size, f">= the number of processes ({world_size})"),
        ("optim.eval_batch_size", o.eval_batch_size >= 1, ">= 1"),
        ("profile.size_divisor", cfg.profile.size_divisor >= 1, ">= 1")])


class ReadingTask:
    name, metric, mode = "squad", "dev_f1", "max"
    eval_split, test_split, count_name = "dev", "dev", "questions"   # "test": dev again, with the best weights

    def __init__(self, cfg, ctx):
        self.cfg, d, p = cfg, cfg.data, cfg.profile
        files, rebuilt = data.squad_files(cfg.data_dir, log=self.say if ctx.is_main else lambda *_: None)
        cache, limits = f"{cfg.data_dir}/squad/cache", dict(train=p.max_train_questions, dev=p.max_dev_questions)
        seeds = dict(train=p.get("train_sample_seed"), dev=None)  # a seeded random training subset, else the first N
        load = lambda: {s: data.preprocess(files[s], d.tokenizer, n, cache, ctx.progress, self.say, seeds[s])
                        for s, n in limits.items()}
        self.splits = load() if ctx.is_main else None   # tokenise once; the other ranks then read the cache
        ctx.barrier()
        self.splits = self.splits or load()
        train, dev = self.splits["train"], self.splits["dev"]
        itos, self.vectors, lowercase = data.build_vocab(train, dev, d.vectors)
        stoi = {w: i for i, w in enumerate(itos)}
        features = train["features"]
        self.tags = {k: data.tag_vocab(train, k) if k in features else {} for k in ("pos", "ner")}
        self.encoded = {s: data.encode(self.splits[s], stoi, lowercase, self.tags["pos"], self.tags["ner"])
                        for s in self.splits}
        # training uses the questions whose first answer starts and ends on token boundaries (the authors'
        # prepro.py@32efbce get_answer_index drops the rest)
        self.train_ids = [i for i, q in enumerate(train["questions"]) if q["spans"][0] is not None and q["exact"][0]]
        self.golds = {q["id"]: [t for _, t in q["answers"]] for q in dev["questions"]}
        hidden = max(4, cfg.model.hidden // p.size_divisor)
        self.vocab = dict(words=itos, pos=list(self.tags["pos"]), ner=list(self.tags["ner"]), lowercase=lowercase)
        self.model_args = dict(vocab_size=len(itos), dim=int(self.vectors.shape[1]), tuned=d.tune_partial + 2,
                               hidden=hidden, max_span=d.max_span, use_pos="pos" in features,
                               use_ner="ner" in features, pos_size=len(self.tags["pos"]),
                               ner_size=len(self.tags["ner"]))
        self.info = dict(features=features, vectors=d.vectors, tokenizer=d.tokenizer, rebuilt_data=rebuilt,
                         lowercase=lowercase, vocab=len(itos), train_questions=len(train["questions"]),
                         train_sample_seed=seeds["train"], train_used=len(self.train_ids),
                         dev_questions=len(dev["questions"]),
                         train_align_exact=data.alignment(train), dev_align_exact=data.alignment(dev))
        self.dev_chunks = batches_by_length(dev, self.encoded["dev"][0], cfg.optim.eval_batch_size)
        if ctx.is_main:
            self.say(f"{cfg.run_name}: {cfg.model.kind} {cfg.model.layers}x{hidden}, {len(self.train_ids):,} "
                     f"training questions, {len(dev['questions']):,} dev, vocabulary {len(itos):,} ({d.vectors}, "
                     f"{'lowercased' if lowercase else 'cased'}), features {'+'.join(features)}, "
                     f"profile={p.name}")
        self.model = None

    @staticmethod
    def say(msg):
        print(msg, flush=True)

    def build_model(self):
        self.model = build_model(self.cfg, self.model_args, self.vectors)
        self.model.clock.enabled = self.cfg.profile.time_rnn
        return self.model

    def train_batches(self, epoch, ctx):
        """Global batches of batch_size random questions; each rank keeps its slice of each."""
        order = np.array(self.train_ids)[torch.randperm(len(self.train_ids)).numpy()]
        size = self.cfg.optim.batch_size
        globals_ = [order[i:i + size] for i in range(0, len(order), size)]
        return [part.tolist() for g in globals_ if len(g) >= ctx.world_size
                for part in [np.array_split(g, ctx.world_size)[ctx.rank]]]

    def step(self, model, indices, carry):
        paragraphs, questions = self.encoded["train"]
        b = data.make_batch(indices, self.splits["train"], paragraphs, questions, True)
        b = {k: v.to(self.device_of(model), non_blocking=True) for k, v in b.items()}
        start, end = model(b)
        return F.cross_entropy(start, b["start"]) + F.cross_entropy(end, b["end"]), len(indices), None

    @staticmethod
    def device_of(model):
        return next(model.parameters()).device

    def evaluate(self, model, split, ctx):
        """Official EM/F1 over every dev question (each rank decodes its share of the batches), and
        the predictions written in the official format."""
        mine = answers(model, self.splits[split], self.encoded[split], self.dev_chunks[ctx.rank::ctx.world_size],
                       self.cfg.data.max_span, ctx.progress, desc=f"{self.cfg.run_name} {split}")
        predictions = {k: v for part in ctx.gather(mine) for k, v in part.items()}
        if ctx.is_main:
            write_json_atomic(predictions, f"{self.cfg.out_dir}/predictions_{split}.json")
        scores = squad_scores(self.golds, predictions)
        return {f"{split}_em": scores["exact_match"], f"{split}_f1": scores["f1"]}

    def train_metrics(self, mean_loss):
        return dict(train_loss=mean_loss, rnn_seconds=self.model.clock.take())

    def summary(self, history):
        """What Table 2 reports beside the scores: the RNN part of an epoch, the data and features."""
        embeddings = sum(p.numel() for p in self.model.embedding.parameters())
        return dict(self.info, params_without_embeddings=sum(p.numel() for p in self.model.parameters()
                                                             if p.requires_grad) - embeddings,
                    rnn_sec_per_epoch=float(np.median([e["rnn_seconds"] for e in history])),
                    predictions=f"{self.cfg.out_dir}/predictions_dev.json")


train, main = entry_point("squad", validate_config, ReadingTask)

if __name__ == "__main__":
    main()
