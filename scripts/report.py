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
from tasks.common.provenance import git_commit
from tasks.common.figures import plot_table, profile_of, speed_markdown
from tasks.common.results import TABLES, markdown_table

ROOT = Path(__file__).resolve().parents[1]
# The paper's Figure 1 (GTX 1070, batch 32, one layer, forward+backward, ms; read off the authors' chart)
PAPER_FIGURE1 = {(32, 256): dict(lstm=6.5, conv2d=0.54, sru=0.40), (128, 512): dict(lstm=38.9, conv2d=4.5, sru=3.4)}


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
    """{table: [(its JSON, its path, whether it is local), ...]}: a local run (results/) and the committed one, each
    shown when it exists, the local first; [] when neither does."""
    out = {}
    for t in TABLES:
        found = [(path, path.parent == Path(results)) for path in (Path(results) / f"{t}.json", Path(published) / f"{t}.json")]
        out[t] = [(json.loads(p.read_text()), p, local) for p, local in found if p.exists()]
    return out


def source_line(table, path, is_local, results):
    if is_local:
        return f"Source: a local run, `{shown(path)}`."
    return (f"Source: the committed result `{shown(path)}`, rows run at commit "
            f"{', '.join(table.get('commits') or ['?'])} on {', '.join(table.get('machines') or ['?'])}.")


def write_report(results, out, published=ROOT / "docs" / "results" / "cpu"):
    results, out = Path(results), Path(out)
    files = out / "report_files"
    files.mkdir(parents=True, exist_ok=True)
    found = load_tables(results, published)
    for t, entries in found.items():
        for table, path, _ in entries:
            if not isinstance(table, dict):
                raise SystemExit(f"error: {path} is in the old format (a bare list of rows): rebuild it with "
                                 f"`python -m tasks.{TABLES[t]['task']}.table --profile <profile> --collect-only`")
    benches = find_benchmarks(results)
    fidelity = Path(os.path.relpath(ROOT / "docs" / "fidelity.md", out.resolve())).as_posix()
    md = ["# SRU reproduction: results report",
          "",
          f"Generated {datetime.date.today()} at commit {git_commit()} by `make report` from `{shown(results)}/` and "
          f"the committed results `{shown(published)}/`. Paper: Lei & Zhang, *Training RNNs as Fast as CNNs* "
          f"(arXiv 1709.02755, 2017). Every setting beside the paper's and the authors' code: "
          f"[docs/fidelity.md]({fidelity}). Smoke and speed profiles are cut down to run in minutes on a CPU: their "
          f"quality numbers only show that the pipeline runs.",
          "", "| table | task | shown | profile | rows |", "|---|---|---|---|---|"]
    for t, entries in found.items():
        n = t[-1]
        if not entries:
            md.append(f"| Table {n} | {TABLES[t]['name']} | not run: `make {t} profile=smoke` | - | - |")
        for table, _, local in entries:
            md.append(f"| [Table {n}](#{t}) | {TABLES[t]['name']} | {'local run' if local else 'committed'} | "
                      f"{profile_of(table)} | {len(table['rows'])} |")
    md.append("| [Figure 1](#figure1) | speed, one layer | " +
              ("run: " + ", ".join(b["machine"]["device"] for b in benches) if benches else "not run: `make bench`")
              + " | - | - |")
    for t, entries in found.items():
        n = t[-1]
        md += ["", f'<a id="{t}"></a>', "", f"## Table {n}: {TABLES[t]['name']}", ""]
        if not entries:
            md.append(f"Not run yet. `make {t} profile=smoke` runs it in minutes on a CPU "
                      f"(`make {t}` for the full reproduction), then `make report`.")
            continue
        for table, path, local in entries:
            figure = files / f"{t}{'' if local else '_committed'}.png"
            plot_table(table, figure)
            md += [f"### {'Your run' if local else 'Committed'}: {table['title']}", "",
                   f"Profile: **{profile_of(table)}**. " + source_line(table, path, local, results), "",
                   markdown_table(table["rows"], table["columns"]), "", table["notes"], "",
                   f"![Table {n}: {table['metric']} vs training time, and seconds per epoch](report_files/{figure.name})",
                   "", "#### Seconds per epoch, side by side", "", speed_markdown(table), ""]
        md.append(f"Settings beside the paper's: [docs/fidelity.md]({fidelity}), section \"Table {n}\".")
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
