#!/usr/bin/env bash
# CPU side of the GPU check: builds .gpu_check/ (git-ignored), everything scripts/gpu_check.sh needs on a CUDA
# machine without network beyond what it has (python3 3.12, torch, triton, numba, pytest, matplotlib, numpy, tqdm,
# pyyaml):
#   .gpu_check/whl/      wheels for hydra-core, omegaconf and antlr4-python3-runtime (sdist only on PyPI: built
#                        here with `pip wheel`), pure Python, so they install on the image's Python 3.12
#   .gpu_check/mirror/   the PTB files from $SRU_DATA_MIRROR (default ../shared/data), checked by the trainer's
#                        sha256 manifest on the device as everywhere else
# Then, on the CUDA machine (docs/benchmarks.md, "The GPU check on a CUDA machine without network"):
#   bash scripts/gpu_check.sh [out_dir]
set -euo pipefail
cd "$(dirname "$0")/.."
mirror="${SRU_DATA_MIRROR:-../shared/data}"
py="${PYTHON:-.venv/bin/python}"
[ -x "$py" ] || py=python3
rm -rf .gpu_check && mkdir -p .gpu_check/whl .gpu_check/mirror
# the versions this checkout runs with (requirements.txt pins them)
versions=$("$py" - <<'EOF'
from importlib.metadata import version
print(" ".join(f"{n}=={version(n)}" for n in ("hydra-core", "omegaconf", "antlr4-python3-runtime")))
EOF
)
"$py" -m pip wheel -q --no-deps -w .gpu_check/whl $versions
if [ ! -d "$mirror/ptb" ]; then
  echo "error: no ptb/ in the data mirror $mirror: set SRU_DATA_MIRROR=<path to shared/data>" >&2
  exit 1
fi
cp -r "$mirror/ptb" .gpu_check/mirror/
chmod -R u+w .gpu_check
echo "prepared .gpu_check: $(ls .gpu_check/whl | tr '\n' ' ')+ ptb ($(du -sh .gpu_check | cut -f1) in all)"
