"""Deployment: any model with an SRU exports to ONNX with torch.onnx.export(..., dynamo=True) and no extra argument
(while an export traces it, the recurrence is the spec written as a torch scan, which becomes an ONNX Scan), and
onnxruntime gives eager PyTorch's outputs at other lengths and batches, length 1 and batch 1 included; streaming
chunk by chunk in onnxruntime equals one pass."""
import numpy as np
import pytest
import torch

from sru import SRU, SRUCell

ort = pytest.importorskip("onnxruntime", reason="the export extra (onnx, onnxscript, onnxruntime) is not installed")
pytest.importorskip("onnxscript", reason="the export extra (onnx, onnxscript, onnxruntime) is not installed")

CONFIGS = {  # name: (class, keywords, input_size)
    "2018-layernorm-bi": (SRU, dict(hidden_size=4, num_layers=2, bidirectional=True, layer_norm=True), 6),
    "2018-k3-rescale-noskip": (SRU, dict(hidden_size=5, num_layers=2, rescale=True, has_skip_term=False), 5),
    "2018-projection-postnorm": (SRU, dict(hidden_size=4, num_layers=2, projection_size=2, layer_norm=True,
                                           normalize_after=True), 7),
    "2017-paper-bi-k4": (SRU, dict(hidden_size=3, num_layers=2, bidirectional=True, cell="2017", use_tanh=True,
                                   rescale=False), 5),
    "cell-2018": (SRUCell, dict(hidden_size=4, rescale=True), 4),
}


class Wrapped(torch.nn.Module):
    """The SRU with c0 and mask_pad as model inputs."""

    def __init__(self, rnn):
        super().__init__()
        self.rnn = rnn

    def forward(self, x, c0, mask):
        return self.rnn(x, c0, mask_pad=mask)


def export(model, example, path):
    L, B = torch.export.Dim("length", min=1, max=4096), torch.export.Dim("batch", min=1, max=1024)
    c_dims = {1: B} if example[1].dim() == 3 else {0: B}
    torch.onnx.export(model, example, path, dynamo=True, dynamic_shapes=({0: L, 1: B}, c_dims, {0: L, 1: B}))
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def inputs(cls, rnn, n_in, L, B, g):
    x = torch.randn(L, B, n_in, generator=g)
    shape = (rnn.num_layers, B, rnn.output_size) if cls is SRU else (B, rnn.output_size)
    c0 = torch.randn(*shape, generator=g)
    mask = torch.zeros(L, B, dtype=torch.bool)
    if L > 2 and B > 1:
        mask[L - 2:, 1] = True      # sequence 1 is 2 steps shorter
    return x, c0, mask


def run(runtime, *tensors):
    return runtime.run(None, {i.name: t.numpy() for i, t in zip(runtime.get_inputs(), tensors)})


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_onnx_export_runs_in_onnxruntime_like_eager(name, tmp_path):
    cls, kw, n_in = CONFIGS[name]
    torch.manual_seed(0)
    rnn = cls(n_in, **kw).eval()
    with torch.no_grad():  # weight_c, biases and layer norms off their init, so that each one counts
        for p in rnn.parameters():
            p.add_(0.3 * torch.randn_like(p))
    model = Wrapped(rnn).eval()
    g = torch.Generator().manual_seed(1)
    runtime = export(model, inputs(cls, rnn, n_in, 6, 3, g), tmp_path / "m.onnx")
    for L, B in ((1, 1), (11, 2), (3, 5), (1, 4), (7, 1)):
        tensors = inputs(cls, rnn, n_in, L, B, g)
        with torch.no_grad():
            want = model(*tensors)
        got = run(runtime, *tensors)
        for a, b in zip(got, want):
            np.testing.assert_allclose(a, b.numpy(), rtol=0, atol=1e-5, err_msg=f"{name} at length {L}, batch {B}")


