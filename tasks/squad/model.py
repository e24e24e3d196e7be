"""The DrQA document reader (Chen et al. 2017) with a bi-LSTM or bi-SRU encoder (Table 2).

paragraph word -> [embedding; aligned question embedding; exact match x3, tf; POS, NER]
               -> stacked bi-RNN                                  -> bilinear start / end pointers
question word  -> embedding -> stacked bi-RNN -> self-attentive sum ----^

Padding is masked everywhere (the LSTM with lstm_over_padding, the SRU with mask_pad, every
softmax ignores padded positions), so a prediction does not depend on the batch it is in.
Inputs are batch-first (B, L); masks are True at padding. POS / NER (only with a tagging spaCy
pipeline): the authors' SRU reader learns embeddings of them (DrQA/drqa/rnn_reader.py@32efbce:
nn.Embedding(56, 56) and (19, 19), N(0, 1) init, dropout_emb on them), `model.tag_embedding: true`;
DrQA's LSTM reader feeds them as one-hot features (`false`).
"""
import time

import torch
import torch.nn.functional as F
from torch import nn
from sru import SRUCell
from tasks.common.models import lstm_over_padding

NUM_FEATURES = 4  # exact match (original, lowercase, lemma) and term frequency


class PartlyTunedEmbedding(nn.Module):
    """Pretrained vectors of which only the first `tuned` rows train (DrQA's tune_partial: <pad>, <unk>
    and the most frequent question words); the rest is a frozen buffer. <pad> (id 0) stays zero."""

    def __init__(self, matrix, tuned):
        super().__init__()
        matrix = torch.as_tensor(matrix, dtype=torch.float32)
        self.tuned = nn.Parameter(matrix[:tuned].clone())
        self.register_buffer("fixed", matrix[tuned:].clone())
        self.dim = matrix.size(1)

    def forward(self, ids):
        n = self.tuned.size(0)
        tuned = F.embedding(ids.clamp(max=n - 1), self.tuned, padding_idx=0)
        fixed = F.embedding((ids - n).clamp(min=0), self.fixed) if self.fixed.size(0) else tuned
        return torch.where((ids < n).unsqueeze(-1), tuned, fixed)


class StackedBiRNN(nn.Module):
    """DrQA's stacked bidirectional encoder, padding masked.

    lstm: one nn.LSTM per layer (lstm_over_padding: as over packed sequences), dropout on every layer's
          input (DrQA).
    sru:  one bidirectional SRUCell per layer with mask_pad, each with `dropout` inside its highway
          and variational rnn_dropout on its input, no other dropout between layers (the authors'
          SRU reader: separate cells, so unlike sru.SRU the top layer has highway dropout too).
    concat_layers: the output is every layer's output side by side (DrQA), else the top layer's.
    Then dropout on the output (DrQA's dropout_rnn_output)."""

    def __init__(self, kind, input_size, hidden, layers, dropout, concat_layers, rnn_dropout=0.0, use_tanh=True,
                 highway_bias=0.0, cell=None):
        super().__init__()
        self.kind, self.dropout, self.concat_layers = kind, dropout, concat_layers
        if kind == "lstm":
            self.layers = nn.ModuleList(nn.LSTM(input_size if i == 0 else 2 * hidden, hidden, bidirectional=True)
                                        for i in range(layers))
        elif kind == "sru":
            self.layers = nn.ModuleList(
                SRUCell(input_size if i == 0 else 2 * hidden, hidden, dropout=dropout, rnn_dropout=rnn_dropout,
                        bidirectional=True, use_tanh=use_tanh, highway_bias=highway_bias, cell=cell, rescale=False)
                for i in range(layers))
        else:
            raise ValueError(f"model.kind={kind!r}: expected 'lstm' or 'sru'")
        self.output_size = 2 * hidden * (layers if concat_layers else 1)

    def forward(self, x, mask):                          # x (B, L, E), mask (B, L) True at padding
        h, outputs = x.transpose(0, 1), []
        lengths = (~mask).sum(1) if self.kind == "lstm" else None
        for layer in self.layers:
            if self.kind == "lstm":
                h = F.dropout(h, self.dropout, self.training)
                h = lstm_over_padding(layer, h, lengths)
            else:
                h, _ = layer(h, None, mask.t())
            outputs.append(h)
        out = torch.cat(outputs, dim=2) if self.concat_layers else outputs[-1]
        return F.dropout(out.transpose(0, 1), self.dropout, self.training)


