"""Every table on one page: python -m scripts.report [--results results] [--out results]   (make report)

Reads what the tables wrote (results/tableN.json: the rows with the paper's numbers beside ours, each
row's per-epoch history, the profile and the substitution notes; for a table with no local results,
the committed CPU-budget one, docs/results/cpu/tableN.json, saying so) and the Figure 1 benchmarks
(results/*/bench.json: `make bench` on the CPU, `make gpu-check` on a GPU), and writes

  report.md    the tables, notes and figures (the figures as report_files/*.png beside it)
  report.html  the same page as one self-contained file: figures embedded, nothing fetched to view it

For each table that has results: our numbers beside the paper's, the validation metric against
training wall-clock time (SRU vs LSTM), seconds per epoch side by side, the speed-up over the LSTM.
A table that has not been run says so, with the command that runs it.
"""
import argparse
import base64
import datetime
import html
import json
import os
import re
from pathlib import Path

from sru import bench
from tasks.common.harness import git_commit
from tasks.common.results import TABLES, markdown_table

ROOT = Path(__file__).resolve().parents[1]
METRIC_LABELS = dict(dev_acc="dev accuracy (%)", dev_f1="dev F1", valid_ppl="valid perplexity (log scale)",
                     dev_wer="dev WER (%)")
LOG_SCALE = {"valid_ppl"}
# The paper's Figure 1 (GTX 1070, batch 32, one layer, forward+backward, ms; read off the authors' chart)
PAPER_FIGURE1 = {(32, 256): dict(lstm=6.5, conv2d=0.54, sru=0.40), (128, 512): dict(lstm=38.9, conv2d=4.5, sru=3.4)}
KIND_STYLE = dict(sru=("-", "Reds"), lstm=("--", "Blues"), cnn=(":", "Greens"))


def row_label(row, with_panel=False):
    """e.g. 'SRU 6x910', 'LSTM 2 +input feed', 'bi-SRU 12x75', with '[MR]' when rows span datasets."""
    label = ("bi-" if row.get("bidirectional") else "") + str(row["model"]).upper()
    if row.get("layers"):
        label += f" {row['layers']}" + (f"x{row['hidden']}" if row.get("hidden") else "")
    if row.get("input_feed"):
        label += " +input feed"
    if with_panel and row.get("dataset"):
        label += f" [{row['dataset']}]"
    return label


# row keys that tell repeats of one configuration apart, shown in the speed table where the rows differ in them
VARIANT_KEYS = (("seed", "seed {}"), ("lr", "lr {:g}"), ("forget_bias", "f-gate bias {:g}"))


def speed_rows(table):
    """Seconds per epoch side by side, and each row's speed-up over the LSTM row it is compared with
    (same dataset, directions and machine, i.e. CPU/GPU and thread count; the first LSTM row without input
    feeding, where the table has one). Rows on a machine with no such LSTM row get no speed-up."""
    rows = table["rows"]
    varying = [(k, f) for k, f in VARIANT_KEYS if len({str(r.get(k)) for r in rows}) > 1]
    several_machines = len({r.get("machine") for r in rows}) > 1
    out = []
    for r in rows:
        lstms = [x for x in rows if x["model"] == "lstm" and x.get("dataset") == r.get("dataset")
                 and bool(x.get("bidirectional")) == bool(r.get("bidirectional")) and x.get("machine") == r.get("machine")]
        base = next((x for x in lstms if not x.get("input_feed")), lstms[0] if lstms else None)
        s = r.get("sec_per_epoch")
        label = row_label(r, with_panel=True)
        extra = [f.format(r[k]) for k, f in varying if r.get(k) is not None]
        label += f" ({', '.join(extra)})" if extra else ""
        if several_machines and r.get("machine"):
            label += f" [{r['machine']}]"
        out.append(dict(label=label, sec_per_epoch=s, rnn_sec_per_epoch=r.get("rnn_sec_per_epoch"),
                        full_epoch=r.get("full_epoch_sec_extrapolated"),
                        vs_lstm=base["sec_per_epoch"] / s if base and s and r is not base else None,
                        lstm=row_label(base, with_panel=True) if base else None))
    return out


