"""The paper's Figure 1 on the machine at hand: one layer, batch 32, forward and forward+backward.

    python -m sru.bench [--device cpu|cuda] [--out bench_out] [--sizes 32x256,128x512]

Rows, all measured in the same run with one TF32 setting:
  lstm     torch.nn.LSTM (cuDNN on GPU), 1 layer, d -> d
  conv2d   word-level convolution: a (3, d) filter over the (l, d) input, d output channels
  gemm     the SRU's GEMMs alone (x @ W and, for fwd+bwd, its two backward GEMMs) on the route the SRU
           takes (sru.gemm: on the CPU oneDNN where it is faster and exact): the floor a fused SRU layer
           can approach
  gemm-mkl the same GEMMs through torch's default fp32 matmul (MKL on the CPU), for comparison
           (CPU only, and only when the route is not already that)
  naive    the SRU with the plain-PyTorch reference recurrence (autograd over a time loop)
  sru-*    our SRU layer, the paper's cell (cell="2017", tanh), with each fused backend available here (and
           bf16 on GPU); sru-*-2018: the same backend with the 2018 cell of sru 2.x (sru 2.6's SRUCell defaults
           but tanh, as the paper's row, so that the two rows differ by the cell alone)
Each cell is the median of repeated timings after warm-up (CUDA events on GPU).
Writes bench.json, bench.md and bench.png to --out and prints the table; --logger wandb also logs the grid
as a W&B run (offline unless WANDB_MODE says otherwise) for the dashboard's Figure 1 view
(python -m scripts.wandb_dashboard).
"""
import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch
from torch import nn

from . import gemm
from .machine import machine_info
from .modules import SRUCell

GRID = [(32, 256), (32, 512), (128, 256), (128, 512), (256, 1024)]
PAPER_CELL = dict(cell="2017", use_tanh=True, rescale=False)  # Figure 1's layer: the paper's cell


