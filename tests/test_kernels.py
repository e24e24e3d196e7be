"""Every fused kernel held to the reference: outputs, c_n and all gradients, fresh random inputs."""
import pytest
import torch

from helpers import assert_close_scaled, draw_seed, kernel_device
from sru import SRU, recurrence

# (L, B, d, bidirectional, k, use_tanh, mask, c0): the awkward cases
CASES = [
    (1, 1, 1, False, 3, True, False, False),     # length 1, batch 1, one unit
    (1, 3, 5, True, 4, True, True, True),
    (7, 1, 13, False, 4, False, False, True),    # batch 1, odd size, identity
    (9, 4, 33, True, 3, True, True, True),       # bidirectional, padding, c0
    (12, 3, 130, False, 3, True, True, False),   # d beyond one CPU chunk / Triton block
    (6, 5, 17, True, 4, False, True, False),
    (20, 2, 257, True, 3, True, False, True),
]
MULTI_BLOCK = (3, 2, 257, True, 3, True, True, True)  # d > 256: two Triton blocks, kept small for the interpreter
# the cells every kernel test runs: the paper's (2017), sru 2.x's (2018: weight_c, dropout on the gate), and
# sru 2.x's without a skip term (has_skip_term=False: k = 3 and no x)
CELLS = ["2017", "2018", "2018-noskip"]


def make_inputs(L, B, d, bidirectional, k, with_mask, with_c0, dtype, device, seed, with_drop=False, cell="2017"):
    """(U, x, weight_c, bias, c0, mask, drop), and drop_gate, for a case and a cell."""
    g = torch.Generator().manual_seed(seed)
    D = 2 if bidirectional else 1

    def rnd(*shape):
        return torch.randn(*shape, generator=g).to(device=device, dtype=dtype).requires_grad_()

    U, x = rnd(L, B, D * k * d), (rnd(L, B, D * d) if k == 3 and cell != "2018-noskip" else None)
    weight_c = rnd(D * 2 * d) if cell != "2017" else None
    bias = rnd(D * 2 * d)
    c0 = rnd(B, D * d) if with_c0 else torch.zeros(B, D * d, device=device, dtype=dtype, requires_grad=True)
    mask = None
    if with_mask:  # random lengths >= 1, right padding
        lengths = torch.randint(1, L + 1, (B,), generator=g)
        mask = (torch.arange(L).unsqueeze(1) >= lengths.unsqueeze(0)).to(device)
    drop = None
    if with_drop:  # the authors' dropout mask on g(c): 0 or 1/(1-p) per sequence and unit
        drop = (torch.rand(B, D * d, generator=g) > 0.3).to(device=device, dtype=dtype) / 0.7
    return U, x, weight_c, bias, c0, mask, drop, cell != "2017"


def run_and_grad(backend, inputs, d, bidirectional, use_tanh, seed, ref_dtype=None, use="both"):
    """Outputs and the gradients of every input; `use` = which outputs the loss reads ("h", "c_n" or
    "both"): with one of them unused its incoming gradient is None (a separate branch of the op)."""
    U, x, weight_c, bias, c0, mask, drop, drop_gate = inputs
    names = ["U", "x", "weight_c", "bias", "c0"]
    tensors = dict(zip(names, (U, x, weight_c, bias, c0)))
    if ref_dtype is not None:  # run the reference on upcast copies
        tensors = {n: None if t is None else t.detach().to(ref_dtype).requires_grad_() for n, t in tensors.items()}
        drop = None if drop is None else drop.to(ref_dtype)
    leaves = [t for t in tensors.values() if t is not None]
    U, x, weight_c, bias, c0 = tensors.values()
    h, c_n = recurrence(U, x, bias, c0, mask, d, bidirectional, use_tanh, backend=backend, drop=drop,
                        weight_c=weight_c, drop_gate=drop_gate)
    g = torch.Generator().manual_seed(seed + 1)
    gh = torch.randn(h.shape, generator=g).to(h.device, h.dtype)
    gc = torch.randn(c_n.shape, generator=g).to(h.device, h.dtype)
    loss = {"h": (h * gh).float().sum(), "c_n": (c_n * gc).float().sum()}
    grads = torch.autograd.grad(loss["h"] + loss["c_n"] if use == "both" else loss[use], leaves, allow_unused=True)
    grads = [torch.zeros_like(t) if gr is None else gr for t, gr in zip(leaves, grads)]
    names = ["h", "c_n"] + [f"grad_{n}" for n, t in tensors.items() if t is not None]
    return dict(zip(names, [h, c_n, *grads]))


