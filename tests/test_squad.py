"""Table 2 (SQuAD): the official metric, span decoding, token offsets, padding invariance, the smoke
table through the real entry point, and clear errors for bad input."""
import gzip
import json
import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from tasks.common.data import DataError, ensure_dataset
from tasks.squad import data
from tasks.squad.evaluate import evaluate, exact_match_score, f1_score, golds_of, normalize_answer, score
from tasks.squad.model import DocReader, decode
from helpers import MIRROR, mirror_has, run_module, smoke_table

needs_squad = mirror_has("squad")
QUIET = dict(log=lambda *_: None)


def no_progress(iterable, **_):
    return iterable


# ---- the official metric --------------------------------------------------------------------------

def test_normalisation_strips_case_punctuation_articles_and_spaces():
    assert normalize_answer("  The  Denver-Broncos!  ") == "denverbroncos"
    assert normalize_answer("an apple, a pear and THE plum.") == "apple pear and plum"
    assert normalize_answer("Theory of a thesis") == "theory of thesis"   # 'the' only as a whole word


def test_exact_match_and_f1_on_hand_made_cases():
    assert exact_match_score("the Eiffel Tower", "Eiffel tower.") == 1.0
    assert f1_score("Eiffel Tower in Paris", "the Eiffel Tower") == pytest.approx(2 * 0.5 * 1.0 / 1.5)
    assert f1_score("Paris", "London") == 0.0
    assert f1_score("a", "the") == 0.0                   # both normalise to nothing: no common token
    assert exact_match_score("a", "the") == 1.0          # ... but they are equal strings (as officially)
    assert score("", ["Denver Broncos"]) == (0.0, 0.0)   # an empty prediction scores zero
    # the maximum over several golds, for EM and F1 separately
    assert score("Denver", ["Denver Broncos", "the Broncos", "Denver"]) == (1.0, 1.0)
    em, f1 = score("Broncos team", ["Denver Broncos", "Broncos"])
    assert em == 0.0 and f1 == pytest.approx(2 / 3)


def test_dataset_scores_average_over_every_question_and_missing_ones_score_zero():
    golds = {"q1": ["Denver Broncos"], "q2": ["1990s", "the 1990s"], "q3": ["Paris"]}
    got = evaluate(golds, {"q1": "the Denver Broncos", "q2": "1990s", "unknown": "x"})
    assert got["exact_match"] == pytest.approx(200 / 3)
    assert got["f1"] == pytest.approx(200 / 3)


# ---- spans -----------------------------------------------------------------------------------------

def test_token_span_maps_characters_onto_tokens():
    offsets = np.array([(0, 3), (4, 9), (10, 12), (12, 13)])       # "The Super Bowl 50."-like
    assert data.token_span(offsets, 4, 9) == (1, 1)
    assert data.token_span(offsets, 4, 12) == (1, 2)
    assert data.token_span(offsets, 5, 7) == (1, 1)                   # inside a token: that token
    assert data.token_span(offsets, 13, 15) is None                    # past the text


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_decoded_spans_are_the_best_allowed_pair(seed):
    g = torch.Generator().manual_seed(seed)
    start, end = torch.randn(6, 40, generator=g) * 3, torch.randn(6, 40, generator=g) * 3
    start[:, 30:] = end[:, 30:] = float("-inf")                        # padding
    s, e, p = decode(start, end, max_span=15)
    assert ((s <= e) & (e - s < 15) & (e < 30)).all(), f"seed {seed}"
    ps, pe = start.softmax(1), end.softmax(1)
    for b in range(6):   # brute force over every allowed pair
        best = max((ps[b, i] * pe[b, j]).item() for i in range(40) for j in range(i, min(i + 15, 40)))
        assert p[b].item() == pytest.approx(best, rel=1e-6), f"seed {seed}, example {b}"
        assert (ps[b, s[b]] * pe[b, e[b]]).item() == pytest.approx(best, rel=1e-6)


