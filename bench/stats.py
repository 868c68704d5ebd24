"""The benchmark's pure part: parsing wrk's report line, medians, ratios and the table."""

from __future__ import annotations

import re
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

_REPORT_LINE = re.compile(r"^BENCH ((?:\w+=\d+ ?)+)$", re.MULTILINE)
_VM_LINE = re.compile(r"^(VmRSS|VmHWM):\s+(\d+) kB$", re.MULTILINE)


@dataclass(frozen=True, slots=True)
class WrkRun:
    """One wrk run, as printed by lua/report.lua's `done` hook."""

    requests: int
    duration_s: float
    errors: int  # connect, read, write and timeout errors
    non_2xx: int  # wrk counts any status >= 400 here
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float

    @property
    def rps(self) -> float:
        return self.requests / self.duration_s if self.duration_s else 0.0


def parse_wrk(output: str) -> WrkRun:
    """The `BENCH key=value ...` line wrk printed; ValueError when there is none."""
    match = _REPORT_LINE.search(output)
    if match is None:
        raise ValueError(f"no BENCH line in wrk's output:\n{output}")
    fields = dict(pair.split("=") for pair in match.group(1).split())
    number = {key: int(value) for key, value in fields.items()}
    return WrkRun(
        requests=number["requests"],
        duration_s=number["duration_us"] / 1e6,
        errors=number["connect"] + number["read"] + number["write"] + number["timeout"],
        non_2xx=number["status"],
        p50_ms=number["p50_us"] / 1000,
        p90_ms=number["p90_us"] / 1000,
        p99_ms=number["p99_us"] / 1000,
        max_ms=number["max_us"] / 1000,
    )


def parse_memory(status: str) -> dict[str, float]:
    """`VmRSS` and `VmHWM` of a /proc/<pid>/status text, in MiB."""
    return {name: int(kib) / 1024 for name, kib in _VM_LINE.findall(status)}


def median(values: Iterable[float]) -> float:
    found = list(values)
    if not found:
        raise ValueError("median of nothing")
    return float(statistics.median(found))


@dataclass(frozen=True, slots=True)
class Summary:
    """The medians over the rounds of one target."""

    name: str
    rps: float
    p50_ms: float
    p99_ms: float
    rounds: int
    errors: int
    non_2xx: int
    rss_mib: float | None = None
    cpu_us: float | None = None  # the server's CPU time per request (user + system)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def cpu_per_request_us(cpu_seconds: float, run: WrkRun) -> float:
    """The server's CPU time (user + system) over one wrk run, per request it answered: unlike
    requests per second, it does not count the time other processes took the core."""
    return cpu_seconds / run.requests * 1e6 if run.requests else 0.0


def summarize(
    name: str,
    runs: Sequence[WrkRun],
    rss_mib: float | None = None,
    cpu_us: Sequence[float] = (),
) -> Summary:
    return Summary(
        name=name,
        rps=median(run.rps for run in runs),
        p50_ms=median(run.p50_ms for run in runs),
        p99_ms=median(run.p99_ms for run in runs),
        rounds=len(runs),
        errors=sum(run.errors for run in runs),
        non_2xx=sum(run.non_2xx for run in runs),
        rss_mib=rss_mib,
        cpu_us=median(cpu_us) if cpu_us else None,
    )


def ratios(summaries: Sequence[Summary], baseline: str) -> dict[str, float]:
    """Each target's requests per second as a fraction of the baseline's."""
    base = next(summary.rps for summary in summaries if summary.name == baseline)
    return {summary.name: (summary.rps / base if base else 0.0) for summary in summaries}


def table(summaries: Sequence[Summary], baseline: str) -> str:
    """A Markdown table: one row per target, with its ratio to the baseline."""
    relative = ratios(summaries, baseline)
    lines = [
        "| target | req/s | x hello | CPU us/req | p50 ms | p99 ms | RSS MiB | errors |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for summary in summaries:
        rss = f"{summary.rss_mib:.0f}" if summary.rss_mib is not None else "-"
        cpu = f"{summary.cpu_us:.0f}" if summary.cpu_us is not None else "-"
        lines.append(
            f"| {summary.name} | {summary.rps:,.0f} | {relative[summary.name]:.2f} | {cpu} "
            f"| {summary.p50_ms:.1f} | {summary.p99_ms:.1f} | {rss} "
            f"| {summary.errors + summary.non_2xx} |"
        )
    return "\n".join(lines)


def key_values(title: str, values: Mapping[str, Any]) -> str:
    """A titled list of `name: value` lines."""
    body = "\n".join(
        f"  {name}: {value:.3f}" if isinstance(value, float) else f"  {name}: {value}"
        for name, value in values.items()
    )
    return f"{title}\n{body}"
