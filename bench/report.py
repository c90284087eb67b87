"""The benchmark's figures as text: the table printed on stdout, the issue's targets with their
measured ratios, and the generated part of BENCHMARKS.md (between its two bench markers; what is
outside them is written by hand and kept)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

PATHS = ("direct", "parley", "litellm", "embedded")
MODES = (("non_stream", "non-streaming"), ("stream", "streaming"))
START = "<!-- bench:start (written by bench/run.py) -->"
END = "<!-- bench:end -->"
# The limits.
ADDED_LATENCY_RATIO = 0.8
THROUGHPUT_RATIO = 1.5
CPU_PER_CHUNK_MS = 0.3
BYTES_PER_STREAM = 64 * 1024
LONG_SESSION_RATIO = 1.2


def _figure(results: dict[str, Any], path: str, mode: str, concurrency: int, name: str) -> float | None:
    return results.get("loads", {}).get(path, {}).get(mode, {}).get(str(concurrency), {}).get(name)


def cpu_per(results: dict[str, Any], path: str, mode: str, unit: str = "ok") -> float | None:
    """Server CPU ms per request ("ok") or per relayed chunk ("chunks": the upstream's content
    chunks, however the server coalesced them on the way) over every load of a mode."""
    loads = results.get("loads", {}).get(path, {}).get(mode, {})
    seconds = sum(sum(load["cpu_seconds"].values()) for load in loads.values())
    count = sum(load["ok"] for load in loads.values())
    if unit == "chunks":
        count *= results["upstream"]["chunks"]
    return round(seconds * 1000 / count, 4 if unit == "chunks" else 3) if count else None


def added(results: dict[str, Any], path: str, mode: str, name: str) -> float | None:
    """How much a figure at concurrency 1 exceeds the direct path's."""
    value, direct = _figure(results, path, mode, 1, name), _figure(results, "direct", mode, 1, name)
    return None if value is None or direct is None else round(value - direct, 2)


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or denominator is None or denominator == 0:
        return None
    return round(numerator / denominator, 2)


def _verdict(passed: bool | None) -> str:
    return "n/a" if passed is None else ("PASS" if passed else "MISS")


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []

    def target(name: str, measured: str, ratio: float | None, limit: str, passed: bool | None) -> None:
        found.append(
            {"target": name, "measured": measured, "ratio": ratio, "limit": limit, "result": _verdict(passed)}
        )

    parley_added = added(results, "parley", "non_stream", "p50_ms")
    litellm_added = added(results, "litellm", "non_stream", "p50_ms")
    ratio = _ratio(parley_added, litellm_added)
    target(
        "added p50 latency at concurrency 1, non-streaming",
        f"Parley {parley_added} ms, LiteLLM {litellm_added} ms",
        ratio,
        f"<= {ADDED_LATENCY_RATIO}",
        None if ratio is None else ratio <= ADDED_LATENCY_RATIO,
    )

    parley_rate = _figure(results, "parley", "non_stream", 64, "throughput")
    litellm_rate = _figure(results, "litellm", "non_stream", 64, "throughput")
    ratio = _ratio(parley_rate, litellm_rate)
    target(
        "throughput at concurrency 64, non-streaming",
        f"Parley {parley_rate} req/s, LiteLLM {litellm_rate} req/s",
        ratio,
        f">= {THROUGHPUT_RATIO}",
        None if ratio is None else ratio >= THROUGHPUT_RATIO,
    )

    parley_cpu = cpu_per(results, "parley", "non_stream")
    litellm_cpu = cpu_per(results, "litellm", "non_stream")
    ratio = _ratio(parley_cpu, litellm_cpu)
    target(
        "server CPU per turn (web + worker + beat) against LiteLLM's per request, non-streaming",
        f"Parley {parley_cpu} ms, LiteLLM {litellm_cpu} ms",
        ratio,
        "<= 1",
        None if ratio is None else ratio <= 1,
    )

    parley_first = added(results, "parley", "stream", "ttfc_p50_ms")
    litellm_first = added(results, "litellm", "stream", "ttfc_p50_ms")
    ratio = _ratio(parley_first, litellm_first)
    target(
        "added time to first chunk at concurrency 1 (p50), streaming",
        f"Parley {parley_first} ms, LiteLLM {litellm_first} ms",
        ratio,
        "<= 1",
        None if ratio is None else ratio <= 1,
    )

    per_chunk = cpu_per(results, "parley", "stream", "chunks")
    target(
        "server CPU per relayed chunk, streaming",
        f"Parley {per_chunk} ms (LiteLLM {cpu_per(results, 'litellm', 'stream', 'chunks')} ms)",
        None,
        f"<= {CPU_PER_CHUNK_MS} ms",
        None if per_chunk is None else per_chunk <= CPU_PER_CHUNK_MS,
    )

    streams = results.get("open_streams", {}).get("parley")
    if streams:
        per_stream = streams["bytes_per_open_stream"].get("web")
        target(
            f"{streams['streams']} open streams on one web process",
            f"{streams['errors']} errors, {streams['open_at_sample']} open at once, "
            f"{_kib(per_stream)} KiB of RSS per open stream",
            None,
            "all open, 0 errors, <= 64 KiB",
            streams["errors"] == 0
            and streams["open_at_sample"] == streams["streams"]
            and per_stream is not None
            and per_stream <= BYTES_PER_STREAM,
        )
    else:
        target("1,000 open streams on one web process", "not run", None, "0 errors, <= 64 KiB", None)

    lengths = results.get("session_lengths", {})
    if lengths:
        queries = {
            length: figures["queries_per_turn"] for length, figures in lengths.items() if length != "0"
        }
        spread = max(queries.values()) - min(queries.values())
        target(
            "database queries per turn constant in the session's length",
            ", ".join(f"{length} messages: {count}" for length, count in queries.items()),
            None,
            "the same at every length",
            spread < 1,
        )
        new, longest = lengths.get("0", {}).get("p50_ms"), lengths.get("10000", {}).get("p50_ms")
        ratio = _ratio(longest, new)
        target(
            "p50 latency on a 10,000-message session against a new session",
            f"{longest} ms against {new} ms",
            ratio,
            f"<= {LONG_SESSION_RATIO}",
            None if ratio is None else ratio <= LONG_SESSION_RATIO,
        )
    else:
        target("session lengths", "not run", None, "", None)
    target("reliability tests green, suite under 10 minutes", "not measured by the benchmark", None, "", None)
    return found


