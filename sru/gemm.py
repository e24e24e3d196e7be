"""Exact fp32 GEMMs on the CPU at oneDNN's speed: the SRU's (U = x W and its two backward GEMMs) and,
through ``use_onednn_linear``, any model's ``nn.Linear`` layers.

Why: torch's fp32 ``matmul``/``F.linear`` on the CPU go to MKL, while ``nn.LSTM`` runs its GEMMs through
oneDNN, which on AVX-512 CPUs such as the AMD EPYC this project is developed on computes the same exact
fp32 product 1.5-1.8x faster (docs/benchmarks.md). Comparing an SRU on MKL with an LSTM on oneDNN would
hide a large part of the SRU's advantage.

The route is a rule fixed once per process, not a timing calibration, so a run's numbers never depend on
timing noise. For Y = X Wᵀ + b with X (N, in), the N rows being the L·B positions:
  Y = X Wᵀ (+ b), dX = dY W   -> oneDNN (``torch.ops.mkldnn._linear_pointwise``, the op PyTorch's own
                                 compiler emits for CPU linear layers; fp32 in, fp32 accumulation)
  dW = dYᵀ X, db = Σ dY       -> PyTorch's default (MKL): a reduction over the N rows, where oneDNN
                                 measured no faster
GEMMs under ONEDNN_MIN_MACS multiply-adds stay on MKL (oneDNN's per-call setup would dominate).
``SRU_CPU_GEMM=mkl`` turns the route off, ``onednn`` forces it, ``auto`` (default) takes it on x86-64
CPUs with AVX2 or AVX-512 when PyTorch has oneDNN and a 64x64x64 product through it matches float64.
Under ``torch.compile``, under CPU autocast and for anything but float32 CPU tensors the plain PyTorch op
runs (the compiler and autocast choose their own kernels). Precision is never changed: if you set
``torch.backends.mkldnn.matmul.fp32_precision`` to bf16/tf32 yourself, oneDNN follows your setting,
as PyTorch's own oneDNN ops do.
"""
import functools
import os
import platform

import torch
from torch import nn
from torch.nn import functional as F

ROUTES = ("auto", "onednn", "mkl")
# Below this many multiply-adds (rows x in x out) oneDNN's per-call setup (~30-40 us) costs more than MKL's
# product: measured crossover 3-6M on this project's CPU (docs/benchmarks.md); small GEMMs stay on MKL.
ONEDNN_MIN_MACS = 1 << 22


def _onednn_op():
    return getattr(getattr(torch.ops, "mkldnn", None), "_linear_pointwise", None)


@functools.lru_cache(maxsize=None)
def cpu_route():
    """'onednn' or 'mkl': where the CPU's fp32 forward and input-gradient GEMMs run in this process."""
    choice = os.environ.get("SRU_CPU_GEMM", "auto").lower()
    if choice not in ROUTES:
        raise ValueError(f"SRU_CPU_GEMM must be one of {ROUTES}, got {choice!r}")
    usable = torch.backends.mkldnn.is_available() and _onednn_op() is not None and _exact()
    if choice == "onednn" and not usable:
        raise RuntimeError("SRU_CPU_GEMM=onednn, but this PyTorch build has no usable oneDNN linear op "
                           "(torch.ops.mkldnn._linear_pointwise); unset it or use SRU_CPU_GEMM=mkl")
    if choice == "auto":
        simd = torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512")
        return "onednn" if usable and simd and platform.machine().lower() in ("x86_64", "amd64") else "mkl"
    return choice


def _exact():
    """oneDNN's product of a 64x64x64 fp32 problem agrees with float64 to fp32 accuracy (no silent
    down-conversion to bf16/tf32 by a global precision setting on this CPU)."""
    try:
        g = torch.Generator().manual_seed(0)
        x, w = torch.randn(64, 64, generator=g), torch.randn(64, 64, generator=g)
        y = _onednn_op()(x, w, None, "none", [], "")
    except RuntimeError:
        return False
    ref = x.double() @ w.double().t()
    return bool(((y.double() - ref).norm() / ref.norm()) < 1e-5)


