"""The two ways to look at results side by side: `make report` (one self-contained page) and the W&B views
(python -m scripts.wandb_dashboard). The task smoke tests also run both on their real runs
(check_report, check_dashboard_keys); these tests cover the rest: tables not run, Figure 1, bad input,
the dry run's content and the offline-run reader."""
import base64
import json
import os
import subprocess
import sys

import pytest

from helpers import ROOT, check_report, html_tables, run_module
from scripts.report import PAPER_FIGURE1
from scripts.wandb_dashboard import VIEWS, _records, build_views, check_against_runs, offline_run_keys, task_class
from tasks.common.results import TABLES, write_table

COLUMNS = [("model", "model", None), ("layers", "layers", None), ("valid ppl", "valid_ppl", ".2f"),
           ("paper test ppl", "paper_test_ppl", None), ("s/epoch", "sec_per_epoch", ".1f")]


def history(seconds, ppls):
    wall = 0.0
    out = []
    for epoch, ppl in enumerate(ppls, 1):
        wall += seconds
        out.append(dict(epoch=epoch, valid_ppl=ppl, seconds=seconds, wall=wall, tokens_per_s=1000 / seconds))
    return out


def write_table3(results, smoke="2 epochs"):
    rows = [dict(model="lstm", layers=2, hidden=950, valid_ppl=123.456, paper_test_ppl=None, sec_per_epoch=40.0,
                 profile="smoke", device="cpu", history=history(40.0, [300, 200])),
            dict(model="sru", layers=6, hidden=910, valid_ppl=98.765, paper_test_ppl=60.3, sec_per_epoch=10.0,
                 profile="smoke", device="cpu", history=history(10.0, [250, 150]))]
    write_table(rows, COLUMNS, "Table 3: PTB language model (perplexity)", results, "table3", smoke,
                notes="- A note with `code`.", metric="valid_ppl")
    return rows


@pytest.fixture(scope="module")
def bench_dir(tmp_path_factory):
    """A real, tiny Figure 1 run at the paper's two sizes, logged to an offline W&B run."""
    out = tmp_path_factory.mktemp("bench")
    proc = run_module("sru.bench", "--sizes", "32x256,128x512", "--repeats", "1", "--warmup", "1", "--budget", "0",
                      "--skip", "naive", "--out", str(out), "--logger", "wandb")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def test_report_shows_what_was_run_says_what_was_not_and_loads_nothing(tmp_path, bench_dir):
    results = tmp_path / "results"
    write_table3(results)
    (results / "bench").mkdir()
    (results / "bench" / "bench.json").write_text((bench_dir / "bench.json").read_text())
    page = check_report(results, ["table3"])
    md = (results / "report.md").read_text()
    assert "SMOKE RUN: 2 epochs" in page and "Profile: **smoke**" in md
    for t in ("table1", "table2", "table4", "table5"):  # not run: said so, with the command that runs it
        assert f"make {t} profile=smoke" in md
    # seconds per epoch side by side, and the SRU's speed-up over the LSTM (40 / 10)
    assert [["LSTM 2x950", "40.00", "-"], ["SRU 6x910", "10.00", "4.00"]] in [t[1:] for t in html_tables(page)]
    # figures: the table's curves and bars, and Figure 1, all inlined PNGs
    images = page.split('src="data:image/png;base64,')[1:]
    assert len(images) == 2
    assert all(base64.b64decode(i.split('"')[0])[:8] == b"\x89PNG\r\n\x1a\n" for i in images)
    # Figure 1: the paper's numbers beside ours, ours computed from bench.json
    bench = json.loads((bench_dir / "bench.json").read_text())
    ms = {(r["row"], r["l"], r["d"]): r["ms"] for r in bench["results"] if r["mode"] == "fwd+bwd"}
    ours = [f"{ms[('lstm', l, d)] / ms[('sru-cpu', l, d)]:.1f}x" for l, d in PAPER_FIGURE1]
    assert [f"ours ({bench['machine']['device']}): LSTM / sru-cpu", *ours] in [r for t in html_tables(page) for r in t]
    assert "paper: LSTM / SRU | 16.2x | 11.4x" in md and "GPU: not measured yet" in md
    assert "docs/fidelity.md" in md and "![Table 3" in md and (results / "report_files" / "table3.png").exists()


