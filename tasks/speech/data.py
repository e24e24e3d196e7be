"""Speech corpora for Table 5 and their features.

Corpora, each a list of utterances dict(id, speaker, text, audio) where audio() returns
(float32 samples in [-1, 1], sample rate), or dict(..., feats=array) when features come ready-made:
  * connected digits built from the Free Spoken Digit Dataset (like TIDIGITS): 1-7 digits of one
    speaker concatenated with short random silences, seeded; test utterances only from the official
    test recordings (index 0-4), dev from 5-9, train from 10-49;
  * isolated FSDD digits (the official split as is);
  * the Kaldi/OpenSLR yes/no corpus (8 words per file, the transcript is the file name);
  * any Kaldi data directory (wav.scp + text [+ utt2spk], or feats.scp + text via kaldiio);
  * any Lhotse recordings + supervisions manifests.
Features: 40-d log-mel filterbanks computed by kaldi-native-fbank (Kaldi's fbank: 25 ms frames,
10 ms shift, no dither), normalised with the training set's global mean and variance, optionally
stacked and subsampled (k consecutive frames side by side, every k-th kept).
"""
import re
from pathlib import Path

import numpy as np

from tasks.common.data import DataError

DIGITS = "zero one two three four five six seven eight nine".split()
FSDD_NAME = re.compile(r"^(\d)_([a-z]+)_(\d+)\.wav$")


def read_audio(path):
    import soundfile as sf
    try:
        samples, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (OSError, RuntimeError) as e:   # soundfile raises LibsndfileError (a RuntimeError) on bad files
        raise DataError(f"cannot read audio {path} ({e}); expected a WAV/FLAC file soundfile can open") from e
    return samples.mean(axis=1), rate


def fsdd_recordings(root):
    """[dict(path, digit, speaker, index)] of the FSDD recordings under root, sorted by name."""
    root = Path(root)
    files = sorted(root.glob("*.wav"))
    if not files:
        raise DataError(f"no FSDD recordings ({{digit}}_{{speaker}}_{{index}}.wav) in {root}")
    out = []
    for f in files:
        m = FSDD_NAME.match(f.name)
        if not m:
            raise DataError(f"{f}: not an FSDD file name; expected {{digit}}_{{speaker}}_{{index}}.wav")
        out.append(dict(path=f, digit=int(m[1]), speaker=m[2], index=int(m[3])))
    return out


def fsdd_split(recordings, split):
    """The official split (index 0-4 test, 5-49 train), with 5-9 of its training part held out as dev
    for model selection: test 0-4, dev 5-9, train 10-49."""
    lo, hi = dict(test=(0, 5), dev=(5, 10), train=(10, 50))[split]
    return [r for r in recordings if lo <= r["index"] < hi]


def isolated_digits(recordings, split):
    return [dict(id=r["path"].stem, speaker=r["speaker"], text=DIGITS[r["digit"]], pieces=[r["path"]], gaps=[0, 0])
            for r in fsdd_split(recordings, split)]


def connected_digits(recordings, split, count, max_digits, seed, rate=8000):
    """`count` seeded utterances of 1..max_digits digits, each from one speaker's recordings of this
    split, with silences of 50-300 ms between and 100 ms at both ends."""
    pool = fsdd_split(recordings, split)
    speakers = sorted({r["speaker"] for r in pool})
    by_speaker = {s: [r for r in pool if r["speaker"] == s] for s in speakers}
    rng = np.random.default_rng([seed, ("train", "dev", "test").index(split)])
    out = []
    for n in range(count):
        speaker = speakers[rng.integers(len(speakers))]
        picked = [by_speaker[speaker][i] for i in rng.integers(len(by_speaker[speaker]), size=rng.integers(1, max_digits + 1))]
        gaps = [int(0.1 * rate)] + [int(g * rate) for g in rng.uniform(0.05, 0.3, len(picked) - 1)] + [int(0.1 * rate)]
        out.append(dict(id=f"{split}-{speaker}-{n:05d}", speaker=speaker, text=" ".join(DIGITS[r["digit"]] for r in picked),
                        pieces=[r["path"] for r in picked], gaps=gaps))
    return out


def synthesize(utt):
    """The utterance's waveform: its recordings with the silences between (and around) them."""
    parts, rate = [], None
    for i, path in enumerate(utt["pieces"]):
        samples, r = read_audio(path)
        if rate is not None and r != rate:
            raise DataError(f"{path}: sample rate {r}, but {utt['pieces'][0]} has {rate}")
        rate = r
        parts += [np.zeros(utt["gaps"][i], np.float32), samples]
    parts.append(np.zeros(utt["gaps"][-1], np.float32))
    return np.concatenate(parts), rate


