"""What a result came from: the commit and the machine, and result files written whole."""
import json
import os
import subprocess
from pathlib import Path


def git_commit():
    try:
        return subprocess.run(["git", "describe", "--always", "--dirty", "--abbrev=7"], capture_output=True, text=True,
                              cwd=Path(__file__).parent, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def machine_name(device):
    """The card's or the CPU's name and thread count, as the benchmark prints it (result.json: machine)."""
    from sru.machine import machine_info
    return machine_info(device)["device"]


def write_json_atomic(obj, path):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1))
    os.replace(tmp, path)
