"""sru.SRU / sru.SRUCell as a drop-in for PyPI sru 2.6.0, held to golden cases the official package computed
(tests/fixtures/sru26_cases.pt, written by scripts/make_sru26_fixture.py: random configurations of every keyword
but custom_m, float64, training and evaluation); and the paper's 2017 cell held to the outputs and gradients this
package gave before the 2018 cell existed (tests/fixtures/paper_cells.pt)."""
import copy
import pathlib

import pytest
import torch
from torch import nn

from helpers import assert_close_scaled, kernel_device
from sru import SRU, SRUCell

FIXTURES = pathlib.Path(__file__).parent / "fixtures"
SRU26 = torch.load(FIXTURES / "sru26_cases.pt", weights_only=True)["cases"]
PAPER = torch.load(FIXTURES / "paper_cells.pt", weights_only=True)
CLASSES = {"SRU": SRU, "SRUCell": SRUCell}


def case_id(i):
    c = SRU26[i]
    return f"{i}-{c['cls']}"


def build(case, dtype, backend):
    module = CLASSES[case["cls"]](**case["kwargs"], backend=backend).to(dtype)
    module.load_state_dict({k: v.to(dtype) for k, v in case["state"].items()}, strict=True)
    return module


def gradients_in_sru26_layout(module, grads):
    """The gradients as sru 2.6 lays out its parameters (written through the module's own state_dict)."""
    clone = copy.deepcopy(module)
    with torch.no_grad():
        for name, p in clone.named_parameters():
            if name in grads:
                p.copy_(grads[name])
    state = clone.state_dict()
    return {name: state[name] for name in grads}


def run(module, case, mode, dtype):
    module.train(mode == "train")
    x = case["x"].to(dtype).requires_grad_()
    c0 = None if case["c0"] is None else case["c0"].to(dtype).requires_grad_()
    torch.manual_seed(case["dropout_seed"])
    h, c_n = module(x, c0, mask_pad=case["mask"])
    g = torch.Generator().manual_seed(case["dropout_seed"] + 1)
    loss = (h * torch.randn(h.shape, generator=g, dtype=torch.float64).to(dtype)).sum() + \
        (c_n * torch.randn(c_n.shape, generator=g, dtype=torch.float64).to(dtype)).sum()
    params = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
    leaves = [x] + ([] if c0 is None else [c0]) + [p for _, p in params]
    grads = torch.autograd.grad(loss, leaves)
    named = dict(zip([n for n, _ in params], grads[len(leaves) - len(params):]))
    out = dict(h=h, c_n=c_n, input=grads[0], **gradients_in_sru26_layout(module, named))
    if c0 is not None:
        out["c0"] = grads[1]
    return out


def expected(case, mode):
    r = case["results"][mode]
    return dict(h=r["h"], c_n=r["c_n"], **r["grads"])


@pytest.mark.parametrize("i", range(len(SRU26)), ids=case_id)
def test_same_initial_parameters_as_sru26_for_a_seed(i):
    """sru 2.6's initialisation recipe, drawn in its order: the same state_dict for the same seed."""
    case = SRU26[i]
    torch.manual_seed(case["init_seed"])
    module = CLASSES[case["cls"]](**case["kwargs"])
    state = module.state_dict()
    assert list(state) == list(case["init"]), f"keys differ from sru 2.6's ({case['kwargs']})"
    for k, v in case["init"].items():
        assert state[k].shape == v.shape and state[k].dtype == v.dtype, k
        torch.testing.assert_close(state[k], v, rtol=0, atol=1e-7, msg=lambda m: f"{k} ({case['kwargs']}): {m}")


@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("i", range(len(SRU26)), ids=case_id)
def test_equal_to_sru26_in_float64(i, mode):
    """sru 2.6's state_dict loads unchanged (strict); outputs, c_n and every gradient agree to float64 round-off,
    dropout masks included (the same draws in the same order)."""
    case = SRU26[i]
    got = run(build(case, torch.float64, "reference"), case, mode, torch.float64)
    want = expected(case, mode)
    assert got.keys() == want.keys()
    for name in want:
        torch.testing.assert_close(got[name], want[name], rtol=1e-9, atol=1e-10,
                                   msg=lambda m: f"case {i} {mode} {name} ({case['kwargs']}): {m}")


