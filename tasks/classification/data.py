"""Table 1's data: Kim (2014) sentence files, SST phrases rebuilt from the trees, CV folds, batches.

Each dataset is a list of splits {train, dev, test} of (label, tokens) examples:
  * MR, CR, SUBJ, MPQA: 10-fold CV; split k tests on fold k, and dev is `dev_fraction` of the other
    folds. Folds and dev come from `fold_seed` only, so every model sees the same splits.
  * TREC: the fixed 500-question test set; dev is `dev_fraction` of train.
  * SST-1/SST-2: trained on every labelled phrase (subtree) of the training trees, as Kim and the
    paper did; dev/test are Kim's sentence files. SST-2 drops neutral phrases (label 2) and maps
    0,1 -> 0 and 3,4 -> 1.
"""
import re

import numpy as np
import torch
from torch.nn.utils.rnn import pad_sequence

from tasks.common.data import DataError, ensure_dataset

DATASETS = {
    "mr": dict(manifest="mr", files=["rt-polarity.all"], classes=2, protocol="cv"),
    "cr": dict(manifest="cr", files=["custrev.all"], classes=2, protocol="cv"),
    "subj": dict(manifest="subj", files=["subj.all"], classes=2, protocol="cv"),
    "mpqa": dict(manifest="mpqa", files=["mpqa.all"], classes=2, protocol="cv"),
    "trec": dict(manifest="trec", files=["TREC.train.all", "TREC.test.all"], classes=6, protocol="fixed"),
    "sst1": dict(manifest="sst", files=["stsa.fine.dev", "stsa.fine.test"], classes=5, protocol="fixed"),
    "sst2": dict(manifest="sst", files=["stsa.binary.dev", "stsa.binary.test"], classes=2, protocol="fixed"),
}
PAD = "<pad>"


def read_labelled(path, classes):
    """Kim's format: `<label> <tokenized sentence>` per line."""
    examples = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for n, line in enumerate(f, 1):
            label, _, text = line.strip().partition(" ")
            if not label.isdigit() or not 0 <= int(label) < classes:
                raise DataError(f"{path}:{n}: expected `<label 0..{classes - 1}> <sentence>`, got {line[:60]!r}")
            examples.append((int(label), text.split()))  # CR and MPQA hold 7 empty sentences: kept
    return examples


def tree_nodes(line):
    """Every node of one PTB-style sentiment tree as (label, words), root first. Words are lowercased,
    which is how Kim's stsa.* sentence files spell them."""
    tokens = re.findall(r"\(|\)|[^\s()]+", line)
    nodes, stack, pos = [], [], 0
    while pos < len(tokens):
        tok = tokens[pos]
        if tok == "(":
            label = tokens[pos + 1]
            if not label.isdigit():
                raise ValueError(f"expected a 0-4 label after '(' in tree {line[:60]!r}, got {label!r}")
            stack.append((int(label), len(nodes), []))
            nodes.append(None)
            pos += 2
        elif tok == ")":
            label, slot, words = stack.pop()
            nodes[slot] = (label, words)
            if stack:
                stack[-1][2].extend(words)
            pos += 1
        else:
            stack[-1][2].append(tok.lower())
            pos += 1
    if stack or not nodes:
        raise ValueError(f"unbalanced tree {line[:60]!r}")
    return nodes


def sst_phrases(tree_lines, binary):
    """Kim's phrase-level training set: each distinct labelled phrase of the trees once (a phrase's label
    comes from the SST phrase dictionary, so repeats agree). Returns (examples, number of nodes)."""
    seen, examples, count = set(), [], 0
    for line in tree_lines:
        for label, words in tree_nodes(line):
            count += 1
            key = tuple(words)
            if key in seen:
                continue
            seen.add(key)
            if binary:
                if label == 2:
                    continue
                label = int(label > 2)
            examples.append((label, words))
    return examples, count


def cv_folds(n, folds, seed):
    """`folds` disjoint index arrays covering range(n), from a seeded permutation."""
    if not 2 <= folds <= n:
        raise ValueError(f"folds={folds}: expected 2 <= folds <= {n} examples")
    return np.array_split(np.random.default_rng(seed).permutation(n), folds)