def test_streaming_in_onnxruntime_chunk_by_chunk_equals_one_pass(tmp_path):
    """A unidirectional SRU exported once; onnxruntime fed 1, 3 or all steps at a time, each chunk's c_n the next
    chunk's c0 (the state as a model input and output), gives one pass's outputs, with a padded sequence too."""
    torch.manual_seed(0)
    rnn = SRU(5, 6, num_layers=2, layer_norm=True).eval()
    g = torch.Generator().manual_seed(2)
    runtime = export(Wrapped(rnn).eval(), inputs(SRU, rnn, 5, 4, 2, g), tmp_path / "s.onnx")
    x, c0, mask = inputs(SRU, rnn, 5, 10, 3, g)
    with torch.no_grad():
        whole, c_whole = rnn(x, c0, mask_pad=mask)
    for chunk in (1, 3, 10):
        outs, c = [], c0
        for start in range(0, 10, chunk):
            out, c_np = run(runtime, x[start:start + chunk], c, mask[start:start + chunk])
            outs.append(out)
            c = torch.from_numpy(c_np)
        np.testing.assert_allclose(np.concatenate(outs), whole.numpy(), atol=1e-5, err_msg=f"chunk {chunk}")
        np.testing.assert_allclose(c.numpy(), c_whole.numpy(), atol=1e-5, err_msg=f"chunk {chunk}")


