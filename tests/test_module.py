"""The nn.LSTM-style API: shapes, packed/batch-first input, dropout, errors, torch.compile."""
import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from helpers import kernel_device, draw_seed
from sru import SRU, SRUCell


def test_paper_readme_example_runs_as_written():
    # the authors' README, with the import changed and without .cuda() on a CPU machine
    import torch
    from torch.autograd import Variable
    from sru import SRU, SRUCell  # noqa: F401

    # input has length 20, batch size 32 and dimension 128
    x = Variable(torch.FloatTensor(20, 32, 128).normal_())
    input_size, hidden_size = 128, 128
    rnn = SRU(input_size, hidden_size,
              num_layers=2,          # number of stacking RNN layers
              dropout=0.0,           # dropout applied between RNN layers
              rnn_dropout=0.0,       # variational dropout applied on linear transformation
              use_tanh=1,            # use tanh?
              bidirectional=False    # bidirectional RNN ?
              )
    output, hidden = rnn(x)  # forward pass
    assert output.shape == (20, 32, 128)   # (length, batch size, hidden size * number of directions)
    assert hidden.shape == (2, 32, 128)    # (layers, batch size, hidden size * number of directions)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_shapes_and_parameter_layout(bidirectional):
    D = 2 if bidirectional else 1
    rnn = SRU(10, 6, num_layers=3, bidirectional=bidirectional, highway_bias=-3)
    out, c_n = rnn(torch.randn(5, 4, 10))
    assert out.shape == (5, 4, 6 * D) and c_n.shape == (3, 4, 6 * D)
    first, second = rnn.layers[0], rnn.layers[1]
    assert first.k == 4 and first.weight.shape == (10, D * 4 * 6)   # 4th (highway) projection
    assert second.k == 3 and second.weight.shape == (6 * D, D * 3 * 6)
    b = first.bias.view(D, 2, 6)
    assert torch.all(b[:, 0] == 0) and torch.all(b[:, 1] == -3)     # [b_f, b_r] per direction


def test_state_carries_across_chunks_like_bptt():
    """Running x[:3] then x[3:] from its c_n equals one run over x (truncated BPTT relies on it)."""
    torch.manual_seed(0)
    rnn = SRU(4, 3, num_layers=2)
    x = torch.randn(8, 2, 4)
    out, c_n = rnn(x)
    out1, c1 = rnn(x[:3])
    out2, c2 = rnn(x[3:], c0=c1)
    assert torch.allclose(torch.cat([out1, out2]), out, atol=1e-6) and torch.allclose(c2, c_n, atol=1e-6)


def test_packed_sequence_equals_padding_mask():
    torch.manual_seed(0)
    rnn = SRU(5, 4, num_layers=2, bidirectional=True)
    lengths = torch.tensor([3, 7, 1, 5])
    x = torch.randn(7, 4, 5)
    mask = torch.arange(7).unsqueeze(1) >= lengths.unsqueeze(0)
    out_mask, c_mask = rnn(x, mask_pad=mask)
    out_packed, c_packed = rnn(pack_padded_sequence(x, lengths, enforce_sorted=False))
    out_unpacked, got_lengths = pad_packed_sequence(out_packed)
    assert torch.equal(got_lengths, lengths)
    assert torch.allclose(out_unpacked, out_mask, atol=1e-6) and torch.allclose(c_packed, c_mask, atol=1e-6)
    # padding does not leak: each sequence alone gives the same result
    for b, n in enumerate(lengths.tolist()):
        out_b, c_b = rnn(x[:n, b:b + 1])
        assert torch.allclose(out_mask[:n, b:b + 1], out_b, atol=1e-6)
        assert torch.allclose(c_mask[:, b:b + 1], c_b, atol=1e-6)


