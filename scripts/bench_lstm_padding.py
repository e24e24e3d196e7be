"""The LSTM baselines' two exact paths over padded batches, at the tables' shapes: packed sequences
(nn.LSTM over pack_padded_sequence) and tasks.common.models.lstm_over_padding (oneDNN's fused LSTM on
a CPU). Forward + backward, median ms after warm-up, both measured in the same run.

    python -m scripts.bench_lstm_padding [--device cpu|cuda] [--seed 1]
"""
import argparse
import platform

import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from sru.bench import time_ms
from tasks.common.models import lstm_over_padding

# (what, batch, longest, shortest, input, hidden, layers, bidirectional): each task's LSTM as it trains
SHAPES = [("Table 1 MR classifier", 32, 40, 5, 50, 128, 2, False),
          ("Table 2 paragraph encoder, layer 1", 32, 200, 60, 104, 128, 1, True),
          ("Table 5 LSTM 5 x 128", 16, 130, 40, 120, 128, 5, False),
          ("Table 5 bi-LSTM 5 x 64", 16, 130, 40, 120, 64, 5, True)]


def packed(lstm, x, lengths):
    out, _ = lstm(pack_padded_sequence(x, lengths.cpu(), enforce_sorted=False))
    return pad_packed_sequence(out, total_length=x.size(0))[0]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args(argv)
    device = torch.device(args.device)
    print(f"{platform.processor() or platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} "
          f"threads, device {device}, seed {args.seed}\n")
    print("| LSTM | batch x steps (lengths) | packed ms | lstm_over_padding ms | speed-up |\n|---|---|---|---|---|")
    for what, batch, longest, shortest, size, hidden, layers, bi in SHAPES:
        g = torch.Generator().manual_seed(args.seed)
        torch.manual_seed(args.seed)
        lstm = torch.nn.LSTM(size, hidden, num_layers=layers, bidirectional=bi).to(device)
        lengths = torch.randint(shortest, longest + 1, (batch,), generator=g)
        lengths[0] = longest
        x = torch.randn(longest, batch, size, generator=g).to(device).requires_grad_()
        ms = [time_ms(lambda: run(lstm, x, lengths).sum().backward(), device, 3, 5, 5.0)[0]
              for run in (packed, lstm_over_padding)]
        print(f"| {what}: {layers} x {hidden}{' bi' if bi else ''} | {batch} x {longest} ({shortest}-{longest}) "
              f"| {ms[0]:.1f} | {ms[1]:.1f} | {ms[0] / ms[1]:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
