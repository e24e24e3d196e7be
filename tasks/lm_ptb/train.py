"""Train one Table 3 row: python -m tasks.lm_ptb.train model=sru model.layers=6 [profile=smoke].

Several GPUs: torchrun --nproc_per_node=N -m tasks.lm_ptb.train ... (the 32 columns of a batch are
split over the ranks). Writes to out_dir: last.pt (every epoch, atomic), best.pt (best valid
perplexity, self-contained), result.json, train.log.
"""
import math

import torch.nn.functional as F

from tasks.common.errors import check_config
from tasks.common.models import rnn_model_checks
from tasks.common.trainer import entry_point, trainer_checks
from tasks.lm_ptb.data import batchify, load_ptb
from tasks.lm_ptb.model import RNNLM, build_model


def validate_config(cfg, world_size=1):
    m, o = cfg.model, cfg.optim
    check_config(cfg, trainer_checks(cfg) + rnn_model_checks(m) + [
        ("model.rnn_dropout", 0 <= m.rnn_dropout < 1, "in [0, 1)"),
        ("optim.bptt", o.bptt >= 1, ">= 1"),
        ("optim.batch_size", o.batch_size >= 1 and o.batch_size % world_size == 0,
         f">= 1 and divisible by the number of processes ({world_size})"),
        ("profile.size_divisor", cfg.profile.size_divisor >= 1, ">= 1")])


def columns(data, ctx):
    """This rank's contiguous share of a batchified stream's columns (all of them in one process)."""
    return data.tensor_split(ctx.world_size, dim=1)[ctx.rank].contiguous()


class LanguageModelTask:
    name, metric, mode = "lm_ptb", "valid_ppl", "min"
    eval_split, test_split, count_name = "valid", "test", "tokens"

    def __init__(self, cfg, ctx):
        self.cfg, self.bptt = cfg, cfg.optim.bptt
        vocab, splits = load_ptb(cfg.data_dir, cfg.profile.max_lines)
        hidden = max(8, cfg.model.hidden // cfg.profile.size_divisor)
        self.vocab, self.model_args = dict(words=vocab.itos), dict(vocab_size=len(vocab), hidden=hidden)
        self.train = columns(batchify(splits["train"], cfg.optim.batch_size), ctx).to(ctx.device)
        self.eval = {s: columns(batchify(splits[s], cfg.optim.eval_batch_size), ctx).to(ctx.device)
                     for s in ("valid", "test")}
        if ctx.is_main:
            print(f"{cfg.run_name}: {cfg.model.kind} {cfg.model.layers}x{hidden}, {splits['train'].numel():,} "
                  f"train tokens, profile={cfg.profile.name}")

    def build_model(self):
        return build_model(self.cfg, self.model_args)

    def segments(self, data):
        return [(data[i:i + n], data[i + 1:i + 1 + n])
                for i in range(0, data.size(0) - 1, self.bptt) for n in [min(self.bptt, data.size(0) - 1 - i)]]

    def train_batches(self, epoch, ctx):
        return self.segments(self.train)

    def step(self, model, batch, state):
        x, y = batch
        logits, state = model(x, RNNLM.detach(state))
        return F.cross_entropy(logits.view(-1, logits.size(-1)), y.reshape(-1)), y.numel(), state

    def evaluate(self, model, split, ctx):
        """Perplexity, state carried across segments; each rank takes its columns of the stream."""
        data, total, count, state = self.eval[split], 0.0, 0, None
        if data.size(1):
            for x, y in ctx.progress(self.segments(data), desc=f"{self.cfg.run_name} {split}"):
                logits, state = model(x, state)
                total += F.cross_entropy(logits.view(-1, logits.size(-1)), y.reshape(-1), reduction="sum").item()
                count += y.numel()
        sums = ctx.all_reduce(dict(nll=total, tokens=count))
        return {f"{split}_ppl": math.exp(sums["nll"] / sums["tokens"])}

    def objective_scale(self, batch):
        """The authors' loss sums over a segment's time steps (divided by the batch size only): its
        gradient is the per-token mean's times the segment length, which matters with lr 1 and clip 5."""
        return batch[0].size(0) if self.cfg.optim.loss_sum_over_time else 1

    def train_metrics(self, mean_loss):
        return dict(train_loss=mean_loss, train_ppl=math.exp(mean_loss))


train, main = entry_point("lm_ptb", validate_config, LanguageModelTask)

if __name__ == "__main__":
    main()
