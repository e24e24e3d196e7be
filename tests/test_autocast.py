"""The SRU under torch.autocast: the GEMM in bf16, fp32 state, gradients close to an fp32 run."""
import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from sru import SRU
from helpers import assert_close_scaled, draw_seed, kernel_device


class MatmulDtypes(TorchDispatchMode):
    """Records the dtype of every matrix multiply that runs."""

    def __init__(self):
        super().__init__()
        self.dtypes = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.overloadpacket in (torch.ops.aten.mm, torch.ops.aten.addmm, torch.ops.aten.bmm):
            self.dtypes.append(args[-2].dtype if func.overloadpacket == torch.ops.aten.addmm else args[0].dtype)
        return func(*args, **(kwargs or {}))


class Tagger(nn.Module):
    """embedding -> SRU (layer 1: k=4 projection, layer 2: k=3 identity highway) -> linear."""

    def __init__(self, backend, bidirectional):
        super().__init__()
        self.embed = nn.Embedding(50, 24)
        self.rnn = SRU(24, 16, num_layers=2, bidirectional=bidirectional, backend=backend, highway_bias=-1.0)
        self.out = nn.Linear(self.rnn.output_size, 7)

    def forward(self, tokens, mask):
        h, c = self.rnn(self.embed(tokens), mask_pad=mask)
        return self.out(h), h, c


def run(model, tokens, mask, labels, device_type, amp):
    model.zero_grad()
    with torch.autocast(device_type, dtype=torch.bfloat16, enabled=amp):
        logits, h, c = model(tokens, mask)
        loss = nn.functional.cross_entropy(logits.float().flatten(0, 1), labels.flatten())
    loss.backward()
    return loss, h, c, {n: p.grad.clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("backend", ["cpu", "reference", "gpu", "auto"])
def test_autocast_bf16_matches_fp32_within_bf16_tolerance(backend, bidirectional):
    seed = draw_seed()  # fixed, or fresh with SRU_TEST_FRESH_SEEDS=1; the seed is in the failure message
    device = kernel_device() if backend == "gpu" else "cpu"
    model = Tagger(backend, bidirectional).to(device)
    L, B = 13, 5
    tokens = torch.randint(0, 50, (L, B), device=device)
    labels = torch.randint(0, 7, (L, B), device=device)
    mask = torch.zeros(L, B, dtype=torch.bool, device=device)
    mask[9:, 1] = True
    mask[4:, 3] = True
    loss32, h32, c32, g32 = run(model, tokens, mask, labels, device, amp=False)
    with MatmulDtypes() as seen:
        loss16, h16, c16, g16 = run(model, tokens, mask, labels, device, amp=True)
    assert torch.bfloat16 in seen.dtypes, f"no bf16 GEMM ran under autocast (seed {seed}): {seen.dtypes}"
    assert h16.dtype == torch.bfloat16 and c16.dtype == torch.float32, f"seed {seed}"
    assert (h16[mask] == 0).all(), f"padding leaked (seed {seed})"
    assert abs(loss16.item() - loss32.item()) < 2e-2 * abs(loss32.item()), f"loss (seed {seed})"
    assert_close_scaled(h16.float(), h32, 3e-2, f"h (seed {seed})")
    assert_close_scaled(c16, c32, 3e-2, f"c_n (seed {seed})")
    for name in g32:
        assert g16[name].dtype == g32[name].dtype == torch.float32   # parameters and grads stay fp32
        assert_close_scaled(g16[name], g32[name], 6e-2, f"grad {name} ({backend}, seed {seed})")


def test_truncated_bptt_carries_fp32_state_under_autocast():
    rnn = SRU(8, 8, num_layers=2)
    x = torch.randn(6, 3, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        _, c = rnn(x[:3])
        h, c2 = rnn(x[3:], c0=c)              # an fp32 state goes back in
    h_ref, c_ref = rnn(x[3:], c0=c)
    assert c2.dtype == torch.float32 and h.dtype == torch.bfloat16
    assert_close_scaled(h.float(), h_ref, 3e-2, "h")


def test_without_autocast_a_dtype_mismatch_still_names_the_fix():
    rnn = SRU(8, 8, num_layers=1)
    with pytest.raises(TypeError, match="torch.autocast"):
        rnn(torch.randn(4, 2, 8, dtype=torch.bfloat16))
