"""Fused CPU kernels for the SRU recurrence (forward and backward), compiled by numba.

Why numba: it needs no C++ toolchain at install or import (the JIT runs on first call and
caches to disk), it parallelises over (sequence block, direction, unit block) with ``prange``,
and the inner loop over units is contiguous in memory so LLVM vectorises it -- provided the
transcendentals vectorise too, hence the float32 exp below (libm's expf/tanhf are scalar
calls and took ~70% of the kernel time). docs/benchmarks.md has the measurements.

Arrays use the layout documented in ``sru.reference``: U (L, B, D, k, d), the rest
(L|B, ..., D, d); float32 only (state and accumulation in float32, as in the reference).
Work items are (block of sequences, direction, block of units), about one per thread (see
``partition``); each walks its direction's time order with the steps outer and the sequences inner,
so U, h and c_all stream through memory in order (the former item per sequence read U with a
stride of a whole time step and ran 10-35% slower; docs/benchmarks.md). The backward pass writes
per-(b, direction, unit) bias-gradient partial sums, which the caller reduces over b in a fixed
order, so results are deterministic. The kernels use as many
threads as torch does (torch.set_num_threads), so the two never oversubscribe the cores.
"""
import os
import tempfile
from types import FunctionType

import numba
import numpy as np

# numba's default "omp" threading layer leaves its worker threads spinning after a kernel, which on
# a machine whose cores torch's own OpenMP threads also use made the next torch op many times
# slower. The workqueue layer's threads sleep. NUMBA_THREADING_LAYER still overrides this.
if "NUMBA_THREADING_LAYER" not in os.environ:
    numba.config.THREADING_LAYER = "workqueue"
from numba.core import caching, types
from numba.extending import intrinsic
from numba.misc.appdirs import AppDirs


def cache_dir(environ, writable, candidates):
    """Where numba caches the compiled kernels: None where NUMBA_CACHE_DIR is set (numba's own choice), else the
    first writable candidate (a per-user cache directory, then the temporary directory), else False: nowhere,
    the kernels then compile in every process. Never beside this file: numba's default there
    (``sru/__pycache__``) outlived ``pip uninstall`` (pip removes only the files it installed), and the
    directory left behind then imported as an empty namespace package; a read-only install with no writable
    home failed on the first call inside numba ("cannot cache function: no locator available")."""
    if environ.get("NUMBA_CACHE_DIR"):
        return None
    return next((str(c) for c in candidates if writable(c)), False)


def _writable(path):
    try:
        os.makedirs(path, exist_ok=True)
        return os.access(path, os.W_OK)
    except OSError:
        return False


_CACHE_DIR = cache_dir(os.environ, _writable,
                       [os.path.join(AppDirs(appname="sru", appauthor=False).user_cache_dir, "numba"),
                        os.path.join(tempfile.gettempdir(), f"sru-numba-{os.getuid() if hasattr(os, 'getuid') else 0}")])


# numba < 0.61 spelled these with a leading underscore
_UserWideCacheLocator = getattr(caching, "UserWideCacheLocator", None) or caching._UserWideCacheLocator
_CacheImpl = getattr(caching, "CacheImpl", None) or caching._CacheImpl


class _KernelCacheLocator(_UserWideCacheLocator):
    """numba's per-user cache locator, pointed at _CACHE_DIR and applying to this file's kernels only, so that
    numba's cache for every other module of the process stays where numba puts it (numba.config.CACHE_DIR would
    move them all)."""

    def __init__(self, py_func, py_file):
        super().__init__(py_func, py_file)
        self._cache_path = os.path.join(_CACHE_DIR, self.get_suitable_cache_subpath(py_file))

    @classmethod
    def from_function(cls, py_func, py_file):
        if not _CACHE_DIR or os.path.abspath(py_file) != os.path.abspath(__file__):
            return None
        return super().from_function(py_func, py_file)


# After NUMBA_CACHE_DIR's locator (the user's choice wins), before the in-tree one (sru/__pycache__).
if _KernelCacheLocator not in _CacheImpl._locator_classes:
    _CacheImpl._locator_classes.insert(1, _KernelCacheLocator)

# numpy error model: no per-division checks. fastmath "contract" (a*b+c as one FMA, the exact product
# rounded once) and "arcp" (x/y as x*(1/y)) only: no reassociation, no NaN/inf assumptions. Measured
# 1.35-1.8x on the forward kernel in cache, ~1.2x from memory; outputs move by ~1 ulp (docs/benchmarks.md).
_JIT = dict(cache=_CACHE_DIR is not False, error_model="numpy", fastmath={"contract", "arcp"})
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


