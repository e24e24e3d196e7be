"""What else ran on the CPU while we timed something: the share of the machine's CPU time that other processes
used, from the kernel's counters (Linux /proc/stat) against this process's own CPU time.

Why: on a small machine a second job does not just halve a run's speed; spinning OpenMP threads on an
oversubscribed CPU made a CNN epoch 10x slower (17.9 s against 1.54 s quiet), and such seconds went into tables
unmarked. Every epoch records `other_cpu`; a row with a contended epoch is flagged in its table, and the trainer
warns at start when the machine is already busy.
"""
import os
import time

CONTENDED = 0.25  # other processes used more than a quarter of the machine's CPU time: timings not comparable


def snapshot():
    """(wall seconds, the machine's busy CPU seconds or None where /proc/stat is missing, this process's CPU s)."""
    busy = None
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
        # user nice system idle iowait irq softirq steal ...: busy = all but idle and iowait
        busy = (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        pass
    t = os.times()
    return time.perf_counter(), busy, t.user + t.system


def other_cpu(before, after, cores=None):
    """The share (0..1) of all cores' time in [before, after] that other processes used; None if unknown."""
    wall = after[0] - before[0]
    if before[1] is None or after[1] is None or wall <= 0:
        return None
    cores = cores or os.cpu_count() or 1
    others = (after[1] - before[1]) - (after[2] - before[2])
    return round(min(max(others / (wall * cores), 0.0), 1.0), 3)


def busy_now(seconds=0.5):
    """other_cpu over a short idle wait: how busy the machine is before we start."""
    before = snapshot()
    time.sleep(seconds)
    return other_cpu(before, snapshot())


def contended_epochs(history):
    """The epochs (numbers) whose timing ran while others used more than CONTENDED of the CPU."""
    return [e["epoch"] for e in history if (e.get("other_cpu") or 0) > CONTENDED]


def contention_note(rows):
    """A note line naming the rows with contended epochs (result.json's `contended_epochs`), or ''."""
    flagged = [f"{r.get('run_name') or '?'} ({len(r['contended_epochs'])} of {r.get('epochs') or '?'} epochs)"
               for r in rows if r.get("contended_epochs")]
    if not flagged:
        return ""
    return (f"\n- CONTENDED TIMINGS: other processes used more than {CONTENDED:.0%} of the CPU during some epochs of "
            f"{', '.join(flagged)}; their s/epoch is not comparable with the other rows' (rerun on a quiet machine).")
