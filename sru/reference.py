"""The executable spec: the SRU element-wise recurrence in plain PyTorch.

Every fused kernel (``sru.cpu_kernels``, ``sru.triton_kernels``) is tested against this
function, outputs and gradients. It runs in any dtype (float64 for gradcheck) and lets
autograd derive the backward pass, so it is slow but obviously right.

One recurrence serves both cells of the paper: the 2017 one (arXiv 1709.02755 v1-v2, the
tables' models: no weight_c, dropout on g(c)) and the 2018 one (v3+, EMNLP 2018, PyPI ``sru`` 2.x:
the gates read c_{t-1} through weight_c; dropout over the highway gate). Per step, direction and unit::

    f_t = sigmoid(u1_t + v_f c_{t-1} + b_f)      r_t = sigmoid(u2_t + v_r c_{t-1} + b_r)
    c_t = f_t c_{t-1} + (1 - f_t) u0_t
    h_t = r_t (g(c_t) m) + (1 - r_t q) x'_t      g = tanh or identity;  q = m if drop_gate else 1

With drop_gate (sru 2.x) h_t = x' + (g(c_t) - x') m r_t; without it (2017) the mask m scales g(c_t) only.

The inputs, described once (``Inputs``; D = 2 for bidirectional, direction 1 runs time in reverse)::

    U        (L, B, D*k*d)  the GEMM output x @ W, viewed as (L, B, D, k, d):
                            k-slot 0 = u0 (candidate), 1 = u1 (forget), 2 = u2 (reset/highway),
                            3 = x' (highway projection; only when k == 4)
    x        (L, B, D*d)    the highway input x' when k == 3; None when k == 3 means no skip
                            term (x' = 0: h_t = r_t g(c_t) m, sru's has_skip_term=False); None when k == 4
    weight_c (D*2*d,)       viewed as (D, 2, d): [direction][v_f, v_r][unit]; None: v = 0 (the 2017 cell)
    bias     (D*2*d,)       viewed as (D, 2, d): [direction][b_f, b_r][unit]
    c0       (B, D*d)       initial state
    mask_pad (L, B)         True / nonzero = padding: c is carried unchanged, h = 0
    drop     (B, D*d)       the dropout mask m, already scaled by 1/(1-p), one per sequence, the
                            same at every step; None: m = 1

and the options (``Options``): hidden_size d, bidirectional, use_tanh, drop_gate.
Returns h (L, B, D*d) and c_n (B, D*d), the state after the last real step of each direction.
The spec for every dtype, half precision included, is this function evaluated in float64.
"""
from typing import NamedTuple, Optional

import torch
from torch import Tensor


class Inputs(NamedTuple):
    """The recurrence's tensors, in the order every backend and op schema takes them (layouts above)."""
    U: Tensor
    x: Optional[Tensor]
    weight_c: Optional[Tensor]
    bias: Tensor
    c0: Tensor
    mask_pad: Optional[Tensor]
    drop: Optional[Tensor]


class Options(NamedTuple):
    """The recurrence's static arguments."""
    hidden_size: int
    bidirectional: bool
    use_tanh: bool
    drop_gate: bool


# the inputs that receive a gradient, in the order backward returns them
DIFFERENTIABLE = ("U", "x", "weight_c", "bias", "c0")


def dims(inp, opt):
    """(L, B, D, k) of a problem: length, batch, directions, U's slots per unit."""
    L, B, cols = inp.U.shape
    D = 2 if opt.bidirectional else 1
    return L, B, D, cols // (D * opt.hidden_size)


def _views(inp, opt):
    """The inputs viewed per direction: (L, B, D, d, U as (L, B, D, k, d), bias as (D, 2, d), the highway input x'
    as (L, B, D, d), or None without a skip term)."""
    L, B, D, k = dims(inp, opt)
    d = opt.hidden_size
    U = inp.U.view(L, B, D, k, d)
    x_highway = U[..., 3, :] if k == 4 else (None if inp.x is None else inp.x.view(L, B, D, d))
    return L, B, D, d, U, inp.bias.view(D, 2, d), x_highway


def _step(c, u0_t, zf_t, zr_t, x_t, v, m, opt):
    """One step of one direction, before padding: (c_t, h_t) from c_{t-1}. zf_t, zr_t: the gates' pre-activations
    with their biases; v: (v_f, v_r), or None for the 2017 cell; m: the dropout mask or None; x_t: the highway
    input, or None without a skip term."""
    if v is not None:
        zf_t, zr_t = zf_t + v[0] * c, zr_t + v[1] * c
    f, r = torch.sigmoid(zf_t), torch.sigmoid(zr_t)
    c_new = f * c + (1 - f) * u0_t
    g = torch.tanh(c_new) if opt.use_tanh else c_new
    if m is not None:
        g = g * m
    h = r * g
    if x_t is not None:
        gate = r * m if (opt.drop_gate and m is not None) else r
        h = h + (1 - gate) * x_t
    return c_new, h


