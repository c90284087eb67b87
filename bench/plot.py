"""Latency against concurrency for each path, non-streaming and streaming, from the benchmark's
JSON, as a PNG (matplotlib, from bench/.venv):

    bench/.venv/bin/python bench/plot.py bench/results/latest.json bench/results/latency.png
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

STYLES = {"direct": "k:", "parley": "C0-", "litellm": "C1--", "embedded": "C2-."}


def plot(results: dict, output: Path) -> None:
    figure, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=False)
    for axis, (mode, title) in zip(
        axes, (("non_stream", "non-streaming"), ("stream", "streaming")), strict=True
    ):
        for path, style in STYLES.items():
            loads = results.get("loads", {}).get(path, {}).get(mode)
            if not loads:
                continue
            concurrencies = sorted(int(value) for value in loads)
            for name, marker, label in (("p50_ms", "o", "p50"), ("p95_ms", "^", "p95")):
                values = [loads[str(concurrency)][name] for concurrency in concurrencies]
                axis.plot(
                    concurrencies,
                    values,
                    style,
                    marker=marker,
                    alpha=1 if label == "p50" else 0.45,
                    label=f"{path} {label}",
                )
        axis.set_xscale("log", base=2)
        axis.set_yscale("log")
        axis.set_xticks([1, 16, 64], labels=["1", "16", "64"])
        axis.set_xlabel("concurrency")
        axis.set_ylabel("latency (ms, whole answer)")
        axis.set_title(title)
        axis.grid(True, which="both", alpha=0.3)
    axes[1].legend(fontsize=7, ncol=2)
    figure.suptitle(f"Latency against concurrency, {results['date']} ({results['machine']['nproc']} CPUs)")
    figure.tight_layout()
    output.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(output, dpi=110)


if __name__ == "__main__":
    plot(json.loads(Path(sys.argv[1]).read_text()), Path(sys.argv[2]))
