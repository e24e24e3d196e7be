import html
import json
import os
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
import torch

from tasks.common.data import default_mirror

ROOT = Path(__file__).resolve().parents[1]
# the data mirror, the project's one lookup (SRU_DATA_MIRROR, else ../shared/data beside the clone; set but empty: none)
MIRROR = Path(default_mirror() or ROOT / "no-data-mirror")


def mirror_has(folder):
    """skipif marker: the test reads this folder of the data mirror (SRU_DATA_MIRROR, else ../shared/data beside the
    clone). Tests never download: without the folder they are skipped, saying why."""
    return pytest.mark.skipif(not (MIRROR / folder).exists(),
                              reason=f"no {folder}/ in the data mirror {MIRROR}: set SRU_DATA_MIRROR=<shared/data>")


def draw_seed():
    """The seed of a test that draws random inputs, after seeding torch with it: 0, or a fresh one each run with
    SRU_TEST_FRESH_SEEDS=1. Tests put it in their failure messages, so a failure can be rerun."""
    seed = int.from_bytes(os.urandom(4), "little") % 2**31 if os.environ.get("SRU_TEST_FRESH_SEEDS") == "1" else 0
    torch.manual_seed(seed)
    return seed


def run_module(module, *args, timeout=600, launcher=()):
    """A task's real command-line entry point (or `launcher` + it, e.g. torchrun) in a subprocess, W&B
    offline, data from the mirror when there is one (else downloaded)."""
    env = dict(os.environ, SRU_DATA_MIRROR=str(MIRROR) if MIRROR.exists() else "", WANDB_MODE="offline")
    return subprocess.run([sys.executable, *launcher, "-m", module, *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)


def result_of(proc, path):
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(Path(path).read_text())


def assert_close_scaled(actual, expected, rel, name=""):
    """Elementwise |a - e| <= rel * (|e| + max(max|e|, 0.1)): relative to each value and to the tensor's
    scale. The floor: the tests' inputs are O(1), and a tiny tensor whose values cancel to ~1e-3 (h = r g(c)
    + (1 - r) x at one unit) still carries the rounding of its O(1) terms (1 ulp at 1.0 is 1.2e-7; CI failed
    once on 1.2e-7 against 4.5e-8 allowed, seed 512283876)."""
    expected = expected.to(actual.dtype) if expected.dtype != actual.dtype else expected
    scale = expected.abs().max().item() if expected.numel() else 0.0
    torch.testing.assert_close(actual.float(), expected.float(), rtol=rel, atol=rel * max(scale, 0.1),
                               msg=lambda m: f"{name}: {m}")


def kernel_device():
    """Where the 'gpu' backend runs in this test run: CUDA if asked for, else the interpreter on CPU."""
    import os
    return "cuda" if os.environ.get("SRU_TEST_CUDA") == "1" else "cpu"


class _Tables(HTMLParser):
    """Every <table> of an HTML page as its rows of cell texts."""

    def __init__(self):
        super().__init__()
        self.tables, self.cell = [], None

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self.cell = ""

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self.tables[-1][-1].append(self.cell.strip())
            self.cell = None

    def handle_data(self, data):
        if self.cell is not None:
            self.cell += data


def html_tables(page):
    parser = _Tables()
    parser.feed(page)
    return parser.tables


def check_report(results_dir, tables, published=None, out=None):
    """`python -m scripts.report` over results_dir (committed results from `published`: by default none): each
    of `tables` is in report.html as its JSON says (every row's every cell, as the table's markdown writes it),
    and the page loads nothing from outside. The tables' JSON is read from `published` when given."""
    from tasks.common.results import format_cell
    out = Path(out or results_dir)
    proc = run_module("scripts.report", "--results", str(results_dir), "--out", str(out),
                      "--published", str(published or Path(results_dir) / "no-committed-results"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    page = (out / "report.html").read_text()
    assert "<script" not in page and "<link" not in page and not re.search(r'src="(?!data:image/png;base64,)', page)
    found = html_tables(page)
    for table in tables:
        written = json.loads((Path(published or results_dir) / f"{table}.json").read_text())
        expected = [[h for h, _, _ in written["columns"]]] + [
            [format_cell(r.get(k), f) for _, k, f in written["columns"]] for r in written["rows"]]
        assert expected in found, f"{table}'s rows are not in the report as {table}.json has them"
        assert f"Table {table[-1]}: " in page and written["title"].split(" -- ")[0] in html.unescape(page)
    return page


def check_dashboard_keys(runs_dir, table):
    """The W&B view of `table` reads only keys its offline runs under runs_dir logged."""
    from scripts.wandb_dashboard import build_views, check_against_runs
    problems, counts = check_against_runs(build_views("e", "p", [table]), runs_dir)
    assert counts.get(table), f"no offline W&B run of {table} under {runs_dir}"
    assert not problems, problems


def smoke_table(task, table, tmp_path, *overrides):
    """`python -m tasks.<task>.table --profile smoke` into tmp_path/results (runs in tmp_path/runs, logged
    offline to W&B, data in tmp_path/data), then `make report` over it and the W&B view's keys against its
    runs (check_report, check_dashboard_keys). Returns the table's rows."""
    proc = run_module(f"tasks.{task}.table", "--profile", "smoke", "--out", str(tmp_path / "results"), "--outputs",
                      str(tmp_path / "runs"), *overrides, "logger=wandb", f"data_dir={tmp_path / 'data'}", timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-3000:]
    check_report(tmp_path / "results", [table])
    check_dashboard_keys(tmp_path / "runs", table)
    return json.loads((tmp_path / "results" / f"{table}.json").read_text())["rows"]
