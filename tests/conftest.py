import os

# CI has no GPU: run the Triton kernels in Triton's CPU interpreter unless a real GPU run
# is asked for (scripts/gpu_check.sh sets SRU_TEST_CUDA=1). Must happen before triton loads.
if os.environ.get("SRU_TEST_CUDA") != "1":
    os.environ["TRITON_INTERPRET"] = "1"
