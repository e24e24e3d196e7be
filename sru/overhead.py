"""Where the fixed cost of one SRU layer call goes on the CPU: a tiny layer, each part timed alone.

    python -m sru.overhead [--threads 1] [--size 1x1x8] [--repeats 2000]
    python -m sru.overhead --streaming 8,128,512 [--onnx] [--chunk 10]   # one eval call at (chunk, 1, d):
                                                  # SRU beside nn.GRU, nn.LSTM (and the same in onnxruntime)

At (L, B, d) = (1, 1, 8) the arithmetic is nothing, so every microsecond is fixed cost: Python, torch's
autograd, numpy views, numba's dispatch. Each row is the median over --repeats calls (after warm-up),
all in one run; `nn.Linear fwd+bwd` (one autograd node, the smallest thing a layer can cost) is the
baseline. The parts overlap (the cell contains the GEMM and the recurrence): they say where the time
is, they do not add up to the cell. docs/benchmarks.md has the measured breakdown.
"""
import argparse
import random
import statistics

import torch

from . import cpu_kernels, ops
from .bench import call_ms, time_ms
from .gemm import matmul
from .modules import SRUCell


class _EmptyRecurrence(torch.autograd.Function):
    """ops._EagerRecurrence's round trip with no work: the same inputs, saved tensors and outputs, empty
    results. What the recurrence costs beyond this is its kernels, views and checks."""

    @staticmethod
    def forward(ctx, U, x, bias, c0, hidden_size):
        h, c_n = U.new_empty(U.shape[0], U.shape[1], hidden_size), c0.clone()
        ctx.save_for_backward(U, x, None, bias, c0, None, None, h)
        ctx.set_materialize_grads(False)
        return h, c_n

    @staticmethod
    def backward(ctx, grad_h, grad_cn):
        U, _, _, bias, *_ = ctx.saved_tensors
        return torch.empty_like(U), None, torch.empty_like(bias), None, None


def parts(L, B, d):
    """(name, zero-argument callable) for the cell and for each of its parts, on fresh tensors."""
    torch.manual_seed(0)
    cell = SRUCell(d, d, backend="cpu", cell="2017", use_tanh=True, rescale=False)
    x = torch.randn(L, B, d, requires_grad=True)
    linear = torch.nn.Linear(d, 3 * d)
    U = torch.randn(L, B, 3 * d, requires_grad=True)
    xh = torch.randn(L, B, d)
    bias, c0 = torch.zeros(2 * d, requires_grad=True), torch.zeros(B, d)
    grad_h, grad_cn = torch.ones(L, B, d), torch.zeros(B, d)
    inp = ops.Inputs(U.detach(), xh, None, bias.detach(), c0, None, None)
    opt = ops.Options(d, False, True, False)
    h, c_all, c_n = ops._cpu_forward(inp, opt)
    views = (*ops._cpu_arrays(inp, opt), h.numpy().reshape(L, B, 1, d), c_all.numpy().reshape(L, B, 1, d),
             c_n.numpy().reshape(B, 1, d), True, 1, 1)

    def cell_fwd_bwd():
        h, c = cell(x)
        h.sum().backward()

    def cell_fwd_no_grad():
        with torch.no_grad():
            cell(x)

    def linear_fwd_bwd():
        linear(x).sum().backward()

    def gemm_fwd_bwd():
        matmul(x.view(L * B, d), cell.weight).sum().backward()

    def recurrence_fwd_bwd():
        h, c = ops.recurrence(U, xh, bias, c0, None, d, False, True, "cpu")
        h.sum().backward()

    def empty_function_fwd_bwd():
        h, c = _EmptyRecurrence.apply(U, xh, bias, c0, d)
        h.sum().backward()

    return [
        ("SRUCell fwd+bwd", cell_fwd_bwd),
        ("SRUCell fwd (no grad)", cell_fwd_no_grad),
        ("nn.Linear(d, 3d) fwd+bwd: one autograd node, the baseline", linear_fwd_bwd),
        ("the GEMM (sru.gemm.matmul) fwd+bwd", gemm_fwd_bwd),
        ("the recurrence (ops.recurrence) fwd+bwd", recurrence_fwd_bwd),
        ("  an empty autograd.Function, same inputs, saved tensors and outputs (+ sum, backward)",
         empty_function_fwd_bwd),
        ("  argument checks (ops.check_recurrence_args)",
         lambda: ops.check_recurrence_args(U, xh, bias, c0, None, d, False)),
        ("  CPU forward: views + kernel (ops._cpu_forward)", lambda: ops._cpu_forward(inp, opt)),
        ("    the serial forward kernel alone (numba dispatch + work)", lambda: cpu_kernels.forward_serial(*views)),
        ("  CPU backward: views + kernel (ops._cpu_backward)",
         lambda: ops._cpu_backward(inp, opt, c_all, grad_h, grad_cn)),
        ("  numba thread count (ops._numba_threads)", ops._numba_threads),
        ("  one tensor.numpy().reshape()", lambda: U.detach().numpy().reshape(L, B, 1, 3, d)),
    ]


