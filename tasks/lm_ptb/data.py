"""PTB as a token stream: one `<eos>` per line, a vocabulary from train, batchified columns."""
from tasks.common.data import ensure_dataset
from tasks.common.text import Vocab


def read_words(path, max_lines=None):
    words = []
    with open(path) as f:
        for i, line in enumerate(f):
            if max_lines is not None and i >= max_lines:
                break
            words.extend(line.split() + ["<eos>"])
    return words


def load_ptb(data_dir=None, max_lines=None):
    """(vocab, {split: LongTensor}); max_lines truncates every split (smoke runs only)."""
    paths = ensure_dataset("ptb", data_dir)
    words = {s: read_words(paths[f"ptb.{s}.txt"], max_lines) for s in ("train", "valid", "test")}
    vocab = Vocab(read_words(paths["ptb.train.txt"]))  # always the full 10k vocabulary
    return vocab, {s: vocab.encode(w) for s, w in words.items()}


def batchify(tokens, batch_size):
    """(n_steps, batch_size): column b is a contiguous slice of the stream (state carries down it)."""
    n = tokens.numel() // batch_size
    return tokens[: n * batch_size].view(batch_size, n).t().contiguous()
