"""Table 5's acoustic model outside PyTorch: a checkpoint to ONNX, and a test set decoded in onnxruntime as its
frames arrive.

    python -m tasks.speech.export best.pt model.onnx                  # export (feature normalisation inside)
    python -m tasks.speech.export best.pt model.onnx --decode         # + decode the checkpoint's test set in chunks
        [--chunk-ms 100] [--data-dir data] [--out hyps.txt]

The ONNX model takes raw stacked filterbank frames (length, batch, bins x stack), the SRU state
(layers, batch, hidden) and returns per-step log-probabilities and the state: the training set's mean and
standard deviation (from the checkpoint) normalise the frames inside the graph. A unidirectional model with k model
steps of lookahead emits step t once frame t + k has arrived; the streaming decoder feeds the frames from step k
on, chunk by chunk, carrying the state, then the last frame k more times (what the model's `shift` does to the
end of an utterance), and decodes greedy CTC over the steps: the same hypotheses as the PyTorch decoder.
"""
import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from tasks.common.errors import UserError
from tasks.speech.metrics import ctc_greedy, error_rates, greedy_text, ids_text


class StreamingAcousticModel(nn.Module):
    """The acoustic model as one streaming step: raw stacked frames and the state in, log-probabilities and the
    state out; normalisation inside."""

    def __init__(self, model, mean, std, stack):
        super().__init__()
        self.rnn, self.out = model.rnn, model.out
        self.register_buffer("mean", torch.tensor(np.tile(np.asarray(mean, np.float32), stack)))
        self.register_buffer("std", torch.tensor(np.tile(np.asarray(std, np.float32), stack)))

    def forward(self, frames, c0):
        h, c_n = self.rnn((frames - self.mean) / self.std, c0)
        return self.out(h).log_softmax(-1), c_n


def load_acoustic_model(path):
    """(the model, the checkpoint) of a Table 5 checkpoint that can stream: a unidirectional SRU."""
    from tasks.common.checkpoint import load, load_model
    ckpt = load(path)  # what it is, before building anything from it
    if ckpt.get("task") != "speech":
        raise UserError(f"{path} is a checkpoint of task {ckpt.get('task')!r}: expected a Table 5 acoustic model "
                        f"(task 'speech', written by python -m tasks.speech.train)")
    m = ckpt["config"]["model"]
    if m["kind"] != "sru" or m["bidirectional"]:
        raise UserError(f"{path} holds a {'bidirectional ' if m['bidirectional'] else ''}{m['kind'].upper()}: the "
                        f"streaming export takes the unidirectional SRU rows (a bidirectional model reads the whole "
                        f"utterance before its first output)")
    return load_model(path)


def export(checkpoint, onnx_path):
    """Writes the ONNX model; returns (the PyTorch model, the checkpoint, the streaming module)."""
    model, ckpt = load_acoustic_model(checkpoint)
    v, a = ckpt["vocab"], ckpt["model_args"]
    stream = StreamingAcousticModel(model, v["mean"], v["std"], a["stack"]).eval()
    rnn = model.rnn
    frames, c0 = torch.zeros(6, 1, a["input_size"]), torch.zeros(rnn.num_layers, 1, rnn.output_size)
    length, batch = torch.export.Dim("length", min=1), torch.export.Dim("batch", min=1)
    torch.onnx.export(stream, (frames, c0), str(onnx_path), dynamo=True, input_names=["frames", "c0"],
                      output_names=["log_probs", "c_n"],
                      dynamic_shapes=({0: length, 1: batch}, {1: batch}))
    return model, ckpt, stream


def test_utterances(ckpt, data_dir):
    """(utterances, their raw stacked filterbanks) of the checkpoint's test set, as its training run built them."""
    from omegaconf import OmegaConf

    from tasks.speech import data
    from tasks.speech.train import cached_features, corpus
    cfg = OmegaConf.create(ckpt["config"])
    utts = corpus(cfg, data_dir, lambda *_: None)["test"]
    raw = cached_features(utts, cfg.data.bins, f"{data_dir}/speech/cache", lambda it, **_: it, f"{cfg.data.name}-test")
    return utts, [data.stack(x, cfg.data.stack).astype(np.float32) for x in raw]


def stream_decode(step, frames, layers, hidden, future, chunk):
    """Greedy CTC of one utterance fed to `step` (frames, c0) -> (log_probs, c_n), numpy in and out, `chunk` steps
    at a time as the frames arrive. Returns the label ids and the seconds each chunk's step took."""
    T = len(frames)
    order = [min(t + future, T - 1) for t in range(T)]   # what step t reads: `future` steps ahead, clamped at the end
    c = np.zeros((layers, 1, hidden), np.float32)
    log_probs, seconds = [], []
    for start in range(0, T, chunk):
        x = frames[order[start:start + chunk]][:, None, :]
        t0 = time.perf_counter()
        lp, c = step(x, c)
        seconds.append(time.perf_counter() - t0)
        log_probs.append(lp[:, 0])
    ids = ctc_greedy(torch.from_numpy(np.concatenate(log_probs))[None], torch.tensor([T]))[0]
    return ids, seconds


