"""SRUCell and SRU: the modules, with the keywords, defaults and checkpoints of PyPI ``sru`` 2.6.0.

Two cells (``cell=``):
  "2018" (default): the cell of sru 2.x (arXiv 1709.02755 v3+, EMNLP 2018): the gates read c_{t-1}
         through ``weight_c``; dropout scales the highway gate, h = x' + (g(c) - x') m r; sru 2.6's
         initialisation. A drop-in for ``sru.SRU`` / ``sru.SRUCell`` 2.6: every keyword with its
         default, and ``state_dict()`` / ``load_state_dict()`` in its keys, shapes and layouts.
  "2017": the paper's cell as the tables ran it (the authors' 2017 code): no ``weight_c``; dropout on
         g(c) only, h = r (g(c) m) + (1 - r) x; W ~ U(+-sqrt(3/input_size)), b = 0 but b_r =
         highway_bias. Its state_dict is this package's own (the layouts below).

Parameters as the kernels read them (D = 2 if bidirectional else 1, d = hidden_size)::

    weight_proj (input_size, projection_size)   only with a projection (n_proj / projection_size)
    weight      (input', D*k*d)   columns [direction][slot][unit]: slot 0 = candidate, 1 = forget,
                                  2 = reset, 3 = highway projection (k == 4 only)
    weight_c    (D*2*d,)          [direction][v_f, v_r][unit] (2018 cell only)
    bias        (D*2*d,)          [direction][b_f, b_r][unit]
    scale_x     (1,) buffer       the highway's rescale factor (2018 cell, or rescale=True)

sru 2.6 stores weight as [direction][unit][slot] and weight_c, bias as [gate][direction][unit]: the 2018
cell's ``state_dict()`` is written in those layouts and ``load_state_dict`` reads them, so checkpoints go both
ways unchanged; the parameters themselves stay in the kernels' layout (one contiguous row per slot, what
the CPU loops vectorise over and the GPU loads coalesce on). docs/fidelity.md lists every difference.

k = 4 when there is a skip term and input_size != D*d (the highway adds W_h x), else 3 (it adds
x itself, direction dr reading x[..., dr*d:(dr+1)*d]; or nothing without a skip term).
"""
import math
import numbers

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from .gemm import matmul
from .ops import check_backend_available, onnx_exporting, recurrence, resolve_backend

CELLS = ("2018", "2017")
NO_TORCHSCRIPT = ("TorchScript (torch.jit.script / torch.jit.trace) is not supported for SRU: PyTorch has deprecated it, "
                  "and the fused kernels run as torch.library custom ops, which TorchScript cannot save. Use "
                  "torch.export.export(model, args, dynamic_shapes=...) to get a deployable program, or torch.compile")


def _check_prob(name, p):
    if not isinstance(p, numbers.Real) or not 0.0 <= p < 1.0:
        raise ValueError(f"{name} must be a number in [0, 1), got {p!r}")


def _check_size(name, n, minimum=1):
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {n!r}"
                         + (f"; use {name}={int(n)}" if isinstance(n, float) and n.is_integer() and n >= minimum else ""))


def _check_cell(cell, v1, weight_c_init):
    if cell not in CELLS:
        raise ValueError(f"cell must be one of {CELLS} (2018: sru 2.x's cell; 2017: the paper's tables), got {cell!r}")
    if cell == "2017" and (v1 or weight_c_init is not None):
        raise ValueError("v1 and weight_c_init set up weight_c, which the 2017 cell does not have: "
                         "leave them at their defaults with cell='2017', or use cell='2018'")
    if weight_c_init is not None and not (isinstance(weight_c_init, numbers.Real) and weight_c_init > 0):
        raise ValueError(f"weight_c_init must be None or a positive number, got {weight_c_init!r}")


