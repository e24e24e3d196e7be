"""SRUCell and SRU: the nn.LSTM-style modules.

Parameter layout of one SRUCell (D = 2 if bidirectional else 1, d = hidden_size)::

    weight  (input_size, D*k*d)  columns grouped [direction][slot][unit], slots:
                                 0 = W (candidate x~), 1 = W_f (forget), 2 = W_r (reset),
                                 3 = W_h (highway projection; present only when k == 4)
    bias    (D*2*d,)             [direction][b_f, b_r][unit]; b_r starts at highway_bias

k = 3 when input_size == D*d, so the highway adds x itself (direction dr uses
x[..., dr*d:(dr+1)*d]); otherwise k = 4 and the highway adds W_h x.
"""
import math

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from .gemm import matmul
from .ops import check_backend_available, recurrence, resolve_backend


def _check_prob(name, p):
    if not 0.0 <= p < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {p}")


class SRUCell(nn.Module):
    """One SRU layer (both directions when bidirectional). See the module docstring for the
    parameter layout.

    forward(input (L, B, input_size), c0 (B, D*d) or None, mask_pad (L, B) or None)
    -> (h (L, B, D*d), c_n (B, D*d)). mask_pad is True/1 at padding: padded steps keep c,
    output 0 and pass no gradient to real steps.

    dropout is the authors' (cuda_functional.py, 2017): in training, one mask per sequence of
    shape (B, D*d), scaled by 1/(1-p) and the same at every step, multiplies g(c_t) inside the
    highway, h_t = r_t * (g(c_t) * m) + (1 - r_t) * x_t; the highway term is never dropped.
    rnn_dropout is variational too: one mask per sequence on the GEMM input, shared over time
    (the highway term uses the undropped input, as in the authors' code). Neither is active
    in eval().

    Under torch.autocast (CUDA or CPU) the GEMM runs in the autocast dtype, the recurrence keeps
    fp32 state, h comes back in the autocast dtype (like nn.LSTM) and c_n in fp32; c0 may be
    either.
    """

    def __init__(self, input_size, hidden_size, dropout=0.0, rnn_dropout=0.0, bidirectional=False,
                 use_tanh=True, highway_bias=0.0, backend="auto"):
        super().__init__()
        if input_size < 1 or hidden_size < 1:
            raise ValueError(f"input_size and hidden_size must be >= 1, got {input_size}, {hidden_size}")
        _check_prob("dropout", dropout)
        _check_prob("rnn_dropout", rnn_dropout)
        check_backend_available(backend)
        self.input_size, self.hidden_size = input_size, hidden_size
        self.dropout, self.rnn_dropout, self.bidirectional = dropout, rnn_dropout, bidirectional
        self.use_tanh, self.highway_bias, self.backend = bool(use_tanh), highway_bias, backend
        self.num_directions = 2 if bidirectional else 1
        self.output_size = self.num_directions * hidden_size
        self.k = 3 if input_size == self.output_size else 4
        self.weight = nn.Parameter(torch.empty(input_size, self.num_directions * self.k * hidden_size))
        self.bias = nn.Parameter(torch.empty(self.num_directions * 2 * hidden_size))
        self.reset_parameters()

    def reset_parameters(self):
        """The authors' init: W ~ U(±sqrt(3/input_size)); b_f = 0, b_r = highway_bias."""
        bound = math.sqrt(3.0 / self.input_size)
        nn.init.uniform_(self.weight, -bound, bound)
        with torch.no_grad():
            self.bias.zero_()
            self.bias.view(self.num_directions, 2, self.hidden_size)[:, 1] = self.highway_bias

    def extra_repr(self):
        return (f"{self.input_size}, {self.hidden_size}, k={self.k}, bidirectional={self.bidirectional}, "
                f"use_tanh={self.use_tanh}, dropout={self.dropout}, rnn_dropout={self.rnn_dropout}, "
                f"backend={self.backend!r}")

    def forward(self, input, c0=None, mask_pad=None):
        amp = _autocast_dtype(input)
        _check_input(input, self.input_size, self.weight, amp=amp is not None)
        L, B, _ = input.shape
        if c0 is None:
            c0 = input.new_zeros(B, self.output_size, dtype=torch.float32 if amp else input.dtype)
        elif tuple(c0.shape) != (B, self.output_size):
            raise ValueError(f"c0 must have shape (batch, hidden_size*directions) = "
                             f"{(B, self.output_size)}, got {tuple(c0.shape)}")
        _check_mask(mask_pad, L, B, input.device)
        x = input
        if self.training and self.rnn_dropout > 0:
            x = x * _sequence_mask(self.rnn_dropout, (1, B, self.input_size), input)
        U = matmul(x.reshape(L * B, self.input_size), self.weight).view(L, B, self.weight.shape[1])  # autocast: its dtype
        xh = input if self.k == 3 else None
        drop = None
        if self.training and self.dropout > 0:  # one mask per sequence, on g(c) (see the docstring)
            drop = _sequence_mask(self.dropout, (B, self.output_size), U, torch.float32 if amp else U.dtype)
        if amp is None:
            return recurrence(U, xh, self.bias, c0, mask_pad, self.hidden_size, self.bidirectional,
                              self.use_tanh, self.backend, drop=drop)
        return self._autocast_recurrence(U, xh, c0, mask_pad, drop, amp)

    def _autocast_recurrence(self, U, xh, c0, mask_pad, drop, dtype):
        """Under torch.autocast: the GEMM ran in `dtype`; the recurrence keeps fp32 state. The Triton
        kernels read U in `dtype` directly; the CPU kernels and the reference get fp32 copies.
        Returns h in `dtype` (as nn.LSTM under autocast) and c_n in fp32."""
        with torch.autocast(U.device.type, enabled=False):
            fused_low = self.backend != "cpu" and resolve_backend(self.backend, U.device, U.dtype) == "gpu"
            if not fused_low:
                U, xh = U.float(), None if xh is None else xh.float()
            h, c_n = recurrence(U, xh, self.bias.float(), c0.float(), mask_pad, self.hidden_size,
                                self.bidirectional, self.use_tanh, self.backend,
                                drop=drop if drop is None or fused_low else drop.float())
        return h.to(dtype), c_n.float()