def test_batch_first():
    torch.manual_seed(0)
    rnn = SRU(5, 4, batch_first=True)
    x = torch.randn(3, 8, 5)  # (batch, length, features)
    mask = torch.zeros(3, 8, dtype=torch.bool)
    mask[0, 6:] = True
    out, c_n = rnn(x, mask_pad=mask)
    rnn.batch_first = False
    out_t, c_t = rnn(x.transpose(0, 1), mask_pad=mask.t())
    assert out.shape == (3, 8, 4) and torch.allclose(out, out_t.transpose(0, 1)) and torch.allclose(c_n, c_t)


def _constant_input_cell(p):
    """f = 0 and r = 1: h_t = tanh(W x_t dropped), so a time-shared mask gives h constant in t."""
    cell = SRUCell(8, 8, rnn_dropout=p, bidirectional=False)
    with torch.no_grad():
        cell.weight.view(8, 3, 8)[:, 1:] = 0
        cell.bias.view(2, 8)[0] = -30.0   # f ~ 0
        cell.bias.view(2, 8)[1] = 30.0    # r ~ 1
    return cell


def test_rnn_dropout_mask_is_constant_over_time_and_differs_across_sequences():
    torch.manual_seed(0)
    cell = _constant_input_cell(0.5).train()
    x = torch.randn(1, 1, 8).expand(12, 6, 8).contiguous()  # same vector at every step and sequence
    h, _ = cell(x)
    assert torch.allclose(h, h[:1].expand_as(h), atol=1e-6), "mask changed within a sequence"
    assert not torch.allclose(h[0, 0], h[0, 1:]), "every sequence got the same mask"
    cell.eval()
    h_eval, _ = cell(x)
    assert not torch.allclose(h, h_eval)


@pytest.mark.parametrize("backend", ["reference", "cpu", "gpu"])
def test_dropout_is_inside_the_highway_so_a_shut_gate_makes_training_equal_eval(backend):
    """Highway bias -30 (r ~ 0, h ~ x): the authors' dropout multiplies only r * g(c), so training-mode
    output equals eval-mode output for any rate, in every layer. Dropout on h could not do that."""
    seed = draw_seed()
    device = kernel_device() if backend == "gpu" else "cpu"
    rnn = SRU(6, 6, num_layers=3, dropout=0.7, highway_bias=-30.0, backend=backend).to(device)
    x = torch.randn(9, 4, 6, device=device)
    train_out = rnn.train()(x)[0]
    eval_out = rnn.eval()(x)[0]
    torch.testing.assert_close(train_out, eval_out, rtol=1e-5, atol=1e-6, msg=lambda m: f"seed {seed}: {m}")
    assert [layer.dropout for layer in rnn.layers] == [0.7, 0.7, 0.0]   # the last layer gets none


@pytest.mark.parametrize("cell_kind", ["2017", "2018"])
@pytest.mark.parametrize("backend", ["reference", "cpu", "gpu"])
def test_dropout_mask_is_per_sequence_constant_over_time_and_scaled(backend, cell_kind):
    """Highway bias +30 (r ~ 1, h ~ g(c)); dropout does not touch c, so h_train / h_eval is the mask:
    0 or 1/(1-p), the same at every step of a sequence, different between sequences. The 2018 cell without a
    skip term (h = g(c) m r) shows its mask the same way."""
    seed = draw_seed()
    device = kernel_device() if backend == "gpu" else "cpu"
    # 32 units: two sequences draw equal masks with probability 2^-32 (with 8, 1 in 256 runs failed by chance)
    kw = dict(cell="2017", use_tanh=True) if cell_kind == "2017" else dict(has_skip_term=False)
    cell = SRUCell(8, 32, dropout=0.5, highway_bias=30.0, backend=backend, **kw).to(device)
    x = torch.randn(12, 6, 8, device=device)
    h_train, c_train = cell.train()(x)
    h_eval, c_eval = cell.eval()(x)
    assert torch.equal(c_train, c_eval), f"dropout changed the state (seed {seed})"
    ratio = h_train / h_eval
    assert set(ratio.round(decimals=3).unique().tolist()) <= {0.0, 2.0}, f"seed {seed}"
    assert torch.allclose(ratio, ratio[:1].expand_as(ratio), atol=1e-3), f"mask changed over time (seed {seed})"
    assert not torch.equal(ratio[0, 0], ratio[0, 1]), f"two sequences shared a mask (seed {seed})"