# --- sru 2.6's checkpoint layouts <-> the kernels' ------------------------------------------
def _weight_to_sru26(w, D, k, d):
    return w.reshape(w.shape[0], D, k, d).transpose(2, 3).reshape(w.shape)


def _weight_from_sru26(w, D, k, d):
    return w.reshape(w.shape[0], D, d, k).transpose(2, 3).reshape(w.shape)


def _gates_to_sru26(v, D, d):
    return v.reshape(D, 2, d).transpose(0, 1).reshape(v.shape)


def _gates_from_sru26(v, D, d):
    return v.reshape(2, D, d).transpose(0, 1).reshape(v.shape)


def state_dict_from_sru3(state_dict):
    """A state_dict of sru 3.0.0.dev's SRU or SRUCell as sru 2.6's (which ``SRU`` / ``SRUCell`` load): 3.0 keeps
    the GEMM in ``transform_module``, an ``nn.Linear`` (``transform_module.weight``, sru 2.6's ``weight``
    transposed) or, with a projection, ``nn.Sequential(Linear, Linear)`` (``transform_module.0.weight`` and
    ``.1.weight``: ``weight_proj`` and ``weight``, transposed); weight_c, bias, scale_x and layer_norm are
    sru 2.6's. Build the module with sru 2.6's keywords (3.0's ``projection_size`` on a cell is ``n_proj``).
    A custom transform module (any other key under it) raises ValueError."""
    out = {}
    for key, value in state_dict.items():
        head, sep, tail = key.partition("transform_module.")
        if not sep:
            out[key] = value
        elif tail in ("weight", "1.weight"):
            out[head + "weight"] = value.t()
        elif tail == "0.weight":
            out[head + "weight_proj"] = value.t()
        else:
            raise ValueError(f"{key}: not the transform module sru 3.0 builds itself (nn.Linear, or two in an "
                             f"nn.Sequential with a projection); a custom one's parameters have no sru 2.6 place")
    return out


