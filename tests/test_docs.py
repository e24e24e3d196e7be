"""The README is a short front door whose numbers come from the committed tables, and no link in the docs is
broken."""
import re

from helpers import ROOT

README = (ROOT / "README.md").read_text()


def test_readme_is_short():
    assert len(README.splitlines()) <= 250


def test_results_at_a_glance_are_the_committed_tables_numbers():
    """Each row's LSTM and SRU numbers stand in the committed table it links (no number typed in by hand)."""
    section = README.split("## Results at a glance", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if re.match(r"\| \d \|", line)]
    assert len(rows) == 5
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        table = re.search(r"\((docs/results/cpu/table\d\.md)\)", cells[-1]).group(1)
        committed = (ROOT / table).read_text()
        for number in re.findall(r"\d+\.\d+", cells[3] + " " + cells[4]):
            assert re.search(rf"\| {re.escape(number)}\b|\b{re.escape(number)} \(", committed), \
                f"{number} of row {cells[0]} is not in {table}"


def test_relative_links_in_the_readme_and_docs_resolve():
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
            if "://" in target or target.startswith("mailto:"):
                continue
            assert (page.parent / target).exists(), f"{page.relative_to(ROOT)} links to a missing {target}"


def test_the_committed_tables_in_the_docs_are_generated_from_their_json():
    """Every `<!-- committed: tableN -->` and `<!-- speed: tableN -->` block is what scripts/docs_tables.py renders
    from the committed JSON (a rerun after publishing a table updates them; nothing is pasted by hand)."""
    import subprocess
    import sys
    blocks = sum(page.read_text().count("<!-- committed: table") for page in (ROOT / "docs").glob("*.md"))
    assert blocks == 5, "one committed table on each table's page"
    speed = (ROOT / "docs" / "benchmarks.md").read_text().count("<!-- speed: table")
    assert speed == 5, "each table's epoch times in docs/benchmarks.md"
    proc = subprocess.run([sys.executable, "-m", "scripts.docs_tables", "--check"], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr + proc.stdout
