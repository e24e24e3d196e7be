"""Compile the Triton kernels for real GPUs without one: python -m sru.compile_check [--arch 80,90] [--json FILE]

The interpreter (TRITON_INTERPRET=1) runs the kernels' Python, not what a GPU compiles, so a kernel
can pass every CPU test and still be rejected by ptxas or spill on a card. This compiles
sru.triton_kernels ahead of time (triton.compile on an ASTSource for a GPUTarget; the triton wheel
bundles ptxas and cuobjdump, so no GPU or CUDA install is needed) for each architecture and main
variant -- fp32 and the autocast bf16 signature (bf16 activations, fp32 state), K 3 / 4, one or two
directions, with and without padding mask and dropout -- and prints per kernel: registers, spill
bytes, shared memory, and the async copies in its TTGIR (the software pipelining of the time loop).
Exits 1 on a compile failure or any spill. Compiled as the JIT specialises a hidden size that is a
multiple of 16; at other sizes 16-bit loads cannot be vectorised to cp.async's 4 bytes and are not
pipelined (fp32 loads are).
"""
import argparse
import itertools
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")  # Triton 3.9 warns when unset; 1 is its default

import triton  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402

from sru import triton_kernels as tk  # noqa: E402

STATE = ("BIAS", "C0", "DROP", "C_ALL", "GRAD_CN", "GRAD_BIAS", "GRAD_C0")  # always fp32 (the recurrence's state)


def signature(kernel, dtype):
    """Pointer and scalar types of a kernel's runtime arguments: activations in `dtype`, state in fp32."""
    sig = {}
    for param in kernel.params:
        name = param.name
        if param.is_constexpr:
            sig[name] = "constexpr"
        elif name in ("L", "B", "d"):
            sig[name] = "i32"
        elif name == "MASK":
            sig[name] = "*u8"
        else:
            sig[name] = "*fp32" if name in STATE else f"*{dtype}"
    return sig


def resources(cubin):
    """(registers, spill bytes, shared bytes) of a cubin, from the bundled cuobjdump -res-usage."""
    tool = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "cuobjdump"
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(cubin)
        f.flush()
        text = subprocess.run([str(tool), "-res-usage", f.name], capture_output=True, text=True, check=True).stdout
    field = lambda key: int(m.group(1)) if (m := re.search(rf"\b{key}:(\d+)", text)) else 0
    return field("REG"), field("LOCAL"), field("SHARED")


def compile_one(kernel, dtype, K, D, mask, drop, cell, arch, block=128, warps=None):
    """One kernel variant compiled as the JIT would for tensors from torch (16-byte aligned) and a hidden
    size that is a multiple of 16 (the JIT specialises both); num_warps as sru.triton_kernels launches it."""
    if warps is None:
        warps = tk.num_warps(block, 4 if dtype == "fp32" else 2)
    # cell 2018: weight_c in the gates and the dropout mask on the highway gate; 2017: neither
    constexprs = dict(K=K, D=D, HAS_WC=cell == 2018, SKIP=K == 3, HAS_MASK=mask, HAS_DROP=drop,
                      DROP_GATE=cell == 2018, USE_TANH=True, BLOCK=block, NUM_STAGES=tk.NUM_STAGES)
    sig = signature(kernel, dtype)
    aligned = {(i,): [["tt.divisibility", 16]] for i, p in enumerate(kernel.params)
               if not p.is_constexpr and (sig[p.name].startswith("*") or p.name == "d")}
    src = ASTSource(fn=kernel, signature=sig, attrs=aligned,
                    constexprs={(kernel.arg_names.index(k),): v for k, v in constexprs.items()})
    compiled = triton.compile(src, target=GPUTarget("cuda", arch, 32), options=dict(num_warps=warps))
    regs, spill, shared = resources(compiled.asm["cubin"])
    ttgir = compiled.asm["ttgir"]
    return dict(kernel=kernel.fn.__name__.strip("_"), dtype=dtype, K=K, D=D, mask=mask, dropout=drop, cell=cell,
                arch=arch,
                block=block, num_warps=warps, registers=regs, spill_bytes=spill, shared_bytes=max(shared, compiled.metadata.shared),
                async_copies=ttgir.count("async_copy_global_to_local"))


def variants(quick=False):
    """(dtype, K, D, mask, dropout, cell): every combination of the main axes, mask and dropout together;
    quick: two opposite corners, one per cell."""
    if quick:
        return [("fp32", 3, 1, False, False, 2017), ("bf16", 4, 2, True, True, 2018)]
    return [(t, k, d, md, md, cell) for t, k, d, md, cell in
            itertools.product(("fp32", "bf16"), (3, 4), (1, 2), (False, True), (2017, 2018))]


def run(archs, quick=False, log=print):
    rows, failures = [], []
    for arch, (dtype, K, D, mask, drop, cell), kernel in itertools.product(archs, variants(quick),
                                                                           (tk._forward_kernel, tk._backward_kernel)):
        name = (f"sm_{arch} {kernel.fn.__name__.strip('_'):16s} {dtype} K={K} D={D} mask={int(mask)} "
                f"dropout={int(drop)} cell={cell}")
        try:
            r = compile_one(kernel, dtype, K, D, mask, drop, cell, arch)
        except Exception as e:  # a compile error is the finding: report it, keep going
            failures.append(f"{name}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
            log(f"{name}: COMPILE FAILED ({failures[-1]})")
            continue
        rows.append(r)
        log(f"{name}: {r['registers']:3d} registers, {r['spill_bytes']} B spilled, {r['shared_bytes']:6d} B shared, "
            f"{r['async_copies']} async copies")
        if r["spill_bytes"]:
            failures.append(f"{name}: {r['spill_bytes']} bytes spilled")
    return rows, failures


def main(argv=None):
    if os.environ.get("TRITON_INTERPRET") == "1":
        sys.exit("error: TRITON_INTERPRET=1 turns the kernels into Python: unset it to compile them for a GPU")
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", default="80,90", help="compute capabilities, e.g. 80,90 (A100, H100/H200)")
    p.add_argument("--quick", action="store_true", help="two variants per architecture instead of 32")
    p.add_argument("--json", help="also write the rows here")
    args = p.parse_args(argv)
    archs = [int(a) for a in args.arch.split(",") if a.strip()]
    print(f"triton {triton.__version__}: compiling sru.triton_kernels for sm_{', sm_'.join(map(str, archs))}")
    rows, failures = run(archs, args.quick)
    if args.json:
        Path(args.json).write_text(json.dumps(dict(triton=triton.__version__, rows=rows, failures=failures), indent=1))
    if failures:
        print("FAILED:\n  " + "\n  ".join(failures), file=sys.stderr)
        return 1
    print(f"ok: {len(rows)} kernels compiled, none spills")
    return 0


if __name__ == "__main__":
    sys.exit(main())