class SRUCell(nn.Module):
    """One SRU layer (both directions when bidirectional); sru 2.6's SRUCell. See the module docstring.

    forward(input (L, B, input_size) or (B, input_size) for one step, c0 (B, D*d) or None,
    mask_pad (L, B) or None) -> (h (L, B, D*d), c_n (B, D*d)). mask_pad is True/1 at padding:
    padded steps keep c, output 0 and pass no gradient to real steps.

    dropout: in training, one mask per sequence of shape (B, D*d), scaled by 1/(1-p) and the same at
    every step: on the highway gate (2018: h = x' + (g(c) - x') m r) or on g(c) alone (2017:
    h = r (g(c) m) + (1 - r) x). rnn_dropout: one mask per sequence on the GEMM input, shared over time;
    the highway term uses the undropped input. Neither is active in eval().
    layer_norm: on the GEMM input (pre; the highway reads the input before it) or, with normalize_after,
    on h. rescale: x' = scale_x * x with scale_x = sqrt(1 + 2 exp(highway_bias)) (k = 3), or folded into
    W_h at init (k = 4). custom_m: a module computing U from the (normalised, dropped-out) input in sru
    2.6's column layout, instead of the GEMM.

    Under torch.autocast (CUDA or CPU) the GEMM runs in the autocast dtype, the recurrence keeps
    fp32 state, h comes back in the autocast dtype (like nn.LSTM) and c_n in fp32; c0 may be either.
    """

    def __init__(self, input_size, hidden_size, dropout=0.0, rnn_dropout=0.0, bidirectional=False, n_proj=0,
                 use_tanh=False, highway_bias=0.0, has_skip_term=True, layer_norm=False, rescale=True, v1=False,
                 custom_m=None, amp_recurrence_fp16=False, normalize_after=False, weight_c_init=None, *,
                 cell="2018", backend="auto"):
        super().__init__()
        _check_size("input_size", input_size)
        _check_size("hidden_size", hidden_size)
        _check_size("n_proj", n_proj, minimum=0)
        _check_prob("dropout", dropout)
        _check_prob("rnn_dropout", rnn_dropout)
        _check_cell(cell, v1, weight_c_init)
        check_backend_available(backend)
        if custom_m is not None and not isinstance(custom_m, nn.Module):
            raise TypeError(f"custom_m must be an nn.Module, got {type(custom_m).__name__}")
        self.input_size, self.hidden_size = int(input_size), int(hidden_size)
        self.bidirectional, self.num_directions = bool(bidirectional), 2 if bidirectional else 1
        self.output_size = self.num_directions * self.hidden_size
        self.dropout, self.rnn_dropout = float(dropout), float(rnn_dropout)
        self.use_tanh, self.activation = bool(use_tanh), "tanh" if use_tanh else "none"
        self.activation_type = int(self.use_tanh)
        self.highway_bias, self.has_skip_term, self.rescale = highway_bias, bool(has_skip_term), bool(rescale)
        self.v1, self.custom_m, self.amp_recurrence_fp16 = bool(v1), custom_m, bool(amp_recurrence_fp16)
        self.normalize_after, self.weight_c_init = bool(normalize_after), weight_c_init
        self.cell, self.backend = cell, backend
        # as sru 2.6: a projection only when it is smaller than both sizes (else none, silently)
        self.projection_size = n_proj if 0 < n_proj < self.input_size and n_proj < self.output_size else 0
        self.num_matrices = self.k = 4 if self.has_skip_term and self.input_size != self.output_size else 3
        if custom_m is None:
            gemm_in = self.projection_size or self.input_size
            self.weight_proj = (nn.Parameter(torch.empty(self.input_size, self.projection_size))
                                if self.projection_size else None)
            self.weight = nn.Parameter(torch.empty(gemm_in, self.num_directions * self.k * self.hidden_size))
        self.weight_c = nn.Parameter(torch.empty(2 * self.output_size)) if cell == "2018" else None
        self.bias = nn.Parameter(torch.empty(2 * self.output_size))
        if cell == "2018" or self.rescale:
            self.register_buffer("scale_x", torch.ones(1))
        else:
            self.scale_x = None
        self.layer_norm = (nn.LayerNorm(self.output_size if normalize_after else self.input_size)
                           if layer_norm else None)
        self.reset_parameters()
        if cell == "2018":
            self._register_state_dict_hook(SRUCell._state_dict_to_sru26)
            self._register_load_state_dict_pre_hook(self._state_dict_from_sru26)

    def reset_parameters(self):
        """sru 2.6's recipe for the 2018 cell (drawn in its layout, in its order: the same values for the same
        seed); the authors' 2017 recipe for the 2017 cell. rescale sets scale_x (and, k = 4, scales W_h)."""
        D, k, d = self.num_directions, self.k, self.hidden_size
        scale = math.sqrt(1 + 2 * math.exp(self.highway_bias)) if self.rescale and self.has_skip_term else 1.0
        with torch.no_grad():
            self.bias.view(D, 2, d)[:, 0] = 0.0
            self.bias.view(D, 2, d)[:, 1] = self.highway_bias
            if self.scale_x is not None:
                self.scale_x.fill_(scale)
            if self.custom_m is not None:
                if hasattr(self.custom_m, "reset_parameters"):
                    self.custom_m.reset_parameters()
            else:
                rows, bound = self.weight.shape[0], math.sqrt(3.0 / self.weight.shape[0])
                # drawn in sru 2.6's layout (2018) or in the kernels' as the 2017 code did: the same values for a seed
                # as sru 2.6 and as this package's earlier releases; w is viewed as [row][direction][unit][slot]
                w = (torch.empty(rows, D, d, k) if self.cell == "2018" else
                     torch.empty(rows, D, k, d).transpose(2, 3)).uniform_(-bound, bound)
                if self.weight_proj is not None:
                    bound = math.sqrt(3.0 / self.input_size)
                    self.weight_proj.uniform_(-bound, bound)
                if self.cell == "2018":  # sru 2.6: smaller weights for dropout, rnn_dropout, layer norm
                    if self.dropout > 0:
                        w[..., 0] *= math.sqrt(1 - self.dropout)
                    if self.rnn_dropout > 0:
                        w *= math.sqrt(1 - self.rnn_dropout)
                    if self.layer_norm is not None:
                        w *= 0.1
                if k == 4:
                    w[..., 3] *= scale
            if self.cell == "2018":
                if self.v1:
                    self.weight_c.zero_()
                    self.weight_c.requires_grad_(False)
                else:
                    bound = self.weight_c_init if self.weight_c_init is not None else math.sqrt(3.0)
                    wc = torch.empty(2 * self.output_size).uniform_(-bound, bound)
                    if self.weight_c_init is None:
                        wc *= math.sqrt(0.5)
                    self.weight_c.copy_(_gates_from_sru26(wc, D, d))
                    if self.custom_m is None:
                        w[..., 1:3] *= math.sqrt(0.5)
            if self.custom_m is None:
                self.weight.copy_(w.transpose(2, 3).reshape(self.weight.shape))
            if self.layer_norm is not None:
                self.layer_norm.reset_parameters()

    @staticmethod
    def _state_dict_to_sru26(module, state_dict, prefix, local_metadata):
        D, k, d = module.num_directions, module.k, module.hidden_size
        if prefix + "weight" in state_dict:
            state_dict[prefix + "weight"] = _weight_to_sru26(state_dict[prefix + "weight"], D, k, d)
        for name in ("weight_c", "bias"):
            state_dict[prefix + name] = _gates_to_sru26(state_dict[prefix + name], D, d)

    def _state_dict_from_sru26(self, state_dict, prefix, *args):
        """sru 2.6's layouts into the kernels'; a tensor of another shape is left for load_state_dict to report
        (it names the key and both shapes)."""
        D, k, d = self.num_directions, self.k, self.hidden_size
        for name, convert in (("weight", _weight_from_sru26), ("weight_c", _gates_from_sru26),
                              ("bias", _gates_from_sru26)):
            t, own = state_dict.get(prefix + name), getattr(self, name, None)
            if isinstance(t, torch.Tensor) and own is not None and t.shape == own.shape:
                state_dict[prefix + name] = convert(t, *((D, k, d) if name == "weight" else (D, d)))

    def extra_repr(self):
        s = f"{self.input_size}, {self.hidden_size}, cell={self.cell!r}, k={self.k}"
        for name, default in (("projection_size", 0), ("dropout", 0.0), ("rnn_dropout", 0.0), ("bidirectional", False),
                              ("highway_bias", 0.0), ("use_tanh", False), ("v1", False), ("has_skip_term", True),
                              ("normalize_after", False), ("backend", "auto")):
            if getattr(self, name) != default:
                s += f", {name}={getattr(self, name)!r}"
        return s + f", rescale={self.rescale}" + (", layer_norm=True" if self.layer_norm is not None else "")

    def compute_U(self, input):
        """U (L, B, D*k*d) in the kernels' column layout from the GEMM input (L, B, input_size)."""
        L, B, _ = input.shape
        if self.custom_m is not None:
            U = self.custom_m(input)
            if isinstance(U, (tuple, list)):
                if len(U) != 1:
                    raise NotImplementedError(
                        "custom_m returned a second tensor (V, per-step weight_c terms), which this package does "
                        "not support: return U alone, of shape (length, batch, output_size * num_matrices)")
                U = U[0]
            cols = self.output_size * self.k
            if U.shape[-1] != cols or U.numel() != L * B * cols:
                raise ValueError(f"custom_m must return U of shape (length, batch, {cols}) = (L, B, output_size * "
                                 f"num_matrices) for input {tuple(input.shape)}, got {tuple(U.shape)}")
            D, d = self.num_directions, self.hidden_size
            return U.reshape(L, B, D, d, self.k).transpose(3, 4).reshape(L, B, cols)
        x = input.reshape(L * B, self.input_size)
        if self.weight_proj is not None:
            x = matmul(x, self.weight_proj)
        return matmul(x, self.weight).view(L, B, self.weight.shape[1])  # autocast: its dtype

    def __prepare_scriptable__(self):  # torch.jit.script calls this first
        raise RuntimeError(NO_TORCHSCRIPT)

    def forward(self, input, c0=None, mask_pad=None):
        if torch.jit.is_tracing():  # a trace would record the kernels as a Python op no program can run
            raise RuntimeError(NO_TORCHSCRIPT)
        if onnx_exporting():
            _check_onnx_export(self, input)
        one_step = isinstance(input, torch.Tensor) and input.dim() == 2  # (B, input_size): one step, as sru 2.6
        if one_step:
            input = input.unsqueeze(0)
        amp = _autocast_dtype(input)
        _check_input(input, self.input_size, self.bias, amp=amp is not None)
        L, B, _ = input.shape
        if c0 is None:
            c0 = input.new_zeros(B, self.output_size, dtype=torch.float32 if amp else input.dtype)
        elif tuple(c0.shape) != (B, self.output_size):
            raise ValueError(f"c0 must have shape (batch, hidden_size*directions) = "
                             f"{(B, self.output_size)}, got {tuple(c0.shape)}")
        _check_mask(mask_pad, L, B, input.device)
        residual = input
        if self.layer_norm is not None and not self.normalize_after:
            input = self.layer_norm(input)
        if self.training and self.rnn_dropout > 0:
            input = input * _sequence_mask(self.rnn_dropout, (1, B, self.input_size), input)
        U = self.compute_U(input)
        xh = None
        if self.has_skip_term and self.k == 3:
            xh = residual * self.scale_x if self.rescale else residual
        drop = None
        if self.training and self.dropout > 0:  # one mask per sequence (see the class docstring)
            drop = _sequence_mask(self.dropout, (B, self.output_size), U, torch.float32 if amp else U.dtype)
        h, c_n = self._recurrence(U, xh, c0, mask_pad, drop, amp)
        if self.layer_norm is not None and self.normalize_after:
            h = self.layer_norm(h)
        return h, c_n

    def _recurrence(self, U, xh, c0, mask_pad, drop, amp):
        options = dict(weight_c=self.weight_c, drop_gate=self.cell == "2018")
        if amp is None:
            return recurrence(U, xh, self.bias, c0, mask_pad, self.hidden_size, self.bidirectional, self.use_tanh,
                              self.backend, drop=drop, **options)
        # Under torch.autocast the GEMM ran in `amp`; the recurrence keeps fp32 state. The Triton kernels read U in
        # `amp` directly; the CPU kernels and the reference get fp32 copies. h in `amp` (as nn.LSTM), c_n in fp32.
        with torch.autocast(U.device.type, enabled=False):
            fused_low = self.backend != "cpu" and resolve_backend(self.backend, U.device, U.dtype) == "gpu"
            if not fused_low:
                U, xh = U.float(), None if xh is None else xh.float()
                drop = None if drop is None else drop.float()
            options["weight_c"] = None if self.weight_c is None else self.weight_c.float()
            h, c_n = recurrence(U, xh, self.bias.float(), c0.float(), mask_pad, self.hidden_size,
                                self.bidirectional, self.use_tanh, self.backend, drop=drop, **options)
        return h.to(amp), c_n.float()


