"""Table 1: CV splits, SST phrases, word vectors, padding-invariant models, the smoke table end to end."""
import gzip
import json
import shutil
import statistics

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from tasks.classification.data import (cv_folds, encode, load_splits, majority_accuracy, make_batches, sst_phrases,
                                       subsample, tree_nodes)
from tasks.classification.model import SentenceClassifier
from tasks.common.data import DataError
from tasks.common.text import Vocab
from tasks.common.vectors import VectorsError, embedding_matrix, read_vectors
from helpers import MIRROR, ROOT, mirror_has, result_of, run_module, smoke_table

needs_mirror = mirror_has("classification")
needs_mr = mirror_has("classification")
QUIET = dict(log=lambda *_: None)


def test_cv_folds_are_disjoint_cover_everything_and_follow_the_seed():
    folds = cv_folds(1003, 10, seed=7)
    assert len(folds) == 10 and {len(f) for f in folds} <= {100, 101}
    everything = np.concatenate(folds)
    assert sorted(everything.tolist()) == list(range(1003))          # disjoint and covering
    assert all(np.array_equal(a, b) for a, b in zip(folds, cv_folds(1003, 10, seed=7)))
    assert not np.array_equal(np.concatenate(cv_folds(1003, 10, seed=8)), everything)
    with pytest.raises(ValueError, match="folds"):
        cv_folds(5, 10, seed=1)


def test_subsample_is_a_seeded_spread_not_the_head_of_a_sorted_file():
    examples = [(int(i >= 500), [f"w{i}"]) for i in range(1000)]     # sorted by label, like the SST trees
    some = subsample(examples, 100, seed=1)
    assert len(some) == 100 and some == sorted(some, key=lambda e: int(e[1][0][1:]))
    assert 30 < sum(label for label, _ in some) < 70 and some == subsample(examples, 100, seed=1)
    assert subsample(examples[:50], 100, seed=1) == examples[:50]


@needs_mirror
def test_mr_splits_partition_the_data_the_same_way_every_time(tmp_path, monkeypatch):
    monkeypatch.setenv("SRU_DATA_MIRROR", str(MIRROR))
    splits, classes = load_splits("mr", tmp_path, fold_seed=1234)
    assert classes == 2 and len(splits) == 10
    assert sum(len(s["test"]) for s in splits) == 10662
    for s in splits:
        assert len(s["train"]) + len(s["dev"]) + len(s["test"]) == 10662
        assert len(s["dev"]) == round(0.1 * (10662 - len(s["test"])))
        # disjoint as examples (MR has a few duplicate sentences, so compare with multiplicity)
        whole = sorted(map(repr, s["train"] + s["dev"] + s["test"]))
        assert whole == sorted(map(repr, splits[0]["train"] + splits[0]["dev"] + splits[0]["test"]))
    again, _ = load_splits("mr", tmp_path, fold_seed=1234)
    assert again[3]["dev"] == splits[3]["dev"] and again[3]["test"] == splits[3]["test"]


def test_tree_nodes_label_every_subtree():
    nodes = tree_nodes("(3 (2 The) (4 (3 Good) (2 movie)))")
    assert nodes == [(3, ["the", "good", "movie"]), (2, ["the"]), (4, ["good", "movie"]), (3, ["good"]),
                     (2, ["movie"])]
    with pytest.raises(ValueError, match="unbalanced"):
        tree_nodes("(3 (2 The) (4 good)")


