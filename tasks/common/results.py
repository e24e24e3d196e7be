"""Finished runs -> a results table: JSON rows plus a markdown table, smoke runs marked as such."""
from pathlib import Path

from tasks.common.harness import write_json_atomic


def format_cell(value, fmt=None):
    if value is None:
        return "-"
    return format(value, fmt) if fmt else str(value)


def write_table(rows, columns, title, out_dir, stem, smoke):
    """rows: dicts; columns: (header, key, format spec or None). Writes <stem>.json and <stem>.md."""
    out_dir = Path(out_dir)
    write_json_atomic(rows, out_dir / f"{stem}.json")
    if smoke:
        title += " -- SMOKE RUN: tiny widths, truncated data, a few epochs; not comparable with the paper"
    lines = [f"# {title}", "", "| " + " | ".join(h for h, _, _ in columns) + " |",
             "|---" * len(columns) + "|"]
    lines += ["| " + " | ".join(format_cell(r.get(k), f) for _, k, f in columns) + " |" for r in rows]
    (out_dir / f"{stem}.md").write_text("\n".join(lines) + "\n")
    return "\n".join(lines)