def parse_sizes(text):
    try:
        return [tuple(int(v) for v in item.split("x")) for item in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--sizes wants LxD pairs like 32x256,128x512, got {text!r}")


def time_ms(fn, device, warmup, min_repeats, budget_s):
    """Median milliseconds of fn() over at least min_repeats runs (more while under budget_s).
    Calls slower than a second get one warm-up and three repeats, to keep the grid in minutes."""
    t0 = time.perf_counter()
    fn()
    if time.perf_counter() - t0 > 1.0:
        warmup, min_repeats = 0, min(min_repeats, 3)
    for _ in range(warmup - 1):
        fn()
    times, start = [], time.perf_counter()
    while len(times) < min_repeats or (time.perf_counter() - start < budget_s and len(times) < 50):
        if device.type == "cuda":
            begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            begin.record()
            fn()
            end.record()
            torch.cuda.synchronize()
            times.append(begin.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times), len(times)


def make_rows(d, device, backends):
    """name -> (module or None, dtype, function(x) returning the output to time/backprop)."""
    rows = {}
    lstm = nn.LSTM(d, d, num_layers=1).to(device)
    rows["lstm"] = (lstm, torch.float32, lambda x: lstm(x)[0])
    conv = nn.Conv2d(1, d, kernel_size=(3, d), padding=(1, 0)).to(device)
    # (l, B, d) -> (B, 1, l, d) -> (B, d, l, 1)
    rows["conv2d"] = (conv, torch.float32, lambda x: conv(x.permute(1, 0, 2).unsqueeze(1)))
    weight = nn.Parameter(torch.empty(d, 3 * d, device=device).uniform_(-0.05, 0.05))
    rows["gemm"] = (None, torch.float32, lambda x: gemm.matmul(x.reshape(-1, d), weight))
    if device.type == "cpu" and gemm.cpu_route() != "mkl":
        rows["gemm-mkl"] = (None, torch.float32, lambda x: x.reshape(-1, d) @ weight)
    naive = SRUCell(d, d, backend="reference", **PAPER_CELL).to(device)
    rows["naive"] = (naive, torch.float32, lambda x: naive(x)[0])
    for backend in backends:
        cell = SRUCell(d, d, backend=backend, **PAPER_CELL).to(device)
        rows[f"sru-{backend}"] = (cell, torch.float32, lambda x, c=cell: c(x)[0])
        cell2018 = SRUCell(d, d, backend=backend, use_tanh=True).to(device)  # tanh as the paper's row: the cells alone differ
        rows[f"sru-{backend}-2018"] = (cell2018, torch.float32, lambda x, c=cell2018: c(x)[0])
        if device.type == "cuda":
            half = SRUCell(d, d, backend=backend, **PAPER_CELL).to(device, torch.bfloat16)
            rows[f"sru-{backend}-bf16"] = (half, torch.bfloat16, lambda x, c=half: c(x)[0])
    return rows


def run(sizes, device, batch, warmup, min_repeats, budget_s, skip=(), log=print):
    backends = ["gpu"] if device.type == "cuda" else ["cpu"]
    results = []
    for length, d in sizes:
        rows = make_rows(d, device, backends)
        for name, (_, dtype, fn) in rows.items():
            if name in skip:
                continue
            x = torch.randn(length, batch, d, device=device, dtype=dtype, requires_grad=True)
            out = fn(x)
            grad = torch.randn_like(out)

            def forward():
                with torch.no_grad():
                    fn(x)

            def forward_backward():
                fn(x).backward(grad)

            for mode, step in (("fwd", forward), ("fwd+bwd", forward_backward)):
                ms, n = time_ms(step, device, warmup, min_repeats, budget_s)
                results.append(dict(l=length, d=d, row=name, mode=mode, ms=round(ms, 4), repeats=n))
                log(f"  l={length:4d} d={d:5d} {name:14s} {mode:8s} {ms:10.3f} ms")
    return results


def ratios(results):
    """(row, mode, l, d) -> (the SRU row's ms / the GEMM floor's, the LSTM's ms / the SRU row's), for every
    sru-* row; None where a row or the baseline is missing at that cell."""
    cell = {(r["row"], r["mode"], r["l"], r["d"]): r["ms"] for r in results}
    out = {}
    for (row, *key), ms in cell.items():
        if row.startswith("sru-"):
            gemm, lstm = cell.get(("gemm", *key)), cell.get(("lstm", *key))
            out[(row, *key)] = (ms / gemm if ms and gemm else None, lstm / ms if ms and lstm else None)
    return out


def markdown(results, info):
    sizes = sorted({(r["l"], r["d"]) for r in results}, key=lambda s: (s[0], s[1]))
    names = list(dict.fromkeys(r["row"] for r in results))
    cell = {(r["row"], r["mode"], r["l"], r["d"]): r["ms"] for r in results}
    ratio = ratios(results)
    lines = [f"Device: {info['device']}; torch {info['torch']}; TF32 matmul "
             f"{'on' if info['tf32'] else 'off'}; batch 32, 1 layer; median ms; {info['date']}"
             + (f"; SRU GEMMs and the gemm floor: {info['cpu_gemm']}" if "cpu_gemm" in info else ""), ""]
    for mode in ("fwd", "fwd+bwd"):
        lines.append(f"| {mode} | " + " | ".join(f"l={l}, d={d}" for l, d in sizes) + " |")
        lines.append("|---" * (len(sizes) + 1) + "|")
        for name in names:
            vals = [cell.get((name, mode, l, d)) for l, d in sizes]
            lines.append(f"| {name} | " + " | ".join("-" if v is None else f"{v:.2f}" for v in vals) + " |")
        fused = [n for n in names if n.startswith("sru-") and not n.endswith("bf16")]
        for name in fused:
            row = [ratio.get((name, mode, l, d), (None, None)) for l, d in sizes]
            lines.append(f"| {name} / gemm floor | " + " | ".join(
                "-" if g is None else f"{g:.2f}x" for g, _ in row) + " |")
            lines.append(f"| lstm / {name} (speed-up) | " + " | ".join(
                "-" if m is None else f"{m:.1f}x" for _, m in row) + " |")
        for name in [n for n in fused if n.endswith("-2018")]:
            paper = [cell.get((name[:-5], mode, l, d)) for l, d in sizes]
            lines.append(f"| {name} / {name[:-5]} (2018 cell / paper's) | " + " | ".join(
                "-" if p is None or cell.get((name, mode, l, d)) is None else f"{cell[(name, mode, l, d)] / p:.2f}x"
                for p, (l, d) in zip(paper, sizes)) + " |")
        lines.append("")
    return "\n".join(lines)


def call_ms(fn, device):
    """Milliseconds of one call of fn (a CUDA device synchronised before and after)."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) * 1e3


def cell_check(device, batch, repeats=15, d=512, length=128):
    """The 2018 cell's cost over the paper's, both with tanh, alternating call by call in this process (the
    grid's rows run apart, minutes apart, and this machine's noise moves them by +-10%): median ms, fwd and
    fwd+bwd."""
    torch.manual_seed(0)
    cells = {"2017": SRUCell(d, d, **PAPER_CELL).to(device), "2018": SRUCell(d, d, use_tanh=True).to(device)}
    x = torch.randn(length, batch, d, device=device, requires_grad=True)
    gy = torch.randn(length, batch, d, device=device)
    out = dict(l=length, d=d)
    for mode in ("fwd", "fwd+bwd"):
        def call(cell):
            if mode == "fwd":
                with torch.no_grad():
                    cell(x)
            else:
                cell(x)[0].backward(gy)
        for cell in cells.values():
            call(cell)
            call(cell)
        times = {name: [] for name in cells}
        for _ in range(repeats):
            for name, cell in cells.items():
                times[name].append(call_ms(lambda: call(cell), device))
        out[mode] = {name: statistics.median(t) for name, t in times.items()}
    return out


def neighbour_check(device, batch, repeats=9, d=256, length=32):
    """Does an SRU call slow down the torch op that follows it? (CPU: numba's threads must not keep
    torch's off the cores.) Median ms of an nn.LSTM fwd+bwd alone, and right after an SRU fwd+bwd."""
    lstm, cell = nn.LSTM(d, d).to(device), SRUCell(d, d, **PAPER_CELL).to(device)
    x = torch.randn(length, batch, d, device=device)

    def torch_op():
        lstm(x)[0].sum().backward()

    def sru_op():
        cell(x)[0].sum().backward()

    def timed(before=None):
        times = []
        for _ in range(repeats):
            if before:
                before()
            times.append(call_ms(torch_op, device))
        return statistics.median(times)

    torch_op(), sru_op()  # warm-up (and numba's compile)
    alone, after = timed(), timed(sru_op)
    return dict(op=f"nn.LSTM fwd+bwd, l={length}, d={d}, batch {batch}", alone_ms=alone, after_sru_ms=after,
                threads=torch.get_num_threads())


def summary_ratios(results):
    """Per mode and size: the LSTM's ms over the fastest fp32 SRU's (the paper's speed-up), and that SRU's
    ms over the GEMM floor."""
    fastest = {}
    for r in results:
        if r["row"].startswith("sru-") and not r["row"].endswith("bf16"):
            key = (r["mode"], r["l"], r["d"])
            if key not in fastest or r["ms"] < fastest[key]["ms"]:
                fastest[key] = r
    ratio, out = ratios(results), {}
    for (mode, length, d), r in fastest.items():
        over_gemm, speedup = ratio[(r["row"], mode, length, d)]
        if speedup is not None:
            out[f"speedup_vs_lstm/{mode}/{length}x{d}"] = speedup
        if over_gemm is not None:
            out[f"sru_over_gemm/{mode}/{length}x{d}"] = over_gemm
    return out


def log_wandb(results, info, out):
    """The grid as one W&B run: the table `figure1` and the ratios, under config table=figure1."""
    os.environ.setdefault("WANDB_MODE", "offline")
    os.environ.setdefault("WANDB_SILENT", "true")
    import wandb
    run = wandb.init(project=os.environ.get("WANDB_PROJECT", "sru-repro"), dir=str(out), group="figure1",
                     job_type="bench", name=f"figure1 {info['device']}", config=dict(info, table="figure1"))
    columns = ["l", "d", "row", "mode", "ms", "repeats"]
    run.log({"figure1": wandb.Table(columns=columns, data=[[r[c] for c in columns] for r in results]),
             **summary_ratios(results)})
    run.finish()


def plot(results, info, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    sizes = sorted({(r["l"], r["d"]) for r in results})
    names = list(dict.fromkeys(r["row"] for r in results))
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for ax, mode in zip(axes, ("fwd", "fwd+bwd")):
        width = 0.8 / len(names)
        for i, name in enumerate(names):
            vals = [next((r["ms"] for r in results if (r["row"], r["mode"], r["l"], r["d"]) == (name, mode, l, d)), 0)
                    for l, d in sizes]
            ax.bar([k + i * width for k in range(len(sizes))], vals, width, label=name)
        ax.set_xticks([k + 0.4 - width / 2 for k in range(len(sizes))], [f"{l},{d}" for l, d in sizes])
        ax.set_yscale("log")
        ax.set_xlabel("(l, d)")
        ax.set_ylabel("ms (median, log scale)")
        ax.set_title(f"{mode}, batch 32, 1 layer")
    axes[0].legend(fontsize=8)
    fig.suptitle(info["device"], fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--sizes", type=parse_sizes, default=GRID, help="LxD pairs, default the paper's grid")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5, help="minimum timed repeats per cell")
    p.add_argument("--budget", type=float, default=0.5, help="keep repeating a cell for this many seconds")
    p.add_argument("--tf32", action="store_true", help="allow TF32 matmuls/convs (all rows alike)")
    p.add_argument("--skip", default="", help="comma-separated rows to leave out")
    p.add_argument("--out", default="bench_out")
    p.add_argument("--logger", choices=["none", "wandb"], default="none",
                   help="wandb: also log the grid as a W&B run (offline by default) under --out")
    args = p.parse_args(argv)

    device = torch.device(args.device)
    torch.backends.cuda.matmul.allow_tf32 = args.tf32
    torch.backends.cudnn.allow_tf32 = args.tf32
    torch.manual_seed(0)
    info = machine_info(device)
    print(f"# SRU speed benchmark on {info['device']} (TF32 {'on' if args.tf32 else 'off'})")
    results = run(args.sizes, device, args.batch, args.warmup, args.repeats, args.budget,
                  skip=set(filter(None, args.skip.split(","))))
    neighbour = neighbour_check(device, args.batch)
    cells = cell_check(device, args.batch, repeats=max(3, 3 * args.repeats))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    table = markdown(results, info) + (
        f"\nA torch op right after an SRU call ({neighbour['op']}, {neighbour['threads']} torch threads): "
        f"{neighbour['alone_ms']:.2f} ms alone, {neighbour['after_sru_ms']:.2f} ms right after an SRU fwd+bwd "
        f"({neighbour['after_sru_ms'] / neighbour['alone_ms']:.2f}x).\n"
        f"The 2018 cell against the paper's (tanh both), alternating, l={cells['l']}, d={cells['d']}: " + "; ".join(
            f"{mode} {cells[mode]['2018']:.2f} / {cells[mode]['2017']:.2f} ms = "
            f"{cells[mode]['2018'] / cells[mode]['2017']:.2f}x" for mode in ("fwd", "fwd+bwd")) + ".")
    (out / "bench.json").write_text(json.dumps(dict(machine=info, results=results, neighbour=neighbour, cells=cells),
                                               indent=1))
    (out / "bench.md").write_text(table + "\n")
    plot(results, info, out / "bench.png")
    if args.logger == "wandb":
        log_wandb(results, info, out)
    print()
    print(table)
    print(f"wrote {out}/bench.json, bench.md, bench.png")


if __name__ == "__main__":
    main()