class SRU(nn.Module):
    """A stack of SRUCells with the interface of sru 2.6's SRU (and nn.LSTM's, with batch_first and
    PackedSequence).

    forward(input, c0=None, mask_pad=None) -> (output, c_n)
      input    (L, B, input_size), or (B, L, input_size) with batch_first, or a PackedSequence
      c0       (num_layers, B, hidden_size*directions) or None (zeros)
      mask_pad (L, B) bool, True at padding ((B, L) with batch_first); derived for packed input
      output   like input with hidden_size*directions features (a PackedSequence for one)
      c_n      (num_layers, B, hidden_size*directions): each layer's last state; with
               nn_rnn_compatible_return (num_layers*directions, B, hidden_size), as nn.LSTM's

    dropout acts inside every layer but the last (sru's and the authors' `dropout if i+1 != num_layers
    else 0`); rnn_dropout is each layer's variational input dropout. See SRUCell for both and for the
    other keywords, which every layer gets. proj_input_to_hidden_first: a bias-free linear map from
    input_size to the output size before the first layer (when they differ), as sru 2.6.
    """

    def __init__(self, input_size, hidden_size, num_layers=2, dropout=0.0, rnn_dropout=0.0, bidirectional=False,
                 projection_size=0, use_tanh=False, layer_norm=False, highway_bias=0.0, has_skip_term=True,
                 rescale=False, v1=False, nn_rnn_compatible_return=False, custom_m=None,
                 proj_input_to_hidden_first=False, amp_recurrence_fp16=False, normalize_after=False,
                 weight_c_init=None, *, cell="2018", batch_first=False, backend="auto"):
        super().__init__()
        _check_size("num_layers", num_layers)
        _check_size("input_size", input_size)
        _check_size("hidden_size", hidden_size)
        _check_prob("dropout", dropout)
        if isinstance(custom_m, (list, tuple)) and len(custom_m) != num_layers:
            raise ValueError(f"custom_m as a list needs one module per layer: {num_layers}, got {len(custom_m)}")
        self.input_size, self.hidden_size, self.num_layers = int(input_size), int(hidden_size), int(num_layers)
        self.dropout, self.rnn_dropout, self.projection_size = dropout, rnn_dropout, projection_size
        self.bidirectional, self.num_directions = bool(bidirectional), 2 if bidirectional else 1
        self.output_size = self.num_directions * self.hidden_size
        self.use_layer_norm, self.has_skip_term = bool(layer_norm), bool(has_skip_term)
        self.nn_rnn_compatible_return, self.amp_recurrence_fp16 = bool(nn_rnn_compatible_return), amp_recurrence_fp16
        self.cell, self.batch_first = cell, bool(batch_first)
        self.input_to_hidden = None
        first_input = self.input_size
        if proj_input_to_hidden_first and self.input_size != self.output_size:
            self.input_to_hidden = nn.Linear(self.input_size, self.output_size, bias=False)
            first_input = self.output_size

        def custom(i):
            if custom_m is None or isinstance(custom_m, (list, tuple)):
                return None if custom_m is None else custom_m[i]
            import copy
            return copy.deepcopy(custom_m)

        self.rnn_lst = nn.ModuleList(
            SRUCell(first_input if i == 0 else self.output_size, hidden_size,
                    dropout=dropout if i + 1 != num_layers else 0.0, rnn_dropout=rnn_dropout,
                    bidirectional=bidirectional, n_proj=projection_size, use_tanh=use_tanh, highway_bias=highway_bias,
                    has_skip_term=has_skip_term, layer_norm=layer_norm, rescale=rescale, v1=v1, custom_m=custom(i),
                    amp_recurrence_fp16=amp_recurrence_fp16, normalize_after=normalize_after,
                    weight_c_init=weight_c_init, cell=cell, backend=backend)
            for i in range(num_layers))
        self._register_load_state_dict_pre_hook(SRU._rename_layers)

    def __prepare_scriptable__(self):  # torch.jit.script calls this first
        raise RuntimeError(NO_TORCHSCRIPT)

    @property
    def layers(self):
        """The cells (sru 2.6 names them rnn_lst)."""
        return self.rnn_lst

    @staticmethod
    def _rename_layers(state_dict, prefix, *args):
        """Checkpoints of this package before it matched sru 2.6 named the cells `layers.{i}`."""
        for key in [k for k in state_dict if k.startswith(prefix + "layers.")]:
            state_dict[prefix + "rnn_lst." + key[len(prefix + "layers."):]] = state_dict.pop(key)

    def reset_parameters(self):
        for layer in self.rnn_lst:
            layer.reset_parameters()
        if self.input_to_hidden is not None:
            self.input_to_hidden.reset_parameters()

    def forward(self, input, c0=None, mask_pad=None):
        packed = isinstance(input, PackedSequence)
        weight = self.rnn_lst[0].bias
        if packed:
            if mask_pad is not None:
                raise ValueError("mask_pad must be None for a PackedSequence (padding is derived from it)")
            input, lengths = pad_packed_sequence(input)
            steps = torch.arange(input.shape[0]).unsqueeze(1)
            mask_pad = (steps >= lengths.unsqueeze(0)).to(input.device)
        elif self.batch_first:
            if input.dim() != 3:
                _check_input(input, self.input_size, weight, batch_first=True)
            input = input.transpose(0, 1)
            if mask_pad is not None:
                if tuple(mask_pad.shape) != (input.shape[1], input.shape[0]):
                    raise ValueError(f"with batch_first=True mask_pad must have shape (batch, length) = "
                                     f"{(input.shape[1], input.shape[0])}, got {tuple(mask_pad.shape)}")
                mask_pad = mask_pad.transpose(0, 1)
        _check_input(input, self.input_size, weight, amp=_autocast_dtype(input) is not None)
        L, B, _ = input.shape
        if c0 is not None and tuple(c0.shape) != (self.num_layers, B, self.output_size):
            raise ValueError(f"c0 must have shape (num_layers, batch, hidden_size*directions) = "
                             f"{(self.num_layers, B, self.output_size)}, got {tuple(c0.shape)}")

        h = input if self.input_to_hidden is None else self.input_to_hidden(input)
        c_last = []
        for i, layer in enumerate(self.rnn_lst):
            h, c = layer(h, None if c0 is None else c0[i], mask_pad)
            c_last.append(c)
        c_n = torch.stack(c_last)
        if self.nn_rnn_compatible_return:  # (layers, B, D, d) -> (layers * D, B, d), as nn.LSTM's h_n
            c_n = c_n.view(self.num_layers, B, self.num_directions, self.hidden_size).transpose(1, 2).reshape(
                self.num_layers * self.num_directions, B, self.hidden_size)
        if packed:
            return pack_padded_sequence(h, lengths, enforce_sorted=False), c_n
        return (h.transpose(0, 1) if self.batch_first else h), c_n


def _check_onnx_export(cell, input):
    """What an ONNX export of this cell cannot keep: training-mode dropout (random masks) and bfloat16."""
    if cell.training and (cell.dropout > 0 or cell.rnn_dropout > 0):
        raise RuntimeError("exporting an SRU in training mode with dropout: the exported model would draw random "
                           "dropout masks. Call model.eval() before torch.onnx.export")
    if isinstance(input, torch.Tensor) and input.dtype == torch.bfloat16:
        raise TypeError("exporting an SRU in bfloat16: onnxruntime's CPU provider has no bfloat16 kernels for its "
                        "ops; export in float32 (model.float()) or float16")


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
    if not x.is_floating_point():
        raise TypeError(f"input must be floating point, got {x.dtype}; convert it, e.g. input.to({weight.dtype})")
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
    if mask_pad.is_floating_point() or mask_pad.is_complex():
        raise TypeError(f"mask_pad must be bool (True at padding) or integer 0/1, got {mask_pad.dtype}: a fraction "
                        f"would silently read as 'not padding'; pass e.g. mask_pad.bool()")
