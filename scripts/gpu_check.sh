#!/usr/bin/env bash
# The GPU check, for a CUDA machine without network that has python3, torch, triton, numba and pytest (no
# hydra/omegaconf/wandb/spacy). Prepare first, where the checkout is installed: bash scripts/gpu_check_prepare.sh;
# then, on the CUDA machine, with .gpu_check/ beside the checkout's files: bash scripts/gpu_check.sh [out_dir]
# Stages, each with its own time limit, every exit status recorded in summary.txt and every log kept whole
# (nothing filtered): the kernel and module tests on the GPU (Triton compiled, not interpreted) after the
# compile check; the Figure 1 benchmark on CUDA (fp32 with TF32 off, and bf16 SRU rows); one PTB smoke
# epoch through the trainer in fp32 and in bf16; the SQuAD readers' timing. Six files land in the output directory.
# GPU_CHECK_DEVICE=cpu runs the same flow on a machine without a GPU, with tiny settings (the dry run).
set -u
cd "$(dirname "$0")/.."
out="${1:-${OUT:-results/gpu_check}}"
mkdir -p "$out"
py="${PYTHON:-python3}"
device="${GPU_CHECK_DEVICE:-cuda}"
summary="$out/summary.txt"
: > "$summary"
failed=0

stage() {  # stage NAME SECONDS LOG command...: run it under a time limit, append its output to LOG
  local name=$1 limit=$2 log=$3 start rc
  shift 3
  start=$(date +%s)
  echo "===== $name: $*" >> "$out/$log"
  PYTHONUNBUFFERED=1 timeout "$limit" "$@" >> "$out/$log" 2>&1
  rc=$?
  [ $rc -eq 0 ] || failed=1
  echo "$name: exit $rc$([ $rc -eq 124 ] && echo ' (timed out)') after $(( $(date +%s) - start )) s of $limit ($log)" \
    | tee -a "$summary"
}

{
  date -u +"%Y-%m-%d %H:%M UTC"
  git log -1 --format="commit %h %s" 2>/dev/null || echo "commit unknown (no .git)"
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  "$py" -c "import sys, torch, triton; print('python', sys.version.split()[0], '| torch', torch.__version__,
'| triton', triton.__version__, '| cuda', torch.version.cuda, '| device', torch.cuda.get_device_name() if torch.cuda.is_available() else 'none')"
} >> "$summary" 2>&1

# the carried wheels (hydra-core, omegaconf, antlr4) where the image lacks them
if [ -d .gpu_check/whl ] && ! "$py" -c "import hydra, omegaconf" 2>/dev/null; then
  "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/gpu_check_site \
    .gpu_check/whl/*.whl >> "$summary" 2>&1
  export PYTHONPATH="/tmp/gpu_check_site${PYTHONPATH:+:$PYTHONPATH}"
fi
[ -d .gpu_check/mirror ] && export SRU_DATA_MIRROR="$PWD/.gpu_check/mirror"
export SRU_DATA_MIRROR="${SRU_DATA_MIRROR:-../shared/data}" WANDB_MODE=offline
work="${TMPDIR:-/tmp}/gpu_check_runs"
rm -rf "$work"

if [ "$device" = cuda ]; then
  stage compile_check 60 tests.log "$py" -m sru.compile_check --arch 90 --quick
  stage tests 150 tests.log env SRU_TEST_CUDA=1 "$py" -m pytest -q -rs -p no:cacheprovider \
    tests/test_kernels.py tests/test_module.py tests/test_autocast.py
  stage bench 100 bench.log "$py" -m sru.bench --device cuda --out "$work/bench"
  epochs=(profile.epochs=1)
else  # the dry run: the same stages, tiny
  stage compile_check 120 tests.log "$py" -m sru.compile_check --arch 90 --quick
  stage tests 300 tests.log "$py" -m pytest -q -rs -p no:cacheprovider tests/test_kernels.py -k "cpu and not gradcheck"
  stage bench 120 bench.log "$py" -m sru.bench --device cpu --sizes 8x16 --repeats 1 --budget 0 --out "$work/bench"
  epochs=(profile.epochs=1 profile.max_lines=60)
fi
cp "$work/bench/bench.md" "$work/bench/bench.json" "$out/" 2>/dev/null
for precision in fp32 bf16; do
  stage "ptb_$precision" 75 tasks.log "$py" -m tasks.lm_ptb.train +row=sru-6x910 profile=smoke "${epochs[@]}" \
    precision=$precision logger=none device="$device" out_dir="$work/ptb_$precision" data_dir="$work/data"
done
if [ "$device" = cuda ]; then
  stage squad_speed 90 tasks.log "$py" -m tasks.squad.speed --device cuda
else
  stage squad_speed 120 tasks.log "$py" -m tasks.squad.speed --device cpu --steps 1 --warmup 0 --dim 16
fi
echo "overall: $([ $failed -eq 0 ] && echo 'every stage passed' || echo 'FAILED: see the stages above')" \
  | tee -a "$summary"
exit $failed
