"""The element-wise recurrence behind one interface, three backends.

``recurrence(backend)`` returns a function with the signature of
``sru.reference.recurrence_reference``: (U, x, bias, c0, mask_pad, hidden_size,
bidirectional, use_tanh) -> (h, c_n). The fused backends are ``torch.library`` custom ops
with a fake (meta) implementation and a registered autograd formula, so ``torch.compile``
traces models that use them without graph breaks; in eager mode the same forward and backward
run from a plain ``autograd.Function``, which skips the custom op's dispatch cost.

Each fused op returns (h, c_n, c_all); c_all (every step's fp32 state) is saved for the
backward kernel and is not differentiable: the public wrapper returns only (h, c_n).
"""
import os
import threading
from typing import Optional

import numpy as np
import torch
from torch import Tensor

from .reference import recurrence_reference

BACKENDS = ("auto", "reference", "cpu", "gpu")
GPU_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def _dims(U, hidden_size, bidirectional):
    L, B, cols = U.shape
    D = 2 if bidirectional else 1
    return L, B, D, cols // (D * hidden_size)


# --- cpu: numba kernels on numpy views of contiguous float32 tensors ---------------------
_NO_X = np.zeros((1, 1, 1, 1), np.float32)  # stand-ins keep numba's argument types fixed
_NO_MASK = np.zeros((1, 1), np.uint8)


_ONES = [np.ones(0, np.float32)]  # a read-only buffer of ones, grown as needed: no allocation per call


def _cpu_drop(drop, B, D, d):
    """The dropout mask as numba reads it: (B, D, d), ones when there is no dropout."""
    if drop is not None:
        return drop.numpy().reshape(B, D, d)
    if _ONES[0].size < B * D * d:
        ones = np.ones(B * D * d, np.float32)
        ones.flags.writeable = False
        _ONES[0] = ones
    return _ONES[0][:B * D * d].reshape(B, D, d)


_THREADS = threading.local()  # numba's thread count is per calling thread; set it only when it changes


def _numba_threads():
    """As many kernel threads as torch uses (torch.set_num_threads applies to both); returns the count."""
    import numba
    threads = max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS))
    if getattr(_THREADS, "count", None) != threads:
        numba.set_num_threads(threads)
        _THREADS.count = threads
    return threads


def _cpu_kernel(name, states, B, D, d):
    """The threaded or serial compilation of kernel `name` for a problem of `states` = L*B*D*d, and
    its work partition."""
    from . import cpu_kernels
    threads = _numba_threads()
    if cpu_kernels.runs_serial(states, threads):
        return getattr(cpu_kernels, name + "_serial"), (1, 1)
    return getattr(cpu_kernels, name), cpu_kernels.partition(B, D, d, threads)


def _cpu_forward(U, xh, bias, c0, mask, drop, d, D, K, use_tanh, keep_c=True):
    L, B, _ = U.shape
    h = torch.empty(L, B, D * d, dtype=torch.float32)
    c_all = torch.empty(L if keep_c else 1, B, D * d, dtype=torch.float32)
    c_n = torch.empty(B, D * d, dtype=torch.float32)
    kernel, blocks = _cpu_kernel("forward", h.numel(), B, D, d)
    kernel(
        U.numpy().reshape(L, B, D, K, d), _NO_X if xh is None else xh.numpy().reshape(L, B, D, d),
        bias.numpy().reshape(D, 2, d), c0.numpy().reshape(B, D, d),
        _NO_MASK if mask is None else mask.numpy(), mask is not None, _cpu_drop(drop, B, D, d), use_tanh,
        h.numpy().reshape(L, B, D, d), c_all.numpy().reshape(-1, B, D, d), c_n.numpy().reshape(B, D, d), keep_c,
        *blocks)
    return h, c_all, c_n


