"""A/B of one SRU layer between two commits, in one process: python -m scripts.ab_layer --old REV

This machine's timings move by +-30% from run to run, so two `make bench` runs cannot show a 10% change.
Here the layer of commit REV (checked out into a temporary directory and imported as `sru_old`, its
torch.library ops renamed so both register) and the working tree's layer run call by call in
alternation on the same inputs and weights, with the GEMM floor (sru.gemm.matmul fwd, fwd+bwd) in the
same loop; each cell is the median. Used for docs/benchmarks.md. CPU only.
"""
import argparse
import inspect
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

import torch

SIZES = "1x1x8,35x1x910,32x32x256,32x32x512,128x32x256,128x32x512,256x32x1024"


def import_old(rev, into):
    """The `sru` package of commit `rev` as module `sru_old`."""
    root = pathlib.Path(__file__).resolve().parents[1]
    tree = subprocess.run(["git", "-C", str(root), "archive", rev, "sru"], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=tree, check=True)
    (into / "sru").rename(into / "sru_old")
    for path in (into / "sru_old").glob("*.py"):  # both versions register custom ops: separate namespaces
        path.write_text(path.read_text().replace('"sru::', '"sru_old::'))
    sys.path.insert(0, str(into))
    import sru_old
    return sru_old


def step_functions(mode, layers, W, x, gy):
    from sru import gemm
    L, B, d = x.shape
    if mode == "fwd":
        def no_grad(f):
            def run():
                with torch.no_grad():
                    f()
            return run
        return {"floor": no_grad(lambda: gemm.matmul(x.view(L * B, d), W)),
                **{name: no_grad(lambda m=m: m(x)) for name, m in layers.items()}}
    ones = torch.ones(L * B, 3 * d)
    return {"floor": lambda: gemm.matmul(x.view(L * B, d), W).backward(ones),
            **{name: (lambda m=m: m(x)[0].backward(gy)) for name, m in layers.items()}}


def paper_cell(package):
    """The keywords that give the paper's cell (tanh) in `package`: commits before the 2018 cell had no `cell`."""
    if "cell" in inspect.signature(package.SRUCell).parameters:
        return dict(cell="2017", use_tanh=True, rescale=False)
    return dict(use_tanh=True)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--old", required=True, help="the commit to compare against (any git revision)")
    p.add_argument("--sizes", default=SIZES, help=f"LxBxd,... (default {SIZES})")
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--seconds", type=float, default=6.0, help="about this long per cell")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    import sru
    with tempfile.TemporaryDirectory() as tmp:
        sru_old = import_old(args.old, pathlib.Path(tmp))
        print(f"| (L, B, d) | mode | floor (GEMMs) | SRU {args.old} | SRU now | old/now | now/floor |")
        print("|---|---|---|---|---|---|---|")
        for L, B, d in (tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")):
            torch.manual_seed(0)
            new = sru.SRUCell(d, d, backend="cpu", **paper_cell(sru))
            old = sru_old.SRUCell(d, d, backend="cpu", **paper_cell(sru_old))
            old.load_state_dict(new.state_dict())
            W = torch.nn.Parameter(new.weight.detach().clone())
            x, gy = torch.randn(L, B, d, requires_grad=True), torch.randn(L, B, d)
            for mode in ("fwd", "fwd+bwd"):
                fns = step_functions(mode, {"old": old, "new": new}, W, x, gy)
                for f in fns.values():  # warm-up (numba compiles on first call)
                    f()
                    f()
                t0 = time.perf_counter()
                fns["new"]()
                reps = max(5, min(300, int(args.seconds / max(time.perf_counter() - t0, 1e-5) / len(fns))))
                times = {k: [] for k in fns}
                for _ in range(reps):
                    for k, f in fns.items():
                        t = time.perf_counter()
                        f()
                        times[k].append((time.perf_counter() - t) * 1e3)
                m = {k: statistics.median(v) for k, v in times.items()}
                print(f"| ({L}, {B}, {d}) | {mode} | {m['floor']:.3f} | {m['old']:.3f} | {m['new']:.3f} | "
                      f"{m['old'] / m['new']:.2f}x | {m['new'] / m['floor']:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
