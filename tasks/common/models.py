"""The recurrent encoders the tables compare, built one way for every task."""
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
             use_tanh=True, highway_bias=0.0):
    """nn.LSTM (cuDNN on a GPU) or SRU, (length, batch, features) in and out.

    dropout: between layers (nn.LSTM and SRU alike; nn.LSTM warns when given dropout with one
    layer, so it gets none there). rnn_dropout, use_tanh, highway_bias: the SRU's own (see sru.SRU).
    """
    if kind == "lstm":
        return nn.LSTM(input_size, hidden, num_layers=layers, dropout=dropout if layers > 1 else 0.0,
                       bidirectional=bidirectional)
    if kind == "sru":
        return SRU(input_size, hidden, num_layers=layers, dropout=dropout, rnn_dropout=rnn_dropout,
                   bidirectional=bidirectional, use_tanh=use_tanh, highway_bias=highway_bias)
    raise ValueError(f"model.kind={kind!r}: expected one of {RNN_KINDS}")