@needs_squad
def test_token_offsets_reproduce_the_dev_answers(tmp_path, capsys, monkeypatch):
    files, _ = data.squad_files(tmp_path / "data", **QUIET)
    dev = data.preprocess(files["dev"], "blank", None, tmp_path / "cache", no_progress, **QUIET)
    assert len(dev["questions"]) == 10570
    exact = total = 0
    for q in dev["questions"]:
        context, offsets = dev["contexts"][q["context"]], dev["context_tokens"][q["context"]]["offsets"]
        for (start, text), span, is_exact in zip(q["answers"], q["spans"], q["exact"]):
            total += 1
            assert span is not None and span[0] <= span[1], q["id"]
            covered = context[offsets[span[0], 0]:offsets[span[1], 1]]
            assert text in covered, (q["id"], text, covered)           # the span always covers the answer
            if is_exact:
                exact += 1
                assert covered == text, q["id"]
    share = exact / total
    with capsys.disabled():
        print(f"\n  SQuAD dev: token spans reproduce {exact:,} of {total:,} gold answers exactly ({100 * share:.2f}%)")
    assert share > 0.97
    # the cache is keyed by the inputs: the same call reads it, a different limit tokenises again
    monkeypatch.setattr(data, "tokenize", lambda *a: pytest.fail("tokenised again despite the cache"))
    again = data.preprocess(files["dev"], "blank", None, tmp_path / "cache", no_progress, **QUIET)
    assert [q["spans"] for q in again["questions"]] == [q["spans"] for q in dev["questions"]]
    with pytest.raises(pytest.fail.Exception, match="tokenised again"):
        data.preprocess(files["dev"], "blank", 10, tmp_path / "cache", no_progress, **QUIET)


@needs_squad
def test_a_seeded_training_subset_is_drawn_from_every_article(tmp_path):
    files, _ = data.squad_files(tmp_path / "data", **QUIET)
    _, every = data.read_squad(files["dev"])
    order = {q["id"]: i for i, q in enumerate(every)}
    first_contexts, first = data.read_squad(files["dev"], 500)
    assert [q["id"] for q in first] == [q["id"] for q in every[:500]]
    contexts, sample = data.read_squad(files["dev"], 500, sample_seed=7)
    ids = [q["id"] for q in sample]
    assert len(set(ids)) == 500 and ids == sorted(ids, key=order.get)  # distinct, in file order
    assert ids == [q["id"] for q in data.read_squad(files["dev"], 500, sample_seed=7)[1]]  # the seed fixes it
    assert ids != [q["id"] for q in data.read_squad(files["dev"], 500, sample_seed=8)[1]]
    assert len(contexts) > 3 * len(first_contexts)  # spread over the file, not its first few articles
    for q in sample:  # each question still points at its own paragraph
        start, text = q["answers"][0]
        assert contexts[q["context"]][start:start + len(text)] == text


def test_cpu_budget_says_what_was_cut():
    from tasks.squad.table import budget
    assert budget([dict(train_questions=87_599, train_used=86_000, epochs=1)]).startswith(
        "all 87,599 training questions, 86,000 of them with a token-aligned answer; 1 epoch instead of 50")
    assert "a random 20,000 of the 87,599 training questions (seed 3" in budget(
        [dict(train_questions=20_000, train_sample_seed=3, train_used=19_800, epochs=3)])
    assert "the first 640 training questions" in budget([dict(train_questions=640, train_used=633, epochs=2)])


# ---- the model: padding and batch composition change nothing ----------------------------------------