def decode(model, ckpt, stream, onnx_path, data_dir, chunk_ms=100):
    """The test set decoded by the PyTorch model over whole utterances and by onnxruntime streaming; the same
    stream also run in eager PyTorch, for its timing. Returns a dict: the hypotheses lists, the references, the
    WERs, per-chunk medians (us) of onnxruntime and eager PyTorch."""
    import onnxruntime as ort
    runtime = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    onnx_step = lambda x, c: runtime.run(None, {"frames": x, "c0": c})

    def eager_step(x, c):
        with torch.no_grad():
            lp, c_n = stream(torch.from_numpy(x), torch.from_numpy(c))
        return lp.numpy(), c_n.numpy()
    a, v = ckpt["model_args"], ckpt["vocab"]
    stack, symbols = a["stack"], v["symbols"]
    chunk = max(1, round(chunk_ms / (10 * stack)))      # model steps per chunk: 10-ms frames, `stack` per step
    mean, std = stream.mean.numpy(), stream.std.numpy()  # the PyTorch decoder normalises as the exported model
    utts, feats = test_utterances(ckpt, data_dir)
    torch_hyps, onnx_hyps, eager_hyps, chunk_seconds, eager_seconds = [], [], [], [], []
    for frames in feats:
        with torch.no_grad():
            lp = model(torch.from_numpy((frames - mean) / std)[None], torch.tensor([len(frames)]))
        torch_hyps.append(greedy_text(lp, torch.tensor([len(frames)]), symbols)[0])
        shape = (model.rnn.num_layers, model.rnn.output_size, model.future, chunk)
        ids, seconds = stream_decode(onnx_step, frames, *shape)
        onnx_hyps.append(ids_text(ids, symbols))
        chunk_seconds += seconds
        ids, seconds = stream_decode(eager_step, frames, *shape)
        eager_hyps.append(ids_text(ids, symbols))
        eager_seconds += seconds
    refs = [u["text"] for u in utts]
    return dict(utterances=utts, references=refs, torch=torch_hyps, onnx=onnx_hyps, eager_stream=eager_hyps,
                chunk_steps=chunk, chunk_ms=chunk * 10 * stack, torch_wer=error_rates(refs, torch_hyps)["wer"],
                onnx_wer=error_rates(refs, onnx_hyps)["wer"],
                onnx_chunk_us=float(np.median(chunk_seconds)) * 1e6, eager_chunk_us=float(np.median(eager_seconds)) * 1e6)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("checkpoint", help="a Table 5 best.pt or last.pt (unidirectional SRU)")
    p.add_argument("onnx", help="where the ONNX model goes")
    p.add_argument("--decode", action="store_true", help="also decode the checkpoint's test set, streaming")
    p.add_argument("--chunk-ms", type=float, default=100.0, help="audio per chunk fed to onnxruntime (default 100)")
    p.add_argument("--data-dir", default="data", help="the data directory of the training run (default: data)")
    p.add_argument("--out", help="write the streaming hypotheses here (id hypothesis per line)")
    args = p.parse_args(argv)
    try:
        model, ckpt, stream = export(args.checkpoint, args.onnx)
        print(f"wrote {args.onnx}: raw stacked fbank frames (length, batch, {ckpt['model_args']['input_size']}) and "
              f"c0 (layers, batch, hidden) in; log_probs and c_n out; normalisation inside")
        if args.decode:
            r = decode(model, ckpt, stream, args.onnx, args.data_dir, args.chunk_ms)
            same = sum(a == b == c for a, b, c in zip(r["torch"], r["onnx"], r["eager_stream"]))
            frames = r["chunk_ms"] / 10
            print(f"test set, {len(r['references'])} utterances, chunks of {r['chunk_ms']:.0f} ms "
                  f"({r['chunk_steps']} model steps): WER PyTorch {r['torch_wer']:.2f}, onnxruntime streaming "
                  f"{r['onnx_wer']:.2f}; {same} of {len(r['references'])} hypotheses identical")
            print(f"latency at batch 1, median per chunk (per 10-ms frame): onnxruntime {r['onnx_chunk_us']:.0f} us "
                  f"({r['onnx_chunk_us'] / frames:.0f} us), eager PyTorch {r['eager_chunk_us']:.0f} us "
                  f"({r['eager_chunk_us'] / frames:.0f} us)")
            if args.out:
                Path(args.out).write_text("".join(f"{u['id']} {h}\n" for u, h in zip(r["utterances"], r["onnx"])))
    except UserError as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    main()