def test_eval_mode_is_deterministic_and_dropout_free():
    torch.manual_seed(0)
    rnn = SRU(6, 6, num_layers=3, dropout=0.5, rnn_dropout=0.5).eval()
    plain = SRU(6, 6, num_layers=3)
    plain.load_state_dict(rnn.state_dict())
    x = torch.randn(9, 3, 6)
    a, b, c = rnn(x)[0], rnn(x)[0], plain(x)[0]
    assert torch.equal(a, b) and torch.allclose(a, c)
    rnn.train()
    assert not torch.allclose(rnn(x)[0], a)


@pytest.mark.parametrize("call, error, words", [
    (lambda m: m(torch.randn(5, 3)), ValueError, "(length, batch, input_size)"),
    (lambda m: m(torch.randn(5, 3, 7)), ValueError, "input_size=4"),
    (lambda m: m(torch.randn(5, 3, 4), mask_pad=torch.zeros(3, 5, dtype=torch.bool)), ValueError, "(5, 3)"),
    (lambda m: m(torch.randn(5, 3, 4), c0=torch.zeros(3, 6)), ValueError, "(2, 3, 6)"),
    (lambda m: m(torch.randn(5, 3, 4, dtype=torch.float64)), TypeError, "float64"),
    (lambda m: m(torch.randn(5, 3, 4, device="meta")), ValueError, "meta"),
    (lambda m: m([[1.0]]), TypeError, "torch.Tensor"),
    (lambda m: m(torch.randn(5, 3, 4), mask_pad=torch.full((5, 3), 0.5)), TypeError, "mask_pad must be bool"),
    (lambda m: m(torch.ones(5, 3, 4, dtype=torch.int64)), TypeError, "input.to(torch.float32)"),
    (lambda m: SRU(4, 3, batch_first=True)(torch.randn(3, 5, 4), mask_pad=torch.zeros(5, 3, dtype=torch.bool)),
     ValueError, "with batch_first=True mask_pad must have shape (batch, length) = (3, 5)"),
])
def test_bad_input_is_named(call, error, words):
    with pytest.raises(error) as info:
        call(SRU(4, 6))
    assert words in str(info.value)


def test_bad_constructor_arguments():
    with pytest.raises(ValueError, match="num_layers"):
        SRU(4, 4, num_layers=0)
    with pytest.raises(ValueError, match="dropout"):
        SRU(4, 4, dropout=-0.1)
    with pytest.raises(ValueError, match="rnn_dropout"):
        SRU(4, 4, rnn_dropout=1.0)
    with pytest.raises(ValueError, match="backend"):
        SRU(4, 4, backend="cudnn")


def test_forcing_an_unavailable_backend_says_why(monkeypatch):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    import sru.triton_kernels  # noqa: F401  (import the kernels in interpreter mode first: triton
    # decides interpreted-or-compiled when it first meets a kernel, and later tests in this process need it)
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(RuntimeError, match="CUDA"):
        SRU(4, 4, backend="gpu")
    monkeypatch.setitem(__import__("sys").modules, "triton", None)  # no triton either: the missing GPU is said first
    with pytest.raises(RuntimeError, match="needs a CUDA device"):
        SRU(4, 4, backend="gpu")
    with pytest.raises(TypeError, match="float32"):
        SRU(4, 4, backend="cpu").double()(torch.randn(3, 2, 4, dtype=torch.float64))