@pytest.mark.parametrize("masked", [True, False])
@pytest.mark.parametrize("L", [1, 4])
@pytest.mark.parametrize("cell", ["2017", "2018"])
def test_the_scan_form_of_the_spec_equals_the_spec(L, cell, masked):
    """reference_scan (what an ONNX export traces) against reference, both directions, with and without a padding
    mask, dropout mask, c0; at length 1 without the scan (a fixed-length step)."""
    from sru.reference import Inputs, Options, reference, reference_scan
    g = torch.Generator().manual_seed(7)
    B, D, d, k = 3, 2, 5, 3
    mask = torch.zeros(L, B, dtype=torch.bool)
    mask[L // 2:, 1] = True
    mask = mask if masked else None
    inp = Inputs(torch.randn(L, B, D * k * d, generator=g), torch.randn(L, B, D * d, generator=g),
                 torch.randn(D * 2 * d, generator=g) if cell == "2018" else None, torch.randn(D * 2 * d, generator=g),
                 torch.randn(B, D * d, generator=g), mask, torch.rand(B, D * d, generator=g))
    opt = Options(d, True, cell == "2017", cell == "2018")
    for got, want in zip(reference_scan(inp, opt), reference(inp, opt)):
        torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_a_dynamic_length_export_is_not_specialised_by_the_cpu_gemm_route(tmp_path):
    """At width 128 the oneDNN route's size threshold (sru/gemm.py) falls inside the length range: testing it on the
    symbolic length added a guard and the export failed; under an export the route is not consulted at all."""
    cell = SRUCell(128, 128).eval()
    length = torch.export.Dim("length", min=2, max=4096)
    torch.onnx.export(cell, (torch.randn(10, 1, 128),), tmp_path / "c.onnx", dynamo=True,
                      dynamic_shapes=({0: length},))
    runtime = ort.InferenceSession(str(tmp_path / "c.onnx"), providers=["CPUExecutionProvider"])
    x = torch.randn(300, 1, 128)  # past the threshold: the eager call takes the oneDNN route
    with torch.no_grad():
        want = cell(x)
    for a, b in zip(run(runtime, x), want):
        np.testing.assert_allclose(a, b.numpy(), rtol=0, atol=1e-4)


def test_a_one_step_model_exports_without_a_scan_and_streams_in_onnxruntime(tmp_path):
    """SRUCell on a (batch, input) step (sru 2.6's one-step input), exported at that fixed length: the recurrence is
    plain ONNX ops, no Scan (its per-call setup is most of a small step's cost in onnxruntime), and feeding its c
    back frame by frame gives the whole sequence's outputs."""
    import onnx
    torch.manual_seed(0)
    cell = SRUCell(5, 4, rescale=True).eval()

    class Step(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.cell = cell

        def forward(self, x, c):
            return self.cell(x, c)

    B = torch.export.Dim("batch", min=1, max=64)
    path = tmp_path / "step.onnx"
    torch.onnx.export(Step().eval(), (torch.randn(2, 5), torch.zeros(2, 4)), path, dynamo=True,
                      dynamic_shapes=({0: B}, {0: B}))
    assert "Scan" not in {node.op_type for node in onnx.load(str(path)).graph.node}
    runtime = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x, c = torch.randn(6, 3, 5), torch.randn(3, 4)
    with torch.no_grad():
        want_h, want_c = cell(x, c)
    for t in range(6):
        h_t, c = (torch.from_numpy(a) for a in run(runtime, x[t], c))
        assert h_t.shape == (1, 3, 4)  # sru 2.6's one-step output keeps the length axis (docs/fidelity.md)
        np.testing.assert_allclose(h_t[0].numpy(), want_h[t].numpy(), rtol=0, atol=1e-5, err_msg=f"step {t}")
    np.testing.assert_allclose(c.numpy(), want_c.numpy(), rtol=0, atol=1e-5)


def test_float16_export_runs_in_onnxruntime_within_half_precision(tmp_path):
    """A float16 model exports and runs in onnxruntime's CPU provider (bfloat16 is what it cannot run, below): its
    outputs agree with the same float16 weights and inputs computed in float32, to float16's precision."""
    torch.manual_seed(0)
    rnn = SRU(6, 4, num_layers=2, bidirectional=True, layer_norm=True).eval()
    model = Wrapped(rnn.half()).eval()
    g = torch.Generator().manual_seed(1)
    half = lambda tensors: tuple(t.half() if t.is_floating_point() else t for t in tensors)
    runtime = export(model, half(inputs(SRU, rnn, 6, 6, 3, g)), tmp_path / "h.onnx")
    wide = Wrapped(SRU(6, 4, num_layers=2, bidirectional=True, layer_norm=True)).eval()
    wide.load_state_dict({k: v.float() for k, v in model.state_dict().items()})
    for L, B in ((1, 1), (9, 2)):
        tensors = half(inputs(SRU, rnn, 6, L, B, g))
        got = run(runtime, *tensors)
        with torch.no_grad():
            want = wide(*(t.float() if t.is_floating_point() else t for t in tensors))
        for a, b in zip(got, want):
            assert a.dtype == np.float16
            np.testing.assert_allclose(a.astype(np.float32), b.numpy(), rtol=0, atol=1e-2, err_msg=f"length {L}, batch {B}")


def test_exporting_training_mode_dropout_or_bfloat16_says_what_to_do(tmp_path):
    rnn = SRU(4, 4, num_layers=2, dropout=0.2)
    with pytest.raises(Exception, match=r"model.eval\(\) before torch.onnx.export"):
        torch.onnx.export(rnn.train(), (torch.randn(3, 2, 4),), tmp_path / "t.onnx", dynamo=True)
    with pytest.raises(Exception, match="bfloat16"):
        torch.onnx.export(rnn.eval().to(torch.bfloat16), (torch.randn(3, 2, 4, dtype=torch.bfloat16),),
                          tmp_path / "b.onnx", dynamo=True)


def test_streaming_latency_benchmark_runs_every_layer_in_onnxruntime():
    """python -m sru.overhead --streaming D --onnx [--chunk T]: each layer exported and timed in onnxruntime (positive
    times)."""
    from sru import overhead
    exported = {name for name, layer in overhead.streaming_layers(8) if not isinstance(layer, overhead.NativeLSTM)}
    for chunk in (1, 3):  # a one-step model, and a chunk model with a dynamic length
        ((d, us),) = list(overhead.onnx_rows([8], repeats=3, chunk=chunk))
        assert d == 8 and set(us) == exported and all(v > 0 for v in us.values())


def test_streaming_benchmark_times_every_layer_and_the_native_lstm_equals_nn_lstm():
    """python -m sru.overhead --streaming D: every layer timed eagerly (positive times); the LSTM on torch's native
    kernels (oneDNN off for its call only) computes nn.LSTM's outputs."""
    import torch
    from sru import overhead
    rows = list(overhead.streaming_rows([8], repeats=3))
    names = {name for name, _ in overhead.streaming_layers(8)}
    assert [mode for _, mode, _ in rows] == ["alone", "mixed"]
    assert all(set(us) == names and all(v > 0 for v in us.values()) for _, _, us in rows)
    torch.manual_seed(0)
    native, default = overhead.NativeLSTM(8, 8), torch.nn.LSTM(8, 8)
    default.load_state_dict(native.state_dict())
    x = torch.randn(5, 2, 8)
    torch.testing.assert_close(native(x)[0], default(x)[0])
    assert torch._C._get_mkldnn_enabled()  # restored after the call
