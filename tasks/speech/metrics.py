"""CTC greedy decoding and error rates for Table 5."""


def ctc_greedy(log_probs, lengths, blank=0):
    """Best path per utterance: argmax per frame, repeats merged, blanks dropped.
    log_probs (B, T, C), lengths (B,) -> [[label ids]]."""
    best = log_probs.argmax(-1).tolist()
    out = []
    for path, n in zip(best, lengths.tolist()):
        labels, previous = [], None
        for label in path[:n]:
            if label != previous and label != blank:
                labels.append(label)
            previous = label
        out.append(labels)
    return out


def error_rates(references, hypotheses):
    """Corpus WER and CER (x100) with jiwer: total edits / total reference words (characters)."""
    import jiwer
    if not references:
        raise ValueError("no references to score")
    return dict(wer=100.0 * jiwer.wer(references, hypotheses), cer=100.0 * jiwer.cer(references, hypotheses))


def greedy_text(log_probs, lengths, symbols):
    """Decoded strings: symbols[id] joined (characters; '|' is the word separator)."""
    return [ids_text(ids, symbols) for ids in ctc_greedy(log_probs, lengths)]


def ids_text(ids, symbols):
    """A hypothesis's label ids as text ('|' is the word boundary)."""
    return "".join(symbols[i] for i in ids).replace("|", " ").strip()
