#!/usr/bin/env bash
# One prepared GPU check (a few minutes on an H100/H200): the kernel and module tests on the
# real GPU (Triton compiled, not interpreted), then the Figure 1 benchmark on CUDA.
# Usage on a GPU box: bash scripts/gpu_check.sh [out_dir]   (the device tool: out_dir=$OUT)
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:-${OUT:-results/gpu_check}}"
mkdir -p "$out"
py=python
[ -x .venv/bin/python ] && py=.venv/bin/python
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$out/gpu.txt"
SRU_TEST_CUDA=1 $py -m pytest -q tests/test_kernels.py tests/test_module.py 2>&1 | tail -20 | tee "$out/tests.txt"
$py -m sru.bench --device cuda --out "$out" 2>&1 | tee "$out/bench.log" | tail -40
# Table 1 models on the GPU: seconds per epoch on MR (3 epochs of 1 fold each; cuDNN LSTM vs SRU vs CNN)
export SRU_DATA_MIRROR="${SRU_DATA_MIRROR:-../shared/data}"
for m in cnn lstm sru; do
  $py -m tasks.classification.train dataset=mr model=$m profile=smoke profile.epochs=3 profile.runs=1 \
    logger=none device=cuda out_dir="$out/table1_speed/$m" 2>&1 | tr '\r' '\n' | grep "| dev" | tee -a "$out/table1_speed.txt"
done
# The trainer on CUDA: a Table 3 smoke row in fp32 and under bf16 autocast (the SRU's bf16 GEMM path)
for p in fp32 bf16; do
  $py -m tasks.lm_ptb.train +row=sru-6x910 profile=smoke profile.epochs=2 precision=$p logger=none device=cuda \
    out_dir="$out/lm_$p" 2>&1 | grep -E "epoch +[0-9]+ \||test_ppl|error" | tee -a "$out/lm_precision.txt"
done
# Table 2 readers at full size on CUDA (synthetic SQuAD-shaped batches; no data or spaCy needed)
$py -m tasks.squad.speed --device cuda 2>&1 | tee "$out/table2_speed.txt"
