"""The one skeleton of the five tables: `python -m tasks.<task>.table` runs a table's rows, collects their
results into results/tableN.{md,json} and, with --publish, the committed copy (tasks/common/results.py).

A task's table.py only declares its `Table`: which rows, how a row becomes a run, the columns, the keys kept
from each run's result.json, the validation metric, the notes. Rows are given one way: each is a mapping in
configs/<task>/tableN.yaml (its optional `profiles` lists the profiles that run it), `overrides` maps a row's
keys to the Hydra keys of its run (`layers: 5` -> `model.layers=5`), and a value given per profile
(`epochs: {cpu: 60, full: 60}`) is passed at those profiles only. Every row is one run of the task's real
entry point, `python -m tasks.<task>.train <overrides> run_name=<name> out_dir=<outputs>/<name>`, so the
same rows also run as a Hydra sweep (docs/training.md), then --collect-only.
"""
import argparse
import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from omegaconf import OmegaConf

from tasks.common.results import RUN_KEYS, publish, write_table

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Table:
    stem: str                      # "table3": configs/<task>/table3.yaml, results/table3.{md,json}
    task: str                      # the package: tasks.<task>.train runs a row
    title: str                     # "{data}" becomes the `data=` override's value
    columns: list                  # (header, key, format spec or None) of the markdown table
    keys: Optional[list]           # the result.json keys a table row keeps (None: all of them)
    metric: str                    # the validation metric each row's `history` follows (`make report`'s curves)
    overrides: dict                # a row's key -> the Hydra key its value sets
    run_name: Callable             # (row, profile, data) -> the run's name and directory
    entry: Callable = lambda result, row, profile, data: {}  # a table row's derived fields
    notes: Callable = lambda rows, profile, outputs: ""  # markdown under the table (outputs: the runs' directory)
    budget: object = None          # what profile=cpu cut from `full`: a string, or rows -> string
    smoke: str = "tiny widths, truncated data, a few epochs"  # what profile=smoke cut
    profile_columns: dict = field(default_factory=dict)  # profile -> columns added at it
    profile_titles: dict = field(default_factory=dict)   # profile -> what the title adds at it
    data: Optional[str] = None     # the task's default `data=`, when its rows' names carry the data set
    unwritten: tuple = ()          # row fields the notes and figures read but the JSON does not keep
    figure: Optional[Callable] = None  # (rows, out_dir, profile): the task's own figure beside the table
    rows: Optional[Callable] = None    # (args, every) -> rows, instead of the experiment file's at args.profile
    arguments: Optional[Callable] = None  # (parser): the task's own options
    before: Optional[Callable] = None     # (args): what the table runs (or publishes) before its rows
    what: str = "row"              # what the table calls a row ("cell": a dataset x model)
    doc: str = ""                  # the command's --help

    @property
    def experiment(self):
        return ROOT / "configs" / self.task / f"{self.stem}.yaml"

    @property
    def module(self):
        return f"tasks.{self.task}.table"

    def profile_rows(self, profile):
        return profile_rows(self.experiment, profile)

    def overrides_of(self, row, profile, data):
        """The one way a row becomes a run: its mapped keys as Hydra overrides (bools as Hydra spells them; a
        per-profile value at its profiles only), then the run's name and profile."""
        out = []
        for key, target in self.overrides.items():
            value = row.get(key)
            if isinstance(value, dict):
                value = value.get(profile)
            if value is not None:
                out.append(f"{target}={str(value).lower() if isinstance(value, bool) else value}")
        return [*out, f"run_name={self.run_name(row, profile, data)}", f"profile={profile}"]

    def collect(self, rows, profile, out_dir, outputs, data=None, missing_ok=False):
        """The finished rows of `outputs` -> <out_dir>/<stem>.{md,json} (and the task's figure); returns the
        table's rows."""
        table = []
        for row in rows:
            result = row_result(outputs, self.run_name(row, profile, data), self.module, profile, missing_ok)
            if result is None:
                continue
            kept = result if self.keys is None else {k: result.get(k) for k in (*self.keys, *RUN_KEYS)}
            table.append(dict(kept, **self.entry(result, row, profile, data), history=result.get("history")))
        require_finished(table, self.stem, self.module, profile, outputs, self.what)
        title = self.title.format(data=data) + self.profile_titles.get(profile, "")
        budget = self.budget(table) if callable(self.budget) and profile == "cpu" else self.budget
        text = write_table([{k: v for k, v in r.items() if k not in self.unwritten} for r in table],
                           self.columns + self.profile_columns.get(profile, []), title, out_dir, self.stem,
                           self.smoke if profile == "smoke" else False, notes=self.notes(table, profile, Path(outputs)),
                           metric=self.metric, profile=profile, budget=budget if profile == "cpu" else None)
        if self.figure:
            self.figure(table, Path(out_dir), profile)
        print(text)
        return table

    def main(self, argv=None):
        p = table_arg_parser(self.doc, self.task, self.stem, self.what + "s")
        if self.arguments:
            self.arguments(p)
        args = p.parse_args(argv)
        data = next((a.split("=", 1)[1] for a in args.extra if a.startswith("data=")), self.data)
        pick = self.rows or (lambda args, every: self.profile_rows(args.profile))
        chosen, every = pick(args, False), pick(args, True)
        if self.before:
            self.before(args)
        runs = [(self.run_name(row, args.profile, data), self.overrides_of(row, args.profile, data)) for row in chosen]
        names = [self.run_name(row, args.profile, data) for row in every]
        collect = lambda outputs, out, missing_ok: self.collect(every if args.publish else chosen, args.profile, out,
                                                                 outputs, data, missing_ok)
        return run_table(args, self.stem, f"tasks.{self.task}.train", runs, collect, names)