@needs_mirror
def test_sst_phrases_match_the_trees_and_the_sentence_files():
    lines = gzip.open(MIRROR / "classification/sst_trees/train.txt.gz", "rt", encoding="utf-8").read().splitlines()
    fine, nodes = sst_phrases(lines, binary=False)
    assert len(lines) == 8544 and nodes == 318582                  # the counts the data README states
    distinct = {tuple(words) for line in lines for _, words in tree_nodes(line)}
    assert len(fine) == len(distinct)                              # each distinct phrase once
    binary, _ = sst_phrases(lines, binary=True)
    assert {label for label, _ in binary} == {0, 1}
    assert len(binary) == sum(label != 2 for label, _ in fine)     # neutral dropped, the rest kept
    # the roots are Kim's training sentences, with the same labels (3 differ by a non-breaking space)
    kim = [line.split(" ", 1) for line in (MIRROR / "classification/stsa.fine.train").read_text().splitlines()]
    roots = {tuple(words): label for label, words in (tree_nodes(line)[0] for line in lines)}
    same = sum(roots.get(tuple(text.split())) == int(label) for label, text in kim)
    assert same >= 8541


def test_packaged_glove_gives_the_known_vector_and_oov_rows_are_uniform():
    found, dim = read_vectors("glove-6b-50d", {"the", "qqzzxxnotaword"})
    assert dim == 50 and set(found) == {"the"}
    np.testing.assert_allclose(found["the"][:5], [0.418, 0.24968, -0.41242, 0.1217, 0.34527], rtol=1e-6)
    itos = ["<pad>", "the"] + [f"oov{i}" for i in range(200)]
    matrix, n_found = embedding_matrix("glove-6b-50d", itos, seed=3)
    assert n_found == 1 and not matrix[0].any()
    np.testing.assert_array_equal(matrix[1], found["the"])
    assert np.abs(matrix[2:]).max() <= 0.25 and matrix[2:].std() > 0.1  # U(-0.25, 0.25)
    np.testing.assert_array_equal(matrix, embedding_matrix("glove-6b-50d", itos, seed=3)[0])
    unit, _ = embedding_matrix("glove-6b-50d", itos, seed=3, normalize=True)
    np.testing.assert_allclose(np.linalg.norm(unit[1:], axis=1), 1.0, rtol=1e-5)
    assert not unit[0].any()                                            # <pad> stays zero


def test_vector_files_by_path_glove_word2vec_text_gz_and_binary(tmp_path):
    vecs = {"good": [0.5, -1.0, 2.0], "bad": [1.5, 0.25, -3.0]}
    (tmp_path / "glove.txt").write_text("".join(f"{w} {' '.join(map(str, v))}\n" for w, v in vecs.items()))
    with gzip.open(tmp_path / "w2v.txt.gz", "wt") as f:
        f.write("2 3\n" + "".join(f"{w} {' '.join(map(str, v))}\n" for w, v in vecs.items()))
    with open(tmp_path / "w2v.bin", "wb") as f:
        f.write(b"2 3\n" + b"".join(w.encode() + b" " + np.asarray(v, "<f4").tobytes() + b"\n"
                                     for w, v in vecs.items()))
    for name in ("glove.txt", "w2v.txt.gz", "w2v.bin"):
        found, dim = read_vectors(str(tmp_path / name), {"good", "bad", "ugly"})
        assert dim == 3 and set(found) == {"good", "bad"}, name
        np.testing.assert_array_equal(found["bad"], np.float32(vecs["bad"]))
    (tmp_path / "ragged.txt").write_text("good 1 2 3\nbad 1 2\n")
    with pytest.raises(VectorsError, match="ragged.txt:2"):
        read_vectors(str(tmp_path / "ragged.txt"))
    with pytest.raises(VectorsError, match="word2vec/GloVe file"):
        read_vectors(str(tmp_path / "missing.bin"))