def test_report_shows_a_gpu_benchmark_beside_the_cpu_one(tmp_path, bench_dir):
    cpu = json.loads((bench_dir / "bench.json").read_text())
    gpu = dict(cpu, machine=dict(cpu["machine"], device="NVIDIA H100 80GB HBM3"),
               results=[dict(r, row=r["row"].replace("sru-cpu", "sru-gpu")) for r in cpu["results"]])
    for name, bench in (("bench", cpu), ("gpu_check", gpu)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "bench.json").write_text(json.dumps(bench))
    page = check_report(tmp_path, [])
    md = (tmp_path / "report.md").read_text()
    assert "### NVIDIA H100 80GB HBM3" in md and "### CPU" in md and "GPU: not measured yet" not in md
    assert "ours (NVIDIA H100 80GB HBM3): LSTM / sru-gpu" in md and page.count("data:image/png;base64,") == 2


def test_report_with_nothing_run_says_so(tmp_path):
    proc = run_module("scripts.report", "--results", str(tmp_path), "--published", str(tmp_path / "none"))
    assert proc.returncode == 0, proc.stderr
    md = (tmp_path / "report.md").read_text()
    assert all(f"make {t} profile=smoke" in md for t in TABLES) and "Not run yet: `make bench`" in md


def test_report_refuses_an_old_format_table_naming_the_fix(tmp_path):
    (tmp_path / "table3.json").write_text("[]")
    proc = run_module("scripts.report", "--results", str(tmp_path))
    assert proc.returncode != 0 and "--collect-only" in proc.stderr and "Traceback" not in proc.stderr


def test_dry_run_prints_every_view_without_contacting_wandb(tmp_path):
    env = dict(os.environ, WANDB_MODE="disabled", WANDB_BASE_URL="http://127.0.0.1:9", WANDB_API_KEY="")
    proc = subprocess.run([sys.executable, "-m", "scripts.wandb_dashboard", "--dry-run", "--json"], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    specs = {s["name"].split(": ")[1].split(" (")[0]: s for s in json.loads(proc.stdout)}
    assert set(specs) == {f"Table {t[-1]}" for t in TABLES} | {"Figure 1"}
    for table in TABLES:
        spec, task = specs[f"Table {table[-1]}"], task_class(table)
        assert spec["filters"] == [f"Config('table') == '{table}'"]
        assert spec["groupby"][0] == "config:model.kind" and spec["group_colors"]["sru"] != spec["group_colors"]["lstm"]
        panels = [p for s in spec["sections"] for p in s["panels"]]
        lines = {(p.get("x"), tuple(p["y"])) for p in panels if p["type"] == "LinePlot"}
        bars = {m for p in panels if p["type"] == "BarPlot" for m in p["metrics"]}
        assert {("epoch", (task.metric,)), ("wall", (task.metric,)), ("epoch", (f"{task.count_name}_per_s",))} <= lines
        assert any(y[0] == "seconds" for _, y in lines) and {"seconds", f"best_{task.metric}"} <= bars
        assert set(VIEWS[table]["final"]) <= bars
        assert f"summary:best_{task.metric}" in spec["pinned_columns"]
    figure1 = [p for s in specs["Figure 1"]["sections"] for p in s["panels"]]
    assert {"type": "WeavePanelSummaryTable", "title": None, "table_name": "figure1"} in figure1


def test_figure1_view_reads_what_the_benchmark_logged(bench_dir):
    proc = run_module("scripts.wandb_dashboard", "--dry-run", "--tables", "figure1", "--runs", str(bench_dir))
    assert proc.returncode == 0 and "figure1 1" in proc.stdout, proc.stdout + proc.stderr
    keys = offline_run_keys(next(bench_dir.glob("wandb/offline-run-*")))
    assert keys["table"] == "figure1" and "speedup_vs_lstm/fwd+bwd/128x512" in keys["logged"]


def test_the_key_check_fails_naming_keys_no_run_logged(bench_dir):
    views = build_views("e", "p", ["figure1"])
    views["figure1"][1]["logged"].add("no_such_metric")
    problems, counts = check_against_runs(views, bench_dir)
    assert counts == {"figure1": 1} and len(problems) == 1 and "no_such_metric" in problems[0]


def test_reader_follows_records_across_blocks_of_a_real_offline_run(tmp_path):
    """A config value of 100 kB spans several 32 kB blocks of the run file: first/middle/last fragments."""
    code = ("import wandb; r = wandb.init(project='x', dir=r'%s', config={'table': 'table3', 'blob': 'y' * 100000, "
            "'model': {'kind': 'sru'}}); [r.log({'valid_ppl': 1.0 / i, 'epoch': i}, step=i) for i in range(1, 2000)]; "
            "r.finish()" % tmp_path)
    env = dict(os.environ, WANDB_MODE="offline", WANDB_SILENT="true")
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=300)
    run = next(tmp_path.glob("wandb/offline-run-*"))
    assert (run / next(run.glob("run-*.wandb")).name).stat().st_size > 3 * 32768
    keys = offline_run_keys(run)
    assert keys["table"] == "table3" and {"valid_ppl", "epoch"} <= keys["logged"]
    assert {"blob", "model", "model.kind"} <= keys["config"]
    assert sum(1 for _ in _records(next(run.glob("run-*.wandb")))) > 2000