def profile_rows(experiment, profile):
    """The rows of a table's experiment file (configs/<task>/tableN.yaml) that `profile` runs: a row's
    optional `profiles` lists them (default: every profile)."""
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


def run_table(args, stem, module, runs, collect, names):
    """A table's runs, then the table. runs: (name, overrides) pairs, each one run of `module` into
    <outputs>/<name> (skipped where finished(args, name)); collect(outputs, out, missing_ok) builds the table
    from a directory of finished runs. Without --publish: from args.outputs into args.out; with it: the
    published copy (publish(), over `names`, every row of the table)."""
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
            run_entry_point(module, [*overrides, f"out_dir={Path(args.outputs) / name}", *args.extra])
    if args.publish:
        return publish(args, stem, names, collect, ROOT)
    return collect(args.outputs, args.out, bool(only))


def run_entry_point(module, args):
    """One table cell = one run of a task's real command-line entry point, in its own process. A failed
    cell has already printed its own error: stop the table with that exit status, no traceback."""
    cmd = [sys.executable, "-m", module, *args]
    print("+", " ".join(cmd), flush=True)
    code = subprocess.run(cmd, cwd=ROOT).returncode
    if code:
        sys.exit(f"error: this cell failed (exit status {code}), see its message above; the table was not written. "
                 f"Fix it and rerun the same command with resume=true to keep the finished cells")


class TableArgs(argparse.ArgumentParser):
    """parse_args also sets `published`: the directory --publish writes (docs/results/<profile>/tableN)."""

    def parse_args(self, *a, **k):
        args = super().parse_args(*a, **k)
        args.published = Path(args.publish_dir or ROOT / "docs" / "results" / args.profile) / self.table
        return args


def table_arg_parser(doc, task, table, what="cells"):
    """The command line every `python -m tasks.<task>.table` shares; `extra` are Hydra overrides. The
    profiles are the task's configs/<task>/profile/*.yaml."""
    p = TableArgs(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.table = table
    profiles = sorted(f.stem for f in (ROOT / "configs" / task / "profile").glob("*.yaml"))
    p.add_argument("--profile", default="full", choices=profiles)
    p.add_argument("--collect-only", action="store_true", help=f"only rebuild the table from finished {what}")
    p.add_argument("--out", default=str(ROOT / "results"), help="where the table and figure go")
    p.add_argument("--outputs", default=str(ROOT / "outputs" / task / table),
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