class SRU(nn.Module):
    """A stack of SRUCells with the nn.LSTM-style interface of the paper's README.

    forward(input, c0=None, mask_pad=None) -> (output, c_n)
      input    (L, B, input_size), or (B, L, input_size) with batch_first, or a PackedSequence
      c0       (num_layers, B, hidden_size*directions) or None (zeros)
      mask_pad (L, B) bool, True at padding ((B, L) with batch_first); derived for packed input
      output   like input with hidden_size*directions features (a PackedSequence for one)
      c_n      (num_layers, B, hidden_size*directions): each layer's last state

    dropout is the authors' dropout inside the highway of every layer but the last (as their
    `dropout if i+1 != num_layers else 0`); rnn_dropout is each layer's variational input
    dropout. See SRUCell: one mask per sequence for both, never on the highway term.
    """

    def __init__(self, input_size, hidden_size, num_layers=2, dropout=0.0, rnn_dropout=0.0,
                 bidirectional=False, use_tanh=True, highway_bias=0.0, batch_first=False,
                 backend="auto"):
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        _check_prob("dropout", dropout)
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.dropout, self.batch_first, self.bidirectional = dropout, batch_first, bidirectional
        self.output_size = (2 if bidirectional else 1) * hidden_size
        self.layers = nn.ModuleList(
            SRUCell(input_size if i == 0 else self.output_size, hidden_size,
                    dropout=dropout if i + 1 != num_layers else 0.0, rnn_dropout=rnn_dropout,
                    bidirectional=bidirectional, use_tanh=use_tanh, highway_bias=highway_bias,
                    backend=backend)
            for i in range(num_layers))

    def forward(self, input, c0=None, mask_pad=None):
        packed = isinstance(input, PackedSequence)
        if packed:
            if mask_pad is not None:
                raise ValueError("mask_pad must be None for a PackedSequence (padding is derived from it)")
            input, lengths = pad_packed_sequence(input)
            steps = torch.arange(input.shape[0]).unsqueeze(1)
            mask_pad = (steps >= lengths.unsqueeze(0)).to(input.device)
        elif self.batch_first:
            if input.dim() != 3:
                _check_input(input, self.input_size, self.layers[0].weight, batch_first=True)
            input = input.transpose(0, 1)
            mask_pad = None if mask_pad is None else mask_pad.transpose(0, 1)
        _check_input(input, self.input_size, self.layers[0].weight, amp=_autocast_dtype(input) is not None)
        L, B, _ = input.shape
        if c0 is not None and tuple(c0.shape) != (self.num_layers, B, self.output_size):
            raise ValueError(f"c0 must have shape (num_layers, batch, hidden_size*directions) = "
                             f"{(self.num_layers, B, self.output_size)}, got {tuple(c0.shape)}")

        h, c_last = input, []
        for i, layer in enumerate(self.layers):
            h, c = layer(h, None if c0 is None else c0[i], mask_pad)
            c_last.append(c)
        c_n = torch.stack(c_last)
        if packed:
            return pack_padded_sequence(h, lengths, enforce_sorted=False), c_n
        return (h.transpose(0, 1) if self.batch_first else h), c_n


