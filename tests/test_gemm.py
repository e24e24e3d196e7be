"""sru.gemm: the CPU GEMM route (oneDNN for Y = X W^T and dX, MKL for dW) is exact fp32, is the route
actually taken by the SRU and by routed nn.Linear layers, and leaves parameters and checkpoints alone."""
import pytest
import torch
from torch import nn

from sru import SRU, SRUCell, gemm
from helpers import assert_close_scaled, draw_seed

onednn_only = pytest.mark.skipif(gemm.cpu_route() != "onednn",
                                 reason=f"sru.gemm takes {gemm.cpu_route()} on this machine, not oneDNN")


@pytest.fixture
def every_size_on_onednn(monkeypatch):
    """Small test shapes take the oneDNN route too (normally GEMMs under ONEDNN_MIN_MACS stay on MKL)."""
    monkeypatch.setattr(gemm, "ONEDNN_MIN_MACS", 0)


def _grads_f64(x, weight, bias, grad_y):
    x64, w64 = x.detach().double().requires_grad_(), weight.detach().double().requires_grad_()
    b64 = None if bias is None else bias.detach().double().requires_grad_()
    y = torch.nn.functional.linear(x64, w64, b64)
    y.backward(grad_y.double())
    return y, x64.grad, w64.grad, None if b64 is None else b64.grad


@onednn_only
@pytest.mark.parametrize("shape, out, with_bias, transposed", [
    ((1, 1), 1, True, False), ((7, 13), 5, False, False), ((3, 5, 17), 33, True, False),
    ((64, 96), 257, True, True), ((2, 0, 8), 4, True, False)])
def test_linear_matches_float64_outputs_and_all_gradients(shape, out, with_bias, transposed, every_size_on_onednn):
    seed = draw_seed()  # fresh inputs each run; the seed is in the failure message
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(*shape, generator=g)
    if transposed:  # a non-contiguous input (a transposed view)
        x = torch.randn(*reversed(shape), generator=g).t()
    x.requires_grad_()
    weight = torch.randn(out, shape[-1], generator=g, requires_grad=True)
    bias = torch.randn(out, generator=g, requires_grad=True) if with_bias else None
    y = gemm.linear(x, weight, bias)
    grad_y = torch.randn(y.shape, generator=g)
    y.backward(grad_y)
    want = _grads_f64(x, weight, bias, grad_y)
    for name, got, ref in zip(("y", "grad x", "grad weight", "grad bias"), (y, x.grad, weight.grad,
                                                                            None if bias is None else bias.grad), want):
        if ref is not None:
            assert got.dtype == torch.float32
            assert_close_scaled(got, ref, 1e-5, f"{name}, shape {shape} (seed {seed})")


@onednn_only
def test_the_sru_and_routed_linear_layers_take_onednn(monkeypatch, every_size_on_onednn):
    calls = []
    real = gemm._onednn_op()

    def spy(*args):
        calls.append(tuple(args[0].shape))
        return real(*args)
    monkeypatch.setattr(gemm, "_onednn_op", lambda: spy)
    rnn = SRU(8, 8, num_layers=2, backend="cpu")
    rnn(torch.randn(5, 3, 8, requires_grad=True))[0].sum().backward()
    assert len(calls) == 4  # per layer: U = x W forward, dX backward (dW stays on MKL)
    calls.clear()
    head = nn.Sequential(nn.Linear(8, 4), nn.Tanh(), nn.Linear(4, 2))
    assert gemm.use_onednn_linear(head) == 2
    head(torch.randn(6, 8, requires_grad=True)).sum().backward()
    assert len(calls) == 4
    calls.clear()
    with torch.autocast("cpu", dtype=torch.bfloat16):  # autocast keeps choosing its own kernels
        head(torch.randn(6, 8))
    assert calls == []
    monkeypatch.setattr(gemm, "ONEDNN_MIN_MACS", 100)  # 6 x 8 x 4 = 192 multiply-adds: oneDNN;
    head(torch.randn(6, 8))                            # 6 x 4 x 2 = 48: under the threshold, MKL
    assert calls == [(6, 8)]


def test_routed_linear_keeps_parameters_state_dict_and_outputs():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))
    plain = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))
    plain.load_state_dict(model.state_dict())
    keys = list(model.state_dict())
    gemm.use_onednn_linear(model)
    assert list(model.state_dict()) == keys and all(isinstance(m, nn.Linear) for m in (model[0], model[2]))
    x = torch.randn(4, 6)
    torch.testing.assert_close(model(x), plain(x), rtol=1e-5, atol=1e-6)


@onednn_only
@pytest.mark.parametrize("rows, inp, out", [(1, 1, 1), (7, 13, 5), (64, 96, 257)])
def test_matmul_matches_float64_and_keeps_the_weight_gradient_in_its_layout(rows, inp, out, every_size_on_onednn):
    """gemm.matmul (the SRU's x @ W, W (in, out)) on the oneDNN route: exact fp32 outputs and gradients, the
    route actually taken, and W's gradient in W's own layout (a transposed one is copied on accumulation)."""
    seed = draw_seed()
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(rows, inp, generator=g, requires_grad=True)
    weight = torch.randn(inp, out, generator=g, requires_grad=True)
    arriving = []  # the gradient as the backward hands it over, before autograd's accumulation copies it
    weight.register_hook(lambda grad: arriving.append(grad.stride()))
    y = gemm.matmul(x, weight)
    assert type(y.grad_fn).__name__ == "_OneDNNMatmulBackward"
    grad_y = torch.randn(y.shape, generator=g)
    y.backward(grad_y)
    want = _grads_f64(x, weight.t(), None, grad_y)
    for name, got, ref in zip(("y", "grad x", "grad weight"), (y, x.grad, weight.grad), want):
        assert_close_scaled(got, ref.t() if name == "grad weight" else ref, 1e-5, f"{name} (seed {seed})")
    assert arriving == [weight.stride()], seed


def test_the_sru_gemm_is_the_same_product_on_either_route(monkeypatch, every_size_on_onednn):
    """The default route and PyTorch's own matmul (SRU_CPU_GEMM=mkl) give the same layer outputs and
    gradients, to fp32 rounding."""
    seed = draw_seed()
    got = {}
    for route in ("auto", "mkl"):
        if route == "mkl":
            monkeypatch.setattr(gemm, "cpu_route", lambda: "mkl")
        torch.manual_seed(seed)
        cell = SRUCell(12, 7, backend="cpu")  # k = 4: the highway projection is a GEMM column block too
        x = torch.randn(9, 4, 12, requires_grad=True)
        h = cell(x)[0]
        h.pow(2).sum().backward()
        got[route] = [h.detach(), x.grad, cell.weight.grad, cell.bias.grad]
    for name, a, b in zip(("h", "grad x", "grad weight", "grad bias"), got["auto"], got["mkl"]):
        assert_close_scaled(a, b, 1e-5, f"{name}: auto vs mkl route (seed {seed})")


def test_a_bad_route_setting_is_named(monkeypatch):
    monkeypatch.setenv("SRU_CPU_GEMM", "blas")
    gemm.cpu_route.cache_clear()
    try:
        with pytest.raises(ValueError, match="SRU_CPU_GEMM must be one of"):
            gemm.cpu_route()
    finally:
        monkeypatch.delenv("SRU_CPU_GEMM")
        gemm.cpu_route.cache_clear()