@pytest.fixture(scope="module")
def dev_slice(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("squad")
    files, _ = data.squad_files(tmp / "data", **QUIET)
    dev = data.preprocess(files["dev"], "blank", 300, tmp / "cache", no_progress, **QUIET)
    itos, vectors, lowercase = data.build_vocab(dev, dev, "glove-6b-50d")
    paragraphs, questions = data.encode(dev, {w: i for i, w in enumerate(itos)}, lowercase, {}, {})
    return dev, itos, vectors, paragraphs, questions


def reader(kind, itos, vectors, seed):
    cfg = OmegaConf.load(f"configs/squad/model/{kind}.yaml").model
    cfg.layers = 2
    args = dict(vocab_size=len(itos), dim=vectors.shape[1], tuned=30, hidden=16, max_span=15, use_pos=False,
                use_ner=False, pos_size=0, ner_size=0)
    torch.manual_seed(seed)
    return DocReader(cfg, args, vectors).eval()


@needs_squad
@pytest.mark.parametrize("kind", ["sru", "lstm"])
def test_predictions_do_not_depend_on_batch_size_or_padding(dev_slice, kind):
    dev, itos, vectors, paragraphs, questions = dev_slice
    model = reader(kind, itos, vectors, seed=3)
    lengths = [len(paragraphs[q["context"]]["ids"]) for q in dev["questions"]]
    order = np.argsort(lengths)
    picked = [int(order[0]), int(order[len(order) // 2]), int(order[-1]), int(order[1])]  # short, mid, longest
    assert lengths[picked[0]] < lengths[picked[2]] and len({len(questions[i]["ids"]) for i in picked}) > 1
    with torch.no_grad():
        batched = model(data.make_batch(picked, dev, paragraphs, questions, False))
        for row, i in enumerate(picked):
            alone = model(data.make_batch([i], dev, paragraphs, questions, False))
            n = lengths[i]
            for a, b in zip(alone, batched):
                torch.testing.assert_close(b[row, :n], a[0, :n], rtol=1e-4, atol=1e-5,
                                           msg=lambda m: f"{kind}, question {i} (length {n}), seed 3: {m}")
                assert torch.isinf(b[row, n:]).all()                 # padded positions are never chosen
            s1, e1, _ = decode(*alone, 15)
            s2, e2, _ = decode(batched[0][row:row + 1], batched[1][row:row + 1], 15)
            assert (s1.item(), e1.item()) == (s2.item(), e2.item())


@needs_squad
@pytest.mark.parametrize("kind", ["sru", "lstm"])
def test_rnn_clock_times_forward_and_backward_of_the_encoders(dev_slice, kind):
    dev, itos, vectors, paragraphs, questions = dev_slice
    model = reader(kind, itos, vectors, seed=4).train()
    batch = data.make_batch(list(range(8)), dev, paragraphs, questions, True)
    start, end = model(batch)
    forward = model.clock.seconds
    assert forward > 0
    (torch.nn.functional.cross_entropy(start, batch["start"]) + torch.nn.functional.cross_entropy(end, batch["end"])).backward()
    assert model.clock._backward_start is None and model.clock.seconds > forward    # both marks fired
    assert model.embedding.tuned.grad is not None                                   # gradients flow through
    assert model.clock.take() > forward and model.clock.seconds == 0.0
    with torch.no_grad():
        model.eval()(batch)
    assert model.clock.seconds == 0.0                                               # evaluation is not timed


def test_parameter_count_at_the_authors_sizes_is_their_logged_count():
    """The authors' DrQA/ log: 2,806,118 parameters without word embeddings (5 bi-SRU layers, h 128,
    300d vectors, 56 POS and 19 NER tags, learned tag embeddings of those sizes)."""
    cfg = OmegaConf.load("configs/squad/model/sru.yaml").model
    args = dict(vocab_size=10, dim=300, tuned=5, hidden=128, max_span=15, use_pos=True, use_ner=True, pos_size=56,
                ner_size=19)
    model = DocReader(cfg, args)
    assert sum(p.numel() for n, p in model.named_parameters() if not n.startswith("embedding.")) == 2_806_118


@pytest.fixture(scope="module")
def tagged(tmp_path_factory):
    """A tiny SQuAD file tokenised by a tiny (untrained) spaCy tagger + NER saved to a directory."""
    import spacy
    tmp = tmp_path_factory.mktemp("tagger")
    nlp = spacy.blank("en")
    tagger, ner = nlp.add_pipe("tagger"), nlp.add_pipe("ner")
    for label in ("NN", "VB", "DT", "NNP"):
        tagger.add_label(label)
    for label in ("PERSON", "ORG"):
        ner.add_label(label)
    nlp.initialize()
    nlp.to_disk(tmp / "pipeline")
    context = "John Smith founded the tiny company in Paris. It makes small boats and red kites."
    qas = [dict(id=f"q{i}", question=q, answers=[dict(text=a, answer_start=context.index(a))])
           for i, (q, a) in enumerate([("Who founded the company?", "John Smith"), ("Where?", "Paris"),
                                       ("What does it make?", "small boats")])]
    path = tmp / "tiny.json"
    path.write_text(json.dumps(dict(version="1.1", data=[dict(title="t", paragraphs=[dict(context=context, qas=qas)])])))
    split = data.preprocess(path, str(tmp / "pipeline"), None, tmp / "cache", no_progress, **QUIET)
    return split


@pytest.mark.parametrize("kind", ["sru", "lstm"])
def test_tags_of_a_tagging_pipeline_are_the_authors_embeddings_or_drqas_one_hot(tagged, kind):
    split, seed = tagged, 11
    assert {"pos", "ner"} <= set(split["features"])
    tags = {k: data.tag_vocab(split, k) for k in ("pos", "ner")}
    words = sorted({w for t in split["context_tokens"] + [q["tokens"] for q in split["questions"]] for w in t["words"]})
    itos = ["<pad>", "<unk>"] + words
    paragraphs, questions = data.encode(split, {w: i for i, w in enumerate(itos)}, False, tags["pos"], tags["ner"])
    cfg = OmegaConf.load(f"configs/squad/model/{kind}.yaml").model
    cfg.layers = 1
    args = dict(vocab_size=len(itos), dim=8, tuned=4, hidden=6, max_span=15, use_pos=True, use_ner=True,
                pos_size=len(tags["pos"]), ner_size=len(tags["ner"]))
    torch.manual_seed(seed)
    model = DocReader(cfg, args, torch.randn(len(itos), 8))
    batch = data.make_batch([0, 1, 2], split, paragraphs, questions, True)
    other = dict(batch, doc_pos=torch.where(batch["doc_pos"] > 0, 1, 0))   # every tag "unseen"
    if kind == "sru":   # learned, N(0, 1), trained, under embedding dropout
        weights = {k: e.weight for k, e in model.tag_embedding.items()}
        assert [tuple(w.shape) for w in weights.values()] == [(len(tags["pos"]), 56), (len(tags["ner"]), 19)]
        start, end = model.train()(batch)
        (F.cross_entropy(start, batch["start"]) + F.cross_entropy(end, batch["end"])).backward()
        assert all(w.grad is not None and w.grad.abs().sum() > 0 for w in weights.values()), f"seed {seed}"
        model.embed_dropout = 1.0                                        # everything embedded is dropped
        torch.manual_seed(seed)
        a = model(batch)[0]
        torch.manual_seed(seed)
        torch.testing.assert_close(model(other)[0], a, msg=lambda m: f"seed {seed}: tags not dropped: {m}")
    else:               # DrQA's one-hot features: no parameters, ids 0 and 1 all-zero
        assert len(model.tag_embedding) == 0
        assert model.doc_rnn.layers[0].input_size == 2 * 8 + 4 + len(tags["pos"]) - 2 + len(tags["ner"]) - 2
    with torch.no_grad():
        assert not torch.equal(model.eval()(other)[0], model(batch)[0]), f"seed {seed}: the tags change nothing"


def test_synthetic_speed_rows_time_a_full_training_step():
    from tasks.squad.speed import time_row
    r = time_row({"model": "sru", "layers": 2}, torch.device("cpu"), dim=20, steps=1, warmup=0, seed=0)
    assert 0 < r["rnn_sec_per_step"] < r["sec_per_step"]
    assert r["epoch_sec_extrapolated"] == pytest.approx(r["sec_per_step"] * 2738)


# ---- the real entry points ---------------------------------------------------------------------------

TINY = ["profile.max_train_questions=64", "profile.max_dev_questions=32", "profile.epochs=1"]


@needs_squad
def test_smoke_table_through_the_entry_point(tmp_path):
    rows = smoke_table("squad", "table2", tmp_path, *TINY)   # + the report and the W&B view's keys
    dev_file = tmp_path / "data" / "squad" / "dev-v1.1.recon.json"
    dev_json = json.loads(dev_file.read_text())
    assert [(r["model"], r["layers"]) for r in rows] == [("lstm", 3), ("sru", 3), ("sru", 4), ("sru", 5), ("sru", 6)]
    for r in rows:
        for key in ("model", "layers", "hidden", "params", "em", "f1", "sec_per_epoch", "rnn_sec_per_epoch",
                    "profile", "vectors", "features", "predictions"):
            assert r[key] is not None, key
        assert r["profile"] == "smoke" and r["vectors"] == "glove-6b-50d" and "tf" in r["features"]
        assert 0 < r["rnn_sec_per_epoch"] < r["sec_per_epoch"]
        predictions = json.loads(open(r["predictions"]).read())
        assert len(predictions) == 32 and all(isinstance(v, str) and v for v in predictions.values())
        # the official-format file scores as the run reported
        golds = {k: v for k, v in golds_of(dev_json).items() if k in predictions}
        assert len(golds) == 32
        got = evaluate(golds, predictions)
        assert (got["exact_match"], got["f1"]) == (pytest.approx(r["em"]), pytest.approx(r["f1"]))
    out = run_module("tasks.squad.evaluate", str(dev_file), rows[0]["predictions"])    # the official command line
    assert out.returncode == 0 and set(json.loads(out.stdout)) == {"exact_match", "f1"}, out.stderr
    golds_all = set(json.loads(open(rows[3]["predictions"]).read()))
    md = (tmp_path / "results" / "table2.md").read_text()
    assert "SMOKE RUN" in md and "69.5" in md and "80.2" in md and "glove-6b-50d" in md
    # the best checkpoint rebuilds the model by itself
    from tasks.common.checkpoint import load_model
    best = tmp_path / "runs" / "sru-5x128-smoke" / "best.pt"
    model, _ = load_model(best)
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == rows[3]["params"]
    # ... and answers questions from it alone, exactly as the run did
    first = dev_json["data"][0]          # the 32 questions of the smoke dev set are the first article's first
    first = dict(first, paragraphs=[dict(p, qas=[q for q in p["qas"] if q["id"] in golds_all])
                                    for p in first["paragraphs"]])
    small = tmp_path / "dev32.json"
    small.write_text(json.dumps({"version": "1.1", "data": [first]}))
    out = run_module("tasks.squad.predict", str(best), str(small), str(tmp_path / "again.json"))
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads((tmp_path / "again.json").read_text()) == json.loads(open(rows[3]["predictions"]).read())


# ---- bad input ----------------------------------------------------------------------------------------

@mirror_has("squad")
def test_missing_corrupt_and_malformed_data_give_clear_errors(tmp_path):
    with pytest.raises(DataError, match="not found in the mirror"):
        ensure_dataset("squad", tmp_path / "a", mirror=tmp_path / "empty", **QUIET)
    bad = tmp_path / "mirror" / "squad"
    bad.mkdir(parents=True)
    for f in (MIRROR / "squad").glob("*.gz"):
        shutil.copy(f, bad / f.name)
    with gzip.open(bad / "dev-v1.1.recon.json.gz", "wb") as f:
        f.write(b'{"data": [], "version": "1.1"}')
    with pytest.raises(DataError, match="expected sha256"):
        ensure_dataset("squad", tmp_path / "b", mirror=tmp_path / "mirror", **QUIET)
    malformed = tmp_path / "malformed.json"
    malformed.write_text(json.dumps({"data": [{"title": "x", "paragraphs": [{"context": "c", "qas": [{"id": "1"}]}]}]}))
    with pytest.raises(DataError, match="SQuAD v1.1 layout"):
        data.read_squad(malformed)
    malformed.write_text("{not json")
    with pytest.raises(DataError, match="not readable JSON"):
        data.read_squad(malformed)


@pytest.mark.parametrize("override, message", [("model=gru", "model"), ("model.kind=gru", "model.kind"),
                                               ("data.tokenizer=en_no_such_pipeline", "no spaCy pipeline"),
                                               ("data.vectors=/no/such/vectors.txt", "vectors")])
@needs_squad
def test_bad_config_is_refused_with_a_clear_message(tmp_path, override, message):
    proc = run_module("tasks.squad.train", *TINY, override, f"data_dir={tmp_path / 'data'}",
                      f"out_dir={tmp_path / 'run'}")
    assert proc.returncode != 0 and message in proc.stderr, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr


def test_speed_note_compares_drqas_lstm_with_the_five_layer_sru():
    from tasks.squad.table import speed_note
    lstm = dict(model="lstm", layers=3, sec_per_epoch=300.0, rnn_sec_per_epoch=240.0, machine="CPU: X")
    sru5 = dict(model="sru", layers=5, sec_per_epoch=200.0, rnn_sec_per_epoch=80.0, machine="CPU: X")
    assert speed_note([lstm, sru5]) == ["- Speed: LSTM 3 layers / SRU 5 layers = 1.50x per epoch, 3.00x in the RNN "
                                        "part, measured on CPU: X; the paper: ~3.5x and ~5.9x (GTX 1070, cuDNN LSTM)."]
    assert speed_note([lstm, dict(sru5, layers=3)]) == [] and speed_note([sru5]) == []