class NativeLSTM(torch.nn.LSTM):
    """nn.LSTM on torch's native CPU kernels. Its default CPU path, oneDNN's fused LSTM, pays a fixed cost per call
    that grows with the weights (one step at batch 1: ~0.2 ms at d = 128, ~4 ms at d = 512, against 0.06 and 0.24
    ms natively; docs/benchmarks.md): over whole sequences it wins, but a step-by-step decoder would run this."""

    def forward(self, *args):
        enabled = torch._C._get_mkldnn_enabled()
        torch._C._set_mkldnn_enabled(False)
        try:
            return super().forward(*args)
        finally:
            torch._C._set_mkldnn_enabled(enabled)


def streaming_layers(d):
    """(name, layer) at width d, eval mode: the SRU (2018 and the paper's cell) beside nn.GRU and nn.LSTM (on
    torch's default path, and on its native kernels)."""
    return [("SRU (2018 cell)", SRUCell(d, d, backend="cpu")),
            ("SRU (paper's cell)", SRUCell(d, d, backend="cpu", cell="2017", use_tanh=True, rescale=False)),
            ("nn.GRU", torch.nn.GRU(d, d)), ("nn.LSTM", torch.nn.LSTM(d, d)),
            ("nn.LSTM, oneDNN off", NativeLSTM(d, d))]


def streaming_rows(dims, repeats, chunk=1):
    """Median us of one eval call at (chunk, 1, d): what each step (chunk = 1) or chunk of frames of a streaming
    decoder pays. Two ways: `alone`, each layer's calls in one block (a decoder that runs only that layer);
    `mixed`, the layers taking turns in a shuffled order each round (the call after nn.LSTM's or nn.GRU's meets
    torch's spinning OpenMP workers, docs/benchmarks.md; shuffled, so that no layer alone pays for it). Yields
    (d, mode, {name: us})."""
    for d in dims:
        torch.manual_seed(0)
        layers = [(name, layer.eval()) for name, layer in streaming_layers(d)]
        x = torch.randn(chunk, 1, d)
        calls = {name: (lambda layer=layer: layer(x)) for name, layer in layers}

        def timed(call):  # us
            return call_ms(call, x.device) * 1e3
        with torch.no_grad():
            for call in calls.values():  # warm-up (numba compiles on the first call)
                for _ in range(50):
                    call()
            alone = {name: statistics.median(timed(call) for _ in range(repeats)) for name, call in calls.items()}
            mixed, order = {name: [] for name in calls}, list(calls.items())
            for i in range(repeats):
                random.Random(i).shuffle(order)
                for name, call in order:
                    mixed[name].append(timed(call))
        yield d, "alone", alone
        yield d, "mixed", {name: statistics.median(t) for name, t in mixed.items()}


