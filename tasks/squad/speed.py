"""Time Table 2's readers at full size on synthetic SQuAD-shaped batches: python -m tasks.squad.speed [--device cuda]

Needs no data and no spaCy, so it runs on a bare GPU box (scripts/gpu_check.sh). Batches of 32
questions; paragraph lengths ~ Gamma(6, 24) tokens (mean 144 and 90th percentile ~220, like SQuAD
dev under spaCy), questions ~ Gamma(8, 1.44) (mean 11.5); 300d word vectors plus 56 POS and 19 NER
one-hot features, as the paper's reader. Each row is a model of configs/squad/table2.yaml, timed in
the same run: after warm-up, the median seconds of a training step (forward, backward, clipping,
Adamax) and of its RNN part (tasks.squad.model.RNNClock), and an epoch of 87,599 questions
(2,738 steps) extrapolated from them, labelled so. The `make table2 profile=speed` rows measure
the same thing on real data.
"""
import argparse
import statistics

import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from tasks.squad.model import NUM_FEATURES, DocReader
from tasks.squad.table import FULL_TRAIN_QUESTIONS, TABLE

STEPS_PER_EPOCH = -(-FULL_TRAIN_QUESTIONS // 32)


def synthetic_batch(g, batch, dim_vocab, pos, ner, device):
    doc_len = torch.distributions.Gamma(6.0, 1 / 24.0).sample((batch,)).clamp(5, 700).long()
    q_len = torch.distributions.Gamma(8.0, 1 / 1.44).sample((batch,)).clamp(2, 40).long()
    Ld, Lq = int(doc_len.max()), int(q_len.max())
    doc_mask = torch.arange(Ld)[None, :] >= doc_len[:, None]
    q_mask = torch.arange(Lq)[None, :] >= q_len[:, None]
    b = dict(doc=torch.randint(2, dim_vocab, (batch, Ld), generator=g).masked_fill(doc_mask, 0),
             doc_features=torch.rand(batch, Ld, NUM_FEATURES, generator=g).masked_fill(doc_mask[..., None], 0),
             doc_pos=torch.randint(2, pos + 2, (batch, Ld), generator=g), doc_ner=torch.randint(2, ner + 2, (batch, Ld), generator=g),
             doc_mask=doc_mask, question=torch.randint(2, dim_vocab, (batch, Lq), generator=g).masked_fill(q_mask, 0),
             question_mask=q_mask, start=(torch.rand(batch, generator=g) * doc_len).long())
    b["end"] = torch.minimum(b["start"] + 3, doc_len - 1)
    return {k: v.to(device) for k, v in b.items()}


def time_row(row, device, dim, steps, warmup, seed):
    cfg = OmegaConf.load(TABLE.experiment.parent / "model" / f"{row['model']}.yaml")
    m = cfg.model
    m.layers = row["layers"]
    args = dict(vocab_size=5000, dim=dim, tuned=1002, hidden=m.hidden, max_span=15, use_pos=True, use_ner=True,
                pos_size=58, ner_size=21)
    torch.manual_seed(seed)
    model = DocReader(m, args, torch.randn(5000, dim) * 0.3).to(device).train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adamax(params, lr=cfg.optim.lr)
    g = torch.Generator().manual_seed(seed)
    total, rnn = [], []
    for i in range(warmup + steps):
        b = synthetic_batch(g, 32, 5000, 56, 19, device)
        model.clock.take()
        t0 = model.clock.now(device)
        start, end = model(b)
        loss = F.cross_entropy(start, b["start"]) + F.cross_entropy(end, b["end"])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, cfg.optim.clip)
        opt.step()
        seconds = model.clock.now(device) - t0
        if i >= warmup:
            total.append(seconds)
            rnn.append(model.clock.take())
    step, rnn_step = statistics.median(total), statistics.median(rnn)
    return dict(model=row["model"], layers=row["layers"], hidden=m.hidden, sec_per_step=step, rnn_sec_per_step=rnn_step,
                epoch_sec_extrapolated=step * STEPS_PER_EPOCH, rnn_epoch_sec_extrapolated=rnn_step * STEPS_PER_EPOCH)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dim", type=int, default=300, help="word vector size (the paper: 300)")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args(argv)
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"Table 2 readers, synthetic SQuAD-shaped batches of 32, {args.dim}d inputs; {name}; torch {torch.__version__}; "
          f"median of {args.steps} steps after {args.warmup} warm-up")
    print("| model | layers | s/step | RNN s/step | epoch s, extrapolated | RNN s/epoch, extrapolated |")
    print("|---|---|---|---|---|---|")
    for row in OmegaConf.to_container(OmegaConf.load(TABLE.experiment))["rows"]:
        r = time_row(row, device, args.dim, args.steps, args.warmup, args.seed)
        print(f"| {r['model']} | {r['layers']} | {r['sec_per_step']:.4f} | {r['rnn_sec_per_step']:.4f} | "
              f"{r['epoch_sec_extrapolated']:.0f} | {r['rnn_epoch_sec_extrapolated']:.0f} |", flush=True)


if __name__ == "__main__":
    main()
