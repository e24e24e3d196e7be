"""Finished runs -> a results table: JSON rows plus a markdown table, smoke runs marked as such."""
import argparse
import json
import subprocess
import sys
from pathlib import Path

from tasks.common.harness import write_json_atomic

# The paper's tables as this project runs them: the task package that writes each (`make tableN`).
TABLES = {
    "table1": dict(task="classification", name="Sentence classification"),
    "table2": dict(task="squad", name="SQuAD v1.1 reading comprehension"),
    "table3": dict(task="lm_ptb", name="PTB word-level language model"),
    "table4": dict(task="nmt", name="English-German translation"),
    "table5": dict(task="speech", name="Speech recognition"),
}


def format_cell(value, fmt=None):
    if value is None:
        return "-"
    return format(value, fmt) if fmt else str(value)


def markdown_table(rows, columns):
    """rows as a markdown table; columns: (header, key, format spec or None)."""
    lines = ["| " + " | ".join(h for h, _, _ in columns) + " |", "|---" * len(columns) + "|"]
    lines += ["| " + " | ".join(format_cell(r.get(k), f) for _, k, f in columns) + " |" for r in rows]
    return "\n".join(lines)


def write_table(rows, columns, title, out_dir, stem, smoke, notes="", metric=None):
    """rows: dicts; columns: (header, key, format spec or None). Writes <stem>.md (with `notes`, markdown,
    under the table) and <stem>.json: the title, smoke label, columns, notes, the validation `metric` the
    rows' `history` (per-epoch entries, kept in the JSON only) follows, and the rows: everything
    `make report` needs to redraw the table and its curves."""
    out_dir = Path(out_dir)
    if smoke:  # True, or a string saying how the smoke run was cut down
        cut = smoke if isinstance(smoke, str) else "tiny widths, truncated data, a few epochs"
        title += f" -- SMOKE RUN: {cut}; not comparable with the paper"
    write_json_atomic(dict(table=stem, title=title, smoke=smoke or False, metric=metric,
                           columns=[list(c) for c in columns], notes=notes.rstrip(), rows=rows),
                      out_dir / f"{stem}.json")
    lines = [f"# {title}", "", markdown_table(rows, columns)]
    if notes:
        lines += ["", notes.rstrip()]
    (out_dir / f"{stem}.md").write_text("\n".join(lines) + "\n")
    return "\n".join(lines)


def row_result(outputs, name, table_module, profile):
    """A finished row's result.json, or exit saying how to produce it."""
    path = Path(outputs) / name / "result.json"
    if not path.exists():
        sys.exit(f"error: {path} is missing: run the row first (python -m {table_module} --profile {profile})")
    return json.loads(path.read_text())


def run_entry_point(module, args, cwd):
    """One table cell = one run of a task's real command-line entry point, in its own process. A failed
    cell has already printed its own error: stop the table with that exit status, no traceback."""
    cmd = [sys.executable, "-m", module, *args]
    print("+", " ".join(cmd), flush=True)
    code = subprocess.run(cmd, cwd=cwd).returncode
    if code:
        sys.exit(f"error: this cell failed (exit status {code}), see its message above; the table was not written. "
                 f"Fix it and rerun the same command with resume=true to keep the finished cells")


def table_arg_parser(doc, root, task, table, what="cells"):
    """The command line every `python -m tasks.<task>.table` shares; `extra` are Hydra overrides. The
    profiles are the task's configs/<task>/profile/*.yaml."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    profiles = sorted(f.stem for f in (Path(root) / "configs" / task / "profile").glob("*.yaml"))
    p.add_argument("--profile", default="full", choices=profiles)
    p.add_argument("--collect-only", action="store_true", help=f"only rebuild the table from finished {what}")
    p.add_argument("--out", default=str(Path(root) / "results"), help="where the table and figure go")
    p.add_argument("--outputs", default=str(Path(root) / "outputs" / task / table),
                   help=f"where the {what}' runs live (apart from single runs' outputs/{task}/<run_name>)")
    p.add_argument("extra", nargs="*", help=f"Hydra overrides passed to every one of the {what}, "
                                            f"e.g. logger=none resume=true")
    return p
