"""Train one Table 5 row: python -m tasks.speech.train model=sru model.layers=12 [model.bidirectional=true] [profile=smoke].

CTC over characters on filterbank frames (no HMM; the paper's hybrid recipe needs Switchboard and
its alignments). Data: connected FSDD digits by default; data=isolated, data=yesno, or any Kaldi
data directory / Lhotse manifests (configs/speech/data/). Writes to out_dir: last.pt, best.pt (best
dev WER), test.hyp and test.ref (`uttid transcript` lines), result.json, train.log.
"""
import hashlib
import json
import os
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from tasks.common.data import DataError, ensure_dataset
from tasks.common.errors import check_config
from tasks.common.models import rnn_model_checks
from tasks.common.trainer import entry_point, trainer_checks
from tasks.speech import data
from tasks.speech.metrics import error_rates, greedy_text
from tasks.speech.model import build_model, lookahead_steps

CACHE_VERSION = 1
BLANK, SPACE = "_", "|"


def validate_config(cfg, world_size=1):
    m, d = cfg.model, cfg.data
    check_config(cfg, trainer_checks(cfg) + rnn_model_checks(m) + [
        ("model.future_frames", m.future_frames >= 0, ">= 0"),
        ("data.name", d.name in ("digits", "isolated", "yesno", "kaldi", "lhotse"),
         "digits, isolated, yesno, kaldi or lhotse (data=<name>)"),
        ("data.stack", d.stack >= 1, ">= 1 (frames stacked and subsampled)"),
        ("optim.batch_size", cfg.optim.batch_size >= world_size, f">= the number of processes ({world_size})"),
        ("profile.size_divisor", cfg.profile.size_divisor >= 1, ">= 1")])


def corpus(cfg, data_dir, log):
    """{split: [utterances]} for the configured data (tasks/speech/data.py describes each kind)."""
    d, p = cfg.data, cfg.profile
    if d.name in ("digits", "isolated"):
        ensure_dataset("fsdd", data_dir, log=log)
        recordings = data.fsdd_recordings(Path(data_dir) / "fsdd" / "recordings")
        if d.name == "isolated":
            splits = {s: data.isolated_digits(recordings, s) for s in ("train", "dev", "test")}
        else:
            counts = dict(train=p.train_utterances, dev=p.dev_utterances, test=p.test_utterances)
            return {s: data.connected_digits(recordings, s, n, d.max_digits, d.seed) for s, n in counts.items()}
    elif d.name == "yesno":
        ensure_dataset("yesno", data_dir, log=log)
        utts = data.yesno(Path(data_dir) / "yesno" / "waves_yesno")
        splits = dict(train=[u for i, u in enumerate(utts) if i % 6 >= 2], dev=utts[0::6], test=utts[1::6])
    elif d.name == "kaldi":
        splits = {s: data.kaldi_dir(d.kaldi[s]) for s in ("train", "dev", "test")}
    else:
        splits = {s: data.lhotse_manifests(*d.lhotse[s]) for s in ("train", "dev", "test")}
    limits = dict(train=p.train_utterances, dev=p.dev_utterances, test=p.test_utterances)
    return {s: u[:limits[s]] for s, u in splits.items()}


def cached_features(utts, bins, cache_dir, progress, desc):
    """Filterbanks of every utterance, cached under a key of what defines them."""
    spec = [(u["id"], u["text"], [str(x) for x in u.get("pieces", [])], u.get("gaps")) for u in utts]
    key = hashlib.sha256(json.dumps([spec, bins, CACHE_VERSION]).encode()).hexdigest()[:16]
    path = Path(cache_dir) / f"{desc}-{key}.npz"
    if path.exists():
        with np.load(path) as z:
            return [z[str(i)] for i in range(len(utts))]
    feats = [data.features(u, bins) for u in progress(utts, desc=f"fbank {desc}")]
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npz")
    with os.fdopen(fd, "wb") as f:
        np.savez(f, **{str(i): x for i, x in enumerate(feats)})
    os.replace(tmp, path)
    return feats


