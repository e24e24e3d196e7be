"""The W&B workspace comparing SRU and cuDNN LSTM: one saved view per table, built as code (wandb-workspaces).

    wandb sync --sync-all outputs/*/*/*/wandb outputs/*/*/*/*/wandb   # upload the offline runs (see docs/training.md)
    python -m scripts.wandb_dashboard --entity E --project sru-repro   # create the views, print their URLs
    python -m scripts.wandb_dashboard --dry-run [--runs outputs]       # no account or network needed

Each view holds one table's runs (filter: config `table`), grouped by model kind then depth (and the
table's own row keys) and coloured SRU red, LSTM blue, CNN green. Panels: the validation metric against
epoch and against training wall-clock time, the training loss, throughput (tokens, examples, questions
or utterances per second), seconds per epoch, the final metrics per row; the runs table pins the
final metrics. The Figure 1 view shows what `python -m sru.bench --logger wandb` logged.

--dry-run builds the same view objects and prints their specification, contacting nothing; with --runs
it also reads the offline runs under that folder and checks that every key the views filter, group or
plot on is one those runs logged (exit status 1 naming the missing keys otherwise).
"""
import argparse
import importlib
import json
import struct
import sys
from pathlib import Path

from tasks.common.results import TABLES

COLOURS = dict(sru="#d62728", lstm="#1f77b4", cnn="#2ca02c")
# Per table: the rows' distinguishing config keys (after model.kind), the per-epoch training loss key, and
# the final metrics logged to the summary after the best epoch is evaluated (tested against real runs).
VIEWS = {
    "table1": dict(groupby=["dataset"], train="train_loss", final=["test_acc"]),  # the CNN has no model.layers
    "table2": dict(groupby=["model.layers"], train="train_loss", final=["dev_em", "dev_f1"], extra=["rnn_seconds"]),
    "table3": dict(groupby=["model.layers", "model.hidden"], train="train_ppl", final=["test_ppl"], log_y=True),
    "table4": dict(groupby=["model.layers", "model.input_feed"], train="train_ppl",
                   final=["bleu", "bleu_tok", "test_ppl"], log_y=True),
    "table5": dict(groupby=["model.bidirectional", "model.layers"], train="train_ctc", final=["test_wer", "test_cer"]),
}
FIGURE1_SIZES = ("32x256", "128x512")  # the sizes the paper's Figure 1 reports


def task_class(table):
    """The Task class that trains `table`: its metric and count_name are what the trainer logs."""
    module = importlib.import_module(f"tasks.{TABLES[table]['task']}.train")
    return next(v for v in vars(module).values() if isinstance(v, type) and getattr(v, "name", None) == TABLES[table]["task"])


def table_view(ws, wr, expr, entity, project, table):
    """One table's saved view. Returns (workspace, the keys it reads: history/summary and config)."""
    task, spec = task_class(table), VIEWS[table]
    metric, rate = task.metric, f"{task.count_name}_per_s"
    n = table[-1]
    line = lambda title, x, y, **kw: wr.LinePlot(title=title, x=x, y=y, **kw)  # noqa: E731
    log_y = dict(log_y=True) if spec.get("log_y") else {}
    sections = [
        ws.Section(name=f"Table {n}: {metric}, SRU vs LSTM", is_open=True, panels=[
            line(f"{metric} vs epoch", "epoch", [metric], **log_y),
            line(f"{metric} vs training wall-clock time (s)", "wall", [metric], **log_y),
            line(f"best {metric} so far vs wall-clock time (s)", "wall", [f"best_{metric}"], **log_y),
            line(f"{spec['train']} vs epoch", "epoch", [spec["train"]], **log_y),
        ]),
        ws.Section(name=f"Table {n}: speed", is_open=True, panels=[
            line("training seconds per epoch", "epoch", ["seconds"] + spec.get("extra", [])),
            line(f"throughput: {rate}", "epoch", [rate]),
            wr.BarPlot(title="seconds per epoch (last epoch)", metrics=["seconds"], orientation="h"),
            wr.BarPlot(title=f"{rate} (last epoch)", metrics=[rate], orientation="h"),
        ]),
        ws.Section(name=f"Table {n}: final metric per row", is_open=True, panels=[
            wr.BarPlot(title=f"best {metric}", metrics=[f"best_{metric}"], orientation="h"),
            *[wr.BarPlot(title=key, metrics=[key], orientation="h") for key in spec["final"]],
        ]),
    ]
    groupby = ["model.kind"] + spec["groupby"]
    view = ws.Workspace(
        entity=entity, project=project, name=f"SRU vs LSTM: Table {n} ({TABLES[table]['name']})", sections=sections,
        settings=ws.WorkspaceSettings(x_axis="epoch", max_runs=50),
        runset_settings=ws.RunsetSettings(
            filters=f"Config('table') == '{table}'", groupby=[expr.Config(k) for k in groupby],
            group_colors=dict(COLOURS),
            pinned_columns=[f"summary:best_{metric}", *[f"summary:{k}" for k in spec["final"]], "summary:params",
                            "summary:best_epoch"]))
    logged = {metric, f"best_{metric}", "epoch", "wall", "seconds", rate, spec["train"], *spec.get("extra", []),
              *spec["final"], "params", "best_epoch"}
    return view, dict(logged=logged, config={"table", *groupby})


