"""Table 4 (translation): incremental decoding == teacher forcing, beam 1 == greedy, padding changes
nothing, BLEU semantics, the input-feed guard, the WMT'14 loader, the smoke table through the real
entry point, and clear errors for bad data."""
import gzip
import shutil
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from tasks.common.data import DataError, ensure_dataset
from tasks.common.errors import UserError
from tasks.nmt import data
from tasks.nmt.model import Seq2Seq
from tasks.nmt.translate import beam_search, bleu_scores, greedy, translate
from helpers import MIRROR, mirror_has, run_module, smoke_table

needs_multi30k = mirror_has("multi30k")
FIXTURE = Path(__file__).parent / "fixtures" / "wmt14"


def model(kind, input_feed=False, layers=2, seed=0, dropout=0.0):
    cfg = OmegaConf.load(f"configs/nmt/model/{kind}.yaml")
    cfg.update(layers=layers, input_feed=input_feed, dropout=dropout)
    torch.manual_seed(seed)
    m = Seq2Seq(cfg, dict(src_vocab=30, tgt_vocab=25, emb=16, hidden=20))
    with torch.no_grad():  # larger weights than U(+-0.1): sharper distributions, a stronger test
        for p in m.parameters():
            p.mul_(8)
    return m.eval()


def batch(seed, B=4, S=9, T=7):
    g = torch.Generator().manual_seed(seed)
    src_len = torch.randint(2, S + 1, (B,), generator=g)
    src_len[0] = S
    src = torch.randint(4, 30, (B, S), generator=g)
    src[torch.arange(S)[None, :] >= src_len[:, None]] = 0
    tgt = torch.randint(4, 25, (B, T), generator=g)
    tgt[:, 0] = 2
    return src, src_len, tgt


KINDS = [("sru", False), ("lstm", False), ("lstm", True)]


@pytest.mark.parametrize("kind, feed", KINDS)
@pytest.mark.parametrize("seed", [0, 1])
def test_step_by_step_decoding_reproduces_teacher_forcing(kind, feed, seed):
    m = model(kind, feed, seed=seed)
    src, src_len, tgt = batch(seed)
    with torch.no_grad():
        forced = m(src, src_len, tgt)
        state, steps = m.start(src, src_len), []
        for t in range(tgt.size(1)):
            logp, state = m.decode_step(tgt[:, t], state)
            steps.append(logp)
    torch.testing.assert_close(torch.stack(steps, 1), forced, rtol=1e-5, atol=1e-5,
                               msg=lambda s: f"{kind} input_feed={feed}, seed {seed}: {s}")


@pytest.mark.parametrize("kind, feed", KINDS)
def test_beam_of_one_is_greedy_and_wider_beams_score_at_least_as_well(kind, feed):
    m = model(kind, feed, seed=3)
    src, src_len, _ = batch(3, B=5)
    g = greedy(m, src, src_len, 2, 3, max_len=12)
    assert beam_search(m, src, src_len, 2, 3, max_len=12, beam=1) == g, f"{kind} feed={feed}, seed 3"
    wide = beam_search(m, src, src_len, 2, 3, max_len=12, beam=4)

    def logprob(i, hyp):   # the model's score of a finished hypothesis (with </s> when it ended)
        words = [2] + hyp
        with torch.no_grad():
            logp = m(src[i:i + 1], src_len[i:i + 1], torch.tensor([words]))[0]
        ends = len(hyp) < 12
        target = hyp + ([3] if ends else [])
        return sum(logp[t, w].item() for t, w in enumerate(target))
    for i in range(5):
        assert logprob(i, wide[i]) >= logprob(i, g[i]) - 1e-4, f"{kind} feed={feed}, sentence {i}, seed 3"


@pytest.mark.parametrize("kind, feed", KINDS)
def test_padding_and_batch_company_do_not_change_a_translation(kind, feed):
    m = model(kind, feed, seed=5)
    src, src_len, _ = batch(5, B=4)
    together = beam_search(m, src, src_len, 2, 3, max_len=10, beam=3)
    for i in range(4):
        n = int(src_len[i])
        alone = beam_search(m, src[i:i + 1, :n], src_len[i:i + 1], 2, 3, max_len=10, beam=3)
        assert alone[0] == together[i], f"{kind} feed={feed}, sentence {i} (length {n}), seed 5"