def test_reader_refuses_a_file_that_is_not_a_run(tmp_path):
    (tmp_path / "run-x.wandb").write_bytes(b"not a run")
    with pytest.raises(ValueError, match="not a W&B run file"):
        offline_run_keys(tmp_path)


def test_a_table_whose_rows_ran_on_different_machines_says_which_ran_where(tmp_path):
    rows = [dict(model="lstm", layers=2, sec_per_epoch=40.0, run_name="a", machine="CPU: X, 2 threads"),
            dict(model="sru", layers=6, sec_per_epoch=50.0, run_name="b", machine="CPU: X, 1 threads"),
            dict(model="sru", layers=3, sec_per_epoch=30.0, run_name="c", machine="CPU: X, 2 threads")]
    write_table(rows, COLUMNS, "T", tmp_path, "table3", False, notes="- A note.")
    note = ("- Machines: CPU: X, 2 threads: a, c; CPU: X, 1 threads: b. Seconds per epoch compare only between "
            "rows on the same machine and thread count.")
    assert (tmp_path / "table3.md").read_text().endswith("- A note.\n" + note + "\n")
    assert json.loads((tmp_path / "table3.json").read_text())["notes"] == "- A note.\n" + note
    write_table(rows[::2], COLUMNS, "T", tmp_path, "table3", False, notes="- A note.")  # one machine: no line
    assert "Machines" not in (tmp_path / "table3.md").read_text()


def test_speed_rows_compare_only_rows_on_one_machine_and_name_the_repeats():
    from tasks.common.figures import speed_rows
    two, one = "CPU: X, 2 threads", "CPU: X, 1 threads"
    rows = [dict(model="lstm", layers=5, hidden=128, seed=1, sec_per_epoch=16.0, machine=two),
            dict(model="sru", layers=12, hidden=128, seed=1, sec_per_epoch=20.0, machine=two),
            dict(model="sru", layers=12, hidden=128, seed=2, sec_per_epoch=48.0, machine=one)]
    out = speed_rows(dict(rows=rows))
    assert [r["label"] for r in out] == [f"LSTM 5x128 (seed 1) [{two}]", f"SRU 12x128 (seed 1) [{two}]",
                                         f"SRU 12x128 (seed 2) [{one}]"]
    assert out[1]["vs_lstm"] == 0.8 and out[2]["vs_lstm"] is None  # no LSTM ran on the one-thread machine
    same = speed_rows(dict(rows=[dict(r, machine=two, seed=1) for r in rows]))
    assert same[2]["label"] == "SRU 12x128" and same[2]["vs_lstm"] == 16.0 / 48.0


def test_report_shows_a_local_run_beside_the_committed_table(tmp_path):
    """A local (smoke) Table 3 does not hide the committed one: both are on the page, each saying which it is."""
    from scripts.report import write_report
    committed = ROOT / "docs" / "results" / "cpu"
    local = json.loads((committed / "table3.json").read_text())
    local["title"] = "Table 3: a local smoke run"
    results = tmp_path / "results"
    results.mkdir()
    (results / "table3.json").write_text(json.dumps(local))
    text = write_report(results, tmp_path / "out", committed)
    section = text.split("## Table 3:", 1)[1].split("\n## ", 1)[0]
    assert "### Your run: Table 3: a local smoke run" in section and "### Committed: Table 3: PTB" in section
    assert "| [Table 3](#table3) | PTB word-level language model | local run |" in text
    assert "| [Table 3](#table3) | PTB word-level language model | committed |" in text


def test_figure_of_rows_without_a_machine_name(tmp_path):
    """Rows from before result.json named the machine (only `device`) still plot, tagged by their device."""
    from tasks.common.figures import plot_table
    rows = [dict(model="lstm", layers=2, hidden=8, sec_per_epoch=2.0, device="cpu",
                 history=[dict(wall=1.0, valid_ppl=300.0)]),
            dict(model="sru", layers=2, hidden=8, sec_per_epoch=1.0, machine="CPU: X, 2 threads",
                 history=[dict(wall=1.0, valid_ppl=250.0), dict(wall=2.0, valid_ppl=200.0)])]
    plot_table(dict(table="table3", rows=rows, metric="valid_ppl", smoke=True), tmp_path / "t.png")
    assert (tmp_path / "t.png").stat().st_size > 0