def figure1_view(ws, wr, expr, entity, project):
    ratios = [f"speedup_vs_lstm/fwd+bwd/{s}" for s in FIGURE1_SIZES]
    view = ws.Workspace(
        entity=entity, project=project, name="SRU vs LSTM: Figure 1 (one layer, batch 32)",
        sections=[ws.Section(name="Figure 1: milliseconds per call", is_open=True, panels=[
            wr.WeavePanelSummaryTable(table_name="figure1"),
            wr.BarPlot(title="cuDNN LSTM ms / SRU ms, forward+backward (paper: 16x and 11x on a GTX 1070)",
                       metrics=ratios, orientation="h"),
            wr.BarPlot(title="SRU ms / GEMM floor, forward+backward", orientation="h",
                       metrics=[f"sru_over_gemm/fwd+bwd/{s}" for s in FIGURE1_SIZES])])],
        runset_settings=ws.RunsetSettings(filters="Config('table') == 'figure1'",
                                          groupby=[expr.Config("device")],
                                          pinned_columns=["config:device", "config:torch", *[f"summary:{r}" for r in ratios]]))
    return view, dict(logged={"figure1", *ratios, *[f"sru_over_gemm/fwd+bwd/{s}" for s in FIGURE1_SIZES]},
                      config={"table", "device", "torch"})


def build_views(entity, project, tables):
    import wandb_workspaces.reports.v2 as wr
    import wandb_workspaces.workspaces as ws
    from wandb_workspaces import expr
    views = {t: table_view(ws, wr, expr, entity, project, t) for t in tables if t in TABLES}
    if "figure1" in tables:
        views["figure1"] = figure1_view(ws, wr, expr, entity, project)
    return views


def describe(view, keys):
    """The view's specification as plain data: what --dry-run prints."""
    rs = view.runset_settings
    return dict(name=view.name, entity=view.entity, project=view.project,
                filters=[rs.filters] if isinstance(rs.filters, str) else [str(f) for f in rs.filters],
                groupby=[f"config:{g.name}" for g in rs.groupby],
                group_colors=dict(rs.group_colors), pinned_columns=list(rs.pinned_columns),
                sections=[dict(name=s.name, panels=[panel_spec(p) for p in s.panels]) for s in view.sections],
                logged_keys=sorted(keys["logged"]), config_keys=sorted(keys["config"]))


def panel_spec(panel):
    spec = dict(type=type(panel).__name__, title=getattr(panel, "title", None))
    for attr in ("x", "y", "metrics", "table_name"):
        if getattr(panel, attr, None):
            spec[attr] = getattr(panel, attr)
    return spec


# --- reading offline runs (the .wandb file is a LevelDB-style log of protobuf records) ---------------------
_BLOCK, _FULL, _FIRST, _MIDDLE, _LAST = 32768, 1, 2, 3, 4


def _records(path):
    data = Path(path).read_bytes()
    if data[:4] != b":W&B" or struct.unpack("<H", data[4:6])[0] != 0xBEE1:
        raise ValueError(f"{path} is not a W&B run file (no ':W&B' header)")
    pos, parts = 7, b""
    while pos + 7 <= len(data):
        left = _BLOCK - pos % _BLOCK
        if left < 7:  # a block's tail too short for a record header is padding
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if kind == 0 and length == 0:
            pos += left
            continue
        chunk, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
        if kind == _FULL:
            yield chunk
        elif kind == _FIRST:
            parts = chunk
        elif kind in (_MIDDLE, _LAST):
            parts += chunk
            if kind == _LAST:
                yield parts
        else:
            raise ValueError(f"{path}: unknown record type {kind} at byte {pos}")


def _flatten(config, prefix=""):
    for key, value in config.items():
        if isinstance(value, dict) and value:
            yield from _flatten(value, f"{prefix}{key}.")
        yield f"{prefix}{key}"


