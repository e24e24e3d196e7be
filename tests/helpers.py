import torch


def assert_close_scaled(actual, expected, rel, name=""):
    """Elementwise |a - e| <= rel * (|e| + max|e|): relative to each value and to the tensor's scale."""
    expected = expected.to(actual.dtype) if expected.dtype != actual.dtype else expected
    scale = expected.abs().max().item() if expected.numel() else 0.0
    torch.testing.assert_close(actual.float(), expected.float(), rtol=rel, atol=rel * max(scale, 1e-6),
                               msg=lambda m: f"{name}: {m}")


def kernel_device():
    """Where the 'gpu' backend runs in this test session: CUDA if asked for, else the interpreter on CPU."""
    import os
    return "cuda" if os.environ.get("SRU_TEST_CUDA") == "1" else "cpu"
