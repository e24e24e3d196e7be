"""The recurrent encoders the tables compare, built one way for every task."""
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from sru import SRU

RNN_KINDS = ("lstm", "sru")
# The paper's cell as the authors' 2017 code ran it, which every table uses: no weight_c, dropout on g(c) only,
# no rescaled highway (sru.SRU's defaults are sru 2.6's 2018 cell). model.cell in the configs pins it.
PAPER_CELL = dict(cell="2017", rescale=False)


def rnn_model_checks(m):
    """Config checks (for tasks.common.errors.check_config) of the model keys every RNN task shares."""
    return [("model.kind", m.kind in RNN_KINDS, f"one of {RNN_KINDS}"),
            ("model.layers", m.layers >= 1, ">= 1"),
            ("model.hidden", m.hidden >= 1, ">= 1"),
            ("model.dropout", 0 <= m.dropout < 1, "in [0, 1)")]


def make_rnn(kind, input_size, hidden, layers, dropout=0.0, rnn_dropout=0.0, bidirectional=False,
             use_tanh=True, highway_bias=0.0, forget_bias=None, cell=None):
    """nn.LSTM (cuDNN on a GPU) or SRU, (length, batch, features) in and out.

    dropout: between layers (nn.LSTM and SRU alike; nn.LSTM warns when given dropout with one
    layer, so it gets none there). rnn_dropout, use_tanh, highway_bias: the SRU's own (see sru.SRU).
    forget_bias: the LSTM's forget-gate bias at init (b_ih + b_hh of the f gate; torch's gate order is i, f,
    g, o); None keeps torch's U(+-1/sqrt(hidden)) like every other weight.
    """
    if kind == "lstm":
        lstm = nn.LSTM(input_size, hidden, num_layers=layers, dropout=dropout if layers > 1 else 0.0,
                       bidirectional=bidirectional)
        if forget_bias is not None:
            with torch.no_grad():
                for name, p in lstm.named_parameters():
                    if name.startswith("bias_"):  # b_ih takes the value and b_hh 0: the gate sees their sum
                        p[hidden:2 * hidden] = forget_bias if name.startswith("bias_ih") else 0.0
        return lstm
    if kind == "sru":
        if cell is None:
            raise ValueError("model.kind=sru needs model.cell: '2017' (the paper's cell, every table's) or '2018' (sru "
                             "2.x's); set it in the model config")
        return SRU(input_size, hidden, num_layers=layers, dropout=dropout, rnn_dropout=rnn_dropout,
                   bidirectional=bidirectional, use_tanh=use_tanh, highway_bias=highway_bias, cell=cell, rescale=False)
    raise ValueError(f"model.kind={kind!r}: expected one of {RNN_KINDS}")


def lstm_over_padding(lstm, x, lengths):
    """An nn.LSTM over right-padded x (L, B, input) exactly as over packed sequences: each sequence
    reads only its first lengths[b] steps (the backward direction starts at its last real step); the
    output (L, B, directions * hidden) is zero at padding.

    Why not pack: on a CPU torch runs packed sequences step by step in its native loop, while padded
    input goes to oneDNN's fused LSTM, 2-3x faster at the tables' shapes (docs/benchmarks.md); the SRU
    is compared with the fastest exact path. The backward direction therefore reads each sequence
    reversed within its length (padding stays at the end, where nothing real reads it), one
    single-direction call per layer and direction. On CUDA cuDNN runs packed sequences natively: packed.
    Dropout between layers as nn.LSTM's (training only, not after the top layer)."""
    if lstm.batch_first or lstm.proj_size:
        raise ValueError("lstm_over_padding: expected an nn.LSTM with batch_first=False and no proj_size")
    lengths = lengths.to(x.device)
    steps = torch.arange(x.size(0), device=x.device)[:, None]
    pad = steps >= lengths[None, :]  # (L, B)
    if x.is_cuda:
        packed, _ = lstm(pack_padded_sequence(x, lengths.clamp(min=1).cpu(), enforce_sorted=False))
        out = pad_packed_sequence(packed, total_length=x.size(0))[0]
    else:
        reverse = torch.where(pad, steps, lengths[None, :] - 1 - steps)  # an involution: undoes itself
        flip = lambda t: t.gather(0, reverse[:, :, None].expand(-1, -1, t.size(2)))
        zeros = x.new_zeros(1, x.size(1), lstm.hidden_size)
        names = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")[:4 if lstm.bias else 2]
        out = x
        for k in range(lstm.num_layers):
            if k:
                out = F.dropout(out, lstm.dropout, lstm.training)
            parts = []
            for suffix in ("", "_reverse")[:2 if lstm.bidirectional else 1]:
                weights = [getattr(lstm, f"{w}_l{k}{suffix}") for w in names]
                src = flip(out) if suffix else out
                h = torch.lstm(src, (zeros, zeros), weights, lstm.bias, 1, 0.0, lstm.training, False, False)[0]
                parts.append(flip(h) if suffix else h)
            out = torch.cat(parts, dim=2) if len(parts) > 1 else parts[0]
    return out.masked_fill(pad[:, :, None], 0.0)
