"""Fused CPU kernels for the SRU recurrence (forward and backward), compiled by numba.

Why numba: it needs no C++ toolchain at install or import (the JIT runs on first call and
caches to disk), it parallelises over (batch, direction, unit-chunk) with ``prange``, and the
inner loop over units is contiguous in memory so LLVM vectorises it -- provided the
transcendentals vectorise too, hence the float32 exp below (libm's expf/tanhf are scalar
calls and took ~70% of the kernel time). docs/benchmarks.md has the measurements.

Arrays use the layout documented in ``sru.reference``: U (L, B, D, k, d), the rest
(L|B, ..., D, d); float32 only (state and accumulation in float32, as in the reference).
Work items are (b, direction, chunk of CHUNK units); each walks its direction's time order.
The backward pass writes per-(b, direction, unit) bias-gradient partial sums, which the
caller reduces over b in a fixed order, so results are deterministic. The kernels use as many
threads as torch does (torch.set_num_threads), so the two never oversubscribe the cores.
"""
import os
from types import FunctionType

import numba
import numpy as np

# numba's default "omp" threading layer leaves its worker threads spinning after a kernel, which on
# a machine whose cores torch's own OpenMP threads also use made the next torch op many times
# slower. The workqueue layer's threads sleep. NUMBA_THREADING_LAYER still overrides this.
if "NUMBA_THREADING_LAYER" not in os.environ:
    numba.config.THREADING_LAYER = "workqueue"
from numba.core import types
from numba.extending import intrinsic

CHUNK = 128  # units per work item: enough to vectorise, small enough to balance threads
_JIT = dict(cache=True, error_model="numpy")  # numpy error model: no per-division checks
f32 = np.float32


@intrinsic
def _int_bits_as_float32(typingctx, bits):
    def codegen(context, builder, sig, args):
        return builder.bitcast(args[0], context.get_value_type(types.float32))
    return types.float32(types.int32), codegen


@numba.njit(inline="always", **_JIT)
def _exp(x):
    """float32 exp, ~1 ulp: Cody-Waite reduction + the Cephes expf polynomial, written
    with vectorisable operations only (floor, fma, a bit-cast for 2**n)."""
    x = min(max(x, f32(-87.3)), f32(88.3))
    n = np.floor(x * f32(1.4426950408889634) + f32(0.5))
    x = x - n * f32(0.693359375) - n * f32(-2.12194440e-4)
    p = f32(1.9875691500e-4) * x + f32(1.3981999507e-3)
    p = p * x + f32(8.3334519073e-3)
    p = p * x + f32(4.1665795894e-2)
    p = p * x + f32(1.6666665459e-1)
    p = p * x + f32(5.0000001201e-1)
    y = p * (x * x) + x + f32(1.0)
    return y * _int_bits_as_float32((np.int32(n) + np.int32(127)) << np.int32(23))


@numba.njit(inline="always", **_JIT)
def _sigmoid(z):
    return f32(1.0) / (f32(1.0) + _exp(-z))


@numba.njit(inline="always", **_JIT)
def _g(c, use_tanh):
    return f32(1.0) - f32(2.0) / (_exp(f32(2.0) * c) + f32(1.0)) if use_tanh else c


