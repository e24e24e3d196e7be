import os

# CI has no GPU: run the Triton kernels in Triton's CPU interpreter unless a real GPU run
# is asked for (scripts/gpu_check.sh sets SRU_TEST_CUDA=1). Must happen before triton loads.
if os.environ.get("SRU_TEST_CUDA") != "1":
    os.environ["TRITON_INTERPRET"] = "1"

# One lookup for the data mirror, for the tests and the code they call in this process: SRU_DATA_MIRROR, else
# ../shared/data beside the clone (tests/helpers.py); none: the tests that need a corpus skip, saying why.
from helpers import MIRROR  # noqa: E402

if MIRROR.exists():
    os.environ["SRU_DATA_MIRROR"] = str(MIRROR)
