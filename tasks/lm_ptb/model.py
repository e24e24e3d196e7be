"""The PTB language model: embedding -> RNN (SRU or LSTM) -> tied softmax."""
from torch import nn

from sru import SRU


class RNNLM(nn.Module):
    def __init__(self, vocab_size, rnn, layers, hidden, dropout, rnn_dropout, highway_bias, use_tanh):
        super().__init__()
        self.rnn_type = rnn
        self.embed = nn.Embedding(vocab_size, hidden)  # embedding size = hidden, for tying
        self.drop = nn.Dropout(dropout)                # on the embedding output and softmax input
        if rnn == "sru":
            self.rnn = SRU(hidden, hidden, num_layers=layers, dropout=rnn_dropout, rnn_dropout=rnn_dropout,
                           use_tanh=use_tanh, highway_bias=highway_bias)
        elif rnn == "lstm":
            self.rnn = nn.LSTM(hidden, hidden, num_layers=layers, dropout=rnn_dropout)
        else:
            raise ValueError(f"model.rnn must be 'sru' or 'lstm', got {rnn!r}")
        self.out = nn.Linear(hidden, vocab_size)
        self.out.weight = self.embed.weight            # tied input/output embeddings
        nn.init.uniform_(self.embed.weight, -0.1, 0.1)
        nn.init.zeros_(self.out.bias)

    def forward(self, tokens, state=None):
        h, state = self.rnn(self.drop(self.embed(tokens)), state)
        return self.out(self.drop(h)), state

    @staticmethod
    def detach(state):
        """Cut the graph between BPTT segments, keep the values."""
        if state is None:
            return None
        return tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()
