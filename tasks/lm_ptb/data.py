"""PTB as a token stream: one `<eos>` per line, a vocabulary from train, batchified columns."""
import torch

from tasks.common.data import ensure_dataset


class Vocab:
    def __init__(self, words):
        self.itos = sorted(set(words))
        self.stoi = {w: i for i, w in enumerate(self.itos)}

    def __len__(self):
        return len(self.itos)

    def encode(self, words):
        try:
            return torch.tensor([self.stoi[w] for w in words], dtype=torch.long)
        except KeyError as e:
            raise ValueError(f"word {e.args[0]!r} is not in the training vocabulary") from None


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