def _cpu_backward(U, xh, bias, c0, mask, drop, c_all, grad_h, grad_cn, d, D, K, use_tanh):
    L, B, _ = U.shape
    grad_U = torch.empty_like(U)
    grad_xh = None if K == 4 else torch.empty_like(xh)
    grad_bias = torch.empty(B, D * 2 * d, dtype=torch.float32)
    grad_c0 = torch.empty(B, D * d, dtype=torch.float32)
    kernel, blocks = _cpu_kernel("backward", grad_h.numel(), B, D, d)
    kernel(
        U.numpy().reshape(L, B, D, K, d), _NO_X if xh is None else xh.numpy().reshape(L, B, D, d),
        bias.numpy().reshape(D, 2, d), c0.numpy().reshape(B, D, d),
        _NO_MASK if mask is None else mask.numpy(), mask is not None, _cpu_drop(drop, B, D, d), use_tanh,
        c_all.numpy().reshape(L, B, D, d), grad_h.numpy().reshape(L, B, D, d),
        grad_cn.numpy().reshape(B, D, d), grad_U.numpy().reshape(L, B, D, K, d),
        _NO_X if grad_xh is None else grad_xh.numpy().reshape(L, B, D, d),
        grad_bias.numpy().reshape(B, D, 2, d), grad_c0.numpy().reshape(B, D, d), *blocks)
    return grad_U, grad_xh, grad_bias, grad_c0


def _gpu_forward(U, xh, bias, c0, mask, drop, d, D, K, use_tanh, keep_c=True):
    from . import triton_kernels
    h, c_all = triton_kernels.forward(U, xh, bias, c0, mask, drop, d, D, K, use_tanh)
    return h, c_all, _last_state(c_all, U.shape[0], U.shape[1], D, d)


def _gpu_backward(*args):
    from . import triton_kernels
    return triton_kernels.backward(*args)


# --- one custom-op definition, instantiated per fused backend -----------------------------
def _last_state(c_all, L, B, D, d):
    """c_n: the state after each direction's last step (t = L-1 forward, t = 0 reverse)."""
    c = c_all.view(L, B, D, d)
    return torch.stack([c[L - 1 if dr == 0 else 0, :, dr] for dr in range(D)], dim=1).view(B, D * d)


def _run_forward(forward_impl, U, x, bias, c0, mask, drop, hidden_size, bidirectional, use_tanh, keep_c=True):
    """h, c_n and, with keep_c, c_all (every step's state, for backward)."""
    L, B, D, K = _dims(U, hidden_size, bidirectional)
    h, c_all, c_n = forward_impl(U, x, bias, c0, mask, drop, hidden_size, D, K, use_tanh, keep_c)
    return h, c_n.to(c0.dtype), c_all


def _run_backward(backward_impl, U, x, bias, c0, mask, drop, c_all, grad_h, grad_cn, hidden_size,
                  bidirectional, use_tanh):
    L, B, D, K = _dims(U, hidden_size, bidirectional)
    grad_U, grad_x, grad_bias, grad_c0 = backward_impl(
        U, x, bias, c0, mask, drop, c_all, grad_h, grad_cn, hidden_size, D, K, use_tanh)
    # deterministic reduction of the per-sequence partial sums, in a fixed order
    return grad_U, grad_x, grad_bias.sum(0).to(bias.dtype), grad_c0.to(c0.dtype)


def _backward_inputs(U, c0, grad_h, grad_cn):
    """The output gradients as the kernels read them: contiguous, zeros for an unused output."""
    grad_h = U.new_zeros(U.shape[0], U.shape[1], c0.shape[-1]) if grad_h is None else grad_h.contiguous()
    grad_cn = c0.new_zeros(c0.shape) if grad_cn is None else grad_cn.contiguous()
    return grad_h, grad_cn


