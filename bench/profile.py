"""Where a server's time goes under load: py-spy (from bench/.venv) samples a process tree while
bench/run.py sends it a load, and the collapsed stacks are summed into the functions that were
on the stack most often (inclusive) and at its top most often (self). Idle threads (waiting in a
system call) are left out by py-spy, so the counts are time spent running or waiting for the GIL."""

from __future__ import annotations

import re
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PY_SPY = ROOT / "bench" / ".venv" / "bin" / "py-spy"
RATE = 200
PROJECT_PACKAGES = ("accounts/", "agents/", "sessions/", "config/")
LINE_RE = re.compile(r":\d+\)$")


def available() -> bool:
    return PY_SPY.exists()


def record(pid: int, seconds: float, output: Path, *, subprocesses: bool) -> subprocess.Popen:
    """Start sampling `pid` (and its children) for `seconds`, collapsed stacks into `output`."""
    args = [str(PY_SPY), "record", "--pid", str(pid), "--duration", str(int(seconds)), "--rate", str(RATE)]
    args += ["--format", "raw", "--output", str(output), "--nonblocking"]
    if subprocesses:
        args.append("--subprocesses")
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # noqa: S603


def _frame_name(frame: str) -> str:
    """`function (path:line)` as `function (path)`, the path relative to the repository or to
    site-packages, so that no machine's directories appear in the results."""
    frame = LINE_RE.sub(")", frame.strip())
    frame = frame.replace(f"{ROOT}/", "")
    if "site-packages/" in frame:
        name, _, path = frame.partition(" (")
        frame = f"{name} ({path.rsplit('site-packages/', 1)[1]}"
    elif "/lib/python" in frame:
        name, _, path = frame.partition(" (")
        frame = f"{name} (stdlib {path.rsplit('/', 1)[1]}"
    return frame


def summarize(folded: Path, top: int = 12) -> dict[str, Any]:
    samples = 0
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    if not folded.exists():
        return {"samples": 0, "error": "py-spy wrote nothing (is ptrace allowed?)"}
    for line in folded.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        samples += count
        # The first frames name the process and the thread, not code.
        frames = [_frame_name(frame) for frame in stack.split(";") if "(" in frame and ".py" in frame]
        if not frames:
            continue
        own[frames[-1]] += count
        for frame in set(frames):
            if any(f" ({package}" in frame for package in PROJECT_PACKAGES):
                inclusive[frame] += count

    def share(counter: Counter[str]) -> list[dict[str, Any]]:
        return [
            {"frame": frame, "samples": count, "percent": round(100 * count / samples, 1)}
            for frame, count in counter.most_common(top)
        ]

    return {
        "samples": samples,
        "rate_per_second": RATE,
        "top_self": share(own),
        "top_project_inclusive": share(inclusive),
    }