def _kib(value: float | None) -> str:
    return "-" if value is None else f"{value / 1024:.1f}"


def _cell(value: Any) -> str:
    return "-" if value is None else str(value)


def load_rows(results: dict[str, Any]) -> list[tuple[str, list[list[str]]]]:
    header = [
        "path",
        "conc.",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "first chunk p50 ms",
        "req/s",
        "errors",
        "server CPU ms/req",
        "CPU ms/chunk",
        "events/answer",
    ]
    sections = []
    for mode, title in MODES:
        rows = [header]
        for path in PATHS:
            by_concurrency = results.get("loads", {}).get(path, {}).get(mode)
            if not by_concurrency:
                continue
            for concurrency, load in sorted(by_concurrency.items(), key=lambda item: int(item[0])):
                rows.append(
                    [
                        path,
                        concurrency,
                        *(
                            _cell(load[name])
                            for name in (
                                "p50_ms",
                                "p95_ms",
                                "p99_ms",
                                "ttfc_p50_ms",
                                "throughput",
                                "errors",
                                "cpu_ms_per_request",
                                "cpu_ms_per_chunk",
                            )
                        ),
                        _cell(load.get("events_per_answer")),
                    ]
                )
        sections.append((title, rows))
    return sections


def baseline_rows(results: dict[str, Any]) -> list[list[str]]:
    rows = [
        [
            "path",
            "added p50 at concurrency 1 (ms)",
            "throughput at concurrency 64 (req/s)",
            "server CPU per request (ms)",
        ]
    ]
    for path in PATHS:
        if path not in results.get("loads", {}):
            continue
        rows.append(
            [
                path,
                _cell(added(results, path, "non_stream", "p50_ms")),
                _cell(_figure(results, path, "non_stream", 64, "throughput")),
                _cell(cpu_per(results, path, "non_stream")),
            ]
        )
    return rows


def _text_table(rows: list[list[str]]) -> str:
    widths = [max(len(str(row[index])) for row in rows) for index in range(len(rows[0]))]
    lines = [
        "  ".join(str(cell).rjust(width) for cell, width in zip(row, widths, strict=True)) for row in rows
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def _markdown_table(rows: list[list[str]]) -> str:
    lines = [
        "| " + " | ".join(rows[0]) + " |",
        "|" + "|".join("---:" if i else "---" for i in range(len(rows[0]))) + "|",
    ]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows[1:]]
    return "\n".join(lines)


def table(results: dict[str, Any]) -> str:
    parts = [f"Parley benchmark, {results['date']} (plan {results['plan']['name']})"]
    for title, rows in load_rows(results):
        parts += ["", title, _text_table(rows)]
    parts += ["", "The issue's table (non-streaming)", _text_table(baseline_rows(results))]
    parts += ["", _text_table(_side_rows(results))] if results.get("session_lengths") else []
    parts += ["", "Targets"]
    for found in results["targets"]:
        ratio = "" if found["ratio"] is None else f" ratio {found['ratio']} (limit {found['limit']})"
        parts.append(f"  {found['result']:<4}  {found['target']}: {found['measured']}{ratio}")
    return "\n".join(parts)


