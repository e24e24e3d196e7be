"""This package's SRU beside the official PyPI sru 2.6.0, in one process, call by call: one layer, batch 32, the
2018 cell at sru 2.6's defaults and the 2017 cell (ours: cell="2017"; sru 2.6: v1=True, which freezes weight_c at
0), inference (eval, no_grad) and training (forward + backward), on the CPU (or --device cuda).

The two packages are both named `sru`; the official one is imported first and kept under `sru_official`, then
this checkout's. Run it from the repository root in an environment that has the official package (it compiles
its C++ at import) and numba::

    python -m venv /tmp/sru26 && /tmp/sru26/bin/pip install torch==2.13.0 sru==2.6.0 ninja numba==0.68.1
    /tmp/sru26/bin/python -m scripts.bench_sru26 [--sizes 32x256,128x512] [--repeats 15]

Prints a markdown table: median ms of each, and official / ours (above 1: ours is faster). Both run the same
shapes with the same thread count, alternating, so machine noise hits both alike.
"""
import argparse
import importlib
import statistics
import sys
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def import_both():
    """(the official sru package, this checkout's)."""
    saved = list(sys.path)
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT]
    official = importlib.import_module("sru")
    if getattr(official, "__version__", None) != "2.6.0":
        sys.exit(f"error: expected the official sru 2.6.0 installed in this environment, found {official.__file__}")
    for name in [n for n in sys.modules if n == "sru" or n.startswith("sru.")]:
        sys.modules["sru_official" + name[3:]] = sys.modules.pop(name)
    sys.path[:] = [str(ROOT)] + saved
    ours = importlib.import_module("sru")
    assert Path(ours.__file__).resolve().parent == ROOT / "sru", ours.__file__
    return official, ours


def layers(official, ours, d, device):
    """cell -> (official SRUCell, ours), the same parameters in each."""
    out = {}
    for cell, off_kw, our_kw in (("2018", {}, {}),
                                 ("2017", dict(v1=True, use_tanh=True, rescale=False),
                                  dict(cell="2017", use_tanh=True, rescale=False))):
        a = official.SRUCell(d, d, **off_kw).to(device)
        b = ours.SRUCell(d, d, **our_kw).to(device)
        if cell == "2018":
            b.load_state_dict(a.state_dict())
        out[cell] = (a, b)
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", default="32x256,128x512", help="LxD pairs")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    official, ours = import_both()
    import torch
    from sru.bench import call_ms
    warnings.filterwarnings("ignore", message="Running SRU on CPU with grad_enabled=True")
    device = torch.device(args.device)
    print(f"sru {official.__version__} (official) vs this checkout; torch {torch.__version__}, {device}, "
          f"{torch.get_num_threads()} threads, batch {args.batch}, one layer; median ms of {args.repeats}")
    print("| cell | mode | (L, d) | official sru 2.6 | ours | official / ours |\n|---|---|---|---|---|---|")
    for size in args.sizes.split(","):
        L, d = (int(v) for v in size.split("x"))
        x = torch.randn(L, args.batch, d, device=device, requires_grad=True)
        for cell, pair in layers(official, ours, d, device).items():
            for mode in ("inference", "training"):
                def call(layer):
                    if mode == "inference":
                        layer.eval()
                        with torch.no_grad():
                            layer(x)
                    else:
                        layer.train()
                        layer(x)[0].sum().backward()
                for layer in pair:  # warm-up: compiles numba's kernels, fills caches
                    call(layer)
                    call(layer)
                times = ([], [])
                for _ in range(args.repeats):
                    for i, layer in enumerate(pair):
                        times[i].append(call_ms(lambda: call(layer), device))
                a, b = (statistics.median(t) for t in times)
                print(f"| {cell} | {mode} | ({L}, {d}) | {a:.2f} | {b:.2f} | {a / b:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
