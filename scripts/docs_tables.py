"""The committed tables inside the docs, generated from docs/results/cpu/tableN.json, never pasted by hand: every
block between `<!-- committed: tableN -->` and `<!-- /committed -->` in docs/*.md is rewritten with that table's
rows and columns (the same markdown `make tableN` writes), and every block between `<!-- speed: tableN -->` and
`<!-- /speed -->` with its seconds per epoch and speed-ups over the LSTM (the report's speed table).

    python -m scripts.docs_tables          # rewrite the blocks
    python -m scripts.docs_tables --check  # exit 1, naming the pages, if a block differs (tests/test_docs.py)
"""
import argparse
import json
import re
import sys
from pathlib import Path

from tasks.common.figures import speed_markdown
from tasks.common.results import markdown_table

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"(?m)^(?P<indent>[ \t]*)<!-- (?P<kind>committed|speed): (?P<table>table\d) -->\n.*?"
                   r"^[ \t]*<!-- /(?P=kind) -->$", re.S)


def rendered(kind, table, indent):
    data = json.loads((ROOT / "docs" / "results" / "cpu" / f"{table}.json").read_text())
    body = markdown_table(data["rows"], data["columns"]) if kind == "committed" else speed_markdown(data)
    lines = [f"<!-- {kind}: {table} -->",
             f"*Generated from [docs/results/cpu/{table}.json](results/cpu/{table}.json) by "
             f"`python -m scripts.docs_tables` (commits {', '.join(data.get('commits') or ['?'])}):*", "",
             body, f"<!-- /{kind} -->"]
    return "\n".join(indent + line if line else line for line in "\n".join(lines).split("\n"))


def update(page):
    text = page.read_text()
    return BLOCK.sub(lambda m: rendered(m["kind"], m["table"], m["indent"]), text), text


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--check", action="store_true", help="only say whether a page is out of date")
    args = p.parse_args(argv)
    stale = []
    for page in sorted((ROOT / "docs").glob("*.md")):
        new, old = update(page)
        if new != old:
            stale.append(page.relative_to(ROOT))
            if not args.check:
                page.write_text(new)
    if args.check and stale:
        sys.exit(f"out of date: {', '.join(map(str, stale))}: run python -m scripts.docs_tables")
    print(("rewrote " if stale else "up to date: ") + (", ".join(map(str, stale)) or "every page"))


if __name__ == "__main__":
    main()
