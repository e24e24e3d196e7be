"""Table 5's acoustic models: a stack of LSTM or SRU layers (uni- or bidirectional) over filterbank
frames and a linear CTC output over characters (blank = 0).

Lookahead: the authors delay a unidirectional model's label by 5 raw 10-ms frames (50 ms:
speech/run_sru.sh@5d7947e). `model.future_frames` counts raw frames the same way. After stacking k
frames, model step t holds raw frames k*t .. k*t + k - 1; reading step t + s brings in raw frames up to
k*(t + s) + k - 1, i.e. s*k frames beyond the step's newest one. So s = future_frames // k, rounded
down so that the lookahead never exceeds what was asked: 5 frames with k = 3 -> 1 step, 3 frames
(30 ms) beyond the step's newest frame, 5 beyond its oldest. Padding is masked (LSTM:
lstm_over_padding, SRU: mask_pad), so an utterance's output does not depend on its batch.
"""
import torch
from torch import nn
from tasks.common.models import lstm_over_padding, make_rnn


def lookahead_steps(future_frames, stack):
    """Model steps of lookahead for `future_frames` raw frames after stacking by `stack` (rounded down)."""
    return future_frames // stack


class AcousticModel(nn.Module):
    def __init__(self, cfg, model_args):
        super().__init__()
        a = model_args
        self.kind, self.future = cfg.kind, 0 if cfg.bidirectional else lookahead_steps(cfg.future_frames, a["stack"])
        own = (dict(rnn_dropout=cfg.rnn_dropout, use_tanh=cfg.use_tanh, highway_bias=cfg.highway_bias, cell=cfg.cell)
               if cfg.kind == "sru"
               else dict(forget_bias=cfg.get("forget_bias")))
        self.rnn = make_rnn(cfg.kind, a["input_size"], a["hidden"], cfg.layers, dropout=cfg.dropout,
                            bidirectional=cfg.bidirectional, **own)
        self.drop = nn.Dropout(cfg.dropout)
        self.out = nn.Linear(a["hidden"] * (2 if cfg.bidirectional else 1), a["symbols"])

    def shift(self, x, lengths):
        """x[t] <- x[t + future] within each utterance (its last frame repeated at the end); `future` in model steps."""
        if not self.future:
            return x
        steps = torch.arange(x.size(1), device=x.device)[None, :] + self.future
        index = torch.minimum(steps, (lengths.to(x.device) - 1)[:, None])
        return x.gather(1, index[:, :, None].expand(-1, -1, x.size(2)))

    def forward(self, feats, lengths):
        """feats (B, T, F), lengths (B,) -> log-probabilities (B, T, symbols)."""
        x = self.shift(feats, lengths).transpose(0, 1)
        if self.kind == "lstm":
            h = lstm_over_padding(self.rnn, x, lengths)
        else:
            steps = torch.arange(x.size(0), device=x.device)[:, None]
            h, _ = self.rnn(x, mask_pad=steps >= lengths.to(x.device)[None, :])
        return self.out(self.drop(h.transpose(0, 1))).float().log_softmax(-1)


def build_model(cfg, model_args):
    return AcousticModel(cfg.model, model_args)