def speed_markdown(table):
    rows = speed_rows(table)
    columns = [("row", "label", None), ("s/epoch", "sec_per_epoch", ".2f")]
    if any(r["rnn_sec_per_epoch"] for r in rows):
        columns.append(("RNN s/epoch", "rnn_sec_per_epoch", ".2f"))
    if any(r["full_epoch"] for r in rows):
        columns.append(("full epoch s (extrapolated)", "full_epoch", ".0f"))
    columns.append(("speed-up over the LSTM", "vs_lstm", ".2f"))
    base = sorted({r["lstm"] for r in rows if r["lstm"]})
    return (markdown_table(rows, columns) + "\n\nTraining seconds per epoch (median over epochs, evaluation "
            f"excluded); speed-up = the LSTM row's s/epoch / this row's ({', '.join(base) or 'no LSTM row'}).")


def plot_table(table, path):
    """Validation metric vs cumulative training time (one panel per dataset) and s/epoch bars."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows, metric = table["rows"], table["metric"]
    panels = list(dict.fromkeys(r.get("dataset") for r in rows))
    n = len(panels) + 1
    cols = min(n, 3)
    fig, axes = plt.subplots(-(-n // cols), cols, figsize=(5.2 * cols, 3.9 * -(-n // cols)), squeeze=False)
    for ax in axes.flat[n:]:
        ax.axis("off")
    colours = {}
    for kind, (_, cmap) in KIND_STYLE.items():
        same = [r for r in rows if r["model"] == kind]
        for i, r in enumerate(same):
            colours[id(r)] = plt.get_cmap(cmap)(0.45 + 0.5 * (i + 1) / (len(same) + 1))
    for ax, panel in zip(axes.flat, panels):
        for r in rows:
            if r.get("dataset") != panel or not r.get("history"):
                continue
            h = r["history"]
            ax.plot([e["wall"] for e in h], [e[metric] for e in h], KIND_STYLE.get(r["model"], ("-", None))[0],
                    marker="o", ms=3, color=colours.get(id(r)), label=row_label(r))
        ax.set_xlabel("training wall-clock time (s)")
        ax.set_ylabel(METRIC_LABELS.get(metric, metric))
        if metric in LOG_SCALE:
            ax.set_yscale("log")
        ax.set_title(f"{panel + ': ' if panel else ''}{metric} vs time")
        ax.legend(fontsize=7)
    ax = axes.flat[len(panels)]
    speed = speed_rows(table)
    ax.barh(range(len(speed)), [s["sec_per_epoch"] or 0 for s in speed], color=[colours.get(id(r)) for r in rows])
    ax.set_yticks(range(len(speed)), [s["label"] for s in speed], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("training s/epoch (median)")
    ax.set_title("seconds per epoch")
    fig.suptitle(f"Table {table['table'][-1]}: {TABLES[table['table']]['name']}, profile {profile_of(table)}"
                 f"{' (SMOKE RUN)' if table['smoke'] else ''}, {rows[0].get('machine') or rows[0].get('device', '?')}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def find_benchmarks(results):
    """Every Figure 1 benchmark under results/ (bench/ from `make bench`, gpu_check/ from `make gpu-check`),
    CPU first."""
    found = [json.loads(p.read_text()) | {"path": str(p)} for p in sorted(Path(results).glob("*/bench.json"))]
    return sorted(found, key=lambda b: b["machine"]["device"].startswith("CPU") is False)


def paper_figure1_markdown(benches):
    lines = ["| fwd+bwd, ms | l=32, d=256 | l=128, d=512 |", "|---|---|---|"]
    for name, key in (("cuDNN LSTM", "lstm"), ("conv2d k=3", "conv2d"), ("SRU", "sru")):
        lines.append(f"| paper (GTX 1070): {name} | " + " | ".join(f"{PAPER_FIGURE1[s][key]}" for s in PAPER_FIGURE1) + " |")
    lines.append("| paper: LSTM / SRU | " + " | ".join(f"{v['lstm'] / v['sru']:.1f}x" for v in PAPER_FIGURE1.values()) + " |")
    for b in benches:
        ratio = bench.ratios(b["results"])
        for sru in sorted({r["row"] for r in b["results"] if r["row"].startswith("sru-")}):
            speedups = [ratio.get((sru, "fwd+bwd", *s), (None, None))[1] for s in PAPER_FIGURE1]
            lines.append(f"| ours ({b['machine']['device']}): LSTM / {sru} | " + " | ".join(
                "-" if v is None else f"{v:.1f}x" for v in speedups) + " |")
    return "\n".join(lines)


def load_tables(results, published):
    """{table: (its JSON, its path, whether it is local) or None}: the local results/ first, else the
    committed one."""
    out = {}
    for t in TABLES:
        local, committed = Path(results) / f"{t}.json", Path(published) / f"{t}.json"
        path = local if local.exists() else committed if committed.exists() else None
        out[t] = (json.loads(path.read_text()), path, path == local) if path else None
    return out


def source_line(table, path, is_local, results):
    if is_local:
        return f"Source: a local run, `{shown(path)}`."
    return (f"Source: the committed result `{shown(path)}` (no local `{shown(Path(results) / path.name)}`), "
            f"rows run at commit {', '.join(table.get('commits') or ['?'])} on {', '.join(table.get('machines') or ['?'])}.")


def write_report(results, out, published=ROOT / "docs" / "results" / "cpu"):
    results, out = Path(results), Path(out)
    files = out / "report_files"
    files.mkdir(parents=True, exist_ok=True)
    found = load_tables(results, published)
    tables = {t: f[0] if f else None for t, f in found.items()}
    for t, table in tables.items():
        if table is not None and not isinstance(table, dict):
            raise SystemExit(f"error: {results / t}.json is in the old format (a bare list of rows): rebuild it "
                             f"with `python -m tasks.{TABLES[t]['task']}.table --profile <profile> --collect-only`")
    benches = find_benchmarks(results)
    fidelity = Path(os.path.relpath(ROOT / "docs" / "fidelity.md", out.resolve())).as_posix()
    md = ["# SRU reproduction: results report",
          "",
          f"Generated {datetime.date.today()} at commit {git_commit()} by `make report` from `{shown(results)}/`. "
          f"Paper: Lei & Zhang, *Training RNNs as Fast as CNNs* (arXiv 1709.02755, 2017). Every setting beside the "
          f"paper's and the authors' code: [docs/fidelity.md]({fidelity}). Smoke and speed profiles are cut down "
          f"to run in minutes on a CPU: their quality numbers only show that the pipeline runs.",
          "", "| table | task | status | profile | rows |", "|---|---|---|---|---|"]
    for t, table in tables.items():
        n = t[-1]
        if table is None:
            md.append(f"| Table {n} | {TABLES[t]['name']} | not run: `make {t} profile=smoke` | - | - |")
        else:
            where = "local run" if found[t][2] else "committed"
            md.append(f"| [Table {n}](#{t}) | {TABLES[t]['name']} | {where} | {profile_of(table)} | {len(table['rows'])} |")
    md.append("| [Figure 1](#figure1) | speed, one layer | " +
              ("run: " + ", ".join(b["machine"]["device"] for b in benches) if benches else "not run: `make bench`")
              + " | - | - |")
    for t, table in tables.items():
        n = t[-1]
        md += ["", f'<a id="{t}"></a>', "", f"## Table {n}: {TABLES[t]['name']}", ""]
        if table is None:
            md.append(f"Not run yet. `make {t} profile=smoke` runs it in minutes on a CPU "
                      f"(`make {t}` for the full reproduction), then `make report`.")
            continue
        figure = files / f"{t}.png"
        plot_table(table, figure)
        md += [f"**{table['title']}**", "", f"Profile: **{profile_of(table)}**. " + source_line(table, *found[t][1:], results),
               "",
               markdown_table(table["rows"], table["columns"]), "", table["notes"], "",
               f"![Table {n}: {table['metric']} vs training time, and seconds per epoch](report_files/{figure.name})",
               "", "### Seconds per epoch, side by side", "", speed_markdown(table), "",
               f"Settings beside the paper's: [docs/fidelity.md]({fidelity}), section \"Table {n}\"."]
    md += ["", '<a id="figure1"></a>', "", "## Figure 1: speed of one layer, batch 32", ""]
    if not benches:
        md.append("Not run yet: `make bench` (CPU), `make gpu-check` on a GPU machine; then `make report`.")
    else:
        md += [paper_figure1_markdown(benches), "",
               "The paper's claim is a GPU claim (cuDNN LSTM vs CUDA SRU); a CPU row shows our fused CPU kernel "
               "against torch's CPU LSTM, not the paper's setting.", ""]
        if not any(not b["machine"]["device"].startswith("CPU") for b in benches):
            md += ["GPU: not measured yet (`make gpu-check` on a GPU machine writes results/gpu_check/bench.json).", ""]
        for i, b in enumerate(benches):
            figure = files / f"figure1_{i}.png"
            bench.plot(b["results"], b["machine"], figure)
            md += [f"### {b['machine']['device']}", "", bench.markdown(b["results"], b["machine"]),
                   f"![Figure 1 on {b['machine']['device']}](report_files/{figure.name})", ""]
    text = "\n".join(md) + "\n"
    (out / "report.md").write_text(text)
    (out / "report.html").write_text(to_html(text, out))
    return text


def shown(path):
    """A path as the reader should see it: relative to the repository when inside it."""
    path = Path(path).resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def profile_of(table):
    return ", ".join(sorted({str(r.get("profile")) for r in table["rows"]}))


STYLE = """body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.6em 0;font-size:13px}th,td{border:1px solid #ccc;padding:3px 7px;text-align:left}td.num{text-align:right}
th{background:#f2f2f2}img{max-width:100%;border:1px solid #eee}
h2{border-top:2px solid #ddd;padding-top:.8em;margin-top:2em}code{background:#f4f4f4;padding:0 3px}"""


def to_html(text, out):
    """The markdown page as one HTML file, each report_files/*.png inlined as a data URI."""
    import markdown
    body = markdown.markdown(text, extensions=["tables"])

    def inline(match):
        data = base64.b64encode((out / match.group(1)).read_bytes()).decode()
        return f'src="data:image/png;base64,{data}"'
    body = re.sub(r'src="(report_files/[^"]+\.png)"', inline, body)
    body = re.sub(r"<td>(-?[\d.,]+x?|-)</td>", r'<td class="num">\1</td>', body)  # numbers right-aligned
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape('SRU reproduction: results report')}</title><style>{STYLE}</style></head>"
            f"<body>\n{body}\n</body></html>\n")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--results", default=str(ROOT / "results"), help="where the tables and benchmarks are")
    p.add_argument("--out", default=None, help="where report.md/html go (default: --results)")
    p.add_argument("--published", default=str(ROOT / "docs" / "results" / "cpu"),
                   help="the committed results shown for tables with no local results")
    args = p.parse_args(argv)
    out = Path(args.out or args.results)
    write_report(args.results, out, args.published)
    print(f"wrote {out}/report.html (self-contained) and {out}/report.md (figures in {out}/report_files/)")


if __name__ == "__main__":
    main()