@pytest.mark.parametrize("beam", [1, 3])
def test_translating_many_batches_gives_each_sentence_its_own_translation(beam):
    """More sentences than one decoding batch holds: the same translations, in input order, as one at a time."""
    m = model("sru", seed=6)
    words = [f"w{i}" for i in range(26)]
    stoi = dict({w: i for i, w in enumerate(data.SPECIALS)}, **{w: i + 4 for i, w in enumerate(words)})
    g = torch.Generator().manual_seed(6)
    sentences = [[words[j] for j in torch.randint(0, 26, (int(n),), generator=g)]
                 for n in torch.randint(1, 9, (11,), generator=g)]
    itos = list(data.SPECIALS) + [f"v{i}" for i in range(21)]
    # each sentence's own length limit (2 x its length + 3): the hypotheses that never end are cut there too
    cfg = OmegaConf.create(dict(decode=dict(batch_size=4, beam=beam, length_penalty=0.0, max_len_ratio=2,
                                            max_len_extra=3)))
    batched = translate(m, sentences, stoi, itos, cfg, torch.device("cpu"))
    alone = [translate(m, [s], stoi, itos, cfg, torch.device("cpu"))[0] for s in sentences]
    assert batched == alone, f"beam {beam}, seed 6"


def test_input_feeding_is_refused_for_the_sru():
    with pytest.raises(UserError, match="input_feed=true needs the LSTM"):
        model("sru", input_feed=True)


def test_bleu_of_the_references_is_100_and_the_signature_is_sacrebleus():
    tok = data.Tokenizer("de")
    raw = ["Ein Mann mit einem orangefarbenen Hut, der etwas anstarrt.", "Zwei Hunde spielen im Schnee."]
    refs = [tok(r) for r in raw]
    bleu, signature, bleu_tok, detok = bleu_scores(refs, refs, tok.detokenize, raw)
    assert bleu == pytest.approx(100) and bleu_tok == pytest.approx(100) and detok == raw
    assert "tok:13a" in signature and "version:" in signature
    worse, _, worse_tok, _ = bleu_scores([refs[0][:5], refs[1]], refs, tok.detokenize, raw)
    assert worse < 100 and worse_tok < 100


def test_wmt14_stanford_files_load_from_a_path():
    cfg = OmegaConf.load("configs/nmt/data/wmt14.yaml")
    cfg = OmegaConf.create(dict(data=dict(cfg, path=str(FIXTURE)), profile=dict(max_train_pairs=None, max_eval_pairs=None)))
    corpus, _, tgt_tok = data.load_corpus(cfg, "unused", log=lambda *_: None)
    assert [len(corpus[s]["src"]) for s in ("train", "valid", "test")] == [6, 3, 3]
    assert corpus["test"]["tgt"][2] == "Das ist ein lang ##AT##-##AT## fristiger Plan .".split()
    assert tgt_tok.detokenize(corpus["test"]["tgt"][2]) == "Das ist ein lang-fristiger Plan."
    assert corpus["test"]["tgt_raw"] is None   # references are detokenised from the tokenised files
    cfg.data.path = None
    with pytest.raises(DataError, match="data.path"):
        data.load_corpus(cfg, "unused", log=lambda *_: None)


def test_misaligned_parallel_files_are_refused(tmp_path):
    (tmp_path / "a.en").write_text("one\ntwo\n")
    (tmp_path / "a.de").write_text("eins\n")
    with pytest.raises(DataError, match="line-aligned"):
        data.read_parallel(tmp_path / "a.en", tmp_path / "a.de")


def test_bucketed_batches_cover_every_sentence_once_within_the_limits():
    src = [[1] * n for n in (3, 9, 4, 12, 5, 5, 7, 2, 8, 10)]
    tgt = [[1] * (n + 1) for n in (3, 9, 4, 12, 5, 5, 7, 2, 8, 10)]
    batches = data.bucketed_batches(src, tgt, batch_size=4, batch_tokens=30, order=list(range(10)))
    assert sorted(i for b in batches for i in b) == list(range(10))
    for b in batches:
        assert len(b) <= 4 and (len(b) == 1 or max(max(len(src[i]), len(tgt[i])) for i in b) * len(b) <= 30)


@mirror_has("multi30k")
def test_missing_and_corrupt_multi30k_give_clear_errors(tmp_path):
    with pytest.raises(DataError, match="not found in the mirror"):
        ensure_dataset("multi30k", tmp_path / "a", mirror=tmp_path / "empty", log=lambda *_: None)
    bad = tmp_path / "mirror" / "multi30k" / "raw"
    shutil.copytree(MIRROR / "multi30k" / "raw", bad)
    with gzip.open(bad / "val.de.gz", "wt") as f:
        f.write("nicht die echten Daten\n")
    with pytest.raises(DataError, match="expected sha256"):
        ensure_dataset("multi30k", tmp_path / "b", mirror=tmp_path / "mirror", log=lambda *_: None)


TINY = ["profile.max_train_pairs=300", "profile.max_eval_pairs=12", "decode.beam=2"]


