"""The executable spec: the SRU element-wise recurrence in plain PyTorch.

Every fused kernel (``sru.cpu_kernels``, ``sru.triton_kernels``) is tested against this
function, outputs and gradients. It runs in any dtype (float64 for gradcheck) and lets
autograd derive the backward pass, so it is slow but obviously right.

Layout shared by all backends (see ``SRUCell`` for where it comes from)::

    U     (L, B, D*k*d)  the GEMM output x @ W, viewed as (L, B, D, k, d):
                         k-slot 0 = x~ (candidate), 1 = f (forget), 2 = r (reset/highway),
                         3 = highway projection W_h x (only when k == 4)
    x     (L, B, D*d)    the highway input when k == 3 (None when k == 4)
    bias  (D*2*d,)       viewed as (D, 2, d): [direction][b_f, b_r][unit]
    c0    (B, D*d)       initial state
    mask_pad (L, B)      True / nonzero = padding: c is carried unchanged, h = 0
    drop     (B, D*d)    the authors' dropout (None: none): a mask already scaled by 1/(1-p),
                         one per sequence, the same at every step, applied to g(c_t) inside
                         the highway:  h_t = r_t * (g(c_t) * drop) + (1 - r_t) * x_t

with D = 2 for bidirectional (direction 1 runs time in reverse), else 1.
Returns h (L, B, D*d) and c_n (B, D*d), the state after the last real step of each direction.
The spec for every dtype, half precision included, is this function evaluated in float64.
"""
import torch


def recurrence_reference(U, x, bias, c0, mask_pad, hidden_size, bidirectional, use_tanh, drop=None):
    L, B, _ = U.shape
    D, d = (2 if bidirectional else 1), hidden_size
    k = U.shape[-1] // (D * d)
    U = U.view(L, B, D, k, d)
    b = bias.view(D, 2, d)
    x_tilde = U[..., 0, :]
    f = torch.sigmoid(U[..., 1, :] + b[:, 0])
    r = torch.sigmoid(U[..., 2, :] + b[:, 1])
    x_highway = U[..., 3, :] if k == 4 else x.view(L, B, D, d)
    pad = None if mask_pad is None else mask_pad.view(L, B, 1).bool()
    c0 = c0.view(B, D, d)
    drop = None if drop is None else drop.view(B, D, d)

    h_dirs, c_last = [], []
    for dr in range(D):
        # unbind once per tensor: indexing U[t] in the loop would make autograd allocate a
        # zero tensor of U's full size per step in backward (quadratic in L)
        xt_, f_, r_, xh_ = (v[:, :, dr].unbind(0) for v in (x_tilde, f, r, x_highway))
        c = c0[:, dr]
        h = [None] * L
        for t in (range(L) if dr == 0 else reversed(range(L))):
            c_new = f_[t] * c + (1 - f_[t]) * xt_[t]
            g = torch.tanh(c_new) if use_tanh else c_new
            if drop is not None:
                g = g * drop[:, dr]
            h_t = r_[t] * g + (1 - r_[t]) * xh_[t]
            if pad is not None:
                c_new = torch.where(pad[t], c, c_new)
                h_t = torch.where(pad[t], torch.zeros_like(h_t), h_t)
            c, h[t] = c_new, h_t
        h_dirs.append(torch.stack(h))
        c_last.append(c)
    return torch.cat(h_dirs, dim=-1), torch.cat(c_last, dim=-1)
