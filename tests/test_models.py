"""tasks/common/models.py: lstm_over_padding is nn.LSTM over packed sequences, on outputs and every gradient."""
import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from helpers import draw_seed

from tasks.common.models import lstm_over_padding, make_rnn


def packed_reference(lstm, x, lengths):
    packed, _ = lstm(pack_padded_sequence(x, lengths, enforce_sorted=False))
    return pad_packed_sequence(packed, total_length=x.size(0))[0]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])  # float32: the oneDNN path itself
@pytest.mark.parametrize("layers,bidirectional,bias", [(1, False, True), (3, False, True), (1, True, True),
                                                      (2, True, False), (3, True, True)])
def test_lstm_over_padding_is_the_packed_lstm(layers, bidirectional, bias, dtype):
    seed = draw_seed()
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    L, B, E, H = 13, 7, 6, 5
    lstm = torch.nn.LSTM(E, H, num_layers=layers, bidirectional=bidirectional, bias=bias).to(dtype)
    lengths = torch.randint(1, L + 1, (B,), generator=g)
    lengths[0] = L if B > 1 else lengths[0]   # the batch's longest fills the padded length, as a batch does
    lengths[1] = 1                            # and a one-step sequence
    x = torch.randn(L, B, E, generator=g, dtype=dtype, requires_grad=True)
    weight = torch.randn(L, B, H * (2 if bidirectional else 1), generator=g, dtype=dtype)
    outs, grads = [], []
    for run in (packed_reference, lstm_over_padding):
        out = run(lstm, x, lengths)
        outs.append(out)
        grads.append(torch.autograd.grad((out * weight).sum(), [x, *lstm.parameters()]))
    msg = f"seed {seed}, layers {layers}, bidirectional {bidirectional}, lengths {lengths.tolist()}"
    torch.testing.assert_close(outs[1], outs[0], msg=lambda m: f"{msg}: output: {m}")
    names = ["input", *(n for n, _ in lstm.named_parameters())]
    for name, a, b in zip(names, grads[1], grads[0]):
        torch.testing.assert_close(a, b, msg=lambda m: f"{msg}: gradient of {name}: {m}")
    pad = torch.arange(L)[:, None] >= lengths[None, :]
    assert not outs[1][pad].any(), msg  # zero at padding, as pad_packed_sequence gives


def test_lstm_over_padding_drops_out_between_layers_only_in_training():
    torch.manual_seed(0)
    lstm = make_rnn("lstm", 4, 3, 2, dropout=0.5)
    x, lengths = torch.randn(5, 2, 4), torch.tensor([5, 3])
    lstm.eval()
    torch.testing.assert_close(lstm_over_padding(lstm, x, lengths), packed_reference(lstm, x, lengths))
    lstm.train()
    runs = [lstm_over_padding(lstm, x, lengths) for _ in range(2)]
    assert not torch.equal(runs[0], runs[1]), "dropout 0.5 between layers drew no mask in training"


def test_lstm_over_padding_refuses_what_it_does_not_handle():
    with pytest.raises(ValueError, match="batch_first"):
        lstm_over_padding(torch.nn.LSTM(4, 3, batch_first=True), torch.randn(2, 5, 4), torch.tensor([5, 3]))
