"""The element-wise recurrence behind one interface, three backends.

``recurrence(backend)`` runs ``sru.reference``'s recurrence on its ``Inputs`` and ``Options`` (the
recurrence's inputs are described there, once). The fused backends are ``torch.library`` custom ops
whose schema is built from those two NamedTuples, with a fake (meta) implementation and a registered
autograd formula, so ``torch.compile`` traces models that use them without graph breaks; in eager mode
the same forward and backward run from a plain ``autograd.Function``, which skips the custom op's
dispatch cost. A new input is a field of ``Inputs``, its use in the reference and the kernels, and
its arguments in the two runners below that hand it to a kernel.

Each fused op returns (h, c_n, c_all); c_all (every step's fp32 state) is saved for the
backward kernel and is not differentiable: the public wrapper returns only (h, c_n).
"""
import os
import threading
import typing

import numpy as np
import torch
from torch import Tensor

from .reference import DIFFERENTIABLE, Inputs, Options, dims, reference, reference_scan

BACKENDS = ("auto", "reference", "cpu", "gpu")
GPU_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
N_INPUTS = len(Inputs._fields)


# --- cpu: numba kernels on numpy views of contiguous float32 tensors ---------------------
_NO_X = np.zeros((1, 1, 1, 1), np.float32)  # stand-ins keep numba's argument types fixed
_NO_MASK = np.zeros((1, 1), np.uint8)
_CONSTANTS = {}  # (value, shape) -> a read-only array: no allocation per call


def _constant(value, shape):
    """A read-only float32 array of `shape` filled with `value` (ones: no dropout; zeros: no weight_c)."""
    array = _CONSTANTS.get((value, shape))
    if array is None:
        if len(_CONSTANTS) > 64:  # shapes follow the batch size: keep the last few only
            _CONSTANTS.clear()
        array = np.full(shape, value, np.float32)
        array.flags.writeable = False
        _CONSTANTS[(value, shape)] = array
    return array


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


def _cpu_arrays(inp, opt):
    """The numba kernels' leading arguments for inp: numpy views in the kernels' layout, stand-ins for
    absent inputs, and the flags."""
    L, B, D, K = dims(inp, opt)
    d = opt.hidden_size
    U, x, weight_c, bias, c0, mask, drop = inp
    return (U.numpy().reshape(L, B, D, K, d), _NO_X if x is None else x.numpy().reshape(L, B, D, d),
            _constant(0.0, (D, 2, d)) if weight_c is None else weight_c.numpy().reshape(D, 2, d),
            bias.numpy().reshape(D, 2, d), c0.numpy().reshape(B, D, d),
            _NO_MASK if mask is None else mask.numpy(), mask is not None,
            _constant(1.0, (B, D, d)) if drop is None else drop.numpy().reshape(B, D, d),
            opt.use_tanh, K == 4 or x is not None, opt.drop_gate)


def _cpu_forward(inp, opt, keep_c=True):
    L, B, D, K = dims(inp, opt)
    d = opt.hidden_size
    h = torch.empty(L, B, D * d, dtype=torch.float32)
    c_n = torch.empty(B, D * d, dtype=torch.float32)
    # without keep_c (no gradient wanted) the kernel's state row is scratch nobody reads: a bare numpy array,
    # a few us less per call than a tensor and its numpy view (what a streaming step pays)
    c_all = torch.empty(L, B, D * d, dtype=torch.float32) if keep_c else None
    kernel, blocks = _cpu_kernel("forward", h.numel(), B, D, d)
    kernel(*_cpu_arrays(inp, opt), h.numpy().reshape(L, B, D, d),
           c_all.numpy().reshape(L, B, D, d) if keep_c else np.empty((1, B, D, d), np.float32),
           c_n.numpy().reshape(B, D, d), keep_c, *blocks)
    return h, c_all, c_n


def _cpu_backward(inp, opt, c_all, grad_h, grad_cn):
    L, B, D, K = dims(inp, opt)
    d = opt.hidden_size
    grad_U = torch.empty_like(inp.U)
    grad_x = None if inp.x is None else torch.empty_like(inp.x)
    grad_bias = torch.empty(B, D * 2 * d, dtype=torch.float32)
    grad_c0 = torch.empty(B, D * d, dtype=torch.float32)
    kernel, blocks = _cpu_kernel("backward", grad_h.numel(), B, D, d)
    kernel(*_cpu_arrays(inp, opt), c_all.numpy().reshape(L, B, D, d), grad_h.numpy().reshape(L, B, D, d),
           grad_cn.numpy().reshape(B, D, d), grad_U.numpy().reshape(L, B, D, K, d),
           _NO_X if grad_x is None else grad_x.numpy().reshape(L, B, D, d),
           grad_bias.numpy().reshape(B, D, 2, d), grad_c0.numpy().reshape(B, D, d), *blocks)
    grad_wc = None if inp.weight_c is None else _weight_c_partials(grad_U, c_all, inp.c0, L, B, D, K, d)
    return grad_U, grad_x, grad_wc, grad_bias, grad_c0