def _define_op(name, forward_impl, backward_impl):
    """The fused backend as torch.library custom ops (what torch.compile and export trace)."""
    @torch.library.custom_op(f"sru::{name}_forward", mutates_args=())
    def forward_op(U: Tensor, x: Optional[Tensor], bias: Tensor, c0: Tensor,
                   mask: Optional[Tensor], drop: Optional[Tensor], hidden_size: int, bidirectional: bool,
                   use_tanh: bool) -> tuple[Tensor, Tensor, Tensor]:
        return _run_forward(forward_impl, U, x, bias, c0, mask, drop, hidden_size, bidirectional, use_tanh)

    @forward_op.register_fake
    def _(U, x, bias, c0, mask, drop, hidden_size, bidirectional, use_tanh):
        L, B, _ = U.shape
        n = (2 if bidirectional else 1) * hidden_size
        return (U.new_empty(L, B, n), c0.new_empty(B, n),
                U.new_empty(L, B, n, dtype=torch.float32))

    @torch.library.custom_op(f"sru::{name}_backward", mutates_args=())
    def backward_op(U: Tensor, x: Optional[Tensor], bias: Tensor, c0: Tensor,
                    mask: Optional[Tensor], drop: Optional[Tensor], c_all: Tensor, grad_h: Tensor,
                    grad_cn: Tensor, hidden_size: int, bidirectional: bool,
                    use_tanh: bool) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        grad_U, grad_x, grad_bias, grad_c0 = _run_backward(
            backward_impl, U, x, bias, c0, mask, drop, c_all, grad_h, grad_cn, hidden_size, bidirectional,
            use_tanh)
        return grad_U, U.new_empty(0) if grad_x is None else grad_x, grad_bias, grad_c0

    @backward_op.register_fake
    def _(U, x, bias, c0, mask, drop, c_all, grad_h, grad_cn, hidden_size, bidirectional, use_tanh):
        return (torch.empty_like(U), U.new_empty(0) if x is None else torch.empty_like(x),
                torch.empty_like(bias), torch.empty_like(c0))

    def setup_context(ctx, inputs, output):
        U, x, bias, c0, mask, drop, hidden_size, bidirectional, use_tanh = inputs
        ctx.save_for_backward(U, x, bias, c0, mask, drop, output[2])
        ctx.args = (hidden_size, bidirectional, use_tanh)
        ctx.set_materialize_grads(False)

    def backward(ctx, grad_h, grad_cn, _grad_c_all):
        U, x, bias, c0, mask, drop, c_all = ctx.saved_tensors
        grad_U, grad_x, grad_bias, grad_c0 = backward_op(
            U, x, bias, c0, mask, drop, c_all, *_backward_inputs(U, c0, grad_h, grad_cn), *ctx.args)
        return grad_U, (None if x is None else grad_x), grad_bias, grad_c0, None, None, None, None, None

    forward_op.register_autograd(backward, setup_context=setup_context)
    return forward_op


class _EagerRecurrence(torch.autograd.Function):
    """The same forward and backward as the custom ops, without torch.library's dispatch (measured
    in issue 20: 100-130 us per layer call fwd+bwd on the CPU, ~33 us for a plain Function). Eager only:
    under torch.compile / export the custom ops run, so the graph sees one opaque op."""

    @staticmethod
    def forward(ctx, impls, U, x, bias, c0, mask, drop, hidden_size, bidirectional, use_tanh):
        h, c_n, c_all = _run_forward(impls[0], U, x, bias, c0, mask, drop, hidden_size, bidirectional, use_tanh)
        ctx.save_for_backward(U, x, bias, c0, mask, drop, c_all)
        ctx.args = (impls[1], hidden_size, bidirectional, use_tanh)
        ctx.set_materialize_grads(False)
        return h, c_n

    @staticmethod
    def backward(ctx, grad_h, grad_cn):
        U, x, bias, c0, mask, drop, c_all = ctx.saved_tensors
        backward_impl, hidden_size, bidirectional, use_tanh = ctx.args
        grad_U, grad_x, grad_bias, grad_c0 = _run_backward(
            backward_impl, U, x, bias, c0, mask, drop, c_all, *_backward_inputs(U, c0, grad_h, grad_cn),
            hidden_size, bidirectional, use_tanh)
        return None, grad_U, grad_x, grad_bias, grad_c0, None, None, None, None, None


_cpu_op = _define_op("cpu", _cpu_forward, _cpu_backward)
_gpu_op = _define_op("gpu", _gpu_forward, _gpu_backward)
_IMPLS = {"cpu": (_cpu_forward, _cpu_backward), "gpu": (_gpu_forward, _gpu_backward)}


# --- backend selection --------------------------------------------------------------------
def triton_interpreted():
    return os.environ.get("TRITON_INTERPRET") == "1"