def split_dev(examples, fraction, seed):
    """(train, dev): a seeded `fraction` of examples held out for model selection."""
    order = np.random.default_rng(seed).permutation(len(examples))
    n_dev = max(1, round(fraction * len(examples)))
    return [examples[i] for i in order[n_dev:]], [examples[i] for i in order[:n_dev]]


def subsample(examples, n, seed):
    """A seeded random n of the examples, in their original order (files can be sorted by label)."""
    if len(examples) <= n:
        return examples
    keep = np.sort(np.random.default_rng(seed).choice(len(examples), n, replace=False))
    return [examples[i] for i in keep]


def majority_accuracy(split):
    """Test accuracy (%) of always predicting the training split's most frequent label: the floor a model
    must clear."""
    labels = [label for label, _ in split["train"]]
    top = max(set(labels), key=labels.count)
    return 100.0 * sum(label == top for label, _ in split["test"]) / len(split["test"])


def load_splits(dataset, data_dir=None, fold_seed=1234, folds=10, dev_fraction=0.1):
    """The dataset's splits (one per CV fold, or one fixed split) and its class count."""
    if dataset not in DATASETS:
        raise ValueError(f"dataset={dataset!r}: expected one of {sorted(DATASETS)}")
    spec = DATASETS[dataset]
    paths = ensure_dataset(spec["manifest"], data_dir)
    classes = spec["classes"]
    if spec["protocol"] == "cv":
        examples = read_labelled(paths[spec["files"][0]], classes)
        fold_index = cv_folds(len(examples), folds, fold_seed)
        splits = []
        for k, test_idx in enumerate(fold_index):
            rest = [examples[i] for j, idx in enumerate(fold_index) if j != k for i in idx]
            train, dev = split_dev(rest, dev_fraction, fold_seed + 1 + k)
            splits.append(dict(train=train, dev=dev, test=[examples[i] for i in test_idx]))
        return splits, classes
    if dataset == "trec":
        train, dev = split_dev(read_labelled(paths["TREC.train.all"], classes), dev_fraction, fold_seed)
        return [dict(train=train, dev=dev, test=read_labelled(paths["TREC.test.all"], classes))], classes
    with open(paths["train.txt"], encoding="utf-8") as f:
        train, _ = sst_phrases(f, binary=dataset == "sst2")
    dev, test = (read_labelled(paths[name], classes) for name in spec["files"])
    return [dict(train=train, dev=dev, test=test)], classes


def encode(examples, vocab):
    """(ids, lengths, labels) of a split: done once per run, so an epoch only reorders and pads."""
    ids = [vocab.encode(words) for _, words in examples]
    lengths = torch.tensor([max(1, len(x)) for x in ids])  # an empty sentence is one <pad>
    return ids, lengths, torch.tensor([label for label, _ in examples])


def make_batches(encoded, batch_size, shuffle, min_len=1):
    """Lists of (tokens (B, L) right-padded with <pad>=0, lengths (B,), labels (B,)) from `encode`'s
    output. Examples of similar length are batched together (less padding); with shuffle, which ones
    and in what order is random (torch's RNG, so a resumed run replays it)."""
    ids, lengths, labels = encoded
    if shuffle:  # sort by length inside random pools of 50 batches, then shuffle the batches
        order = torch.randperm(len(ids))
        pool = batch_size * 50
        order = torch.cat([chunk[torch.argsort(lengths[chunk], stable=True)] for chunk in order.split(pool)])
    else:
        order = torch.argsort(lengths, stable=True)
    batches = []
    for idx in order.split(batch_size):
        rows = pad_sequence([ids[i] for i in idx.tolist()], batch_first=True)
        tokens = torch.zeros(len(idx), max(min_len, int(lengths[idx].max())), dtype=torch.long)
        tokens[:, :rows.size(1)] = rows
        batches.append((tokens, lengths[idx], labels[idx]))
    if shuffle:
        batches = [batches[i] for i in torch.randperm(len(batches)).tolist()]
    return batches
