"""Where this process sits in a run: rank, world size, device; sums across ranks; progress bars.

One process per device. `torchrun --nproc_per_node=N -m tasks.<task>.train ...` sets RANK /
WORLD_SIZE / LOCAL_RANK; a SLURM job launched by hydra-submitit-launcher with several tasks gets
them from submitit. Without either, the run is a single process (world size 1) and nothing
here touches torch.distributed. NCCL on CUDA, gloo on CPU.
"""
import datetime
import os
import sys

import torch
import torch.distributed as dist
from tqdm import tqdm

from tasks.common.runtime import pick_device


class Context:
    """What a task's code needs to know about the run it is in (passed to its batches and evaluate)."""

    def __init__(self, rank=0, world_size=1, local_rank=0, device=torch.device("cpu")):
        self.rank, self.world_size, self.local_rank, self.device = rank, world_size, local_rank, device

    @property
    def is_main(self):
        return self.rank == 0

    @property
    def distributed(self):
        return self.world_size > 1

    def all_reduce(self, values):
        """{name: number} summed over ranks (as float64); a plain copy in a single process."""
        if not self.distributed:
            return {k: float(v) for k, v in values.items()}
        keys = sorted(values)
        t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=self._comm_device())
        dist.all_reduce(t)
        return dict(zip(keys, t.tolist()))

    def gather(self, obj):
        """[every rank's obj] (picklable), in rank order, on every rank; [obj] in a single process."""
        if not self.distributed:
            return [obj]
        out = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def barrier(self):
        if self.distributed:
            dist.barrier()

    def _comm_device(self):
        return self.device if dist.get_backend() == "nccl" else torch.device("cpu")

    def progress(self, iterable=None, total=None, desc=None):
        """tqdm on the main rank. On a terminal, a live bar; written to a file or pipe, a plain line
        every 30 s (no thousands of carriage returns in a log)."""
        tty = sys.stderr.isatty()
        return tqdm(iterable, total=total, desc=desc, disable=not self.is_main, dynamic_ncols=tty, leave=tty,
                    mininterval=0.5 if tty else 30.0, delay=0 if tty else 2.0, file=sys.stderr if tty else _Lines(sys.stderr))


class _Lines:
    """A file for tqdm that turns its carriage-return redraws into separate lines."""

    def __init__(self, stream):
        self.stream = stream

    def write(self, s):
        s = s.replace("\r", "").strip()
        if s:
            self.stream.write(s + "\n")

    def flush(self):
        self.stream.flush()


def _submitit_env():
    """Export torch's env variables inside a multi-task submitit (SLURM) job."""
    if "RANK" in os.environ or "SUBMITIT_EXECUTOR" not in os.environ:
        return
    import submitit
    env = submitit.JobEnvironment()
    if env.num_tasks > 1:
        submitit.helpers.TorchDistributedEnvironment().export()


def init(device_name="auto"):
    """The run's Context; joins the process group when launched with several processes."""
    _submitit_env()
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Context(device=pick_device(device_name))
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(device_name)
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        # a generous timeout: the other ranks wait while rank 0 writes checkpoints
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=datetime.timedelta(hours=1))
    return Context(rank, world, local_rank, device)


def shutdown():
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
