"""Learning-rate schedules the tasks share: one meaning of `optim.decay_start` for every task."""


def decayed_lr(base, decay, start, epoch):
    """The lr of (1-based) `epoch`: `base` through epoch `start` (optim.decay_start, the last epoch at
    the full lr), then x `decay` per epoch: epoch start + k trains at base * decay**k. One meaning for
    every task: the authors' PTB script (decay before 0-based epoch >= 175, so 1-based epoch 176 is the
    first at 0.98) is start=175; OpenNMT-py (decay after 1-based epoch >= 8, so epoch 9 is the first at
    0.5) is start=8."""
    return base * decay ** max(0, epoch - start)


def plateau_decay_start(start, epoch, current, previous, mode):
    """OpenNMT-py's second rule (onmt/Optim.py updateLearningRate at 649322cc): once the validation
    metric of `epoch` is worse than the previous epoch's (ppl > last_ppl), the decay starts after this
    epoch and, like the epoch rule, never stops. Returns the decay start that holds from now on."""
    worse = previous is not None and (current > previous if mode == "min" else current < previous)
    return min(start, epoch) if worse else start