@pytest.mark.parametrize("kind", ["cnn", "lstm", "sru"])
def test_predictions_do_not_depend_on_batch_padding(kind):
    torch.manual_seed(0)
    words = [f"w{i}" for i in range(30)]
    vocab = Vocab(words, specials=["<pad>"])
    cfg = OmegaConf.create(dict(kind=kind, widths=[3, 4, 5], maps=8, layers=2, hidden=16, dropout=0.5,
                                rnn_dropout=0.0, use_tanh=True, highway_bias=0.0, cell="2017"))
    model = SentenceClassifier(torch.randn(len(vocab), 10), 3, cfg).eval()
    examples = [(0, words[:2]), (1, words[5:17]), (2, words[3:4]), (0, words[:29]), (1, [])]  # CR has empties
    batch = make_batches(encode(examples, vocab), 5, shuffle=False, min_len=5)[0]
    together = model(batch[0], batch[1])
    for row, length in enumerate(batch[1].tolist()):
        tokens = batch[0][row:row + 1, :max(length, 5)]
        alone = model(tokens, batch[1][row:row + 1])
        torch.testing.assert_close(alone, together[row:row + 1], rtol=1e-5, atol=1e-6)


def cell(tmp_path, name, *overrides, check=True):
    proc = run_module("tasks.classification.train", "profile=smoke", "profile.max_examples=400",
                      f"out_dir={tmp_path / name}", f"data_dir={tmp_path / 'data'}", "logger=none", *overrides)
    return result_of(proc, tmp_path / name / "result.json") if check else proc


@needs_mr
def test_smoke_table_through_the_entry_point(tmp_path):
    rows = smoke_table("classification", "table1", tmp_path, "profile.max_examples=400")
    assert [(r["model"], r["dataset"]) for r in rows] == [("cnn", "MR"), ("lstm", "MR"), ("sru", "MR")]
    for r in rows:
        assert r["runs"] == 2 and r["run_kind"] == "folds" and r["profile"] == "smoke"
        assert r["vectors"] == "glove-6b-50d" and r["sec_per_epoch"] > 0 and len(r["test_accs"]) == 2
        assert r["acc_mean"] == pytest.approx(statistics.mean(r["test_accs"]))
        assert r["machine"]  # the CPU or card it ran on (the report says where each row ran)
        assert 35 < r["majority_acc"] < 65  # MR is balanced: always answering one label scores about 50
        assert r["acc_std"] == pytest.approx(statistics.stdev(r["test_accs"]))
    md = (tmp_path / "results" / "table1.md").read_text()
    assert "SMOKE RUN" in md and "glove-6b-50d" in md and "82-83" in md and "Majority class:" in md
    assert (tmp_path / "results" / "table1_fig2.png").stat().st_size > 10_000
    assert list((tmp_path / "runs" / "mr-sru-smoke" / "run0" / "wandb").glob("offline-run-*"))
    # --publish with --epoch-gap: the finished cells are kept, fold 0 of each model runs one epoch longer
    pub = tmp_path / "pub"
    publish = ["--profile", "smoke", "--publish", "--outputs", str(tmp_path / "runs"), "--publish-dir", str(pub),
               "--epoch-gap", "mr", "--gap-epochs", "3", "profile.max_examples=400", "logger=none",
               f"data_dir={tmp_path / 'data'}"]
    proc = run_module("tasks.classification.table", *publish)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("not trained again") == 3 and proc.stdout.count("profile.runs=1") == 3
    files = sorted(p.relative_to(pub).as_posix() for p in pub.rglob("*") if p.is_file())
    assert files == sorted(["table1.json", "table1.md", "table1.png", "table1_fig2.png"]
                           + [f"table1/mr-{m}-smoke/result.json" for m in ("cnn", "lstm", "sru")]
                           + [f"table1/epoch-gap/mr-{m}-full-fold0/result.json" for m in ("cnn", "lstm", "sru")])
    published = json.loads((pub / "table1.json").read_text())
    gap = [line for line in published["notes"].splitlines() if line.startswith(("| CNN |", "| LSTM |", "| SRU |"))
           and line.count("|") == 7]
    assert "Epoch gap (MR, fold 0)" in published["notes"] and len(gap) == 3
    assert all(line.endswith("| yes |") for line in gap)  # CPU runs are deterministic: the same first 2 epochs
    assert "Not run yet at this profile: cr-cnn-smoke" in published["notes"]
    shutil.rmtree(tmp_path / "runs")  # a published table and gap are not trained again
    proc = run_module("tasks.classification.table", *publish)
    assert proc.returncode == 0 and proc.stdout.count("not trained again") == 3 and not (tmp_path / "runs").exists()


