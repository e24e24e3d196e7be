"""A vocabulary: words <-> ids, built from the data (no torchtext)."""
import torch


class Vocab:
    """Sorted words after `specials` (which keep ids 0, 1, ... in the order given)."""

    def __init__(self, words, specials=()):
        self.itos = list(specials) + sorted(set(words) - set(specials))
        self.stoi = {w: i for i, w in enumerate(self.itos)}

    def __len__(self):
        return len(self.itos)

    def encode(self, words):
        try:
            return torch.tensor([self.stoi[w] for w in words], dtype=torch.long)
        except KeyError as e:
            raise ValueError(f"word {e.args[0]!r} is not in the vocabulary") from None
