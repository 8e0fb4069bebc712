"""Helpers shared by the benchmark scripts: models, a machine description, and appending to RESULTS.md."""

from __future__ import annotations

import datetime
import json
import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path

import torch

RESULTS = Path(__file__).parent / "RESULTS.md"
TOFU_FIXTURES = Path(__file__).parent.parent / "tests" / "fixtures" / "tofu"


def tofu_question_answers(name: str, count: int | None = None) -> list[dict[str, str]]:
    """The first `count` rows (all by default) of a TOFU fixture in `tests/fixtures/tofu`, question and answer only."""
    lines = [line for line in (TOFU_FIXTURES / name).read_text(encoding="utf-8").splitlines() if line.strip()]
    return [{"question": row["question"], "answer": row["answer"]} for row in map(json.loads, lines[:count])]


def machine() -> str:
    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}"
    return f"{platform.machine()} CPU, {os.cpu_count()} cores, torch {torch.__version__}"


def command() -> str:
    return "python " + shlex.join([os.path.relpath(sys.argv[0])] + sys.argv[1:])


def commit() -> str:
    """The short hash of the checked-out commit (with `+dirty` when the tree has changes)."""
    root = Path(__file__).parent.parent
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True)
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=root, capture_output=True, text=True)
    except OSError:  # no git on the machine (a bare GPU image): the caller's output still prints
        return "unknown"
    return (head.stdout.strip() or "unknown") + ("+dirty" if dirty.stdout.strip() else "")


def append_results(title: str, table: str, notes: str = "") -> None:
    """Append a dated section with the command and machine to benchmarks/RESULTS.md."""
    today = datetime.date.today().isoformat()
    section = f"\n## {title} ({today})\n\n`{command()}` on {machine()}\n\n{table}\n"
    if notes:
        section += f"\n{notes}\n"
    with open(RESULTS, "a", encoding="utf-8") as handle:
        handle.write(section)


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def memory_status() -> dict[str, int]:
    """This process's resident set now (`VmRSS`) and at its peak (`VmHWM`), in bytes (Linux; unlike `ru_maxrss`,
    `VmHWM` starts afresh at `exec`, so a child does not inherit its parent's peak)."""
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    return {key: int(fields[key].split()[0]) * 1024 for key in ("VmRSS", "VmHWM")}