def check_backend(backend, device, dtype, rel, case, seed, with_drop=False, use="both", cell="2017"):
    L, B, d, bidirectional, k, use_tanh, with_mask, with_c0 = case
    inputs = make_inputs(L, B, d, bidirectional, k, with_mask, with_c0, dtype, device, seed, with_drop, cell)
    got = run_and_grad(backend, inputs, d, bidirectional, use_tanh, seed, use=use)
    want = run_and_grad("reference", inputs, d, bidirectional, use_tanh, seed, ref_dtype=torch.float64, use=use)
    assert got.keys() == want.keys()
    for name in got:
        assert got[name].dtype == dtype, f"{name} (seed {seed})"
        assert_close_scaled(got[name], want[name], rel,
                            f"{backend}/{dtype}/{case}/cell={cell}/drop={with_drop}/use={use}/{name} (seed {seed})")


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("threads", ["parallel", "serial"])
@pytest.mark.parametrize("case", CASES)
def test_cpu_kernel_matches_reference(case, threads, cell, monkeypatch):
    """Both compilations of the CPU kernels: the threaded one and the serial one small problems get."""
    from sru import cpu_kernels
    monkeypatch.setattr(cpu_kernels, "runs_serial", lambda states, threads_: threads == "serial")
    seed = draw_seed()  # fresh inputs each run; the seed is in the failure message
    check_backend("cpu", "cpu", torch.float32, 1e-5, case, seed, cell=cell)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("threads", ["parallel", "serial"])
@pytest.mark.parametrize("case", CASES)
def test_cpu_kernel_without_gradients_matches_reference(case, threads, cell, monkeypatch):
    """Under no_grad (evaluation) the CPU forward keeps no per-step state and builds no autograd node:
    the same h and c_n, with dropout, padding and both directions."""
    from sru import cpu_kernels
    monkeypatch.setattr(cpu_kernels, "runs_serial", lambda states, threads_: threads == "serial")
    seed = draw_seed()
    L, B, d, bidirectional, k, use_tanh, with_mask, with_c0 = case
    inputs = make_inputs(L, B, d, bidirectional, k, with_mask, with_c0, torch.float32, "cpu", seed, with_drop=True,
                         cell=cell)
    U, x, weight_c, bias, c0, mask, drop, drop_gate = inputs
    with torch.no_grad():
        h, c_n = recurrence(U, x, bias, c0, mask, d, bidirectional, use_tanh, backend="cpu", drop=drop,
                            weight_c=weight_c, drop_gate=drop_gate)
    assert h.grad_fn is None and c_n.grad_fn is None
    want = run_and_grad("reference", inputs, d, bidirectional, use_tanh, seed, ref_dtype=torch.float64)
    assert_close_scaled(h, want["h"], 1e-5, f"no_grad h {case} cell={cell} (seed {seed})")
    assert_close_scaled(c_n, want["c_n"], 1e-5, f"no_grad c_n {case} cell={cell} (seed {seed})")


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("blocks", [(2, 1), (1, 3), (3, 2), (5, 4)])
@pytest.mark.parametrize("case", [CASES[1], CASES[3], CASES[4], CASES[6]])
def test_cpu_kernel_work_partitions(case, blocks, cell, monkeypatch):
    """The threaded kernels under other splits into (sequence block, direction, unit block) items than
    this machine's: more blocks than sequences or units (empty items), unit blocks cut mid-row."""
    from sru import cpu_kernels
    monkeypatch.setattr(cpu_kernels, "runs_serial", lambda states, threads: False)
    monkeypatch.setattr(cpu_kernels, "partition", lambda B, D, d, threads: blocks)
    seed = draw_seed()
    check_backend("cpu", "cpu", torch.float32, 1e-5, case, seed, with_drop=True, cell=cell)


@pytest.mark.parametrize(("B", "D", "d", "threads"), [(32, 1, 256, 2), (1, 1, 910, 2), (1, 2, 910, 2), (3, 2, 8, 16),
                                                      (64, 2, 1024, 8), (5, 1, 40, 1)])
