"""Run by the rendered project's interpreter: `python project_inprocess.py <package> <hello_dir>
[--profile]`, with the service's settings in the environment.

Calls the ASGI apps directly, no server, no socket: the CPU time of one `/health/live` request
through the whole middleware stack beside one request to the bare hello app, best of several
alternating rounds. Prints `hello_us=<us> live_us=<us>`; with --profile, then cProfile's top
functions of the live requests. What the server adds (parsing, the loop, the socket) is the
same for both and is left out, so this ratio is lower than the one over HTTP, and steadier.
"""

import asyncio
import cProfile
import importlib
import io
import logging
import os
import pstats
import sys
import time
from typing import Any

ROUNDS, REQUESTS = 7, 2000


def _scope(path: str) -> dict[str, object]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1"), (b"user-agent", b"bench")],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }


async def _requests(app: Any, path: str, count: int) -> None:
    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, object]) -> None:
        return None

    for _ in range(count):
        await app(_scope(path), receive, send)


async def main(package: str, hello_dir: str, profile: bool) -> None:
    main_module = importlib.import_module(f"{package}.main")
    config = importlib.import_module(f"{package}.config")
    sys.path.insert(0, hello_dir)
    hello = importlib.import_module("hello_app").app
    app = main_module.create_app(config.Settings())
    # The access log is written as in production, to a file rather than a terminal.
    with open(os.devnull, "w") as sink:
        for handler in logging.getLogger().handlers:
            if isinstance(handler, logging.StreamHandler):
                handler.setStream(sink)
        async with app.router.lifespan_context(app):
            targets = ((hello, "/hello", "hello_us"), (app, "/health/live", "live_us"))
            best = {name: float("inf") for _, _, name in targets}
            for target, path, _ in targets:
                await _requests(target, path, 300)  # warm-up
            for _ in range(ROUNDS):
                for target, path, name in targets:
                    started = time.process_time()
                    await _requests(target, path, REQUESTS)
                    spent = (time.process_time() - started) / REQUESTS * 1e6
                    best[name] = min(best[name], spent)
            print(" ".join(f"{name}={value:.1f}" for name, value in best.items()))
            if profile:
                profiler = cProfile.Profile()
                profiler.enable()
                await _requests(app, "/health/live", REQUESTS)
                profiler.disable()
                report = io.StringIO()
                pstats.Stats(profiler, stream=report).sort_stats("tottime").print_stats(25)
                print(report.getvalue())


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], "--profile" in sys.argv[3:]))
