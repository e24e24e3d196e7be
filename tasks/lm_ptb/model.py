"""The PTB language model: embedding -> RNN (SRU or LSTM) -> tied softmax."""
import math

from torch import nn

from tasks.common.models import make_rnn


class RNNLM(nn.Module):
    def __init__(self, vocab_size, kind, layers, hidden, dropout, rnn_dropout, highway_bias, use_tanh, cell=None):
        super().__init__()
        self.kind = kind
        self.embed = nn.Embedding(vocab_size, hidden)  # embedding size = hidden, for tying
        self.drop = nn.Dropout(dropout)                # on the embedding output and softmax input
        # rnn_dropout: between layers, and (SRU) variational inside each layer too
        self.rnn = make_rnn(kind, hidden, hidden, layers, dropout=rnn_dropout, rnn_dropout=rnn_dropout,
                            use_tanh=use_tanh, highway_bias=highway_bias, cell=cell)
        self.out = nn.Linear(hidden, vocab_size)
        self.out.weight = self.embed.weight            # tied input/output embeddings
        # the authors' init (train_lm.py): U(+-sqrt(3/d)) for the embedding and every LSTM matrix,
        # 0 for the output and LSTM biases; the SRU keeps its own (the same bound, from its input size)
        bound = math.sqrt(3.0 / hidden)
        nn.init.uniform_(self.embed.weight, -bound, bound)
        nn.init.zeros_(self.out.bias)
        if kind == "lstm":
            for p in self.rnn.parameters():
                nn.init.uniform_(p, -bound, bound) if p.dim() > 1 else nn.init.zeros_(p)

    def forward(self, tokens, state=None):
        h, state = self.rnn(self.drop(self.embed(tokens)), state)
        return self.out(self.drop(h)), state

    @staticmethod
    def detach(state):
        """Cut the graph between BPTT segments, keep the values."""
        if state is None:
            return None
        return tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()


def build_model(cfg, model_args):
    """The model a config describes (model_args: what the data decided: vocab size, actual hidden)."""
    m = cfg.model
    return RNNLM(model_args["vocab_size"], m.kind, m.layers, model_args["hidden"], m.dropout, m.rnn_dropout,
                 m.highway_bias, m.use_tanh, m.get("cell"))
