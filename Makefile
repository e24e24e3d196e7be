# make install | make test | make bench | make tableN | make report   (see README.md)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
BENCH_OUT ?= results/bench

.PHONY: install test bench gpu-check data table1 table2 table3 table4 table5 report clean
profile ?= full
ARGS ?=

install: $(VENV)/.installed

$(VENV)/.installed: requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements.txt
	$(BIN)/pip install -q --no-deps -e .
	touch $@

test: install
	$(BIN)/python -m pytest -q -rs -n 2 tests   # -rs: every skip says why; -n 2: both cores

bench: install
	$(BIN)/python -m sru.bench --out $(BENCH_OUT) $(ARGS)

data: install
	$(BIN)/python -m scripts.fetch_data

# Table 1 (classification): every dataset x model cell of configs/classification/table1.yaml, then
# results/table1.{md,json} and results/table1_fig2.png (Figure 2). profile=smoke -> MR, 2 folds, 2 epochs;
# profile=cpu ARGS="--publish --epoch-gap cr" -> the committed CPU-budget table, docs/results/cpu/table1.*
table1: install
	$(BIN)/python -m tasks.classification.table --profile $(profile) $(ARGS)

# Table 2 (SQuAD v1.1): every row of configs/squad/table2.yaml, then results/table2.{md,json} and each
# row's official-format dev predictions. profile=smoke -> minutes on a CPU; profile=speed -> full-size
# models for one epoch on a slice, s/epoch extrapolated; ARGS="data.vectors=/path/glove.840B.300d.txt"
table2: install
	$(BIN)/python -m tasks.squad.table --profile $(profile) $(ARGS)

# Table 3 (PTB LM): every row of configs/lm_ptb/table3.yaml, then results/table3.{md,json,png}.
# make table3 profile=smoke  -> minutes on a CPU;  ARGS="resume=true logger=none" to pass overrides
table3: install
	$(BIN)/python -m tasks.lm_ptb.table --profile $(profile) $(ARGS)

# Table 4 (En->De translation): every row of configs/nmt/table4.yaml, then results/table4.{md,json} and each
# row's test translations. Multi30k by default; ARGS="data=wmt14 data.path=/dir/of/stanford/files" for WMT'14.
# profile=smoke -> minutes on a CPU; profile=speed -> full widths, one epoch on a slice, extrapolated
table4: install
	$(BIN)/python -m tasks.nmt.table --profile $(profile) $(ARGS)

# Table 5 (acoustic models, CTC + WER): every row of configs/speech/table5.yaml on connected FSDD digits, then
# results/table5.{md,json} and each row's test hypotheses. profile=smoke -> a minute on a CPU;
# ARGS="data=kaldi data.kaldi.train=... data.kaldi.dev=... data.kaldi.test=..." for a Kaldi-prepared corpus
table5: install
	$(BIN)/python -m tasks.speech.table --profile $(profile) $(ARGS)

# Every table that has results, the paper's numbers beside ours, SRU vs LSTM curves and s/epoch, Figure 1:
# results/report.html (one self-contained file) and results/report.md
report: install
	$(BIN)/python -m scripts.report

# On a CUDA machine with this checkout installed; on one without network, scripts/gpu_check_prepare.sh first
# (docs/benchmarks.md, "The GPU check on a CUDA machine without network")
gpu-check: install
	PYTHON=$(BIN)/python bash scripts/gpu_check.sh

clean:
	rm -rf $(VENV) bench_out .pytest_cache outputs