def _sequence_mask(p, shape, like, dtype=None):
    """A dropout mask of `shape` (one row per sequence, shared over time): 0 or 1/(1-p)."""
    keep = 1.0 - p
    return like.new_empty(shape, dtype=dtype or like.dtype).bernoulli_(keep) / keep


def _autocast_dtype(x):
    """The autocast dtype if torch.autocast is on for x's device (and x is floating point), else None."""
    if not (isinstance(x, torch.Tensor) and x.is_floating_point()):
        return None
    try:
        on = torch.is_autocast_enabled(x.device.type)
    except RuntimeError:  # a device type autocast does not know (meta): never on
        return None
    return torch.get_autocast_dtype(x.device.type) if on else None


def _check_input(x, input_size, weight, batch_first=False, amp=False):
    shape = "(batch, length, input_size)" if batch_first else "(length, batch, input_size)"
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"input must be a torch.Tensor or PackedSequence, got {type(x).__name__}")
    if x.dim() != 3:
        raise ValueError(f"input must have shape {shape} with input_size={input_size}, "
                         f"got a {x.dim()}-d tensor of shape {tuple(x.shape)}")
    if x.shape[-1] != input_size:
        raise ValueError(f"input must have shape {shape} with input_size={input_size}, "
                         f"got shape {tuple(x.shape)}")
    if x.shape[1 if batch_first else 0] == 0:  # as nn.LSTM; an empty batch (B = 0) is fine
        raise ValueError(f"input has sequence length 0 (shape {tuple(x.shape)}, {shape}): expected length > 0")
    if x.device != weight.device:
        raise ValueError(f"input is on {x.device} but the SRU's parameters are on {weight.device}; "
                         f"move one with .to(device)")
    if x.dtype != weight.dtype and not amp:  # under autocast the GEMM casts both
        raise TypeError(f"input dtype {x.dtype} does not match the SRU's parameters ({weight.dtype}); "
                        f"cast the input or the module (e.g. module.to({x.dtype})), or run under torch.autocast")


def _check_mask(mask_pad, L, B, device):
    if mask_pad is None:
        return
    if tuple(mask_pad.shape) != (L, B):
        raise ValueError(f"mask_pad must have shape (length, batch) = {(L, B)}, "
                         f"got {tuple(mask_pad.shape)}")
    if mask_pad.device != device:
        raise ValueError(f"mask_pad is on {mask_pad.device} but the input is on {device}")