def masked_softmax(scores, mask):
    return F.softmax(scores.float().masked_fill(mask, float("-inf")), dim=-1)


class AlignedQuestionEmbedding(nn.Module):
    """f_align(p_i) = sum_j a_ij E(q_j), a_ij ~ exp(relu(W E(p_i)) . relu(W E(q_j)))."""

    def __init__(self, dim):
        super().__init__()
        self.proj = nn.Linear(dim, dim)

    def forward(self, doc, question, question_mask):
        scores = torch.relu(self.proj(doc)).bmm(torch.relu(self.proj(question)).transpose(1, 2))
        weights = masked_softmax(scores, question_mask[:, None, :])
        return weights.to(question.dtype).bmm(question)


class RNNClock:
    """Seconds spent in the two RNN encoders while training, forward and backward (the paper's "RNN
    time"). Forward: the encoders run back to back between two clock reads. Backward: identity
    autograd marks on the encoders' outputs and inputs; the output mark's backward runs when the
    gradients of both outputs are complete, the input mark's when the encoders' backward has
    produced the gradients of their inputs, and nothing but the encoders' backward lies between.
    On CUDA each read synchronises the device (a small cost: `profile.time_rnn=false` turns it off)."""

    def __init__(self):
        self.seconds, self.enabled, self._backward_start = 0.0, True, None

    @staticmethod
    def now(device):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter()

    def take(self):
        seconds, self.seconds = self.seconds, 0.0
        return seconds

    def mark(self, tensors, backward_ends):
        return _ClockMark.apply(self, backward_ends, *tensors)


class _ClockMark(torch.autograd.Function):
    @staticmethod
    def forward(ctx, clock, backward_ends, *tensors):
        ctx.clock, ctx.backward_ends, ctx.device = clock, backward_ends, tensors[0].device
        return tuple(t.view_as(t) for t in tensors)

    @staticmethod
    def backward(ctx, *grads):
        clock, now = ctx.clock, RNNClock.now(ctx.device)
        if ctx.backward_ends and clock._backward_start is not None:
            clock.seconds += now - clock._backward_start
            clock._backward_start = None
        elif not ctx.backward_ends:
            clock._backward_start = now
        return (None, None, *grads)