@pytest.mark.parametrize("backend", ["cpu", "gpu"])
def test_torch_compile_traces_the_fused_op_without_graph_breaks(backend):
    torch._dynamo.reset()
    torch.manual_seed(0)
    device = "cpu" if backend == "cpu" else kernel_device()
    rnn = SRU(6, 5, num_layers=2, bidirectional=True, backend=backend).to(device)
    head = torch.nn.Linear(10, 3).to(device)

    def f(x):
        return head(rnn(x)[0]).sum()

    compiled = torch.compile(f, backend="aot_eager", fullgraph=True)
    x = torch.randn(7, 2, 6, device=device, requires_grad=True)
    want = f(x)
    (gx_want,) = torch.autograd.grad(want, x)
    got = compiled(x)
    (gx_got,) = torch.autograd.grad(got, x)
    assert torch.allclose(got, want, atol=1e-5) and torch.allclose(gx_got, gx_want, atol=1e-5)


def test_empty_batch_gives_empty_outputs_and_zero_length_a_clear_error():
    rnn = SRU(4, 4, num_layers=2, dropout=0.3, rnn_dropout=0.3)
    out, c_n = rnn(torch.randn(5, 0, 4))                 # like nn.LSTM: empty in, empty out
    assert out.shape == (5, 0, 4) and c_n.shape == (2, 0, 4)
    with pytest.raises(ValueError, match="length 0"):
        rnn(torch.randn(0, 3, 4))


@pytest.mark.parametrize("args, error, words", [
    (dict(weight_c=torch.zeros(7)), ValueError, "weight_c must have shape (10,)"),
    (dict(U=torch.randn(6, 2, 20)), ValueError, "k=4"),                  # x given with k=4: one highway too many
    (dict(hidden_size=4), ValueError, "hidden_size=4"),                  # out of bounds on a GPU
    (dict(bias=torch.zeros(7)), ValueError, "bias must have shape (10,)"),
    (dict(c0=torch.zeros(3, 5)), ValueError, "c0 must have shape (2, 5)"),
    (dict(drop=torch.ones(2, 4)), ValueError, "drop must have shape (2, 5)"),
    (dict(mask_pad=torch.zeros(2, 6, dtype=torch.bool)), ValueError, "mask_pad must have shape (6, 2)"),
    (dict(x=torch.zeros(6, 2, 5, device="meta")), ValueError, "meta"),
])
def test_recurrence_validates_its_arguments(args, error, words):
    from sru import recurrence
    good = dict(U=torch.randn(6, 2, 15), x=torch.randn(6, 2, 5), bias=torch.zeros(10), c0=torch.zeros(2, 5),
                mask_pad=None, hidden_size=5, bidirectional=False, use_tanh=True)
    with pytest.raises(error) as info:
        recurrence(**dict(good, **args))
    assert words in str(info.value)


@pytest.mark.parametrize("cell", ["2017", "2018"])
@pytest.mark.parametrize("backend", ["cpu", "gpu"])
@pytest.mark.parametrize("k, with_drop", [(3, True), (4, False)])
def test_custom_ops_pass_opcheck(backend, k, with_drop, cell):
    """torch.library.opcheck: schema, autograd registration, fake tensors, AOT dispatch."""
    from sru import ops
    if backend == "gpu" and kernel_device() == "cpu" and not ops.triton_interpreted():
        pytest.skip("no CUDA and the Triton interpreter is off")
    device = "cpu" if backend == "cpu" else kernel_device()
    L, B, D, d = 4, 3, 2, 5
    U = torch.randn(L, B, D * k * d, device=device, requires_grad=True)
    x = torch.randn(L, B, D * d, device=device, requires_grad=True) if k == 3 else None
    bias = torch.randn(D * 2 * d, device=device, requires_grad=True)
    c0 = torch.randn(B, D * d, device=device, requires_grad=True)
    mask = torch.zeros(L, B, dtype=torch.uint8, device=device)
    mask[3:, 1] = 1
    drop = (torch.rand(B, D * d, device=device) > 0.5).float() * 2 if with_drop else None
    weight_c = torch.randn(D * 2 * d, device=device, requires_grad=True) if cell == "2018" else None
    op = ops._cpu_op if backend == "cpu" else ops._gpu_op
    torch.library.opcheck(op, (*ops.Inputs(U, x, weight_c, bias, c0, mask, drop), d, True, True, cell == "2018"))