@needs_mr
def test_resume_skips_finished_runs_and_continues_the_unfinished_one(tmp_path):
    whole = cell(tmp_path, "whole", "profile.epochs=3")
    cell(tmp_path, "split", "profile.epochs=2")                    # stopped after 2 epochs of each run
    resumed = cell(tmp_path, "split", "profile.epochs=3", "resume=true")
    def curves(result):  # everything but the wall-clock times
        return [[(e["epoch"], e["dev_acc"], e["train_loss"]) for e in h] for h in result["histories"]]
    assert curves(resumed) == curves(whole) and len(curves(whole)[1]) == 3
    assert resumed["test_accs"] == whole["test_accs"]


@needs_mr
@pytest.mark.parametrize("override, key", [("dataset=imdb", "dataset"), ("model.layers=0", "model.layers"),
                                           ("dev_fraction=1.5", "dev_fraction"),
                                           ("vectors=/nonexistent/vectors.txt", "vectors")])
def test_bad_config_fails_fast_naming_the_key(tmp_path, override, key):
    proc = cell(tmp_path, "bad", override, check=False)
    assert proc.returncode != 0 and key in proc.stderr and "Traceback" not in proc.stderr


def test_missing_data_names_the_mirror_file(tmp_path, monkeypatch):
    monkeypatch.setenv("SRU_DATA_MIRROR", str(tmp_path / "empty"))
    with pytest.raises(DataError, match="classification/custrev.all"):
        load_splits("cr", tmp_path / "data")


@needs_mirror
def test_every_dataset_loads_with_the_published_counts(tmp_path, monkeypatch):
    monkeypatch.setenv("SRU_DATA_MIRROR", str(MIRROR))
    totals = dict(mr=10662, cr=3775, subj=10000, mpqa=10606)
    for name, total in totals.items():
        splits, _ = load_splits(name, tmp_path)
        assert len(splits) == 10 and sum(len(s["test"]) for s in splits) == total, name
    (trec,), classes = load_splits("trec", tmp_path)
    assert classes == 6 and len(trec["train"]) + len(trec["dev"]) == 5452 and len(trec["test"]) == 500
    for name, classes, dev, test in (("sst1", 5, 1101, 2210), ("sst2", 2, 872, 1821)):
        (sst,), got = load_splits(name, tmp_path)
        assert got == classes and (len(sst["dev"]), len(sst["test"])) == (dev, test), name
        assert len(sst["train"]) > 50_000 and {label for label, _ in sst["train"]} == set(range(classes))


def test_cpu_profile_gives_sst_its_own_epoch_count_and_checks_the_map():
    from hydra import compose, initialize_config_dir

    from tasks.classification.train import dataset_epochs, validate_config
    with initialize_config_dir(config_dir=str(ROOT / "configs" / "classification"), version_base="1.3"):
        epochs = {}
        for dataset in ("sst1", "mr"):
            cfg = compose("config", overrides=["profile=cpu", f"dataset={dataset}"])
            validate_config(cfg)
            default = cfg.profile.epochs
            dataset_epochs(cfg)
            epochs[dataset] = cfg.profile.epochs
        assert epochs == dict(sst1=cfg.profile.dataset_epochs.sst1, mr=default) and epochs["sst1"] < default
        bad = compose("config", overrides=["profile=cpu", "+profile.dataset_epochs.imdb=3"])
    with pytest.raises(ValueError, match="profile.dataset_epochs"):
        validate_config(bad)


def test_majority_accuracy_answers_the_training_splits_most_frequent_label():
    split = dict(train=[(1, ["a"])] * 3 + [(0, ["b"])] * 2, test=[(0, ["c"])] * 3 + [(1, ["d"])])
    assert majority_accuracy(split) == 25.0  # label 1 rules train but is 1 of 4 test labels
