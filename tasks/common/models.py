"""The recurrent encoders the tables compare, built one way for every task."""
import torch
from torch import nn

from sru import SRU

RNN_KINDS = ("lstm", "sru")


def rnn_model_checks(m):
    """Config checks (for harness.check_config) of the model keys every RNN task shares."""
    return [("model.kind", m.kind in RNN_KINDS, f"one of {RNN_KINDS}"),
            ("model.layers", m.layers >= 1, ">= 1"),
            ("model.hidden", m.hidden >= 1, ">= 1"),
            ("model.dropout", 0 <= m.dropout < 1, "in [0, 1)")]


def make_rnn(kind, input_size, hidden, layers, dropout=0.0, rnn_dropout=0.0, bidirectional=False,
             use_tanh=True, highway_bias=0.0, forget_bias=None):
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
        return SRU(input_size, hidden, num_layers=layers, dropout=dropout, rnn_dropout=rnn_dropout,
                   bidirectional=bidirectional, use_tanh=use_tanh, highway_bias=highway_bias)
    raise ValueError(f"model.kind={kind!r}: expected one of {RNN_KINDS}")