class SpeechTask:
    name, metric, mode = "speech", "dev_wer", "min"
    eval_split, test_split, count_name = "dev", "test", "utterances"

    def __init__(self, cfg, ctx):
        self.cfg, d, p = cfg, cfg.data, cfg.profile
        say = print if ctx.is_main else (lambda *_: None)
        self.utts = corpus(cfg, cfg.data_dir, say)
        for split, utts in self.utts.items():
            if not utts:
                raise DataError(f"the {d.name} {split} split is empty: check the data settings (configs/speech/data/)")
        raw = {s: cached_features(u, d.bins, f"{cfg.data_dir}/speech/cache", ctx.progress, f"{d.name}-{s}")
               for s, u in self.utts.items()}
        mean, std = data.normaliser(raw["train"])
        self.feats = {s: [torch.from_numpy(data.stack((x - mean) / std, d.stack)) for x in f] for s, f in raw.items()}
        chars = sorted({c for u in self.utts["train"] for c in u["text"].replace(" ", SPACE)})
        self.symbols = [BLANK] + chars
        index = {c: i for i, c in enumerate(self.symbols)}
        self.labels = {s: [[index[c] for c in u["text"].replace(" ", SPACE) if c in index] for u in us]
                       for s, us in self.utts.items()}
        hidden = max(4, cfg.model.hidden // p.size_divisor)
        self.vocab = dict(symbols=self.symbols, mean=mean.tolist(), std=std.tolist())
        self.model_args = dict(input_size=d.bins * d.stack, hidden=hidden, symbols=len(self.symbols), stack=d.stack)
        frames = sum(len(x) for x in self.feats["train"])
        self.info = dict(data=d.name, train_utterances=len(self.utts["train"]), test_utterances=len(self.utts["test"]),
                         train_frames=frames, bidirectional=cfg.model.bidirectional,
                         future_frames=0 if cfg.model.bidirectional else cfg.model.future_frames,
                         future_steps=0 if cfg.model.bidirectional else lookahead_steps(cfg.model.future_frames, d.stack),
                         forget_bias=cfg.model.get("forget_bias"),
                         output="characters", features=f"{d.bins}-d log-mel fbank x {d.stack} stacked")
        say(f"{cfg.run_name}: {'bi-' if cfg.model.bidirectional else ''}{cfg.model.kind} {cfg.model.layers}x{hidden}; "
            f"{d.name}: {len(self.utts['train']):,} training utterances ({frames:,} frames after stacking by "
            f"{d.stack}), {len(self.symbols)} CTC symbols; profile={p.name}")
        self.model = None

    def build_model(self):
        self.model = build_model(self.cfg, self.model_args)
        return self.model

    def batch(self, split, indices, device):
        xs = [self.feats[split][i] for i in indices]
        feats = torch.nn.utils.rnn.pad_sequence(xs, batch_first=True)
        return feats.to(device), torch.tensor([len(x) for x in xs])

    def train_batches(self, epoch, ctx):
        """Batches of utterances of similar length (pools of 50 batches sorted), in random order;
        each rank keeps its slice of each."""
        size, order = self.cfg.optim.batch_size, torch.randperm(len(self.feats["train"])).tolist()
        batches = []
        for p in range(0, len(order), 50 * size):
            pool = sorted(order[p:p + 50 * size], key=lambda i: len(self.feats["train"][i]))
            batches += [pool[i:i + size] for i in range(0, len(pool), size)]
        batches = [batches[i] for i in torch.randperm(len(batches)).tolist()]
        return [b[ctx.rank::ctx.world_size] for b in batches if len(b) >= ctx.world_size]

    def step(self, model, indices, carry):
        device = next(model.parameters()).device
        feats, lengths = self.batch("train", indices, device)
        log_probs = model(feats, lengths)
        labels = [self.labels["train"][i] for i in indices]
        targets = torch.tensor([c for lab in labels for c in lab], dtype=torch.long)
        loss = F.ctc_loss(log_probs.transpose(0, 1), targets.to(device), lengths, torch.tensor([len(x) for x in labels]),
                          blank=0, reduction="mean", zero_infinity=True)
        return loss, len(indices), None

    def evaluate(self, model, split, ctx):
        """Corpus WER/CER of greedy CTC decoding (each rank decodes its share); on test, the files."""
        device, mine = next(model.parameters()).device, {}
        order = sorted(range(len(self.feats[split])), key=lambda i: len(self.feats[split][i]))
        chunks = [order[i:i + 32] for i in range(0, len(order), 32)]
        for chunk in ctx.progress(chunks[ctx.rank::ctx.world_size], desc=f"{split} decode"):
            feats, lengths = self.batch(split, chunk, device)
            for i, text in zip(chunk, greedy_text(model(feats, lengths), lengths, self.symbols)):
                mine[i] = text
        hyps = {i: t for part in ctx.gather(mine) for i, t in part.items()}
        utts = self.utts[split]
        refs, out = [u["text"] for u in utts], [hyps[i] for i in range(len(utts))]
        if split == "test" and ctx.is_main:
            for name, lines in (("test.hyp", out), ("test.ref", refs)):
                with open(f"{self.cfg.out_dir}/{name}", "w", encoding="utf-8") as f:
                    f.writelines(f"{u['id']} {t}\n" for u, t in zip(utts, lines))
        rates = error_rates(refs, out)
        return {f"{split}_wer": rates["wer"], f"{split}_cer": rates["cer"]}

    def train_metrics(self, mean_loss):
        return dict(train_ctc=mean_loss)

    def summary(self, history):
        out = self.cfg.out_dir
        return dict(self.info, hypotheses=f"{out}/test.hyp", references=f"{out}/test.ref")


train, main = entry_point("speech", validate_config, SpeechTask)

if __name__ == "__main__":
    main()