def test_cpu_kernels_follow_torch_thread_count():
    import numba
    rnn = SRU(8, 8, num_layers=1, backend="cpu")
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        rnn(torch.randn(4, 2, 8))
        assert numba.get_num_threads() == 1 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    rnn(torch.randn(4, 2, 8))
    assert numba.get_num_threads() == min(before, numba.config.NUMBA_NUM_THREADS)
    assert numba.threading_layer() == "workqueue" or "NUMBA_THREADING_LAYER" in __import__("os").environ


@pytest.mark.parametrize("input_size", [6, 5])  # k = 3 (the highway adds x) and k = 4 (a projection)
@pytest.mark.parametrize("frozen", [False, True])
def test_the_fused_layer_equals_the_reference_with_frozen_weights_and_batch_first(input_size, frozen):
    """The fused SRU gives the reference's outputs and gradients from a non-contiguous (batch-first)
    input, also with frozen weights and an input that needs no gradient (the GEMM's backward then skips
    both products; the biases train)."""
    seed = draw_seed()
    torch.manual_seed(seed)
    ref = SRU(input_size, 3, num_layers=2, bidirectional=True, batch_first=True, backend="reference")
    fused = SRU(input_size, 3, num_layers=2, bidirectional=True, batch_first=True, backend="cpu")
    fused.load_state_dict(ref.state_dict())
    x = torch.randn(4, 7, input_size)
    mask = torch.zeros(4, 7, dtype=torch.bool)
    mask[1, 5:] = True
    results = []
    for model in (ref, fused):
        for layer in model.layers:
            layer.weight.requires_grad_(not frozen)
        xi = x.clone().requires_grad_(not frozen)
        out, c_n = model(xi, mask_pad=mask)
        leaves = [t for t in (xi, *model.parameters()) if t.requires_grad]
        results.append([out, c_n, *torch.autograd.grad(out.pow(2).sum() + c_n.sum(), leaves)])
    for got, want in zip(results[1], results[0]):
        assert torch.allclose(got, want, atol=1e-5, rtol=1e-5), f"seed {seed}"



@pytest.mark.parametrize("cell", ["2017", "2018"])
def test_torch_export_with_dynamic_length_and_batch_matches_eager(cell):
    """torch.export traces the fused op (its fake implementation gives the shapes) with a dynamic length and
    batch; the exported program equals eager at other shapes, mask and c0 included."""
    torch.manual_seed(0)
    kw = dict(cell="2017", use_tanh=True) if cell == "2017" else dict(layer_norm=True, rescale=True)
    rnn = SRU(5, 4, num_layers=2, bidirectional=True, backend="cpu", **kw).eval()

    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = rnn

        def forward(self, x, c0, mask):
            return self.rnn(x, c0, mask_pad=mask)

    length, batch = torch.export.Dim("length", min=2, max=64), torch.export.Dim("batch", min=2, max=64)
    args = (torch.randn(6, 3, 5), torch.randn(2, 3, 8), torch.zeros(6, 3, dtype=torch.bool))
    exported = torch.export.export(Model(), args, dynamic_shapes=({0: length, 1: batch}, {1: batch},
                                                                  {0: length, 1: batch}))
    for L, B in ((9, 2), (3, 5)):
        x, c0 = torch.randn(L, B, 5), torch.randn(2, B, 8)
        mask = torch.zeros(L, B, dtype=torch.bool)
        mask[L - 1:, 0] = True
        want = Model()(x, c0, mask)
        got = exported.module()(x, c0, mask)
        for a, b in zip(got, want):
            torch.testing.assert_close(a, b)


