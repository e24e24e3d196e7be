"""The reference recurrence is the spec: float64 gradcheck over every feature it has."""
import pytest
import torch

from sru import recurrence_reference


# (cell, k): both cells with k = 3 and 4; the 2018 cell without a skip term (sru's has_skip_term=False) has k = 3
@pytest.mark.parametrize("cell, k", [("2017", 3), ("2017", 4), ("2018", 3), ("2018", 4), ("2018-noskip", 3)])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("use_tanh", [True, False])
@pytest.mark.parametrize("with_mask", [False, True])
@pytest.mark.parametrize("with_drop", [False, True])
def test_reference_gradcheck(bidirectional, use_tanh, k, with_mask, with_drop, cell):
    """Both cells (2018: weight_c in the gates, dropout on the gate; with and without a skip term)."""
    torch.manual_seed(0)
    L, B, d = 4, 3, 5
    D = 2 if bidirectional else 1
    kw = dict(dtype=torch.float64, requires_grad=True)
    U = torch.randn(L, B, D * k * d, **kw)
    x = torch.randn(L, B, D * d, **kw) if k == 3 and cell != "2018-noskip" else None
    weight_c = torch.randn(D * 2 * d, **kw) if cell != "2017" else None
    bias = torch.randn(D * 2 * d, **kw)
    c0 = torch.randn(B, D * d, **kw)
    mask = torch.tensor([[0, 0, 0], [0, 0, 1], [0, 1, 1], [0, 1, 1]], dtype=torch.bool) if with_mask else None
    drop = (torch.rand(B, D * d, dtype=torch.float64) > 0.4).double() / 0.6 if with_drop else None
    names = [n for n, t in dict(U=U, x=x, weight_c=weight_c, bias=bias, c0=c0).items() if t is not None]
    inputs = tuple(t for t in (U, x, weight_c, bias, c0) if t is not None)

    def fn(*args):
        a = dict(zip(names, args))
        return recurrence_reference(a["U"], a.get("x"), a["bias"], a["c0"], mask, d, bidirectional, use_tanh, drop,
                                    weight_c=a.get("weight_c"), drop_gate=cell != "2017")

    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-7)


def test_reference_2018_cell_by_hand():
    """One step, one unit of the 2018 cell with dropout on the gate and a rescaled highway, worked out by hand."""
    U = torch.tensor([[[0.5, 0.0, 1.0]]], dtype=torch.float64)   # u0 = 0.5, u1 = 0, u2 = 1
    x = torch.tensor([[[2.0]]], dtype=torch.float64)
    weight_c = torch.tensor([0.5, -1.0], dtype=torch.float64)     # v_f, v_r
    bias = torch.tensor([-0.5, 0.0], dtype=torch.float64)         # b_f, b_r
    c0 = torch.tensor([[1.0]], dtype=torch.float64)
    drop = torch.tensor([[2.0]], dtype=torch.float64)              # kept, scaled by 1/(1 - 0.5)
    h, c = recurrence_reference(U, x, bias, c0, None, 1, False, False, drop, weight_c=weight_c, drop_gate=True)
    f = torch.sigmoid(torch.tensor(0.0 + 0.5 * 1.0 - 0.5, dtype=torch.float64))   # = 0.5
    r = torch.sigmoid(torch.tensor(1.0 - 1.0 * 1.0 + 0.0, dtype=torch.float64))   # = 0.5
    c_expected = 0.5 + (1.0 - 0.5) * f                                            # c = u0 + (c0 - u0) f
    assert torch.allclose(c, c_expected.view(1, 1))
    assert torch.allclose(h, (2.0 + (c_expected - 2.0) * 2.0 * r).view(1, 1, 1))  # h = x + (c - x) m r


def test_reference_matches_the_equations_by_hand():
    """One step, one unit, numbers worked out from the paper's equations."""
    U = torch.tensor([[[0.5, 0.0, 1.0]]])  # x~ = 0.5, f pre-act 0, r pre-act 1
    x = torch.tensor([[[2.0]]])
    bias = torch.tensor([0.0, -1.0])        # b_f = 0, b_r = -1 -> r = sigmoid(0) = 0.5
    c0 = torch.tensor([[1.0]])
    h, c = recurrence_reference(U, x, bias, c0, None, 1, False, True)
    c_expected = 0.5 * 1.0 + 0.5 * 0.5     # f = 0.5
    assert torch.allclose(c, torch.tensor([[c_expected]]))
    assert torch.allclose(h, torch.tensor([[[0.5 * torch.tanh(torch.tensor(c_expected)) + 0.5 * 2.0]]]))


def test_padding_passes_state_and_no_gradient():
    torch.manual_seed(0)
    L, B, d = 5, 2, 3
    U = torch.randn(L, B, 3 * d, requires_grad=True)
    x = torch.randn(L, B, d)
    mask = torch.zeros(L, B, dtype=torch.bool)
    mask[3:, 1] = True  # sequence 1 has length 3
    h, c = recurrence_reference(U, x, torch.zeros(2 * d), torch.zeros(B, d), mask, d, False, True)
    h_short, c_short = recurrence_reference(U[:3, 1:], x[:3, 1:], torch.zeros(2 * d), torch.zeros(1, d),
                                            None, d, False, True)
    assert torch.equal(h[3:, 1], torch.zeros(2, d))
    assert torch.allclose(h[:3, 1:], h_short) and torch.allclose(c[1:], c_short)
    (g,) = torch.autograd.grad(h.sum() + c.sum(), U)
    assert torch.equal(g[3:, 1], torch.zeros(2, 3 * d))
