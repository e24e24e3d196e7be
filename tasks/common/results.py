"""Finished runs -> a results table: JSON rows plus a markdown table, smoke runs marked as such; and
publishing (`--publish`): the committed results under docs/results/<profile>/.

A published table is a directory the tables can be collected from like a local outputs/ folder:

    docs/results/<profile>/tableN.json, tableN.md, tableN.png   the table, its notes, its curves
    docs/results/<profile>/tableN/<row>/result.json            each row's result (commit, machine, history)
    docs/results/<profile>/tableN/<row>/<files>                 what re-scores it (hypotheses, predictions, ...)

Paths inside are relative to the repository root. `--publish` copies every finished local row there
(rows already published and not run again locally are kept), then rebuilds the table from that
directory, so a table can be published in parts and re-running a published table retrains nothing.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from tasks.common.contention import contention_note
from tasks.common.provenance import write_json_atomic

# The paper's tables as this project runs them: the task package that writes each (`make tableN`).
TABLES = {
    "table1": dict(task="classification", name="Sentence classification"),
    "table2": dict(task="squad", name="SQuAD v1.1 reading comprehension"),
    "table3": dict(task="lm_ptb", name="PTB word-level language model"),
    "table4": dict(task="nmt", name="English-German translation"),
    "table5": dict(task="speech", name="Speech recognition"),
}


# Kept in every table row beside the task's own keys: the run (publish() checks which rows are still to
# come by it), the machine it ran on and its wall time.
RUN_KEYS = ("run_name", "machine", "wall_s", "contended_epochs")


def format_cell(value, fmt=None):
    if value is None:
        return "-"
    return format(value, fmt) if fmt else str(value)


def markdown_table(rows, columns):
    """rows as a markdown table; columns: (header, key, format spec or None)."""
    lines = ["| " + " | ".join(h for h, _, _ in columns) + " |", "|---" * len(columns) + "|"]
    lines += ["| " + " | ".join(format_cell(r.get(k), f) for _, k, f in columns) + " |" for r in rows]
    return "\n".join(lines)


def machines_note(rows):
    """A note line when the rows ran on more than one machine or thread count (result.json's `machine`):
    which rows ran where, since seconds per epoch compare only within one."""
    where = {}
    for r in rows:
        if r.get("machine"):
            where.setdefault(r["machine"], []).append(r.get("run_name") or "?")
    if len(where) < 2:
        return ""
    return ("\n- Machines: " + "; ".join(f"{m}: {', '.join(names)}" for m, names in where.items())
            + ". Seconds per epoch compare only between rows on the same machine and thread count.")


def write_table(rows, columns, title, out_dir, stem, smoke, notes="", metric=None, profile=None, budget=None):
    """rows: dicts; columns: (header, key, format spec or None). Writes <stem>.md (with `notes`, markdown,
    under the table) and <stem>.json: the title, smoke label, profile, columns, notes, the validation
    `metric` the rows' `history` (per-epoch entries, kept in the JSON only) follows, the commits and
    machines the rows ran on, and the rows: everything `make report` needs to redraw the table and its
    curves. profile="cpu": the title says CPU BUDGET and `budget` (what was cut from `full`)."""
    out_dir = Path(out_dir)
    if smoke:  # True, or a string saying how the smoke run was cut down
        cut = smoke if isinstance(smoke, str) else "tiny widths, truncated data, a few epochs"
        title += f" -- SMOKE RUN: {cut}; not comparable with the paper"
    elif profile == "cpu":
        title += f" -- CPU BUDGET: {budget or 'see the notes'}"
    seen = lambda key: sorted({str(r[key]) for r in rows if r.get(key)})
    notes = (notes.rstrip() + machines_note(rows) + contention_note(rows)).lstrip("\n")
    write_json_atomic(dict(table=stem, title=title, smoke=smoke or False, profile=profile, metric=metric,
                           commits=seen("commit"), machines=seen("machine"),
                           columns=[list(c) for c in columns], notes=notes, rows=rows),
                      out_dir / f"{stem}.json")
    lines = [f"# {title}", "", markdown_table(rows, columns)]
    if notes:
        lines += ["", notes]
    (out_dir / f"{stem}.md").write_text("\n".join(lines) + "\n")
    return "\n".join(lines)


def profile_rows(experiment, profile):
    """The rows of a table's experiment file (configs/<task>/tableN.yaml) that `profile` runs: a row's
    optional `profiles` lists them (default: every profile)."""
    from omegaconf import OmegaConf
    rows = OmegaConf.to_container(OmegaConf.load(experiment))["rows"]
    return [r for r in rows if profile in r.get("profiles", [profile])]


def require_finished(rows, stem, table_module, profile, outputs, what="row"):
    """Exit, naming the command that trains them, when no row (or cell) of table `stem` has finished."""
    if not rows:
        sys.exit(f"error: no finished {what} of Table {stem.removeprefix('table')} at profile={profile} in {outputs}: "
                 f"run them first (python -m {table_module} --profile {profile})")


def row_result(outputs, name, table_module, profile, missing_ok=False):
    """A finished row's result.json, or exit saying how to produce it (None if missing_ok)."""
    path = Path(outputs) / name / "result.json"
    if not path.exists():
        if missing_ok:
            return None
        sys.exit(f"error: {path} is missing: run the row first (python -m {table_module} --profile {profile})")
    return json.loads(path.read_text())


def finished(args, name):
    """Where row `name` is already done, so that the table does not train it again: its local
    result.json (with --publish or resume=true), or its published one (with --publish). None: train it."""
    local = Path(args.outputs) / name / "result.json"
    if local.exists() and (args.publish or "resume=true" in args.extra):
        return local
    published = args.published / name / "result.json"
    if args.publish and published.exists():
        return published
    return None


def publish_rows(outputs, names, dest, root):
    """Copy each locally finished row (outputs/<name>/result.json and the files of its run directory it
    names) to dest/<name>/, with those paths rewritten relative to `root`. Returns the names copied."""
    copied = []
    for name in names:
        src = Path(outputs) / name / "result.json"
        if not src.exists():
            continue
        result, row_dir = json.loads(src.read_text()), Path(dest) / name
        row_dir.mkdir(parents=True, exist_ok=True)
        for key, value in result.items():
            if not isinstance(value, str) or key == "run_name":
                continue
            path = Path(value) if Path(value).is_absolute() else Path(root) / value
            if not path.is_file():  # a run made from another checkout: its files sit beside its result.json
                path = src.parent / Path(value).name
            if path.suffix == ".pt":  # checkpoints stay with the run: the published results are small files
                continue
            if path.is_file() and path.resolve().parent == src.resolve().parent:
                shutil.copyfile(path, row_dir / path.name)
                result[key] = Path(os.path.relpath(row_dir / path.name, root)).as_posix()
        write_json_atomic(result, row_dir / "result.json")
        copied.append(name)
    return copied


def publish(args, stem, names, collect, root):
    """--publish: copy the finished local rows into args.published, rebuild the table from there
    (collect(outputs, out, missing_ok) writes <stem>.json/.md), draw its curves, and say what is in it."""
    dest = args.published
    copied = publish_rows(args.outputs, names, dest, root)
    collect(dest, dest.parent, True)
    table = json.loads((dest.parent / f"{stem}.json").read_text())
    from tasks.common.figures import plot_table
    plot_table(table, dest.parent / f"{stem}.png")
    done = {r.get("run_name") for r in table["rows"]}
    missing = [n for n in names if n not in done]
    if missing:  # a table published in parts says which rows are still to come
        line = f"- Not run yet at this profile: {', '.join(missing)}."
        table["notes"] = (table["notes"] + "\n" + line).strip()
        write_json_atomic(table, dest.parent / f"{stem}.json")
        with open(dest.parent / f"{stem}.md", "a") as f:
            f.write(line + "\n")
    print(f"published {stem}: {len(table['rows'])} of {len(names)} rows in {dest.parent}/{stem}.{{json,md,png}} "
          f"(copied now: {', '.join(copied) or 'none'}; commits {', '.join(table['commits'])})"
          + (f"; not run yet: {', '.join(missing)}" if missing else ""))
    return table


def run_table(args, stem, module, runs, collect, root, names=None):
    """A table's runs, then the table. runs: (name, overrides) pairs, each one run of `module` into
    <outputs>/<name> (skipped where finished(args, name)); collect(outputs, out, missing_ok) builds the table
    from a directory of finished runs. Without --publish: from args.outputs into args.out; with it: the
    published copy (publish(), over `names`, every row of the table, default the runs' names)."""
    only = getattr(args, "rows", None)  # a table run in parts: its other rows may be missing
    if not args.collect_only:
        chosen = [(name, o) for name, o in runs if not only or any(part in name for part in only)]
        if only and not chosen:
            sys.exit(f"error: --rows {','.join(only)} matches none of this table's rows at profile={args.profile}: "
                     f"{', '.join(name for name, _ in runs)}")
        for name, overrides in chosen:  # publish still collects every finished row, chosen now or not
            if done := finished(args, name):
                print(f"{name}: finished ({done}); not trained again")
                continue
            run_entry_point(module, [*overrides, f"out_dir={Path(args.outputs) / name}", *args.extra], root)
    if args.publish:
        return publish(args, stem, names or [name for name, _ in runs], collect, root)
    return collect(args.outputs, args.out, bool(only))


def run_entry_point(module, args, cwd):
    """One table cell = one run of a task's real command-line entry point, in its own process. A failed
    cell has already printed its own error: stop the table with that exit status, no traceback."""
    cmd = [sys.executable, "-m", module, *args]
    print("+", " ".join(cmd), flush=True)
    code = subprocess.run(cmd, cwd=cwd).returncode
    if code:
        sys.exit(f"error: this cell failed (exit status {code}), see its message above; the table was not written. "
                 f"Fix it and rerun the same command with resume=true to keep the finished cells")


class TableArgs(argparse.ArgumentParser):
    """parse_args also sets `published`: the directory --publish writes (docs/results/<profile>/tableN)."""

    def parse_args(self, *a, **k):
        args = super().parse_args(*a, **k)
        args.published = Path(args.publish_dir or Path(self.root) / "docs" / "results" / args.profile) / self.table
        return args


def table_arg_parser(doc, root, task, table, what="cells"):
    """The command line every `python -m tasks.<task>.table` shares; `extra` are Hydra overrides. The
    profiles are the task's configs/<task>/profile/*.yaml."""
    p = TableArgs(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.root, p.table = root, table
    profiles = sorted(f.stem for f in (Path(root) / "configs" / task / "profile").glob("*.yaml"))
    p.add_argument("--profile", default="full", choices=profiles)
    p.add_argument("--collect-only", action="store_true", help=f"only rebuild the table from finished {what}")
    p.add_argument("--out", default=str(Path(root) / "results"), help="where the table and figure go")
    p.add_argument("--outputs", default=str(Path(root) / "outputs" / task / table),
                   help=f"where the {what}' runs live (apart from single runs' outputs/{task}/<run_name>)")
    p.add_argument("--publish", action="store_true",
                   help="also commit-ready: copy the finished rows and the table to docs/results/<profile>/ "
                        "(finished or published rows are not trained again)")
    p.add_argument("--publish-dir", default=None, help="instead of docs/results/<profile>")
    if what == "rows":
        p.add_argument("--rows", type=lambda v: [part for part in v.split(",") if part],
                       help="run only the rows whose run name contains one of these comma-separated parts, e.g. "
                            "--rows sru-3x,lstm-2x500-feedFalse (a table in parts; --publish still collects every finished row)")
    p.add_argument("extra", nargs="*", help=f"Hydra overrides passed to every one of the {what}, "
                                            f"e.g. logger=none resume=true")
    return p