def offline_run_keys(run_dir):
    """What an offline run logged: {"logged": history and summary keys, "config": flattened config keys
    (model.kind, ...), "table": its config `table`}."""
    from wandb.proto import wandb_internal_pb2 as pb
    files = list(Path(run_dir).glob("run-*.wandb"))
    if not files:
        raise FileNotFoundError(f"no run-*.wandb file in {run_dir}")
    logged, config = set(), {}
    for raw in _records(files[0]):
        record = pb.Record()
        record.ParseFromString(raw)
        kind = record.WhichOneof("record_type")
        if kind in ("history", "summary"):  # a nested value (e.g. a Table) counts as its top-level key
            items = record.history.item if kind == "history" else record.summary.update
            logged |= {i.key or i.nested_key[0] for i in items}
        elif kind in ("config", "run"):
            updates = record.config.update if kind == "config" else record.run.config.update
            config.update({i.key: json.loads(i.value_json) for i in updates})
    return dict(logged={k for k in logged if k and not k.startswith("_")}, config=set(_flatten(config)),
                table=config.get("table"))


def check_against_runs(views, runs_root):
    """Every key each view reads, against the offline runs of its table under runs_root: a list of problems."""
    runs = {}
    for run_dir in sorted(Path(runs_root).rglob("offline-run-*")):
        keys = offline_run_keys(run_dir)
        runs.setdefault(keys["table"], []).append((run_dir, keys))
    problems = []
    for table, (_, wanted) in views.items():
        for run_dir, keys in runs.get(table, []):
            for kind in ("logged", "config"):
                missing = sorted(wanted[kind] - keys[kind])
                if missing:
                    problems.append(f"{table}: {run_dir} did not log the {kind} keys {missing}")
    return problems, {t: len(r) for t, r in runs.items()}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--entity", help="your W&B entity (user or team); required unless --dry-run")
    p.add_argument("--project", default="sru-repro", help="the W&B project the runs were synced to")
    p.add_argument("--tables", default=",".join([*TABLES, "figure1"]), help="comma-separated, default all")
    p.add_argument("--state", default=str(Path(__file__).resolve().parents[1] / "results" / "wandb_views.json"),
                   help="where the saved views' names are kept, so a second run updates them")
    p.add_argument("--dry-run", action="store_true", help="print the views' specification; contact nothing")
    p.add_argument("--json", action="store_true", help="with --dry-run: the specification as JSON")
    p.add_argument("--runs", help="with --dry-run: check the views' keys against the offline runs under this folder")
    args = p.parse_args(argv)
    tables = args.tables.split(",")
    unknown = set(tables) - {*TABLES, "figure1"}
    if unknown:
        p.error(f"unknown tables {sorted(unknown)}; expected some of {[*TABLES, 'figure1']}")
    if not args.dry_run and not args.entity:
        p.error("--entity is required to save views (your W&B user or team); or --dry-run to only print them")
    views = build_views(args.entity or "ENTITY", args.project, tables)
    if args.dry_run:
        specs = [describe(view, keys) for view, keys in views.values()]
        if args.json:
            print(json.dumps(specs, indent=1, default=str))
        else:
            for s in specs:
                print(f"view: {s['name']}  ({s['entity']}/{s['project']})")
                print(f"  filter {' and '.join(s['filters'])}; group by {', '.join(s['groupby'])}; "
                      f"colours {s['group_colors']}; pinned {', '.join(s['pinned_columns'])}")
                for sec in s["sections"]:
                    print(f"  section {sec['name']}")
                    for panel in sec["panels"]:
                        axes = ", ".join(f"{k}={panel[k]}" for k in ("x", "y", "metrics", "table_name") if k in panel)
                        print(f"    {panel['type']}: {panel['title'] or ''} [{axes}]")
        if args.runs:
            problems, counts = check_against_runs(views, args.runs)
            print(f"checked against offline runs under {args.runs}: " +
                  (", ".join(f"{t} {n}" for t, n in sorted(counts.items(), key=str)) or "none found"))
            if problems:
                print("\n".join(problems), file=sys.stderr)
                sys.exit(1)
        return
    # Saved views are remembered by their internal names, so running the command again updates them
    state_path = Path(args.state)
    state = json.loads(state_path.read_text()) if state_path.exists() else {}
    for table, (view, _) in views.items():
        key = f"{args.entity}/{args.project}/{table}"
        if key in state:
            view._internal_name = state[key]
        view.save()  # wandb prints the view's URL
        state[key] = view._internal_name
        state_path.parent.mkdir(parents=True, exist_ok=True)
        state_path.write_text(json.dumps(state, indent=1))


if __name__ == "__main__":
    main()