def _weight_c_partials(grad_U, c_all, c0, L, B, D, K, d):
    """weight_c's gradient as per-sequence partial sums (B, D*2*d): sum over t of the gates' pre-activation
    gradients (grad_U's slots 1, 2; zero at padding) times c_{t-1}, each direction's c_{t-1} in its time order
    (c0 at its first step)."""
    gates, c, c0 = grad_U.view(L, B, D, K, d)[:, :, :, 1:3], c_all.view(L, B, D, 1, d), c0.view(B, D, 1, d)
    out = torch.empty(B, D, 2, d, dtype=torch.float32)
    out[:, 0] = (gates[1:, :, 0] * c[:-1, :, 0]).sum(0) + gates[0, :, 0] * c0[:, 0]
    if D == 2:  # time runs backwards: c_{t-1} is the state at t + 1
        out[:, 1] = (gates[:-1, :, 1] * c[1:, :, 1]).sum(0) + gates[L - 1, :, 1] * c0[:, 1]
    return out.view(B, D * 2 * d)


def _gpu_forward(inp, opt, keep_c=True):
    from . import triton_kernels
    h, c_all = triton_kernels.forward(inp, opt)
    L, B, D, _ = dims(inp, opt)
    return h, c_all, _last_state(c_all, L, B, D, opt.hidden_size)


def _gpu_backward(inp, opt, c_all, grad_h, grad_cn):
    from . import triton_kernels
    return triton_kernels.backward(inp, opt, c_all, grad_h, grad_cn)


# --- one custom-op definition, instantiated per fused backend -----------------------------
def _last_state(c_all, L, B, D, d):
    """c_n: the state after each direction's last step (t = L-1 forward, t = 0 reverse)."""
    c = c_all.view(L, B, D, d)
    return torch.stack([c[L - 1 if dr == 0 else 0, :, dr] for dr in range(D)], dim=1).view(B, D * d)


def _split(args):
    """(Inputs, Options) from the flat argument list the ops and the Function take."""
    return Inputs(*args[:N_INPUTS]), Options(*args[N_INPUTS:N_INPUTS + len(Options._fields)])


def _run_forward(forward_impl, inp, opt, keep_c=True):
    """h, c_n and, with keep_c, c_all (every step's state, for backward)."""
    h, c_all, c_n = forward_impl(inp, opt, keep_c)
    return h, c_n.to(inp.c0.dtype), c_all


def _run_backward(backward_impl, inp, opt, c_all, grad_h, grad_cn):
    """The gradients of DIFFERENTIABLE, None for an absent input."""
    grad_U, grad_x, grad_wc, grad_bias, grad_c0 = backward_impl(inp, opt, c_all, grad_h, grad_cn)
    # deterministic reduction of the per-sequence partial sums, in a fixed order
    grad_wc = None if inp.weight_c is None else grad_wc.sum(0).to(inp.weight_c.dtype)
    return grad_U, grad_x, grad_wc, grad_bias.sum(0).to(inp.bias.dtype), grad_c0.to(inp.c0.dtype)


def _backward_inputs(inp, grad_h, grad_cn):
    """The output gradients as the kernels read them: contiguous, zeros for an unused output."""
    U, c0 = inp.U, inp.c0
    grad_h = U.new_zeros(U.shape[0], U.shape[1], c0.shape[-1]) if grad_h is None else grad_h.contiguous()
    grad_cn = c0.new_zeros(c0.shape) if grad_cn is None else grad_cn.contiguous()
    return grad_h, grad_cn


def _schema_type(hint):
    return {Tensor: "Tensor", typing.Optional[Tensor]: "Tensor?", int: "int", bool: "bool"}[hint]


def _arguments(*groups):
    """Schema arguments for the fields of NamedTuple classes and (name, type) pairs, in order."""
    out = []
    for group in groups:
        pairs = typing.get_type_hints(group).items() if isinstance(group, type) else group
        out += [f"{_schema_type(hint)} {name}" for name, hint in pairs]
    return ", ".join(out)