def _side_rows(results: dict[str, Any]) -> list[list[str]]:
    rows = [["session messages", "p50 ms", "p95 ms", "queries/turn", "without BEGIN/COMMIT", "errors"]]
    for length, figures in results.get("session_lengths", {}).items():
        rows.append(
            [
                length if length != "0" else "new session",
                _cell(figures["p50_ms"]),
                _cell(figures["p95_ms"]),
                _cell(figures["queries_per_turn"]),
                _cell(figures["queries_per_turn_without_transaction_control"]),
                _cell(figures["errors"]),
            ]
        )
    return rows


def markdown(results: dict[str, Any]) -> str:
    machine = results["machine"]
    lines = [
        START,
        f"## Latest run: {results['date']} (plan `{results['plan']['name']}`, {results['plan']['rounds']} "
        f"round(s), {results['seconds']} s)",
        "",
    ]
    if results.get("note"):
        lines += [f"> {results['note']}", ""]
    lines += [
        f"Machine: {machine['nproc']} CPUs ({machine['cpu_model']}), {machine['memory_gib']} GiB, Python "
        f"{machine['python']}, Linux {machine['kernel']}; load average at the start "
        f"{', '.join(str(value) for value in machine['load_average_at_start'])}.",
        "",
        f"Fake upstream: {results['upstream']['chunks']} chunks an answer, no latency, no delay between "
        "chunks. "
        f"Requests per load by concurrency: {results['plan']['requests']}.",
        "",
        "Processes measured (server CPU is theirs, from /proc):",
        "",
    ]
    lines += [f"- **{path}**: {description}" for path, description in results.get("processes", {}).items()]
    lines += ["", "### The issue's table (non-streaming)", "", _markdown_table(baseline_rows(results)), ""]
    lines += ["### Targets", "", "| target | measured | ratio | limit | result |", "|---|---|---:|---|---|"]
    for found in results["targets"]:
        lines.append(
            f"| {found['target']} | {found['measured']} | {_cell(found['ratio'])} | {found['limit']} | "
            f"**{found['result']}** |"
        )
    for title, rows in load_rows(results):
        lines += ["", f"### All loads, {title}", "", _markdown_table(rows)]
    lines += ["", "![latency against concurrency](bench/results/latency.png)", ""]
    if results.get("session_lengths"):
        lines += [
            "### Turns on long sessions (concurrency 1, non-streaming)",
            "",
            _markdown_table(_side_rows(results)),
            "",
        ]
    if results.get("open_streams"):
        lines += [
            "### Open streams (slow upstream: " + results["upstream"]["slow_model"] + ")",
            "",
            "| path | streams | open at the sample | not open by the end | errors "
            "| RSS per open stream (KiB) | seconds until all open |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for path, figures in results["open_streams"].items():
            per_stream = next(iter(figures["bytes_per_open_stream"].values()), None)
            lines.append(
                f"| {path} | {figures['streams']} | {figures['open_at_sample']} | "
                f"{figures.get('not_open_by_the_end', '-')} | {figures['errors']} | "
                f"{_kib(per_stream)} | {figures['seconds_until_all_open']} |"
            )
        lines.append("")
    if results.get("profile"):
        lines += _profile_lines(results["profile"])
    lines += ["Every figure is in `bench/results/latest.json`.", END]
    return "\n".join(lines)


def write_markdown(results: dict[str, Any], path: Path) -> None:
    generated = markdown(results)
    text = path.read_text() if path.exists() else f"# Benchmarks\n\n{START}\n{END}\n"
    if START in text and END in text:
        before, rest = text.split(START, 1)
        after = rest.split(END, 1)[1]
        text = before + generated + after
    else:
        text = text.rstrip() + "\n\n" + generated + "\n"
    path.write_text(text)


def _profile_lines(found: dict[str, Any], top: int = 10) -> list[str]:
    load = found.get("load", {})
    lines = [
        "### Where Parley's time goes (py-spy, non-streaming, concurrency 16)",
        "",
        f"Sampled while the load ran ({load.get('ok')} requests, {load.get('throughput')} req/s, "
        f"p50 {load.get('p50_ms')} ms). Percent of the samples of running (not idle) threads.",
        "",
    ]
    for role in ("web", "worker"):
        summary = found.get(role, {})
        if not summary.get("samples"):
            lines += [f"{role}: no samples ({summary.get('error', '')})", ""]
            continue
        lines += [f"**{role}** ({summary['samples']} samples): Parley's functions, inclusive", ""]
        lines += [
            f"- {item['percent']}% `{item['frame']}`" for item in summary["top_project_inclusive"][:top]
        ]
        lines += ["", f"**{role}**: at the top of the stack (self)", ""]
        lines += [f"- {item['percent']}% `{item['frame']}`" for item in summary["top_self"][:top]]
        lines.append("")
    return lines