def onnx_rows(dims, repeats, chunk=1):
    """The same layers exported to ONNX (torch.onnx.export, dynamo) and run in onnxruntime, one call at (chunk, 1, d)
    with the state as an input, median us: a one-step model for chunk = 1 (a fixed length: no loop), else a model
    with a dynamic length (as a chunked streaming decoder exports it). Yields (d, {name: us})."""
    import tempfile

    import onnxruntime as ort

    class Step(torch.nn.Module):  # the layer with its state as an input: one streaming step
        def __init__(self, layer):
            super().__init__()
            self.layer = layer

        def forward(self, x, state):
            if isinstance(self.layer, torch.nn.LSTM):
                return self.layer(x, (state, state))[0]
            return self.layer(x, state)[0]

    for d in dims:
        torch.manual_seed(0)
        x = torch.randn(chunk, 1, d)
        runners = {}
        with tempfile.TemporaryDirectory() as tmp:
            for name, layer in streaming_layers(d):
                if isinstance(layer, NativeLSTM):  # one LSTM op in onnxruntime: the row above
                    continue
                state = torch.zeros(1, d) if isinstance(layer, SRUCell) else torch.zeros(1, 1, d)
                path = f"{tmp}/{len(runners)}.onnx"
                dynamic = None if chunk == 1 else ({0: torch.export.Dim("length", min=2, max=4096)}, None)
                torch.onnx.export(Step(layer).eval(), (x, state), path, dynamo=True, verbose=False,
                                  dynamic_shapes=dynamic)
                runner = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
                runners[name] = (runner, {i.name: t.numpy() for i, t in zip(runner.get_inputs(), (x, state))})
        times = {name: [] for name in runners}
        order = list(runners.items())
        for i in range(repeats):
            random.Random(i).shuffle(order)
            for name, (runner, feed) in order:
                times[name].append(call_ms(lambda: runner.run(None, feed), x.device) * 1e3)
        yield d, {name: statistics.median(t) for name, t in times.items()}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--size", default="1x1x8", help="LxBxd of the layer (default: tiny, so only fixed costs remain)")
    p.add_argument("--repeats", type=int, default=2000)
    p.add_argument("--streaming", default=None, metavar="D,D,...",
                   help="instead: one eval call at (1, 1, d) of the SRU, nn.GRU and nn.LSTM at these widths")
    p.add_argument("--onnx", action="store_true", help="with --streaming: the same layers in onnxruntime too")
    p.add_argument("--chunk", type=int, default=1, help="with --streaming: frames per call (default 1: one step)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.streaming:
        names = [name for name, _ in streaming_layers(1)]
        print(f"| d | calls | " + " | ".join(f"{n}, us" for n in names) + f" | SRU 2018 / GRU |  "
              f"({args.threads} thread(s), median of {args.repeats}, {args.chunk} frame(s) per call)")
        print("|---" * (len(names) + 3) + "|")
        dims = [int(v) for v in args.streaming.split(",")]
        for d, mode, us in streaming_rows(dims, args.repeats, args.chunk):
            print(f"| {d} | {mode} | " + " | ".join(f"{us[n]:.1f}" for n in names) +
                  f" | {us['SRU (2018 cell)'] / us['nn.GRU']:.2f}x |", flush=True)
        if args.onnx:
            for d, us in onnx_rows(dims, args.repeats, args.chunk):
                print(f"| {d} | onnxruntime | " + " | ".join(f"{us[n]:.1f}" if n in us else "-" for n in names) +
                      f" | {us['SRU (2018 cell)'] / us['nn.GRU']:.2f}x |", flush=True)
        return
    L, B, d = (int(v) for v in args.size.split("x"))
    print(f"| part of one SRU layer call, (L, B, d) = ({L}, {B}, {d}), {args.threads} thread(s) | median us |")
    print("|---|---|")
    for name, fn in parts(L, B, d):
        median_ms, _ = time_ms(fn, torch.device("cpu"), warmup=200, min_repeats=args.repeats, budget_s=0)
        print(f"| {name} | {median_ms * 1e3:.1f} |", flush=True)


if __name__ == "__main__":
    main()
