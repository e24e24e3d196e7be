"""Table 5 (speech): the connected-digit builder, filterbanks, CTC decoding, WER, the Kaldi and Lhotse
readers, the smoke table through the real entry point, and clear errors for bad audio."""
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from tasks.common.data import DataError, ensure_dataset
from tasks.speech import data
from tasks.speech.metrics import ctc_greedy, error_rates
from helpers import MIRROR, ROOT, check_report, mirror_has, run_module, smoke_table

needs_fsdd = mirror_has("fsdd")
QUIET = dict(log=lambda *_: None)


@pytest.fixture(scope="module")
def recordings(tmp_path_factory):
    root = tmp_path_factory.mktemp("fsdd")
    ensure_dataset("fsdd", root, **QUIET)
    return data.fsdd_recordings(root / "fsdd" / "recordings")


@needs_fsdd
def test_connected_digits_are_seeded_split_clean_and_transcribed(recordings):
    a = data.connected_digits(recordings, "train", 50, 7, seed=3)
    assert a == data.connected_digits(recordings, "train", 50, 7, seed=3)            # deterministic
    assert a != data.connected_digits(recordings, "train", 50, 7, seed=4)
    by_path = {r["path"]: r for r in recordings}
    for split, (lo, hi) in (("train", (10, 50)), ("dev", (5, 10)), ("test", (0, 5))):
        for u in data.connected_digits(recordings, split, 40, 7, seed=3):
            pieces = [by_path[p] for p in u["pieces"]]
            assert all(lo <= r["index"] < hi for r in pieces), f"{split}: a recording from another split"
            assert len({r["speaker"] for r in pieces}) == 1 and 1 <= len(pieces) <= 7
            assert u["text"].split() == [data.DIGITS[r["digit"]] for r in pieces]
    u = a[0]
    samples, rate = data.synthesize(u)
    parts = [data.read_audio(p)[0] for p in u["pieces"]]
    assert rate == 8000 and len(samples) == sum(map(len, parts)) + sum(u["gaps"])
    np.testing.assert_array_equal(samples[u["gaps"][0]:u["gaps"][0] + len(parts[0])], parts[0])