def test_readme_api_example_runs_as_written():
    """The README's first Python block (both cells), executed as printed."""
    import re
    from helpers import ROOT
    block = re.search(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S).group(1)
    scope = {}
    exec(compile(block, "README.md", "exec"), scope)
    assert scope["output"].shape == (20, 32, 128) and scope["c_n"].shape == (2, 32, 128)
    assert scope["paper"].rnn_lst[0].cell == "2017" and scope["rnn"].rnn_lst[0].weight_c is not None


def test_the_package_is_the_library_alone(tmp_path):
    """`pip install .` builds the `sru` library alone (no tasks, scripts or tests), its page is the library's
    (docs/pypi.md), its version is sru.__version__, and it needs torch, numpy and numba only (triton an extra)."""
    import subprocess
    import sys
    import zipfile
    import sru
    from helpers import ROOT
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                           str(tmp_path), str(ROOT)], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (wheel,) = tmp_path.glob("*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")} == {"sru"}, names
    meta = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("METADATA"))).decode()
    assert f"Version: {sru.__version__}" in meta
    assert "drop-in for PyPI `sru` 2.6.0" in meta and "Table 1" not in meta   # the library's page, not the README
    requires = sorted(line.split(":", 1)[1].split(">")[0].split("=")[0].strip() for line in meta.splitlines()
                      if line.startswith("Requires-Dist:") and "extra ==" not in line)
    assert requires == ["numba", "numpy", "torch"], requires


def test_importing_sru_changes_no_process_wide_setting():
    """`import sru` loads neither numba nor triton and leaves torch's threads and numerics as they were (the first
    CPU call sets numba's threading layer and thread count, as docs/pypi.md says)."""
    import subprocess
    import sys
    code = ("import sys, torch; before = (torch.get_num_threads(), torch.get_default_dtype(), "
            "torch.backends.mkldnn.matmul.fp32_precision, torch.are_deterministic_algorithms_enabled()); "
            "import sru; after = (torch.get_num_threads(), torch.get_default_dtype(), "
            "torch.backends.mkldnn.matmul.fp32_precision, torch.are_deterministic_algorithms_enabled()); "
            "assert before == after, (before, after); "
            "assert 'numba' not in sys.modules and 'triton' not in sys.modules, 'imported at import time'")
    from helpers import ROOT
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]


@pytest.mark.parametrize("how", ["script", "trace"])
def test_torchscript_says_to_use_torch_export(how):
    rnn = SRU(4, 4, num_layers=2)
    with pytest.raises(RuntimeError, match="torch.export.export"):
        if how == "script":
            torch.jit.script(rnn)
        else:
            torch.jit.trace(rnn, (torch.randn(3, 2, 4),))


@pytest.mark.parametrize("chunk", [1, 3, None])
@pytest.mark.parametrize("cell", ["2017", "2018"])
def test_streaming_chunk_by_chunk_equals_one_pass(chunk, cell):
    """A unidirectional SRU fed a sequence in chunks, each chunk's c_n the next chunk's c0, gives one pass's
    outputs and final state, with padding too (a shorter sequence's state stops at its last real step)."""
    torch.manual_seed(0)
    kw = dict(cell="2017", use_tanh=True, rescale=False) if cell == "2017" else dict(layer_norm=True, rescale=True)
    rnn = SRU(5, 6, num_layers=2, **kw).eval()
    L, B = 10, 3
    x = torch.randn(L, B, 5)
    mask = torch.zeros(L, B, dtype=torch.bool)
    mask[7:, 1] = True                                   # sequence 1 ends after 7 steps
    with torch.no_grad():
        whole, c_whole = rnn(x, mask_pad=mask)
        size = chunk or L
        outs, c = [], None
        for start in range(0, L, size):
            out, c = rnn(x[start:start + size], c0=c, mask_pad=mask[start:start + size])
            outs.append(out)
    torch.testing.assert_close(torch.cat(outs), whole)
    torch.testing.assert_close(c, c_whole)