FORWARD_SCHEMA = f"({_arguments(Inputs, Options)}) -> (Tensor, Tensor, Tensor)"
BACKWARD_SCHEMA = (f"({_arguments(Inputs, [('c_all', Tensor), ('grad_h', Tensor), ('grad_cn', Tensor)], Options)})"
                   f" -> ({', '.join(['Tensor'] * len(DIFFERENTIABLE))})")


def _define_op(name, forward_impl, backward_impl):
    """The fused backend as torch.library custom ops (what torch.compile and export trace), their
    schemas built from Inputs and Options."""
    @torch.library.custom_op(f"sru::{name}_forward", mutates_args=(), schema=FORWARD_SCHEMA)
    def forward_op(*args):
        return _run_forward(forward_impl, *_split(args))

    @forward_op.register_fake
    def _(*args):
        inp, opt = _split(args)
        L, B, _ = inp.U.shape
        n = (2 if opt.bidirectional else 1) * opt.hidden_size
        return (inp.U.new_empty(L, B, n), inp.c0.new_empty(B, n), inp.U.new_empty(L, B, n, dtype=torch.float32))

    @torch.library.custom_op(f"sru::{name}_backward", mutates_args=(), schema=BACKWARD_SCHEMA)
    def backward_op(*args):
        inp, opt = Inputs(*args[:N_INPUTS]), Options(*args[N_INPUTS + 3:])
        grads = _run_backward(backward_impl, inp, opt, *args[N_INPUTS:N_INPUTS + 3])
        return tuple(inp.U.new_empty(0) if g is None else g for g in grads)  # an op returns no None

    @backward_op.register_fake
    def _(*args):
        inp = Inputs(*args[:N_INPUTS])
        return tuple(inp.U.new_empty(0) if getattr(inp, n) is None else torch.empty_like(getattr(inp, n))
                     for n in DIFFERENTIABLE)

    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(*inputs[:N_INPUTS], output[2])
        ctx.options = inputs[N_INPUTS:]
        ctx.set_materialize_grads(False)

    def backward(ctx, grad_h, grad_cn, _grad_c_all):
        *saved, c_all = ctx.saved_tensors
        inp = Inputs(*saved)
        grads = backward_op(*inp, c_all, *_backward_inputs(inp, grad_h, grad_cn), *ctx.options)
        return _gradients(inp, grads) + (None,) * len(ctx.options)

    forward_op.register_autograd(backward, setup_context=setup_context)
    return forward_op


def _gradients(inp, grads):
    """One gradient per field of Inputs: the DIFFERENTIABLE ones' (None where the input is absent)."""
    by_name = dict(zip(DIFFERENTIABLE, grads))
    return tuple(None if getattr(inp, n) is None else by_name.get(n) for n in Inputs._fields)


class _EagerRecurrence(torch.autograd.Function):
    """The same forward and backward as the custom ops, without torch.library's dispatch (measured:
    100-130 us per layer call fwd+bwd on the CPU, ~33 us for a plain Function). Eager only: under
    torch.compile / export the custom ops run, so the graph sees one opaque op."""

    @staticmethod
    def forward(ctx, impls, *args):
        inp, opt = _split(args)
        h, c_n, c_all = _run_forward(impls[0], inp, opt)
        ctx.save_for_backward(*inp, c_all)
        ctx.backward_impl, ctx.options = impls[1], opt
        ctx.set_materialize_grads(False)
        return h, c_n

    @staticmethod
    def backward(ctx, grad_h, grad_cn):
        *saved, c_all = ctx.saved_tensors
        inp = Inputs(*saved)
        grads = _run_backward(ctx.backward_impl, inp, ctx.options, c_all, *_backward_inputs(inp, grad_h, grad_cn))
        return (None,) + _gradients(inp, grads) + (None,) * len(Options._fields)


_cpu_op = _define_op("cpu", _cpu_forward, _cpu_backward)
_gpu_op = _define_op("gpu", _gpu_forward, _gpu_backward)
_IMPLS = {"cpu": (_cpu_forward, _cpu_backward), "gpu": (_gpu_forward, _gpu_backward)}


_ONNX_FLAGS = []  # where the exporters keep their flags, found on the first call (torch.onnx takes ~25 ms to import)


