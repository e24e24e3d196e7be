"""Train one Table 3 row: python -m tasks.lm_ptb.train model=sru model.layers=6 [profile=smoke].

Writes to out_dir: checkpoint.pt (every epoch, atomic), best.pt (best valid), result.json.
"""
import math
import sys
import time
from pathlib import Path

import hydra
import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf

from tasks.common.data import DataError
from tasks.common.harness import (Logger, NonFiniteLoss, Progress, check_config, check_finite, decayed_lr,
                                  git_commit, load_training_state, pick_device, save_atomic,
                                  save_training_state, seed_everything, write_json_atomic)
from tasks.lm_ptb.data import batchify, load_ptb
from tasks.lm_ptb.model import RNNLM


def validate_config(cfg):
    checks = [("model.rnn", cfg.model.rnn in ("sru", "lstm"), "'sru' or 'lstm'"),
              ("model.layers", cfg.model.layers >= 1, ">= 1"),
              ("model.hidden", cfg.model.hidden >= 1, ">= 1"),
              ("dropout", 0 <= cfg.dropout < 1, "in [0, 1)"),
              ("model.rnn_dropout", 0 <= cfg.model.rnn_dropout < 1, "in [0, 1)"),
              ("optim.lr", cfg.optim.lr > 0, "> 0"),
              ("optim.bptt", cfg.optim.bptt >= 1, ">= 1"),
              ("optim.batch_size", cfg.optim.batch_size >= 1, ">= 1"),
              ("profile.epochs", cfg.profile.epochs >= 1, ">= 1"),
              ("profile.size_divisor", cfg.profile.size_divisor >= 1, ">= 1")]
    check_config(cfg, checks)


def evaluate(model, data, bptt):
    """Perplexity over a batchified split, state carried across segments."""
    model.eval()
    total, count, state = 0.0, 0, None
    with torch.no_grad():
        for i in range(0, data.size(0) - 1, bptt):
            n = min(bptt, data.size(0) - 1 - i)
            logits, state = model(data[i:i + n], state)
            total += F.cross_entropy(logits.view(-1, logits.size(-1)), data[i + 1:i + 1 + n].reshape(-1),
                                     reduction="sum").item()
            count += data[i + 1:i + 1 + n].numel()
    return math.exp(total / count)


def train(cfg: DictConfig):
    validate_config(cfg)
    out_dir = Path(cfg.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    seed_everything(cfg.seed, deterministic=cfg.deterministic)
    device = pick_device(cfg.device)
    vocab, splits = load_ptb(cfg.data_dir, cfg.profile.max_lines)
    train_data = batchify(splits["train"], cfg.optim.batch_size).to(device)
    valid_data = batchify(splits["valid"], cfg.optim.eval_batch_size).to(device)
    test_data = batchify(splits["test"], cfg.optim.eval_batch_size).to(device)

    hidden = max(8, cfg.model.hidden // cfg.profile.size_divisor)
    model = RNNLM(len(vocab), cfg.model.rnn, cfg.model.layers, hidden, cfg.dropout, cfg.model.rnn_dropout,
                  cfg.model.highway_bias, cfg.model.use_tanh).to(device)
    params = sum(p.numel() for p in model.parameters())
    print(f"{cfg.run_name}: {cfg.model.rnn} {cfg.model.layers}x{hidden}, {params:,} parameters, "
          f"{train_data.numel():,} train tokens, profile={cfg.profile.name}, device={device}")
    opt = torch.optim.SGD(model.parameters(), lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay)

    ckpt_path, best_path = out_dir / "checkpoint.pt", out_dir / "best.pt"
    start_epoch, best_valid, history, wall = 1, float("inf"), [], 0.0
    if cfg.resume and ckpt_path.exists():
        ckpt = load_training_state(ckpt_path, model, opt)
        start_epoch, best_valid, history, wall = ckpt["epoch"] + 1, ckpt["best_valid"], ckpt["history"], ckpt["wall"]
        print(f"resumed from {ckpt_path} after epoch {ckpt['epoch']}")

    logger = Logger(cfg.logger, OmegaConf.to_container(cfg, resolve=True), out_dir, group=cfg.table,
                    tags=[cfg.model.rnn, f"{cfg.model.layers}-layers", cfg.profile.name], name=cfg.run_name)
    logger.summary(params=params)
    steps_per_epoch = math.ceil((train_data.size(0) - 1) / cfg.optim.bptt)
    for epoch in range(start_epoch, cfg.profile.epochs + 1):
        lr = decayed_lr(cfg.optim.lr, cfg.optim.lr_decay, cfg.optim.decay_start, epoch)
        for group in opt.param_groups:
            group["lr"] = lr
        model.train()
        t0, state, loss_sum = time.time(), None, 0.0
        bar = Progress(steps_per_epoch, f"epoch {epoch}/{cfg.profile.epochs}")
        for i in range(0, train_data.size(0) - 1, cfg.optim.bptt):
            n = min(cfg.optim.bptt, train_data.size(0) - 1 - i)
            x, y = train_data[i:i + n], train_data[i + 1:i + 1 + n]
            logits, state = model(x, RNNLM.detach(state))
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)), y.reshape(-1))
            value = loss.item()  # one device sync per step
            check_finite(value, f"epoch {epoch}, step {i // cfg.optim.bptt}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.clip)
            opt.step()
            loss_sum += value
            bar.update(1, x.numel(), loss=value)
        seconds = time.time() - t0
        wall += seconds
        train_ppl = math.exp(loss_sum / steps_per_epoch)
        valid_ppl = evaluate(model, valid_data, cfg.optim.bptt)
        history.append(dict(epoch=epoch, train_ppl=train_ppl, valid_ppl=valid_ppl, seconds=seconds, wall=wall,
                            lr=lr, tokens_per_s=train_data.numel() / seconds))
        print(f"epoch {epoch:3d} | lr {lr:.4f} | train ppl {train_ppl:8.2f} | valid ppl {valid_ppl:8.2f} | "
              f"{seconds:.1f}s | {train_data.numel() / seconds:,.0f} tok/s")
        logger.log(dict(history[-1]), step=epoch)
        if valid_ppl < best_valid:
            best_valid = valid_ppl
            save_atomic(model.state_dict(), best_path)
        save_training_state(ckpt_path, model, opt, epoch=epoch, best_valid=best_valid, history=history,
                            wall=wall)

    model.load_state_dict(torch.load(best_path, weights_only=True))
    test_ppl = evaluate(model, test_data, cfg.optim.bptt)
    result = dict(model=cfg.model.rnn, layers=cfg.model.layers, hidden=hidden, params=params,
                  valid_ppl=round(best_valid, 3), test_ppl=round(test_ppl, 3),
                  sec_per_epoch=round(wall / len(history), 2), epochs=len(history), profile=cfg.profile.name,
                  commit=git_commit(), device=str(device), run_name=cfg.run_name, history=history)
    write_json_atomic(result, out_dir / "result.json")
    logger.summary(test_ppl=test_ppl, best_valid_ppl=best_valid)
    logger.finish()
    print(f"{cfg.run_name}: best valid ppl {best_valid:.2f}, test ppl {test_ppl:.2f} -> {out_dir}/result.json")
    return result


@hydra.main(config_path="../../configs/lm_ptb", config_name="config", version_base="1.3")
def main(cfg: DictConfig):
    try:
        train(cfg)
    except (ValueError, DataError, NonFiniteLoss) as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    main()