def _padded(pad_t, c, c_new, h):
    """A padded step carries c unchanged and outputs 0."""
    return torch.where(pad_t, c, c_new), torch.where(pad_t, torch.zeros_like(h), h)


def reference(inp: Inputs, opt: Options):
    """(h, c_n) of the recurrence, step by step in plain PyTorch."""
    weight_c, c0, mask_pad, drop = inp.weight_c, inp.c0, inp.mask_pad, inp.drop
    L, B, D, d, U, b, x_highway = _views(inp, opt)
    v = None if weight_c is None else weight_c.view(D, 2, d)
    pad = None if mask_pad is None else mask_pad.view(L, B, 1).bool()
    c0 = c0.view(B, D, d)
    drop = None if drop is None else drop.view(B, D, d)

    h_dirs, c_last = [], []
    for dr in range(D):
        # unbind once per tensor: indexing U[t] in the loop would make autograd allocate a
        # zero tensor of U's full size per step in backward (quadratic in L)
        u0_, u1_, u2_ = (U[:, :, dr, slot].unbind(0) for slot in range(3))
        xh_ = None if x_highway is None else x_highway[:, :, dr].unbind(0)
        m = None if drop is None else drop[:, dr]
        c = c0[:, dr]
        h = [None] * L
        for t in (range(L) if dr == 0 else reversed(range(L))):
            c_new, h_t = _step(c, u0_[t], u1_[t] + b[dr, 0], u2_[t] + b[dr, 1], None if xh_ is None else xh_[t],
                               None if v is None else v[dr], m, opt)
            if pad is not None:
                c_new, h_t = _padded(pad[t], c, c_new, h_t)
            c, h[t] = c_new, h_t
        h_dirs.append(torch.stack(h))
        c_last.append(c)
    return torch.cat(h_dirs, dim=-1), torch.cat(c_last, dim=-1)


def recurrence_reference(U, x, bias, c0, mask_pad, hidden_size, bidirectional, use_tanh, drop=None, weight_c=None,
                         drop_gate=False):
    """``reference`` with the arguments of ``sru.recurrence`` (no backend)."""
    return reference(Inputs(U, x, weight_c, bias, c0, mask_pad, drop),
                     Options(hidden_size, bidirectional, use_tanh, drop_gate))


def reference_scan(inp: Inputs, opt: Options):
    """The same recurrence as ``reference`` (the same ``_step``), as one ``torch`` scan over time per direction:
    the form that ``torch.onnx.export(..., dynamo=True)`` translates into an ONNX Scan (``sru.ops.recurrence`` takes
    it while an ONNX export traces the model). Inference only: no backward is defined for it here."""
    from torch._higher_order_ops.scan import scan
    weight_c, c0, mask_pad, drop = inp.weight_c, inp.c0, inp.mask_pad, inp.drop
    L, B, D, d, U, b, xh = _views(inp, opt)
    u0, zf, zr = U[..., 0, :], U[..., 1, :] + b[:, 0], U[..., 2, :] + b[:, 1]
    pad = None if mask_pad is None else mask_pad.view(L, B, 1).bool()  # None: no padding selects in the loop body
    c0 = c0.view(B, D, d)

    h_dirs, c_last = [], []
    for dr in range(D):
        # clones: the scan takes each closed-over tensor as its own input, and views of one tensor would alias
        v = None if weight_c is None else tuple(t.clone() for t in weight_c.view(D, 2, d)[dr])
        m = None if drop is None else drop.view(B, D, d)[:, dr].clone()

        def step(c, xs, v=v, m=m):  # the per-direction constants are closed over, not carried
            u0_t, zf_t, zr_t, *rest = xs  # rest: [the padding mask] [the highway input], where there are
            pad_t = rest.pop(0) if pad is not None else None
            c_new, h = _step(c, u0_t, zf_t, zr_t, rest[0] if rest else None, v, m, opt)
            return (c_new, h) if pad_t is None else _padded(pad_t, c, c_new, h)

        seqs = [t[:, :, dr] for t in (u0, zf, zr)] + ([] if pad is None else [pad]) + \
            ([] if xh is None else [xh[:, :, dr]])
        if isinstance(L, int) and L == 1:  # one step of a fixed length (a streaming step model): no loop at all,
            c_n, h = step(c0[:, dr], tuple(t[0] for t in seqs))  # which in onnxruntime saves the Scan's setup
            h_dirs.append(h.unsqueeze(0))
            c_last.append(c_n)
            continue
        if dr == 1:  # direction 1 runs time in reverse
            seqs = [t.flip(0) for t in seqs]
        # fresh tensors, not views: the scan re-traces its inputs, and a view's base made it specialise the batch size
        c_n, h = scan(step, c0[:, dr].clone(), tuple(t.clone() for t in seqs))
        h_dirs.append(h.flip(0) if dr == 1 else h)
        c_last.append(c_n)
    return torch.cat(h_dirs, dim=-1), torch.cat(c_last, dim=-1)
