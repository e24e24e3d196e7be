"""Table 4's translation model: OpenNMT-py's (2017) attentional encoder-decoder with an LSTM or SRU.

encoder: embedding -> bidirectional RNN (hidden/2 per direction), padding masked (packed LSTM, SRU
         mask_pad); its final state (both directions side by side) starts the decoder
decoder: embedding [; previous attentional output, with input feeding] -> RNN -> global attention
         "general" (Luong: score = h_t . W h_s, masked over source padding) -> tanh(W [context; h_t])
         -> dropout -> linear -> log-softmax

Without input feeding the decoder RNN does not depend on the attention, so training runs it over
the whole target in one call (for the SRU, one fused kernel launch per layer); only attention and
softmax are per step. Input feeding needs the step-by-step loop and is allowed for the LSTM only (as
OpenNMT, whose SRU asserted input_feed 0). decode_step() runs one step with carried state and
gives the teacher-forced logits exactly (tested), which greedy and beam search build on.
"""
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from tasks.common.errors import UserError
from tasks.common.models import make_rnn


class Encoder(nn.Module):
    def __init__(self, kind, vocab, emb, hidden, layers, dropout, **sru_options):
        super().__init__()
        self.kind, self.layers = kind, layers
        self.embed = nn.Embedding(vocab, emb, padding_idx=0)
        self.rnn = make_rnn(kind, emb, hidden // 2, layers, dropout=dropout, bidirectional=True, **sru_options)

    def forward(self, src, lengths):
        """memory (B, S, hidden), decoder start state."""
        x = self.embed(src).transpose(0, 1)                       # (S, B, E)
        if self.kind == "lstm":
            packed, (h, c) = self.rnn(pack_padded_sequence(x, lengths.cpu(), enforce_sorted=False))
            out = pad_packed_sequence(packed, total_length=x.size(0))[0]
            join = lambda s: s.view(self.layers, 2, *s.shape[1:]).transpose(1, 2).reshape(self.layers, s.size(1), -1)
            return out.transpose(0, 1), (join(h), join(c))        # (layers, B, hidden): [forward; backward]
        steps = torch.arange(x.size(0), device=x.device)[:, None]
        out, c = self.rnn(x, mask_pad=steps >= lengths.to(x.device)[None, :])
        return out.transpose(0, 1), c


class Decoder(nn.Module):
    def __init__(self, kind, vocab, emb, hidden, layers, dropout, input_feed, **sru_options):
        super().__init__()
        if input_feed and kind != "lstm":
            raise UserError(f"model.input_feed=true needs the LSTM decoder: input feeding makes every step wait for "
                            f"the previous attention output, so an {kind.upper()} decoder cannot run over the target "
                            f"in one call (OpenNMT's SRU asserted input_feed 0); set model.input_feed=false")
        self.kind, self.input_feed, self.hidden = kind, input_feed, hidden
        self.embed = nn.Embedding(vocab, emb, padding_idx=0)
        self.rnn = make_rnn(kind, emb + (hidden if input_feed else 0), hidden, layers, dropout=dropout, **sru_options)
        self.attn_in = nn.Linear(hidden, hidden, bias=False)      # "general": h_t . W h_s
        self.attn_out = nn.Linear(2 * hidden, hidden, bias=False)
        self.drop = nn.Dropout(dropout)

    def run_rnn(self, x, state):
        if self.kind == "lstm":
            return self.rnn(x, state)
        return self.rnn(x, c0=state)

    def attend(self, h, keys, memory, src_mask):
        """h (B, T, H) -> attentional output (B, T, H)."""
        scores = h.bmm(keys.transpose(1, 2)).float().masked_fill(src_mask[:, None, :], float("-inf"))
        context = scores.softmax(-1).to(memory.dtype).bmm(memory)
        return self.drop(torch.tanh(self.attn_out(torch.cat([context, h], dim=2))))

    def forward(self, tgt_in, memory, src_mask, state):
        """Teacher forcing over tgt_in (B, T) -> attentional outputs (B, T, H)."""
        keys, emb = self.attn_in(memory), self.embed(tgt_in)
        if not self.input_feed:  # the whole target in one RNN call
            out, _ = self.run_rnn(emb.transpose(0, 1), state)
            return self.attend(out.transpose(0, 1), keys, memory, src_mask)
        feed, outputs = emb.new_zeros(emb.size(0), 1, self.hidden), []
        for t in range(emb.size(1)):
            out, state = self.run_rnn(torch.cat([emb[:, t:t + 1], feed], dim=2).transpose(0, 1), state)
            feed = self.attend(out.transpose(0, 1), keys, memory, src_mask)
            outputs.append(feed)
        return torch.cat(outputs, dim=1)


class Seq2Seq(nn.Module):
    def __init__(self, cfg, model_args):
        super().__init__()
        a = model_args
        if cfg.hidden % 2:
            raise UserError(f"model.hidden={cfg.hidden}: must be even (the bidirectional encoder splits it in two)")
        sru_options = dict(use_tanh=cfg.use_tanh, cell=cfg.cell) if cfg.kind == "sru" else {}
        self.encoder = Encoder(cfg.kind, a["src_vocab"], a["emb"], a["hidden"], cfg.layers, cfg.dropout, **sru_options)
        self.decoder = Decoder(cfg.kind, a["tgt_vocab"], a["emb"], a["hidden"], cfg.layers, cfg.dropout,
                               cfg.input_feed, **sru_options)
        self.generator = nn.Linear(a["hidden"], a["tgt_vocab"])
        if cfg.tie_embeddings:  # decoder input and output embeddings shared (needs emb == hidden)
            if a["emb"] != a["hidden"]:
                raise UserError(f"model.tie_embeddings=true needs embedding size == hidden ({a['emb']} != {a['hidden']})")
            self.generator.weight = self.decoder.embed.weight
        for p in self.parameters():  # OpenNMT's -param_init 0.1
            nn.init.uniform_(p, -cfg.param_init, cfg.param_init)
        with torch.no_grad():
            self.encoder.embed.weight[0].zero_()
            self.decoder.embed.weight[0].zero_()

    def encode(self, src, src_len):
        memory, state = self.encoder(src, src_len)
        return memory, src == 0, state

    def forward(self, src, src_len, tgt_in):
        """Log-probabilities (B, T, V) of the next word at every target position."""
        memory, src_mask, state = self.encode(src, src_len)
        return F.log_softmax(self.generator(self.decoder(tgt_in, memory, src_mask, state)).float(), dim=-1)

    def start(self, src, src_len):
        """Decoding state after the encoder (a dict; `reorder` selects beams)."""
        memory, src_mask, state = self.encode(src, src_len)
        feed = memory.new_zeros(src.size(0), 1, self.decoder.hidden) if self.decoder.input_feed else None
        return dict(memory=memory, keys=self.decoder.attn_in(memory), src_mask=src_mask, rnn=state, feed=feed)

    def decode_step(self, words, s):
        """One target step for words (B,) -> (log-probabilities (B, V), the next state)."""
        dec = self.decoder
        x = dec.embed(words)[:, None, :]
        if dec.input_feed:
            x = torch.cat([x, s["feed"]], dim=2)
        out, rnn_state = dec.run_rnn(x.transpose(0, 1), s["rnn"])
        h = dec.attend(out.transpose(0, 1), s["keys"], s["memory"], s["src_mask"])
        logp = F.log_softmax(self.generator(h[:, 0]).float(), dim=-1)
        return logp, dict(s, rnn=rnn_state, feed=h if dec.input_feed else None)


def reorder(state, index):
    """The decoding state of the rows `index` (beam search keeps, duplicates and drops rows)."""
    def pick(v, dim):
        return v.index_select(dim, index)
    out = dict(state, memory=pick(state["memory"], 0), keys=pick(state["keys"], 0),
               src_mask=pick(state["src_mask"], 0), feed=None if state["feed"] is None else pick(state["feed"], 0))
    rnn = state["rnn"]
    out["rnn"] = tuple(pick(t, 1) for t in rnn) if isinstance(rnn, tuple) else pick(rnn, 1)
    return out


def build_model(cfg, model_args):
    return Seq2Seq(cfg.model, model_args)
