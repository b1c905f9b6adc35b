"""A small application for ``dbtools rollout``'s tests: its deploy, traffic and rollback commands.

``python rollout_app.py deploy ENV`` records the call (``APP_FAIL_DEPLOY=N`` in app.json: exits
N); ``route PCT`` starts the reference workload in the background, PCT% of requests on the
batched path (runs of 80 requests, 40 at a time, one after another, until stopped) and returns
once its first run is done; ``rollback`` stops it. Every call is appended to ``calls.log``;
``app.json`` beside this script holds the DSN, the variants' roles and how often requests
repeat (``duplication``: the application cache's hit ratio).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(sys.argv[0]).resolve().parent
SETTINGS = json.loads((HERE / "app.json").read_text())
PIDFILE, READY = HERE / "serve.pid", HERE / "serve.ready"


def serve(traffic: float) -> None:
    from dbtools.workload import DataPath, WorkloadConfig, run_workload

    config = WorkloadConfig(
        path=DataPath.BATCHED, traffic=traffic, requests=80, concurrency=40, pool_size=20,
        bucket_seconds=1, variant_roles=SETTINGS["roles"],
        duplication=SETTINGS.get("duplication", "medium"),
    )  # fmt: skip
    while True:
        result = run_workload(SETTINGS["dsn"], config)
        with (HERE / "served.log").open("a") as log:
            log.write(f"{result.requests} {result.errors}\n")
        READY.touch()
        time.sleep(0.2)


def main() -> int:
    command, *args = sys.argv[1:]
    if command == "serve":
        serve(float(args[0]))
    with (HERE / "calls.log").open("a") as log:  # the rollout's calls, in order
        log.write(" ".join([command, *args]) + "\n")
    if command == "deploy":
        print(f"deployed the batched path to {args[0]}")
        return int(SETTINGS.get("fail_deploy", 0))
    if command == "route":
        READY.unlink(missing_ok=True)
        with (HERE / "serve.log").open("a") as output:
            child = subprocess.Popen([sys.executable, sys.argv[0], "serve", args[0]],
                                     stdin=subprocess.DEVNULL, stdout=output, stderr=output,
                                     start_new_session=True)  # fmt: skip
        PIDFILE.write_text(str(child.pid))
        deadline = time.monotonic() + 60
        while not READY.exists() and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        print(f"{args[0]}% of traffic on the batched path")
        return 0 if READY.exists() else 1
    if command == "rollback":
        stop()
        print("traffic routed back to the per-request path")
        return 0
    return 2


def stop() -> None:
    """Stop the background traffic (the process this application started, by its id)."""
    if PIDFILE.exists():
        pid = int(PIDFILE.read_text())
        try:
            os.kill(pid, signal.SIGTERM)
            for _ in range(100):
                os.kill(pid, 0)
                time.sleep(0.1)
        except ProcessLookupError:
            pass
        PIDFILE.unlink()


if __name__ == "__main__":
    sys.exit(main())
