"""Where ours spends its CPU on long answers: the app under cProfile, one process, serving
non-streamed chats answered with 300 events on the bot backend (the case furthest from the
relays), while the load generator drives it. Prints the functions with the most time of their
own, as JSON rows ``[function, calls, own seconds, cumulative seconds]``.

Usage: python -m bench.profile <upstream url>
"""

from __future__ import annotations

import asyncio
import cProfile
import json
import logging
import pstats
import sys
import threading

import uvicorn

from adapters.app import create_app, tune_gc
from bench.support import free_port, load
from core.settings import Settings

CALLS = 2000


def main() -> None:
    upstream = sys.argv[1]
    tune_gc()
    logging.getLogger("poe_openai_proxy").setLevel(logging.WARNING)  # no log line per call
    app = create_app(
        Settings.from_mapping({"POE_BASE_URL": upstream, "POE_BACKEND": "bot", "LOG_LEVEL": "WARNING"})
    )
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", lifespan="off", loop="uvloop"
    )
    server = uvicorn.Server(config)
    profiler = cProfile.Profile()

    def run() -> None:
        profiler.enable()
        asyncio.run(server.serve())
        profiler.disable()

    thread = threading.Thread(target=run)
    thread.start()
    while not server.started:
        threading.Event().wait(0.01)
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    load({"kind": "latency", "url": url, "model": "fake-e300", "n": CALLS})
    server.should_exit = True
    thread.join()
    stats = pstats.Stats(profiler)
    rows = sorted(stats.stats.items(), key=lambda item: -item[1][2])[:20]  # type: ignore[attr-defined]
    print(
        json.dumps(
            [
                [
                    f"{path.split('/site-packages/')[-1].split('/work/main/')[-1]}:{line} {name}",
                    calls,
                    own,
                    total,
                ]
                for (path, line, name), (_, calls, own, total, _) in rows
            ]
        )
    )


if __name__ == "__main__":
    main()