@needs_fsdd
def test_fbank_has_kaldi_frames_and_normalisation_centres_the_training_set(recordings):
    samples, rate = data.read_audio(recordings[0]["path"])
    f = data.fbank(samples, rate)
    assert f.shape == (1 + (len(samples) - 200) // 80, 40)        # 25 ms windows every 10 ms at 8 kHz
    feats = [data.fbank(*data.read_audio(r["path"])) for r in recordings[:20]]
    mean, std = data.normaliser(feats)
    frames = np.concatenate([(x - mean) / std for x in feats])
    np.testing.assert_allclose(frames.mean(0), 0, atol=1e-4)
    np.testing.assert_allclose(frames.std(0), 1, atol=1e-3)
    stacked = data.stack(f, 3)
    assert stacked.shape == (len(f) // 3, 120) and np.array_equal(stacked[1, 40:80], f[4])


def test_ctc_greedy_merges_repeats_then_drops_blanks():
    paths = torch.tensor([[1, 1, 0, 1, 2, 2, 0, 0, 3], [0, 0, 2, 0, 2, 2, 1, 1, 1]])
    log_probs = torch.nn.functional.one_hot(paths, 4).float().log()
    assert ctc_greedy(log_probs, torch.tensor([9, 6])) == [[1, 1, 2, 3], [2, 2]]


def test_wer_and_cer_are_corpus_totals():
    rates = error_rates(["one two three", "four five"], ["one three", "four five six"])
    assert rates["wer"] == pytest.approx(100 * 2 / 5)                # one deletion + one insertion / 5 words
    assert error_rates(["yes no"], ["yes no"]) == dict(wer=0.0, cer=0.0)
    assert error_rates(["yes"], [""])["wer"] == pytest.approx(100.0)


def write_wav(path, seconds, rate=8000, seed=0):
    sf.write(str(path), np.random.default_rng(seed).uniform(-0.1, 0.1, int(seconds * rate)).astype(np.float32), rate)


def test_kaldi_data_directory_with_wavs_or_feats(tmp_path):
    import kaldiio
    d = tmp_path / "kaldi"
    d.mkdir()
    for i in range(3):
        write_wav(tmp_path / f"u{i}.wav", 0.3 + 0.1 * i, seed=i)
    (d / "wav.scp").write_text("".join(f"utt{i} {tmp_path / f'u{i}.wav'}\n" for i in range(3)))
    (d / "text").write_text("utt0 yes no\nutt1 no\nutt2 yes yes\n")
    (d / "utt2spk").write_text("utt0 a\nutt1 a\nutt2 b\n")
    utts = data.kaldi_dir(d)
    assert [(u["id"], u["speaker"], u["text"]) for u in utts] == [("utt0", "a", "yes no"), ("utt1", "a", "no"),
                                                                   ("utt2", "b", "yes yes")]
    assert data.features(utts[1]).shape == (38, 40)
    # feats.scp instead: the stored features are used as they are
    feats = {f"utt{i}": np.full((5 + i, 40), i, dtype=np.float32) for i in range(3)}
    kaldiio.save_ark(str(d / "feats.ark"), feats, scp=str(d / "feats.scp"))
    utts = data.kaldi_dir(d)
    assert [u["feats"].shape for u in utts] == [(5, 40), (6, 40), (7, 40)] and data.features(utts[2])[0, 0] == 2
    # bad input: a missing wav, a piped command, a text entry without audio
    (d / "feats.scp").unlink()
    (d / "wav.scp").write_text(f"utt0 {tmp_path / 'gone.wav'}\nutt1 sox x.flac -t wav - |\nutt2 {tmp_path / 'u2.wav'}\n")
    with pytest.raises(DataError, match="piped command"):
        data.kaldi_dir(d)
    (d / "wav.scp").write_text(f"utt0 {tmp_path / 'gone.wav'}\nutt2 {tmp_path / 'u2.wav'}\n")
    with pytest.raises(DataError, match="no entry for utterance 'utt1'"):
        data.kaldi_dir(d)
    (d / "text").write_text("utt0 yes\n")
    with pytest.raises(DataError, match="cannot read audio .*gone.wav"):
        data.features(data.kaldi_dir(d)[0])
    (tmp_path / "bad.wav").write_bytes(b"RIFF not really a wav")
    with pytest.raises(DataError, match="cannot read audio"):
        data.read_audio(tmp_path / "bad.wav")


def test_lhotse_manifests_cut_supervisions_from_recordings(tmp_path):
    from lhotse import Recording, RecordingSet, SupervisionSegment, SupervisionSet
    write_wav(tmp_path / "a.wav", 2.0)
    rec = Recording.from_file(tmp_path / "a.wav", recording_id="a")
    sups = [SupervisionSegment(id="a-0", recording_id="a", start=0.0, duration=0.5, text="yes", speaker="s1"),
            SupervisionSegment(id="a-1", recording_id="a", start=1.0, duration=0.8, text="no no", speaker="s1")]
    RecordingSet.from_recordings([rec]).to_file(tmp_path / "recordings.jsonl.gz")
    SupervisionSet.from_segments(sups).to_file(tmp_path / "supervisions.jsonl.gz")
    utts = data.lhotse_manifests(tmp_path / "recordings.jsonl.gz", tmp_path / "supervisions.jsonl.gz")
    assert [(u["id"], u["speaker"], u["text"]) for u in utts] == [("a-0", "s1", "yes"), ("a-1", "s1", "no no")]
    samples, rate = data.waveform(utts[1])
    full, _ = data.read_audio(tmp_path / "a.wav")
    assert rate == 8000 and len(samples) == 6400
    np.testing.assert_allclose(samples, full[8000:14400], atol=1e-4)


@pytest.mark.parametrize("kind", ["sru", "lstm"])
def test_unidirectional_output_reads_at_most_future_frames_raw_frames_ahead(kind):
    """future_frames counts raw 10-ms frames (the authors' 5-frame label delay), whatever the stacking: the
    output at step t changes with raw frames up to t's newest frame + lookahead and never beyond it."""
    from omegaconf import OmegaConf
    from tasks.speech.model import AcousticModel, lookahead_steps
    seed, stack, future, bins = 20261202, 3, 5, 4
    torch.manual_seed(seed)
    cfg = OmegaConf.create(dict(kind=kind, layers=2, hidden=8, bidirectional=False, future_frames=future, dropout=0.0,
                                rnn_dropout=0.0, use_tanh=True, highway_bias=0.0, cell="2017"))
    model = AcousticModel(cfg, dict(input_size=bins * stack, hidden=8, symbols=5, stack=stack)).eval()
    assert lookahead_steps(future, stack) == 1 and lookahead_steps(2, stack) == 0 and lookahead_steps(6, 3) == 2
    raw = torch.randn(60, bins)

    def out(frames):
        x = torch.from_numpy(data.stack(frames.numpy(), stack))[None]
        with torch.no_grad():
            return model(x, torch.tensor([x.size(1)]))[0]

    base = out(raw)
    for t in (0, 4, 9):
        newest = stack * t + stack - 1
        seen = newest + lookahead_steps(future, stack) * stack   # the last raw frame step t reads
        assert seen - newest <= future
        beyond = raw.clone()
        beyond[newest + future + 1:] += 10.0
        torch.testing.assert_close(out(beyond)[:t + 1], base[:t + 1], rtol=0, atol=0,
                                   msg=lambda m: f"seed {seed}, step {t} reads beyond {future} frames: {m}")
        inside = raw.clone()
        inside[seen] += 10.0
        assert not torch.equal(out(inside)[t], base[t]), f"seed {seed}: step {t} ignores raw frame {seen}"


@needs_fsdd
def test_smoke_table_through_the_entry_point(tmp_path):
    rows = smoke_table("speech", "table5", tmp_path, "profile.train_utterances=48", "profile.epochs=1")
    assert [(r["model"], r["layers"], r["bidirectional"]) for r in rows] == [
        ("lstm", 5, False), ("sru", 12, False), ("lstm", 5, True), ("sru", 12, True), ("lstm", 5, False)]
    assert [r["forget_bias"] for r in rows] == [None] * 4 + [1.0]  # the added row's init reached the model
    assert [r["forget_bias_text"] for r in rows] == ["torch default", "-", "torch default", "-", "1"]
    assert [r["seed"] for r in rows] == [1] * 5  # the seed repeats run at cpu and full only
    for r in rows:
        for key in ("model", "layers", "hidden", "bidirectional", "params", "wer", "cer", "sec_per_epoch", "profile",
                    "data", "hypotheses", "references"):
            assert r[key] is not None, key
        hyp, ref = Path(r["hypotheses"]).read_text().splitlines(), Path(r["references"]).read_text().splitlines()
        assert len(hyp) == len(ref) == 30 and [h.split()[0] for h in hyp] == [x.split()[0] for x in ref]
    assert "SMOKE RUN" in (tmp_path / "results" / "table5.md").read_text()
    # --publish: exactly the committed layout the report reads, paths relative to the repository root
    pub = tmp_path / "pub"
    publish = ["--profile", "smoke", "--publish", "--outputs", str(tmp_path / "runs"),
               "--publish-dir", str(pub), "profile.train_utterances=48", "profile.epochs=1", "logger=none",
               f"data_dir={tmp_path / 'data'}"]
    proc = run_module("tasks.speech.table", *publish)
    assert proc.returncode == 0, proc.stderr[-3000:]
    names = [r["run_name"] for r in rows]
    assert sorted(p.relative_to(pub).as_posix() for p in pub.rglob("*") if p.is_file()) == sorted(
        ["table5.json", "table5.md", "table5.png"] + [f"table5/{n}/{f}" for n in names
                                                      for f in ("result.json", "test.hyp", "test.ref")])
    published = json.loads((pub / "table5.json").read_text())
    assert published["profile"] == "smoke" and published["commits"] and published["machines"]
    for r in published["rows"]:
        for key in ("hypotheses", "references"):
            assert not Path(r[key]).is_absolute() and (ROOT / r[key]).resolve().parent == (pub / "table5" / r["run_name"]).resolve()
    page = check_report(tmp_path / "empty", ["table5"], published=pub, out=tmp_path / "report")
    assert "committed result" in page
    # a published table is not trained again, even with no local runs left
    shutil.rmtree(tmp_path / "runs")
    proc = run_module("tasks.speech.table", *publish)
    assert proc.returncode == 0 and proc.stdout.count("not trained again") == 5 and not (tmp_path / "runs").exists()


@mirror_has("yesno")
def test_yesno_corpus_transcripts_come_from_file_names(tmp_path):
    ensure_dataset("yesno", tmp_path, mirror=MIRROR, **QUIET)
    utts = data.yesno(tmp_path / "yesno" / "waves_yesno")
    assert len(utts) == 60 and utts[0]["id"] == "0_0_0_0_1_1_1_1" and utts[0]["text"] == "no no no no yes yes yes yes"


def test_lstm_forget_bias_sets_the_f_gate_only():
    """model.forget_bias=1: every layer and direction's f-gate bias (b_ih + b_hh, torch's i, f, g, o order) is 1
    at init; the other gates keep torch's init; null leaves the LSTM as torch builds it."""
    from tasks.common.models import make_rnn
    torch.manual_seed(0)
    plain = make_rnn("lstm", 6, 4, 2, bidirectional=True)
    torch.manual_seed(0)
    lstm = make_rnn("lstm", 6, 4, 2, bidirectional=True, forget_bias=1.0)
    for (name, p), (_, q) in zip(lstm.named_parameters(), plain.named_parameters()):
        if name.startswith("bias_ih"):
            hh = dict(lstm.named_parameters())[name.replace("bias_ih", "bias_hh")]
            assert torch.equal(p[4:8] + hh[4:8], torch.ones(4)), name
            assert torch.equal(p[:4], q[:4]) and torch.equal(p[8:], q[8:]), name
        elif not name.startswith("bias_"):
            assert torch.equal(p, q), name


def test_seed_and_lr_rows_are_named_passed_on_and_summarised():
    from tasks.speech import table
    cpu, smoke = table.TABLE.profile_rows("cpu"), table.TABLE.profile_rows("smoke")
    seeded = [r for r in cpu if r.get("seed") is not None]
    assert seeded and all(r not in smoke for r in seeded)
    names = [table.row_name(r, "cpu") for r in cpu]
    assert len(set(names)) == len(names)  # every seed (and lr) has its own output directory
    assert table.row_name(seeded[0], "cpu").endswith(f"-seed{seeded[0]['seed']}-digits-cpu")
    tuned = dict(seeded[0], lr=0.003)
    assert table.row_name(tuned, "cpu").endswith(f"-lr0.003-seed{tuned['seed']}-digits-cpu")
    run = table.TABLE.overrides_of(tuned, "cpu", "digits")  # what the run is given
    assert "optim.lr=0.003" in run and f"seed={tuned['seed']}" in run and "profile.epochs=60" in run
    assert not any(o.startswith("profile.epochs") for o in table.TABLE.overrides_of(tuned, "smoke", "digits"))
    row = dict(model="lstm", layers=5, hidden=128, bidirectional=False, forget_bias=None, lr=table.BASE_LR)
    rows = [dict(row, seed=s, wer=w) for s, w in ((3, 50.0), (1, 90.0), (2, 10.0))]
    rows.append(dict(row, forget_bias=1.0, seed=1, wer=91.0))  # another configuration, one seed: no line
    rows += [dict(row, lr=0.003, seed=s, wer=w) for s, w in ((1, 20.0), (2, 40.0))]  # another lr: its own line
    assert table.seed_notes(rows) == ["- LSTM 5 x 128 over 3 seeds: test WER 90.00 (seed 1), 10.00 (seed 2), "
                                      "50.00 (seed 3); median 50.00; 1 of 3 below 30.",
                                      "- LSTM 5 x 128, lr 0.003 over 2 seeds: test WER 20.00 (seed 1), 40.00 (seed 2); "
                                      "median 30.00; 1 of 2 below 30."]


@needs_fsdd
def test_export_streams_in_onnxruntime_with_the_pytorch_decoders_hypotheses(tmp_path):
    """`python -m tasks.speech.export best.pt model.onnx --decode`: a unidirectional SRU acoustic model (the smoke
    profile's, 1 epoch, its output layer then scrambled so that greedy CTC emits varied characters rather than
    blanks) decoded in onnxruntime chunk by chunk (100 ms, lookahead included) gives the PyTorch decoder's
    hypotheses and WER; a checkpoint of another task is refused, saying what was expected."""
    import torch
    data_dir = tmp_path / "data"
    proc = run_module("tasks.speech.train", "model=sru", "profile=smoke", "profile.epochs=1", "logger=none",
                      f"out_dir={tmp_path / 'run'}", f"data_dir={data_dir}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    ckpt = torch.load(tmp_path / "run" / "best.pt", weights_only=True)
    g = torch.Generator().manual_seed(0)
    for key in ("out.weight", "out.bias"):
        ckpt["model"][key] = 3 * torch.randn(ckpt["model"][key].shape, generator=g)
    torch.save(ckpt, tmp_path / "scrambled.pt")
    proc = run_module("tasks.speech.export", str(tmp_path / "scrambled.pt"), str(tmp_path / "model.onnx"), "--decode",
                      "--data-dir", str(data_dir), "--out", str(tmp_path / "hyps.txt"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(s for s in proc.stdout.splitlines() if s.startswith("test set"))
    match = re.search(r"WER PyTorch ([\d.]+), onnxruntime streaming ([\d.]+); (\d+) of (\d+) hypotheses identical",
                      line)
    assert match and match.group(1) == match.group(2) and match.group(3) == match.group(4), line
    hyps = [h.split(" ", 1)[1] for h in (tmp_path / "hyps.txt").read_text().splitlines() if " " in h]
    assert sum(bool(h.strip()) for h in hyps) >= len(hyps) // 2, "the scrambled model should emit characters"
    ckpt["task"] = "lm_ptb"
    torch.save(ckpt, tmp_path / "other.pt")
    proc = run_module("tasks.speech.export", str(tmp_path / "other.pt"), str(tmp_path / "x.onnx"))
    assert proc.returncode != 0 and "expected a Table 5 acoustic model" in proc.stderr, proc.stderr[-2000:]