@needs_multi30k
def test_smoke_table_through_the_entry_point(tmp_path):
    rows = smoke_table("nmt", "table4", tmp_path, *TINY)   # + the report and the W&B view's keys
    assert [(r["model"], r["layers"], r["input_feed"]) for r in rows] == [
        ("lstm", 2, True), ("lstm", 2, False), ("sru", 3, False), ("sru", 5, False), ("sru", 10, False)]
    for r in rows:
        for key in ("model", "layers", "input_feed", "params", "params_no_emb", "valid_ppl", "bleu", "bleu_tok",
                    "sacrebleu_signature", "sec_per_epoch", "profile", "data", "hypotheses", "references"):
            assert r[key] is not None, key
        assert r["profile"] == "smoke" and r["data"] == "multi30k" and r["params_no_emb"] < r["params"]
        hyps, refs = Path(r["hypotheses"]).read_text().splitlines(), Path(r["references"]).read_text().splitlines()
        assert len(hyps) == len(refs) == 12
    md = (tmp_path / "results" / "table4.md").read_text()
    assert "SMOKE RUN" in md and "sacreBLEU" in md and "not comparable" in md
    # the best checkpoint translates raw text by itself
    (tmp_path / "in.en").write_text("A man is riding a bike.\nTwo dogs play in the snow.\n")
    out = run_module("tasks.nmt.translate", str(tmp_path / "runs" / "sru-3x500-feedFalse-multi30k-smoke" / "best.pt"),
                     str(tmp_path / "in.en"), str(tmp_path / "out.de"))
    assert out.returncode == 0, out.stderr[-2000:]
    assert len((tmp_path / "out.de").read_text().splitlines()) == 2


@needs_multi30k
def test_input_feeding_with_an_sru_fails_through_the_entry_point(tmp_path):
    proc = run_module("tasks.nmt.train", *TINY, "model=sru", "model.input_feed=true", f"data_dir={tmp_path / 'data'}",
                      f"out_dir={tmp_path / 'run'}")
    assert proc.returncode != 0 and "model.input_feed" in proc.stderr and "needs the LSTM" in proc.stderr and "Traceback" not in proc.stderr


def test_table4_cpu_profile_runs_its_rows_in_parts_with_a_rescaled_schedule(monkeypatch, tmp_path):
    """profile=cpu: the four rows of the comparison (no LSTM-3, no SRU-10), `--rows` picks a part of them,
    and the lr halving starts at the profile's rescaled epoch (the other profiles keep OpenNMT's 8)."""
    from hydra import compose, initialize_config_dir

    from tasks.common import table as skeleton
    from tasks.nmt import table
    ran = []
    monkeypatch.setattr(skeleton, "run_entry_point", lambda module, args: ran.append(args[-1]))
    monkeypatch.setattr(skeleton, "finished", lambda args, name: None)
    with pytest.raises(SystemExit, match="no finished row"):  # nothing trained really: the table has no row
        table.TABLE.main(["--profile", "cpu", "--rows", "sru-3x,lstm-2x500-feedFalse", "--outputs", str(tmp_path)])
    assert [Path(a.split("=", 1)[1]).name for a in ran] == ["lstm-2x500-feedFalse-multi30k-cpu",
                                                            "sru-3x500-feedFalse-multi30k-cpu"]
    assert [table.row_name(r, "cpu") for r in table.TABLE.profile_rows("cpu")] == [
        "lstm-2x500-feedTrue-multi30k-cpu", "lstm-2x500-feedFalse-multi30k-cpu", "sru-3x500-feedFalse-multi30k-cpu",
        "sru-5x500-feedFalse-multi30k-cpu"]
    with pytest.raises(SystemExit, match="matches none"):
        table.TABLE.main(["--profile", "cpu", "--rows", "gru", "--outputs", str(tmp_path)])
    with initialize_config_dir(str(table.ROOT / "configs" / "nmt"), version_base=None):
        assert compose("config", ["profile=cpu"]).optim.decay_start == 2
        assert compose("config", ["profile=smoke"]).optim.decay_start == 8


def test_cpu_budget_says_what_was_cut_from_the_rows():
    from tasks.nmt.table import budget
    row = dict(data="multi30k", train_pairs=29_000, beam=5, hidden=250, epochs=4, decay_start=2)
    assert budget([row]) == ("all 29,000 multi30k training pairs, every test sentence, beam 5; width 250 instead of "
                                    "500, 4 epochs instead of 13, lr halving from epoch 2 instead of 8")
    assert budget([dict(row, train_pairs=3_000, epochs=1)]).startswith("the first 3,000 multi30k training pairs")
