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
import json
import os
import shutil
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