class DocReader(nn.Module):
    def __init__(self, cfg, model_args, vectors=None):
        super().__init__()
        a = model_args
        if vectors is None:  # filled by load_state_dict (a checkpoint carries the vectors)
            vectors = torch.zeros(a["vocab_size"], a["dim"])
        self.embedding = PartlyTunedEmbedding(vectors, min(a["tuned"], a["vocab_size"]))
        dim, self.embed_dropout, self.max_span = a["dim"], cfg.embed_dropout, a["max_span"]
        self.aligned = AlignedQuestionEmbedding(dim)
        # POS / NER tag ids (0 padding, 1 a tag unseen in training): learned embeddings (the authors'
        # SRU reader; every id a trained row, as theirs) or one-hot features with ids 0 and 1 all-zero
        self.tags = {k: a[f"{k}_size"] for k in ("pos", "ner") if a[f"use_{k}"]}
        self.tag_embedding = nn.ModuleDict()
        if cfg.tag_embedding:
            self.tag_embedding.update({k: nn.Embedding(n, cfg[f"{k}_dim"]) for k, n in self.tags.items()})
        tag_width = sum(cfg[f"{k}_dim"] if cfg.tag_embedding else n - 2 for k, n in self.tags.items())
        doc_input = 2 * dim + NUM_FEATURES + tag_width
        sru_options = dict(rnn_dropout=cfg.rnn_dropout, use_tanh=cfg.use_tanh, highway_bias=cfg.highway_bias,
                           cell=cfg.cell) if cfg.kind == "sru" else {}
        self.doc_rnn = StackedBiRNN(cfg.kind, doc_input, a["hidden"], cfg.layers, cfg.dropout, cfg.concat_layers,
                                    **sru_options)
        self.question_rnn = StackedBiRNN(cfg.kind, dim, a["hidden"], cfg.layers, cfg.dropout, cfg.concat_layers,
                                         **sru_options)
        doc_size, q_size = self.doc_rnn.output_size, self.question_rnn.output_size
        self.question_attention = nn.Linear(q_size, 1)      # self-attentive question summary
        self.start = nn.Linear(q_size, doc_size)            # bilinear pointers: p_i W q
        self.end = nn.Linear(q_size, doc_size)
        self.clock = RNNClock()

    def forward(self, b):
        """Start and end scores (B, Ld), float32, -inf at padding."""
        doc = F.dropout(self.embedding(b["doc"]), self.embed_dropout, self.training)
        question = F.dropout(self.embedding(b["question"]), self.embed_dropout, self.training)
        parts = [doc, self.aligned(doc, question, b["question_mask"]), b["doc_features"].to(doc.dtype)]
        for k, n in self.tags.items():
            if k in self.tag_embedding:
                parts.append(F.dropout(self.tag_embedding[k](b[f"doc_{k}"]), self.embed_dropout, self.training))
            else:
                parts.append(F.one_hot(b[f"doc_{k}"], n)[..., 2:].to(doc.dtype))
        doc_hidden, question_hidden = self.encode(torch.cat(parts, dim=2), b["doc_mask"], question,
                                                  b["question_mask"])
        weights = masked_softmax(self.question_attention(question_hidden).squeeze(2), b["question_mask"])
        summary = weights.unsqueeze(1).to(question_hidden.dtype).bmm(question_hidden).squeeze(1)
        start = doc_hidden.bmm(self.start(summary).unsqueeze(2)).squeeze(2).float()
        end = doc_hidden.bmm(self.end(summary).unsqueeze(2)).squeeze(2).float()
        return start.masked_fill(b["doc_mask"], float("-inf")), end.masked_fill(b["doc_mask"], float("-inf"))

    def encode(self, doc_input, doc_mask, question_input, question_mask):
        timed = self.training and torch.is_grad_enabled() and self.clock.enabled
        if not timed:
            return self.doc_rnn(doc_input, doc_mask), self.question_rnn(question_input, question_mask)
        # the input mark always has a leaf needing a gradient, so its backward runs (and stops the clock)
        anchor = torch.ones((), device=doc_input.device, requires_grad=True)
        doc_input, question_input, _ = self.clock.mark((doc_input, question_input, anchor), backward_ends=True)
        t0 = self.clock.now(doc_input.device)
        doc_hidden, question_hidden = self.doc_rnn(doc_input, doc_mask), self.question_rnn(question_input,
                                                                                           question_mask)
        self.clock.seconds += self.clock.now(doc_input.device) - t0
        return self.clock.mark((doc_hidden, question_hidden), backward_ends=False)


def decode(start_scores, end_scores, max_span):
    """The most probable span (start <= end < start + max_span) of each example, by
    P(start) x P(end) as DrQA decodes. Returns (start, end, probability), each (B,)."""
    p_start, p_end = F.softmax(start_scores.float(), dim=1), F.softmax(end_scores.float(), dim=1)
    scores = p_start.unsqueeze(2) * p_end.unsqueeze(1)                     # (B, L, L): [start, end]
    scores = torch.triu(scores) - torch.triu(scores, diagonal=max_span)    # keep 0 <= end - start < max_span
    best, flat = scores.flatten(1).max(dim=1)
    L = scores.size(1)
    return flat // L, flat % L, best


def build_model(cfg, model_args, vectors=None):
    return DocReader(cfg.model, model_args, vectors)