def check_float32(got, yardstick, want, label):
    """got within 2e-5 of sru 2.6's float64 numbers (scaled as assert_close_scaled), or, where float32 itself cannot
    get that close (a layer norm over one feature multiplies rounding by 1/sqrt(eps)), within 4x the error of the
    plain-PyTorch float32 reference (`yardstick`) on the same parameters."""
    for name, w in want.items():
        scale = max(w.abs().max().item() if w.numel() else 0.0, 0.1)
        allowed = max(2e-5, 4 * (yardstick[name].double() - w).abs().max().item() / scale)
        assert_close_scaled(got[name], w, allowed, f"{label} {name}")


@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("i", range(len(SRU26)), ids=case_id)
def test_fused_cpu_float32_equal_to_sru26(i, mode):
    case = SRU26[i]
    got = run(build(case, torch.float32, "cpu"), case, mode, torch.float32)
    yardstick = run(build(case, torch.float32, "reference"), case, mode, torch.float32)
    check_float32(got, yardstick, expected(case, mode), f"case {i} {mode} ({case['kwargs']})")


@pytest.mark.parametrize("i", range(0, len(SRU26), 3), ids=lambda i: case_id(i))
def test_fused_gpu_kernels_equal_to_sru26(i):
    """The Triton kernels (the interpreter on a CPU, CUDA with SRU_TEST_CUDA=1) on every third case."""
    case = SRU26[i]
    device = kernel_device()
    module = build(case, torch.float32, "gpu").to(device)
    moved = dict(case, x=case["x"].to(device), c0=None if case["c0"] is None else case["c0"].to(device),
                 mask=None if case["mask"] is None else case["mask"].to(device))
    got = {k: v.cpu() for k, v in run(module, moved, "eval", torch.float32).items()}
    yardstick = run(build(case, torch.float32, "reference"), case, "eval", torch.float32)
    check_float32(got, yardstick, expected(case, "eval"), f"case {i} gpu ({case['kwargs']})")


@pytest.mark.parametrize("i", range(len(SRU26)), ids=case_id)
def test_state_dict_is_sru26s(i):
    """What we save is what sru 2.6 saved: the same keys, shapes, layouts and values."""
    case = SRU26[i]
    state = build(case, torch.float64, "reference").state_dict()
    assert list(state) == list(case["state"])
    for k, v in case["state"].items():
        assert torch.equal(state[k], v), k


def test_state_dict_from_another_configuration_names_the_key_and_both_shapes():
    src = SRU(4, 6, num_layers=2).state_dict()
    with pytest.raises(RuntimeError, match=r"rnn_lst\.0\.weight: .*torch.Size\(\[4, 24\]\).*torch.Size\(\[4, 32\]\)"):
        SRU(4, 8, num_layers=2).load_state_dict(src)


@pytest.mark.parametrize("kwargs, message", [
    (dict(hidden_size=128.0), "hidden_size must be an integer >= 1, got 128.0; use hidden_size=128"),
    (dict(dropout=1.0), r"dropout must be a number in \[0, 1\)"),
    (dict(cell="2019"), "cell must be one of"),
    (dict(cell="2017", v1=True), "the 2017 cell does not have"),
    (dict(weight_c_init=-1.0), "weight_c_init must be None or a positive number"),
    (dict(num_layers=0), "num_layers must be an integer >= 1"),
    (dict(custom_m=[nn.Identity()]), "one module per layer"),
])
def test_bad_options_say_what_was_expected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SRU(**dict(dict(input_size=4, hidden_size=4), **kwargs))