@numba.njit(inline="always", **_JIT)
def _block(item, B, D, d, n_bblocks, n_jblocks):
    """Work item -> (b0, b1, direction, j0, j1): a block of sequences and of units; unit blocks start
    at multiples of 16 floats (a cache line), so two threads never write one line."""
    jb = item % n_jblocks
    dr = (item // n_jblocks) % D
    bb = item // (n_jblocks * D)
    per = ((d + n_jblocks - 1) // n_jblocks + 15) // 16 * 16
    j0 = min(d, jb * per)
    return bb * B // n_bblocks, (bb + 1) * B // n_bblocks, dr, j0, min(d, j0 + per)


@numba.njit(parallel=True, **_JIT)
def forward(U, xh, wc, bias, c0, mask, has_mask, drop, use_tanh, skip, drop_gate, h, c_all, c_n, keep_c,
            n_bblocks, n_jblocks):
    """h (L, B, D, d) and c_n (B, D, d) are written, and with keep_c every step's state into c_all
    (L, B, D, d) for backward; without (no gradient wanted) c_all is a (1, B, D, d) scratch row.
    wc (D, 2, d): v_f, v_r (zeros for the 2017 cell); drop (B, D, d): the dropout mask (ones when there is
    none), on g(c), and on the gate r too with drop_gate; skip: a highway term (xh when K == 3)."""
    L, B, D, K, d = U.shape
    for item in numba.prange(n_bblocks * D * n_jblocks):
        b0, b1, dr, j0, j1 = _block(item, B, D, d, n_bblocks, n_jblocks)
        bf, br = bias[dr, 0, j0:j1], bias[dr, 1, j0:j1]
        vf, vr = wc[dr, 0, j0:j1], wc[dr, 1, j0:j1]
        c = c0[b0:b1, dr, j0:j1].copy()  # the block's state, (b1 - b0, j1 - j0)
        for i in range(L):
            t = i if dr == 0 else L - 1 - i
            for b in range(b0, b1):  # time outer, sequences inner: U[t] is read in memory order
                cb = c[b - b0]
                h_t, c_t = h[t, b, dr, j0:j1], c_all[t if keep_c else 0, b, dr, j0:j1]
                if has_mask and mask[t, b] != 0:  # padding: carry c, output 0
                    h_t[:] = 0.0
                    c_t[:] = cb
                    continue
                # 1-D contiguous slices (not one 2-D view): that is what lets LLVM vectorise
                u0, uf, ur = U[t, b, dr, 0, j0:j1], U[t, b, dr, 1, j0:j1], U[t, b, dr, 2, j0:j1]
                x = U[t, b, dr, 3, j0:j1] if K == 4 else (xh[t, b, dr, j0:j1] if skip else u0)  # u0: never read
                dm = drop[b, dr, j0:j1]
                for j in range(j1 - j0):
                    # v * c + (u + b): exactly u + b when v = 0, as the 2017 cell computed it
                    f = _sigmoid(vf[j] * cb[j] + (uf[j] + bf[j]))
                    r = _sigmoid(vr[j] * cb[j] + (ur[j] + br[j]))
                    cj = f * cb[j] + (f32(1.0) - f) * u0[j]
                    # one expression, as the 2017 kernel wrote it: with skip and no drop_gate the same FMAs
                    h_t[j] = r * (_g(cj, use_tanh) * dm[j]) + \
                        (f32(1.0) - (r * dm[j] if drop_gate else r)) * (x[j] if skip else f32(0.0))
                    c_t[j] = cj
                    cb[j] = cj
        c_n[b0:b1, dr, j0:j1] = c


@numba.njit(parallel=True, **_JIT)
def backward(U, xh, wc, bias, c0, mask, has_mask, drop, use_tanh, skip, drop_gate, c_all, grad_h, grad_cn,
             grad_U, grad_xh, grad_bias, grad_c0, n_bblocks, n_jblocks):
    """Writes grad_U (L, B, D, K, d), grad_xh (L, B, D, d; K == 3 with skip only), grad_c0 (B, D, d)
    and grad_bias (B, D, 2, d): per-sequence partial sums of the bias gradient. weight_c's gradient,
    sum over t of grad_U's gate slots times c_{t-1}, is left to the caller: two more accumulators in the
    loop made LLVM give up vectorising it (the backward ran 4.7x slower)."""
    L, B, D, K, d = U.shape
    for item in numba.prange(n_bblocks * D * n_jblocks):
        b0, b1, dr, j0, j1 = _block(item, B, D, d, n_bblocks, n_jblocks)
        bf, br = bias[dr, 0, j0:j1], bias[dr, 1, j0:j1]
        vf, vr = wc[dr, 0, j0:j1], wc[dr, 1, j0:j1]
        dc = grad_cn[b0:b1, dr, j0:j1].copy()  # gradient reaching c_t from later steps
        no_gx = np.empty(j1 - j0, np.float32)  # where x's gradient goes without a skip term: a store that is never
        # skipped keeps the loop vectorised (a conditional one made the backward 1.2-1.45x slower)
        for b in range(b0, b1):
            grad_bias[b, dr, :, j0:j1] = 0.0
        for i in range(L):
            t = L - 1 - i if dr == 0 else i  # the reverse of the forward order
            first = (t == 0) if dr == 0 else (t == L - 1)
            for b in range(b0, b1):
                dcb = dc[b - b0]
                g0, gf, gr = grad_U[t, b, dr, 0, j0:j1], grad_U[t, b, dr, 1, j0:j1], grad_U[t, b, dr, 2, j0:j1]
                gx = grad_U[t, b, dr, 3, j0:j1] if K == 4 else (grad_xh[t, b, dr, j0:j1] if skip else no_gx)
                if has_mask and mask[t, b] != 0:  # padding: dc passes through unchanged
                    g0[:] = 0.0
                    gf[:] = 0.0
                    gr[:] = 0.0
                    gx[:] = 0.0
                    continue
                c_prev = c0[b, dr, j0:j1] if first else c_all[t - 1 if dr == 0 else t + 1, b, dr, j0:j1]
                # 1-D contiguous slices (not one 2-D view): that is what lets LLVM vectorise
                u0, uf, ur = U[t, b, dr, 0, j0:j1], U[t, b, dr, 1, j0:j1], U[t, b, dr, 2, j0:j1]
                x = U[t, b, dr, 3, j0:j1] if K == 4 else (xh[t, b, dr, j0:j1] if skip else u0)  # u0: never read
                c_t, gh, dm = c_all[t, b, dr, j0:j1], grad_h[t, b, dr, j0:j1], drop[b, dr, j0:j1]
                gbf, gbr = grad_bias[b, dr, 0, j0:j1], grad_bias[b, dr, 1, j0:j1]
                for j in range(j1 - j0):
                    cp = c_prev[j]
                    f = _sigmoid(vf[j] * cp + (uf[j] + bf[j]))
                    r = _sigmoid(vr[j] * cp + (ur[j] + br[j]))
                    g = _g(c_t[j], use_tanh)
                    xj = x[j] if skip else f32(0.0)
                    dg = gh[j] * r * dm[j]
                    dct = dcb[j] + (dg * (f32(1.0) - g * g) if use_tanh else dg)
                    g_f = dct * (cp - u0[j]) * f * (f32(1.0) - f)
                    # drop_gate: the mask also scales the gate's highway side (written apart so that the 2017
                    # cell keeps its own expressions, and so its FMAs)
                    g_r = gh[j] * (g * dm[j] - (dm[j] * xj if drop_gate else xj)) * r * (f32(1.0) - r)
                    g0[j] = dct * (f32(1.0) - f)
                    gf[j] = g_f
                    gr[j] = g_r
                    gx[j] = gh[j] * (f32(1.0) - (r * dm[j] if drop_gate else r))
                    gbf[j] += g_f
                    gbr[j] += g_r
                    # v = 0 (the 2017 cell): exactly dct * f
                    dcb[j] = g_f * vf[j] + g_r * vr[j] + dct * f
        grad_c0[b0:b1, dr, j0:j1] = dc


def _serial(kernel):
    """`kernel` compiled without threads (prange runs as range), from a copy of its Python function
    under its own name: numba's disk cache keys a function by module, name, line and bytecode, not by
    `parallel`, so compiling the same function twice made the two variants share one cache entry, and
    whichever was compiled first ran in both places (the threaded forward ran serially;
    docs/benchmarks.md)."""
    f = kernel.py_func
    copy = FunctionType(f.__code__, f.__globals__, f.__name__ + "_serial", f.__defaults__, f.__closure__)
    copy.__qualname__ = f.__qualname__ + "_serial"
    copy.__doc__ = f.__doc__
    return numba.njit(**_JIT)(copy)


# The serial kernels are for small problems, and on two threads for all but large ones. Waking numba's
# workers costs ~0.2 ms per launch. And right after a torch op, torch's OpenMP workers keep spinning on
# their cores for several ms (libgomp's default spin-wait): a numba worker sharing a core with one runs
# at about half speed, and with static work items the main thread then waits for it. On two threads
# that cancels the second thread until ~2M states, measured right after a GEMM (docs/benchmarks.md);
# with more threads the other workers still add speed, so the old threshold stays there
# (not measured: this project's machines have two cores). OMP_WAIT_POLICY=PASSIVE removes the spin but
# slows torch's own ops (nn.LSTM fwd+bwd up to 2.5x at batch 32, measured), so we do not set it.
forward_serial = _serial(forward)
backward_serial = _serial(backward)
SERIAL_BELOW = 1 << 16  # L * B * D * d: below this the serial kernels run
SERIAL_BELOW_TWO_THREADS = 1 << 21  # the same on two threads


def runs_serial(states, threads):
    """Whether a problem of `states` = L * B * D * d runs the serial kernels on `threads` threads."""
    return threads == 1 or states < (SERIAL_BELOW_TWO_THREADS if threads == 2 else SERIAL_BELOW)


def partition(B, D, d, threads):
    """(sequence blocks, unit blocks) for `threads` threads: one work item per thread where the problem
    allows (items = blocks x D directions), sequences split first (whole rows stream best), units
    when there are too few sequences (a batch-1 evaluation), in blocks of >= 64. Serial: (1, 1)."""
    if threads <= 1:
        return 1, 1
    n_bblocks = min(B, max(1, threads // D))
    n_jblocks = max(1, min(-(-threads // (n_bblocks * D)), d // 64))
    return n_bblocks, n_jblocks