def describe():
    """One line for benchmarks and result.json: which GEMMs run where on the CPU."""
    if cpu_route() == "onednn":
        return "oneDNN (Y = X W^T, dX) + MKL (dW), fp32"
    return "PyTorch default (MKL), fp32"


class _OneDNNLinear(torch.autograd.Function):
    """F.linear with the forward and input-gradient GEMMs on oneDNN (see the module docstring)."""

    @staticmethod
    def forward(ctx, x, weight, bias):
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return _onednn_op()(x, weight, bias, "none", [], "")

    @staticmethod
    def backward(ctx, grad_y):
        x, weight = ctx.saved_tensors
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = _onednn_op()(grad_y, weight.t(), None, "none", [], "")  # grad_y @ weight
        if ctx.needs_input_grad[1] or (ctx.has_bias and ctx.needs_input_grad[2]):
            gy = grad_y.reshape(-1, grad_y.shape[-1])
            if ctx.needs_input_grad[1]:
                grad_w = gy.t() @ x.reshape(-1, x.shape[-1])
            if ctx.has_bias and ctx.needs_input_grad[2]:
                grad_b = gy.sum(0)
        return grad_x, grad_w, grad_b


def _takes_route(x, weight):
    # is_compiling first: under torch.export / torch.compile a size test on a symbolic length would add a guard
    # (an export with a dynamic length then fails). Then the size: below it (a streaming step) the call's fixed cost
    # is what matters, and it is the cheapest test (2.9 -> 0.65 us against testing it last).
    return (not torch.compiler.is_compiling() and x.dim() >= 1 and x.shape[-1] > 0
            and x.numel() // x.shape[-1] * weight.numel() >= ONEDNN_MIN_MACS
            and x.dtype == torch.float32 and weight.dtype == torch.float32
            and x.device.type == "cpu" and weight.device.type == "cpu"
            and not torch.is_autocast_enabled("cpu") and cpu_route() == "onednn")


def linear(x, weight, bias=None):
    """F.linear(x, weight, bias), exact fp32, on oneDNN where ``cpu_route()`` says so."""
    if _takes_route(x, weight) and (bias is None or bias.dtype == torch.float32):
        return _OneDNNLinear.apply(x, weight, bias)
    return F.linear(x, weight, bias)


class _OneDNNMatmul(torch.autograd.Function):
    """x @ weight for weight (in, out): _OneDNNLinear's products, with the weight gradient computed in the
    weight's own layout. A transposed one is copied when autograd accumulates it: 10 MB for a (910, 2730)
    weight, about the GEMMs' own cost at batch 1 (a (35, 1, 910) layer fwd+bwd, docs/benchmarks.md)."""

    @staticmethod
    def forward(ctx, x, weight):
        ctx.save_for_backward(x, weight)
        return mm(x, weight)

    @staticmethod
    def backward(ctx, grad_y):
        x, weight = ctx.saved_tensors
        grad_x = mm(grad_y, weight.t()) if ctx.needs_input_grad[0] else None
        grad_w = x.t() @ grad_y if ctx.needs_input_grad[1] else None  # a reduction over rows: MKL
        return grad_x, grad_w


def matmul(x, weight):
    """x @ weight for x (N, in) and weight (in, out) (the SRU's layout), routed as ``linear``."""
    if _takes_route(x, weight):
        return _OneDNNMatmul.apply(x, weight)
    return x @ weight


def mm(a, b):
    """a @ b for 2-D a (N, in) and b (in, out), routed as ``matmul`` but outside autograd (what
    ``_OneDNNMatmul`` computes its forward and input gradient with)."""
    if _takes_route(a, b):
        return _onednn_op()(a, b.t(), None, "none", [], "")
    return a @ b


class OneDNNLinear(nn.Linear):
    """nn.Linear whose forward goes through ``linear``: same parameters, same state_dict."""

    def forward(self, input):
        return linear(input, self.weight, self.bias)


def use_onednn_linear(model):
    """Route every plain nn.Linear in `model` through ``linear`` (in place; parameters and checkpoints
    unchanged). Returns the number of layers routed. Subclasses of nn.Linear keep their own forward."""
    count = 0
    for module in model.modules():
        if type(module) is nn.Linear:
            module.__class__ = OneDNNLinear
            count += 1
    return count