def onnx_exporting():
    """Whether torch.onnx.export is tracing the model (called on every layer call, so the flags are read directly:
    torch.onnx.is_in_onnx_export() imports them on every call, ~1.5 us). Read where the exporter keeps them also
    because under torch.export's strict capture dynamo folds torch.onnx.is_in_onnx_export() to False."""
    if not _ONNX_FLAGS:
        try:
            from torch.onnx._internal.exporter import _flags
            from torch.onnx._internal.torchscript_exporter._globals import GLOBALS
            _ONNX_FLAGS.append(lambda: bool(_flags._is_onnx_exporting or GLOBALS._in_onnx_export))  # fields: no call
        except (ImportError, AttributeError):  # another torch: the public function
            _ONNX_FLAGS.append(torch.onnx.is_in_onnx_export)
    return _ONNX_FLAGS[0]()


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
        if not (torch.cuda.is_available() or triton_interpreted()):  # first: without a GPU, triton would not help
            raise RuntimeError("backend='gpu' needs a CUDA device (or TRITON_INTERPRET=1 to run "
                               "the Triton kernels on CPU for testing); use backend='auto'")
        try:
            import triton  # noqa: F401
        except ImportError as e:
            raise RuntimeError("backend='gpu' needs triton: pip install triton") from e


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


def check_recurrence_args(U, x, bias, c0, mask_pad, hidden_size, bidirectional, drop=None, weight_c=None):
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
    if cols // n == 4 and x is not None:
        raise ValueError("k=4 (U holds the highway projection in slot 3): x must be None")
    device = U.device
    for name, t, shape in (("x", x, (L, B, n)), ("weight_c", weight_c, (2 * n,)), ("bias", bias, (2 * n,)),
                           ("c0", c0, (B, n)), ("mask_pad", mask_pad, (L, B)), ("drop", drop, (B, n))):
        if t is None:
            continue
        if t.shape != shape:
            raise ValueError(f"{name} must have shape {shape}, got {tuple(t.shape)}")
        if t.device != device:
            raise ValueError(f"{name} is on {t.device} but U is on {device}")
        if name == "mask_pad":
            if t.is_floating_point() or t.is_complex():
                raise TypeError(f"mask_pad must be bool (True at padding) or integer 0/1, got {t.dtype}: a fraction "
                                f"would silently read as 'not padding'; pass e.g. mask_pad.bool()")
        elif not t.is_floating_point():
            raise TypeError(f"{name} must be floating point, got {t.dtype}")


def recurrence(U, x, bias, c0, mask_pad, hidden_size, bidirectional, use_tanh, backend="auto", drop=None,
               weight_c=None, drop_gate=False):
    """Run the element-wise recurrence with `backend`; see ``sru.reference`` for the inputs.
    x: the highway input (k = 3; None there: no skip term). drop: the dropout mask (B, D*hidden_size),
    already scaled; None: no dropout. weight_c: v_f, v_r of the 2018 cell; None: the 2017 cell.
    drop_gate: the mask also scales the highway gate (sru 2.x), not g(c) alone (2017)."""
    check_recurrence_args(U, x, bias, c0, mask_pad, hidden_size, bidirectional, drop, weight_c)
    backend = resolve_backend(backend, U.device, U.dtype)
    if U.shape[1] == 0:  # an empty batch: nothing to run (c_n in c0's dtype, as the kernels return it)
        return U.new_zeros(U.shape[0], 0, c0.shape[-1]), c0.clone()
    opt = Options(hidden_size, bool(bidirectional), bool(use_tanh), bool(drop_gate))
    inp = Inputs(U, x, weight_c, bias, c0, mask_pad, drop)
    if onnx_exporting():  # ONNX has no kernel of ours: the spec as a scan, which becomes an ONNX Scan
        return reference_scan(inp, opt)
    if backend == "reference":
        return reference(inp, opt)
    contiguous = (lambda t: None if t is None else t.contiguous())  # what the fused kernels read; the mask as bytes
    inp = Inputs(U.contiguous(), contiguous(x), contiguous(weight_c), bias.contiguous(), c0.contiguous(),
                 None if mask_pad is None else mask_pad.to(torch.uint8).contiguous(), contiguous(drop))
    if torch.compiler.is_compiling():
        h, c_n, _ = (_cpu_op if backend == "cpu" else _gpu_op)(*inp, *opt)
        return h, c_n
    if not (torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (U, x, weight_c, bias, c0))):
        # no gradient wanted (evaluation): no autograd node, and the CPU kernel keeps no per-step state
        h, c_n, _ = _run_forward(_IMPLS[backend][0], inp, opt, keep_c=False)
        return h, c_n
    return _EagerRecurrence.apply(_IMPLS[backend], *inp, *opt)
