"""The benchmark's pure parts: wrk's report line, /proc memory, medians, ratios, the options.

Nothing here runs wrk or times anything: speed is measured by `python -m bench`, never asserted.
"""

from __future__ import annotations

import sys

import pytest

from conftest import REPO

sys.path.insert(0, str(REPO))

from bench import run, stats

WRK_OUTPUT = """Running 8s test @ http://127.0.0.1:8000/health/live
  1 threads and 32 connections
BENCH requests=24000 duration_us=8000000 connect=0 read=1 write=0 status=3 timeout=2 \
p50_us=3100 p90_us=5200 p99_us=9870 max_us=40000
"""


def test_the_report_line_of_wrk_is_parsed_into_rates_and_percentiles() -> None:
    parsed = stats.parse_wrk(WRK_OUTPUT)
    assert parsed.rps == 3000
    assert (parsed.p50_ms, parsed.p90_ms, parsed.p99_ms, parsed.max_ms) == (3.1, 5.2, 9.87, 40)
    assert parsed.errors == 3  # read + timeout; non-2xx statuses are counted apart
    assert parsed.non_2xx == 3


def test_output_without_a_report_line_is_refused() -> None:
    with pytest.raises(ValueError, match="no BENCH line"):
        stats.parse_wrk("Running 8s test @ http://127.0.0.1:1/\nunable to connect\n")


def test_memory_is_read_from_proc_status_in_mib() -> None:
    status = "Name:\tpython\nVmHWM:\t  204800 kB\nVmRSS:\t  102400 kB\nThreads:\t3\n"
    assert stats.parse_memory(status) == {"VmHWM": 200.0, "VmRSS": 100.0}


def _run(rps: float, p99_ms: float) -> stats.WrkRun:
    return stats.WrkRun(
        requests=int(rps * 8),
        duration_s=8,
        errors=0,
        non_2xx=0,
        p50_ms=p99_ms / 3,
        p90_ms=p99_ms / 2,
        p99_ms=p99_ms,
        max_ms=p99_ms * 2,
    )


def test_rounds_are_summarised_by_their_medians() -> None:
    runs = [_run(900, 9), _run(1000, 30), _run(1100, 6)]
    seconds = (0.9, 1.6, 0.99)
    cpu = [stats.cpu_per_request_us(spent, run) for spent, run in zip(seconds, runs, strict=True)]
    assert cpu == pytest.approx([125, 200, 112.5])  # 7,200 requests in 0.9 s of CPU: 125 us
    summary = stats.summarize("hello", runs, 50.0, cpu)
    assert (summary.rps, summary.p99_ms, summary.rounds) == (1000, 9, 3)
    assert summary.rss_mib == 50.0
    assert summary.cpu_us == pytest.approx(125)
    assert stats.summarize("hello", runs).cpu_us is None
    with pytest.raises(ValueError, match="median of nothing"):
        stats.median([])


def test_targets_are_compared_with_the_baseline_in_the_table() -> None:
    hello = stats.summarize("hello", [_run(1000, 6)], cpu_us=[150.4])
    live = stats.summarize("/health/live", [_run(750, 9)])
    assert stats.ratios([hello, live], "hello") == {"hello": 1.0, "/health/live": 0.75}
    lines = stats.table([hello, live], "hello").splitlines()
    assert lines[2].startswith("| hello | 1,000 | 1.00 | 150 |")
    assert lines[3].startswith("| /health/live | 750 | 0.75 | - | 3.0 | 9.0 | - | 0 |")


def test_options_take_the_tests_variant_names_and_bound_the_runs() -> None:
    options = run.parse_args(
        ["--variant", "compose-postgresql-memory", "--rounds", "2", "--httptools"]
    )
    assert (options.variant, options.rounds, options.seconds) == ("compose-postgresql-memory", 2, 8)
    assert options.httptools
    with pytest.raises(SystemExit):
        run.parse_args(["--variant", "compose-oracle-memory"])
    with pytest.raises(SystemExit):
        run.parse_args(["--seconds", "600"])
    with pytest.raises(SystemExit):
        run.parse_args(["--setting", "AI_API_KEY"])
    settings = run.parse_args(["--setting", "AI_BASE_URL=http://127.0.0.1:9/v1?a=b"]).settings
    assert settings == {"AI_BASE_URL": "http://127.0.0.1:9/v1?a=b"}


def test_the_json_report_is_plain_data() -> None:
    summary = stats.summarize("hello", [_run(1000, 6)])
    converted = run.to_json({"http": {"summaries": [summary], "load": (1.0, 0.5)}})
    assert converted["http"]["summaries"][0]["rps"] == 1000
    assert converted["http"]["load"] == [1.0, 0.5]