@numba.njit(parallel=True, **_JIT)
def forward(U, xh, bias, c0, mask, has_mask, drop, use_tanh, h, c_all):
    """h, c_all (L, B, D, d) are written; c_all keeps every step's state for backward.
    drop (B, D, d): the dropout mask on g(c) (ones when there is none)."""
    L, B, D, K, d = U.shape
    n_chunks = (d + CHUNK - 1) // CHUNK
    for item in numba.prange(B * D * n_chunks):
        b = item // (D * n_chunks)
        dr = (item // n_chunks) % D
        j0 = (item % n_chunks) * CHUNK
        j1 = min(d, j0 + CHUNK)
        bf, br = bias[dr, 0, j0:j1], bias[dr, 1, j0:j1]
        dm = drop[b, dr, j0:j1]
        c = c0[b, dr, j0:j1].copy()
        for i in range(L):
            t = i if dr == 0 else L - 1 - i
            h_t, c_t = h[t, b, dr, j0:j1], c_all[t, b, dr, j0:j1]
            if has_mask and mask[t, b] != 0:  # padding: carry c, output 0
                h_t[:] = 0.0
                c_t[:] = c
                continue
            # 1-D contiguous slices (not one 2-D view): that is what lets LLVM vectorise
            u0, uf, ur = U[t, b, dr, 0, j0:j1], U[t, b, dr, 1, j0:j1], U[t, b, dr, 2, j0:j1]
            x = U[t, b, dr, 3, j0:j1] if K == 4 else xh[t, b, dr, j0:j1]
            for j in range(j1 - j0):
                f = _sigmoid(uf[j] + bf[j])
                r = _sigmoid(ur[j] + br[j])
                cj = f * c[j] + (f32(1.0) - f) * u0[j]
                h_t[j] = r * (_g(cj, use_tanh) * dm[j]) + (f32(1.0) - r) * x[j]
                c_t[j] = cj
                c[j] = cj


@numba.njit(parallel=True, **_JIT)
def backward(U, xh, bias, c0, mask, has_mask, drop, use_tanh, c_all, grad_h, grad_cn,
             grad_U, grad_xh, grad_bias, grad_c0):
    """Writes grad_U (L, B, D, K, d), grad_xh (L, B, D, d; K == 3 only), grad_c0 (B, D, d)
    and grad_bias (B, D, 2, d): per-sequence partial sums of the bias gradient."""
    L, B, D, K, d = U.shape
    n_chunks = (d + CHUNK - 1) // CHUNK
    for item in numba.prange(B * D * n_chunks):
        b = item // (D * n_chunks)
        dr = (item // n_chunks) % D
        j0 = (item % n_chunks) * CHUNK
        j1 = min(d, j0 + CHUNK)
        bf, br = bias[dr, 0, j0:j1], bias[dr, 1, j0:j1]
        dm = drop[b, dr, j0:j1]
        dc = grad_cn[b, dr, j0:j1].copy()  # gradient reaching c_t from later steps
        gbf = np.zeros_like(dc)
        gbr = np.zeros_like(dc)
        for i in range(L):
            t = L - 1 - i if dr == 0 else i  # the reverse of the forward order
            g0, gf, gr = grad_U[t, b, dr, 0, j0:j1], grad_U[t, b, dr, 1, j0:j1], grad_U[t, b, dr, 2, j0:j1]
            gx = grad_U[t, b, dr, 3, j0:j1] if K == 4 else grad_xh[t, b, dr, j0:j1]
            if has_mask and mask[t, b] != 0:  # padding: dc passes through unchanged
                g0[:] = 0.0
                gf[:] = 0.0
                gr[:] = 0.0
                gx[:] = 0.0
                continue
            first = (t == 0) if dr == 0 else (t == L - 1)
            c_prev = c0[b, dr, j0:j1] if first else c_all[t - 1 if dr == 0 else t + 1, b, dr, j0:j1]
            # 1-D contiguous slices (not one 2-D view): that is what lets LLVM vectorise
            u0, uf, ur = U[t, b, dr, 0, j0:j1], U[t, b, dr, 1, j0:j1], U[t, b, dr, 2, j0:j1]
            x = U[t, b, dr, 3, j0:j1] if K == 4 else xh[t, b, dr, j0:j1]
            c_t, gh = c_all[t, b, dr, j0:j1], grad_h[t, b, dr, j0:j1]
            for j in range(j1 - j0):
                f = _sigmoid(uf[j] + bf[j])
                r = _sigmoid(ur[j] + br[j])
                g = _g(c_t[j], use_tanh)
                dg = gh[j] * r * dm[j]
                dct = dc[j] + (dg * (f32(1.0) - g * g) if use_tanh else dg)
                g_f = dct * (c_prev[j] - u0[j]) * f * (f32(1.0) - f)
                g_r = gh[j] * (g * dm[j] - x[j]) * r * (f32(1.0) - r)
                g0[j] = dct * (f32(1.0) - f)
                gf[j] = g_f
                gr[j] = g_r
                gx[j] = gh[j] * (f32(1.0) - r)
                gbf[j] += g_f
                gbr[j] += g_r
                dc[j] = dct * f
        grad_c0[b, dr, j0:j1] = dc
        grad_bias[b, dr, 0, j0:j1] = gbf
        grad_bias[b, dr, 1, j0:j1] = gbr


def _serial(kernel):
    """`kernel` compiled without threads (prange runs as range), from a copy of its Python function
    under its own name: numba's disk cache keys a function by module, name, line and bytecode, not by
    `parallel`, so compiling the same function twice made the two variants share one cache entry, and
    whichever was compiled first ran in both places (the threaded forward ran serially; issue 20)."""
    f = kernel.py_func
    copy = FunctionType(f.__code__, f.__globals__, f.__name__ + "_serial", f.__defaults__, f.__closure__)
    copy.__qualname__ = f.__qualname__ + "_serial"
    copy.__doc__ = f.__doc__
    return numba.njit(**_JIT)(copy)


# The serial kernels are for small problems: waking numba's workers costs ~0.2 ms per launch, more right
# after a torch op whose OpenMP threads still spin, which dwarfs the work of a (35, 1, 910) PTB
# evaluation step or a tiny layer.
forward_serial = _serial(forward)
backward_serial = _serial(backward)
SERIAL_BELOW = 1 << 16  # L * B * D * d: below this the serial kernels run (docs/benchmarks.md)
