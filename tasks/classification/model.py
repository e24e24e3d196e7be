"""Table 1's classifiers over frozen pretrained vectors: Kim's CNN, nn.LSTM (cuDNN on GPU), SRU.

embedding (frozen) -> dropout -> encoder -> dropout -> linear. The RNNs classify from the top layer's
output at each sentence's last real token (as the authors' classification script does), so padding
never changes a prediction.
"""
import torch
from torch import nn
from tasks.common.models import lstm_over_padding, make_rnn


class KimCNN(nn.Module):
    """Wide convolutions of each width (Kim pads h-1 zeros on each side), ReLU, max over time."""

    def __init__(self, input_size, widths, maps):
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv1d(input_size, maps, w, padding=w - 1) for w in widths)
        self.output_size = maps * len(widths)

    def forward(self, x, lengths):                            # x: (B, L, E)
        x = x.transpose(1, 2)
        pooled = []
        for conv in self.convs:
            y = conv(x)                                        # (B, maps, L + w - 1)
            # position j sees tokens j-w+1..j: beyond length+w-2 it sees only batch padding
            beyond = torch.arange(y.size(2), device=y.device)[None, :] > (lengths[:, None] + conv.padding[0] - 1)
            pooled.append(y.masked_fill(beyond[:, None, :], float("-inf")).amax(dim=2).relu())
        return torch.cat(pooled, dim=1)


class LastStateRNN(nn.Module):
    """nn.LSTM (lstm_over_padding) or SRU with a padding mask; the top layer's last real output."""

    def __init__(self, kind, input_size, hidden, layers, dropout, **sru_options):
        super().__init__()
        self.kind = kind
        self.rnn = make_rnn(kind, input_size, hidden, layers, dropout=dropout, **sru_options)
        self.output_size = hidden

    def forward(self, x, lengths):                            # x: (B, L, E)
        x = x.transpose(0, 1)                                  # (L, B, E)
        if self.kind == "lstm":
            out = lstm_over_padding(self.rnn, x, lengths)
        else:
            steps = torch.arange(x.size(0), device=x.device)[:, None]
            out, _ = self.rnn(x, mask_pad=steps >= lengths.to(x.device)[None, :])
        return out[lengths - 1, torch.arange(x.size(1), device=x.device)]


class SentenceClassifier(nn.Module):
    def __init__(self, vectors, classes, cfg):
        super().__init__()
        vectors = torch.as_tensor(vectors).clone()
        vectors[0] = 0.0  # <pad> is a zero vector: Kim's CNN zero padding, and padding is inert
        self.embed = nn.Embedding.from_pretrained(vectors, freeze=True, padding_idx=0)
        dim = self.embed.embedding_dim
        if cfg.kind == "cnn":
            self.encoder = KimCNN(dim, list(cfg.widths), cfg.maps)
        elif cfg.kind in ("lstm", "sru"):
            extra = dict(rnn_dropout=cfg.rnn_dropout, use_tanh=cfg.use_tanh, highway_bias=cfg.highway_bias,
                         cell=cfg.cell) if cfg.kind == "sru" else {}
            self.encoder = LastStateRNN(cfg.kind, dim, cfg.hidden, cfg.layers, cfg.dropout, **extra)
        else:
            raise ValueError(f"model.kind={cfg.kind!r}: expected 'cnn', 'lstm' or 'sru'")
        self.drop = nn.Dropout(cfg.dropout)
        self.out = nn.Linear(self.encoder.output_size, classes)

    def forward(self, tokens, lengths):                       # tokens: (B, L) right-padded
        return self.out(self.drop(self.encoder(self.drop(self.embed(tokens)), lengths)))


def build_model(cfg, model_args, vectors=None):
    """The classifier a config describes; without `vectors` the (frozen) embedding starts at zero and
    is filled by load_state_dict (a checkpoint carries it)."""
    if vectors is None:
        vectors = torch.zeros(model_args["vocab_size"], model_args["dim"])
    return SentenceClassifier(vectors, model_args["classes"], cfg.model)