def check_backend_available(backend):
    """Raise a RuntimeError that says what is missing when a forced backend cannot run here."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "cpu":
        try:
            import numba  # noqa: F401
        except ImportError as e:
            raise RuntimeError("backend='cpu' needs numba: pip install numba") from e
    if backend == "gpu":
        try:
            import triton  # noqa: F401
        except ImportError as e:
            raise RuntimeError("backend='gpu' needs triton: pip install triton") from e
        if not (torch.cuda.is_available() or triton_interpreted()):
            raise RuntimeError("backend='gpu' needs a CUDA device (or TRITON_INTERPRET=1 to run "
                               "the Triton kernels on CPU for testing); use backend='auto'")


def resolve_backend(backend, device, dtype):
    """The backend that will run for inputs on `device` with `dtype`."""
    if backend == "auto":
        if device.type == "cuda" and dtype in GPU_DTYPES:
            return "gpu"
        if device.type == "cpu" and dtype == torch.float32:
            return "cpu"
        return "reference"
    if backend == "cpu" and (device.type != "cpu" or dtype != torch.float32):
        raise TypeError(f"backend='cpu' runs float32 tensors on the CPU, got {dtype} on {device}; "
                        "use backend='auto' or 'reference'")
    if backend == "gpu":
        if dtype not in GPU_DTYPES:
            raise TypeError(f"backend='gpu' supports {GPU_DTYPES}, got {dtype}; use 'reference'")
        if device.type != "cuda" and not triton_interpreted():
            raise ValueError(f"backend='gpu' needs CUDA tensors, got a tensor on {device}")
    return backend


def check_recurrence_args(U, x, bias, c0, mask_pad, hidden_size, bidirectional, drop=None):
    """Shapes, devices and dtypes the kernels rely on (a wrong one would read out of bounds on a GPU)."""
    if not isinstance(U, Tensor) or U.dim() != 3 or not U.is_floating_point():
        raise ValueError(f"U must be a floating-point (length, batch, D*k*hidden_size) tensor, got "
                         f"{tuple(U.shape) if isinstance(U, Tensor) else type(U).__name__}")
    if hidden_size < 1:
        raise ValueError(f"hidden_size must be >= 1, got {hidden_size}")
    L, B, cols = U.shape
    D = 2 if bidirectional else 1
    n = D * hidden_size
    if cols % n or cols // n not in (3, 4):
        raise ValueError(f"U's last dimension must be {3 * n} (k=3) or {4 * n} (k=4) for hidden_size="
                         f"{hidden_size}, bidirectional={bidirectional}; got {cols}")
    k = cols // n
    if k == 3 and x is None:
        raise ValueError("k=3 (U holds 3 slots): the highway input x of shape (length, batch, D*hidden_size) "
                         "is required")
    if k == 4 and x is not None:
        raise ValueError("k=4 (U holds the highway projection in slot 3): x must be None")
    expected = dict(x=(L, B, n), bias=(2 * n,), c0=(B, n), mask_pad=(L, B), drop=(B, n))
    for name, t in dict(x=x, bias=bias, c0=c0, mask_pad=mask_pad, drop=drop).items():
        if t is None:
            continue
        if tuple(t.shape) != expected[name]:
            raise ValueError(f"{name} must have shape {expected[name]}, got {tuple(t.shape)}")
        if t.device != U.device:
            raise ValueError(f"{name} is on {t.device} but U is on {U.device}")
        if name != "mask_pad" and not t.is_floating_point():
            raise TypeError(f"{name} must be floating point, got {t.dtype}")


def recurrence(U, x, bias, c0, mask_pad, hidden_size, bidirectional, use_tanh, backend="auto", drop=None):
    """Run the element-wise recurrence with `backend`; see ``sru.reference`` for the layout.
    drop: the authors' dropout mask on g(c) (B, D*hidden_size), already scaled; None: no dropout."""
    check_recurrence_args(U, x, bias, c0, mask_pad, hidden_size, bidirectional, drop)
    backend = resolve_backend(backend, U.device, U.dtype)
    if U.shape[1] == 0:  # an empty batch: nothing to run (c_n in c0's dtype, as the kernels return it)
        return U.new_zeros(U.shape[0], 0, c0.shape[-1]), c0.clone()
    if backend == "reference":
        return recurrence_reference(U, x, bias, c0, mask_pad, hidden_size, bidirectional, use_tanh, drop)
    mask = None if mask_pad is None else mask_pad.to(torch.uint8).contiguous()
    args = (U.contiguous(), None if x is None else x.contiguous(), bias.contiguous(), c0.contiguous(), mask,
            None if drop is None else drop.contiguous(), hidden_size, bidirectional, use_tanh)
    if torch.compiler.is_compiling():
        h, c_n, _ = (_cpu_op if backend == "cpu" else _gpu_op)(*args)
        return h, c_n
    if not (torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (U, x, bias, c0))):
        # no gradient wanted (evaluation): no autograd node, and the CPU kernel keeps no per-step state
        h, c_n, _ = _run_forward(_IMPLS[backend][0], *args, keep_c=False)
        return h, c_n
    return _EagerRecurrence.apply(_IMPLS[backend], *args)