def yesno(root):
    """The yes/no corpus: waves_yesno/0_1_0_0_1_0_1_1.wav says no yes no no yes no yes yes."""
    files = sorted(Path(root).glob("*.wav"))
    if not files:
        raise DataError(f"no yes/no recordings (b1_b2_..._b8.wav) in {root}")
    return [dict(id=f.stem, speaker="yesno", text=" ".join("yes" if b == "1" else "no" for b in f.stem.split("_")),
                 pieces=[f], gaps=[0, 0]) for f in files]


def _table(path, required=True):
    path = Path(path)
    if not path.exists():
        if required:
            raise DataError(f"{path} is missing: a Kaldi data directory needs wav.scp (or feats.scp) and text")
        return {}
    out = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            key, _, value = line.strip().partition(" ")
            out[key] = value.strip()
    return out


def kaldi_dir(root):
    """Utterances of a Kaldi data directory: wav.scp (file paths; piped commands are not run) or
    feats.scp (read with kaldiio), text, and utt2spk when present."""
    root = Path(root)
    text, spk = _table(root / "text"), _table(root / "utt2spk", required=False)
    if (root / "feats.scp").exists():
        import kaldiio
        feats = kaldiio.load_scp(str(root / "feats.scp"))
        return [dict(id=u, speaker=spk.get(u, u), text=text[u], feats=np.asarray(feats[u], dtype=np.float32))
                for u in sorted(text) if u in feats]
    wavs = _table(root / "wav.scp")
    utts = []
    for u in sorted(text):
        if u not in wavs:
            raise DataError(f"{root}/wav.scp has no entry for utterance {u!r} of {root}/text")
        if wavs[u].endswith("|"):
            raise DataError(f"{root}/wav.scp: {u} is a piped command ({wavs[u]!r}); convert the audio to files "
                            f"(e.g. Kaldi's wav-copy) or give feats.scp")
        path = Path(wavs[u])   # absolute, or relative to the working directory (Kaldi's) or to the data dir
        if not path.is_absolute() and not path.exists() and (root / path).exists():
            path = root / path
        utts.append(dict(id=u, speaker=spk.get(u, u), text=text[u], pieces=[path], gaps=[0, 0]))
    return utts


def lhotse_manifests(recordings_path, supervisions_path):
    """One utterance per Lhotse supervision, cut from its recording."""
    from lhotse import RecordingSet, SupervisionSet
    try:
        recordings = {r.id: r for r in RecordingSet.from_file(recordings_path)}
        supervisions = list(SupervisionSet.from_file(supervisions_path))
    except (OSError, ValueError, KeyError) as e:
        raise DataError(f"cannot read the Lhotse manifests {recordings_path}, {supervisions_path} ({e})") from e
    utts = []
    for s in supervisions:
        if s.recording_id not in recordings:
            raise DataError(f"{supervisions_path}: supervision {s.id} names recording {s.recording_id!r}, which "
                            f"{recordings_path} does not have")
        rec = recordings[s.recording_id]

        def audio(rec=rec, s=s):
            samples = rec.load_audio(offset=s.start, duration=s.duration)
            return samples.mean(axis=0).astype(np.float32), rec.sampling_rate
        utts.append(dict(id=s.id, speaker=s.speaker or s.recording_id, text=s.text, audio=audio))
    return utts


def waveform(utt):
    return utt["audio"]() if "audio" in utt else synthesize(utt)


def fbank(samples, rate, bins=40):
    """(frames, bins) Kaldi-compatible log-mel filterbanks (kaldi-native-fbank; 16-bit sample scale)."""
    import kaldi_native_fbank as knf
    opts = knf.FbankOptions()
    opts.frame_opts.samp_freq = rate
    opts.frame_opts.dither = 0.0
    opts.mel_opts.num_bins = bins
    computer = knf.OnlineFbank(opts)
    computer.accept_waveform(rate, (samples * 32768.0).tolist())
    computer.input_finished()
    if computer.num_frames_ready == 0:
        return np.zeros((0, bins), np.float32)
    return np.stack([computer.get_frame(i) for i in range(computer.num_frames_ready)]).astype(np.float32)


def features(utt, bins=40):
    return utt["feats"] if "feats" in utt else fbank(*waveform(utt), bins=bins)


def normaliser(train_feats):
    """Global mean and standard deviation over every training frame."""
    frames = np.concatenate(train_feats)
    return frames.mean(axis=0), frames.std(axis=0) + 1e-5


def stack(feats, k):
    """k consecutive frames side by side, every k-th kept (frame rate / k); k=1: unchanged."""
    if k == 1:
        return feats
    n = len(feats) // k
    return feats[:n * k].reshape(n, k * feats.shape[1])