def test_cpu_partition_gives_each_thread_work(B, D, d, threads):
    from sru.cpu_kernels import partition
    n_bblocks, n_jblocks = partition(B, D, d, threads)
    assert 1 <= n_bblocks <= B and 1 <= n_jblocks and (n_jblocks == 1 or d // n_jblocks >= 64)
    items = n_bblocks * D * n_jblocks
    assert items == 1 if threads == 1 and D == 1 else items <= max(threads, D), (n_bblocks, n_jblocks)
    if threads > 1 and (B * D >= threads or d >= 64 * threads):
        assert items >= min(threads, B * D * max(1, d // 64)), (n_bblocks, n_jblocks)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("case", CASES[:5] + [MULTI_BLOCK])
def test_triton_kernel_matches_reference_fp32(case, cell):
    seed = draw_seed()
    check_backend("gpu", kernel_device(), torch.float32, 1e-5, case, seed, cell=cell)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("use", ["both", "h", "c_n"])
@pytest.mark.parametrize("case", [CASES[1], CASES[3], CASES[4], MULTI_BLOCK])
@pytest.mark.parametrize("backend", ["cpu", "gpu"])
def test_kernels_match_reference_with_dropout_and_one_output_unused(backend, case, use, cell):
    """The authors' dropout mask on g(c); and only h or only c_n read (the op's backward then gets a
    None gradient for the other, as in classification, which reads h only)."""
    seed = draw_seed()
    device = "cpu" if backend == "cpu" else kernel_device()
    check_backend(backend, device, torch.float32, 1e-5, case, seed, with_drop=True, use=use, cell=cell)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("case", [CASES[1], CASES[3]])
def test_triton_kernel_half_precision(case, dtype, cell):
    # inputs and outputs are rounded to 8 (bf16) / 11 (fp16) mantissa bits; state stays fp32
    seed = draw_seed()
    check_backend("gpu", kernel_device(), dtype, 3e-2 if dtype == torch.bfloat16 else 4e-3, case, seed, cell=cell)


@pytest.mark.parametrize("backend", ["cpu", "gpu"])
def test_multilayer_with_dropout_matches_reference(backend):
    """A whole 3-layer bidirectional SRU with both dropouts: same seed, same masks, same numbers."""
    device = "cpu" if backend == "cpu" else kernel_device()
    torch.manual_seed(0)
    ref = SRU(6, 8, num_layers=3, dropout=0.3, rnn_dropout=0.2, bidirectional=True,
              highway_bias=-1.0, backend="reference").to(device)
    fused = SRU(6, 8, num_layers=3, dropout=0.3, rnn_dropout=0.2, bidirectional=True,
                highway_bias=-1.0, backend=backend).to(device)
    fused.load_state_dict(ref.state_dict())
    x = torch.randn(10, 4, 6, device=device)
    c0 = torch.randn(3, 4, 16, device=device)
    mask = torch.zeros(10, 4, dtype=torch.bool, device=device)
    mask[7:, 2] = True
    results = []
    for model in (ref, fused):
        xi, ci = x.clone().requires_grad_(), c0.clone().requires_grad_()
        torch.manual_seed(123)
        out, c_n = model(xi, ci, mask_pad=mask)
        loss = out.pow(2).sum() + c_n.sum()
        grads = torch.autograd.grad(loss, [xi, ci, *model.parameters()])
        results.append([out, c_n, *grads])
    for a, b in zip(results[1], results[0]):
        assert_close_scaled(a, b, 1e-5, backend)


def test_threaded_and_serial_cpu_kernels_are_cached_apart(tmp_path):
    """numba's disk cache keys a function by name and bytecode, not by `parallel`: when the serial
    kernels were compiled from the threaded ones' own function, the two shared one cache entry and
    whichever compiled first ran in both places (the threaded forward ran serially). Compiled into a
    fresh cache, serial first: four entries, and only the threaded ones' machine code has parallel loops."""
    import os
    import subprocess
    import sys
    code = """if True:
        import torch
        from sru import cpu_kernels, ops
        U, x, bias, c0 = torch.randn(2, 1, 24), torch.randn(2, 1, 8), torch.zeros(16), torch.zeros(1, 8)
        for serial in (True, False):  # serial first: the order that used to leave the threaded forward serial
            cpu_kernels.runs_serial = lambda states, threads: serial
            inp, opt = ops.Inputs(U, x, None, bias, c0, None, None), ops.Options(8, False, True, False)
            h, c_all, _ = ops._cpu_forward(inp, opt)
            ops._cpu_backward(inp, opt, c_all, torch.ones_like(h), c0)
    """
    subprocess.run([sys.executable, "-c", code], env=dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path)), check=True,
                   timeout=600)
    entries = {p.name.split("-")[0].removeprefix("cpu_kernels."): p for p in tmp_path.rglob("cpu_kernels.*.nbc")}
    assert sorted(entries) == ["backward", "backward_serial", "forward", "forward_serial"], sorted(entries)
    for name, path in entries.items():
        assert (b"parfor" in path.read_bytes()) == (not name.endswith("_serial")), f"{name}: {path}"


def test_overhead_breakdown_times_every_part(capsys):
    """python -m sru.overhead runs each part of a layer call (the empty autograd.Function included) and
    prints one table row per part."""
    from sru import overhead
    overhead.main(["--repeats", "2"])
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ") and "median" not in line]
    assert len(rows) == len(overhead.parts(1, 1, 8))
    assert any("empty autograd.Function" in r for r in rows)
    assert all(float(r.rsplit("|", 2)[1]) > 0 for r in rows)


def test_ab_layer_times_two_commits_side_by_side():
    """scripts/ab_layer.py imports a commit's sru beside the working tree's and prints one row per size and
    mode, with positive times (here HEAD against itself, one tiny size; in a subprocess, since it registers
    a second set of torch.library ops)."""
    import pathlib
    import subprocess
    import sys
    root = pathlib.Path(__file__).resolve().parents[1]
    if subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True).returncode != 0:
        pytest.skip("not a git checkout")
    out = subprocess.run([sys.executable, "-m", "scripts.ab_layer", "--old", "HEAD", "--sizes", "2x1x4", "--seconds",
                          "0.01"], cwd=root, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    rows = [line for line in out.stdout.splitlines() if line.startswith("| (2, 1, 4)")]
    assert [r.split("|")[2].strip() for r in rows] == ["fwd", "fwd+bwd"]
    assert all(float(cell) > 0 for r in rows for cell in r.split("|")[3:6])


def test_numba_cache_goes_where_it_can_be_written():
    """NUMBA_CACHE_DIR when set (numba's own locator), else the first writable of a per-user cache directory
    and the temporary directory, else no disk cache at all (the kernels then compile in every process); never
    beside the package."""
    from sru.cpu_kernels import cache_dir
    ok = {"/home/u/.cache/sru/numba", "/tmp/sru-numba-0"}
    writable = ok.__contains__
    assert cache_dir({}, writable, ["/home/u/.cache/sru/numba", "/tmp/sru-numba-0"]) == "/home/u/.cache/sru/numba"
    assert cache_dir({"NUMBA_CACHE_DIR": "/x"}, writable, ["/home/u/.cache/sru/numba"]) is None
    assert cache_dir({}, writable, ["/ro/home", "/tmp/sru-numba-0"]) == "/tmp/sru-numba-0"
    assert cache_dir({}, writable, ["/ro/home", "/ro/tmp"]) is False


def test_compiled_kernels_are_cached_outside_the_package(tmp_path):
    """The kernels' disk cache lives in the user's cache directory, not in sru/__pycache__: a directory there
    outlived `pip uninstall` (pip removes only the files it installed) and then imported as an empty namespace
    package. Other modules' numba caches stay where numba puts them (only this file's kernels are moved)."""
    import os
    import subprocess
    import sys
    code = """if True:
        import json, os, numba, torch
        from numba.core import caching
        import sru
        from sru import cpu_kernels
        y, _ = sru.SRU(4, 4)(torch.randn(2, 1, 4, requires_grad=True))
        y.sum().backward()
        here = os.path.dirname(os.path.abspath(cpu_kernels.__file__))
        kernels = {n: getattr(cpu_kernels, n)._cache._cache_path for n in ("forward", "backward")}
        import other
        print(json.dumps(dict(kernels=kernels, here=here, config=numba.config.CACHE_DIR,
                              other=type(caching.FunctionCache(other.plus_one)._impl._locator).__name__)))
    """
    (tmp_path / "other.py").write_text("def plus_one(v):\n    return v + 1\n")
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), *filter(None, [env.get("PYTHONPATH")])])
    out = subprocess.run([sys.executable, "-c", code], env=dict(env, XDG_CACHE_HOME=str(tmp_path)), check=True,
                         capture_output=True, text=True, timeout=600)
    import json
    seen = json.loads(out.stdout.splitlines()[-1])
    for name, path in seen["kernels"].items():
        assert path.startswith(str(tmp_path / "sru" / "numba")), (name, path)
        assert list(__import__("pathlib").Path(path).glob("cpu_kernels.*.nbi")), path
    assert not seen["config"]  # numba.config.CACHE_DIR untouched: no other module's cache moves
    assert seen["other"].endswith("InTreeCacheLocator"), seen  # numba's default for a writable module