def test_custom_m_computes_U_in_sru26s_layout():
    """custom_m returns U in sru 2.6's column layout: a Linear holding the cell's own weight in that layout gives
    the cell's own output."""
    torch.manual_seed(0)
    cell = SRUCell(5, 3, bidirectional=True)
    custom = SRUCell(5, 3, bidirectional=True, custom_m=nn.Linear(5, cell.weight.shape[1], bias=False))
    state = cell.state_dict()
    state["custom_m.weight"] = state.pop("weight").t()  # x @ W as a Linear computes it
    custom.load_state_dict(state)
    x = torch.randn(4, 2, 5)
    torch.testing.assert_close(custom(x)[0], cell(x)[0])
    with pytest.raises(NotImplementedError, match="return U alone"):
        SRUCell(5, 3, custom_m=lambda_module(lambda x: (torch.zeros(4, 2, 12), torch.zeros(4, 2, 6))))(x)


class lambda_module(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


# --- the paper's cell: unchanged ----------------------------------------------------------------------
@pytest.mark.parametrize("table", sorted(PAPER))
def test_paper_cell_gives_todays_outputs_and_gradients(table):
    """Each table's SRU, built as its config builds it (cell='2017' pinned), from a checkpoint saved before the 2018
    cell existed: the outputs and gradients that code gave, exactly on the CPU kernels (float32) and to round-off
    on the float64 reference, in training (dropout) and evaluation."""
    from tasks.common.models import PAPER_CELL
    case = PAPER[table]
    cls = CLASSES[case["cls"]]
    for key, results in case["results"].items():
        backend, mode = key.split("/")
        dtype = torch.float32 if backend == "cpu" else torch.float64
        module = cls(**case["kwargs"], **PAPER_CELL, backend=backend).to(dtype)
        module.load_state_dict(case["state"], strict=True)
        module.train(mode == "train")
        x = case["x"].to(dtype).requires_grad_()
        c0 = None if case["c0"] is None else case["c0"].to(dtype).requires_grad_()
        torch.manual_seed(case["seed"])
        h, c_n = module(x, c0, mask_pad=case["mask"]) if cls is SRU else module(x, c0, case["mask"])
        g = torch.Generator().manual_seed(case["seed"] + 1)
        loss = (h * torch.randn(h.shape, generator=g, dtype=dtype)).sum() + \
            (c_n * torch.randn(c_n.shape, generator=g, dtype=dtype)).sum()
        leaves = [x] + ([] if c0 is None else [c0]) + list(module.parameters())
        grads = torch.autograd.grad(loss, leaves)
        got = dict(h=h, c_n=c_n, grad_x=grads[0], **({} if c0 is None else dict(grad_c0=grads[1])))
        old_names = [n.replace("rnn_lst.", "layers.") for n, _ in module.named_parameters()]
        got.update({f"grad_{n}": gr for n, gr in zip(old_names, grads[len(leaves) - len(old_names):])})
        assert got.keys() == results.keys(), (table, key)
        for name, want in results.items():
            if backend == "cpu":
                assert torch.equal(got[name], want), f"{table} {key} {name}: max diff {(got[name] - want).abs().max()}"
            else:
                torch.testing.assert_close(got[name], want, rtol=1e-12, atol=1e-13)


SRU3 = torch.load(FIXTURES / "sru3_cases.pt", weights_only=True)["cases"]


@pytest.mark.parametrize("i", range(len(SRU3)))
def test_sru3_state_dict_converts_and_gives_its_outputs(i):
    """sru 3.0.0.dev6's state_dict (transform_module.*) through state_dict_from_sru3 loads strictly into the same
    configuration in sru 2.6's keywords and gives 3.0's outputs (scripts/make_sru3_fixture.py)."""
    from sru import state_dict_from_sru3
    case = SRU3[i]
    module = CLASSES[case["cls"]](**case["kwargs26"], backend="reference").double().eval()
    assert any("transform_module" in k for k in case["state"])
    module.load_state_dict(state_dict_from_sru3(case["state"]), strict=True)
    h, c_n = module(case["x"], case["c0"], mask_pad=case["mask"])
    torch.testing.assert_close(h, case["h"], rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(c_n, case["c_n"], rtol=1e-9, atol=1e-10)


def test_sru3_custom_transform_module_is_refused():
    from sru import state_dict_from_sru3
    with pytest.raises(ValueError, match="transform_module.conv.weight"):
        state_dict_from_sru3({"rnn_lst.0.transform_module.conv.weight": torch.zeros(2, 2)})
