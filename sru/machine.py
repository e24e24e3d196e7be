"""What a measurement ran on: the device, threads, versions and the CPU's GEMM route, for benchmarks and the
trainers' result files alike."""
import platform
import time

import torch

from . import gemm


def machine_info(device):
    info = dict(date=time.strftime("%Y-%m-%d"), torch=torch.__version__, python=platform.python_version(),
                threads=torch.get_num_threads(), tf32=torch.backends.cuda.matmul.allow_tf32)
    if device.type == "cuda":
        info["device"] = torch.cuda.get_device_name(device)
    else:
        cpu = platform.processor() or platform.machine()
        try:
            for line in open("/proc/cpuinfo"):
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
        except OSError:
            pass
        info["device"] = f"CPU: {cpu}, {torch.get_num_threads()} threads"
        info["cpu_gemm"] = gemm.describe()
        import numba
        from . import cpu_kernels  # noqa: F401  (sets numba's threading layer)
        info["numba_threading_layer"] = numba.config.THREADING_LAYER
    return info
