"""A small application for ``dbtools rollout``'s tests: its deploy, traffic, load-test and rollback
commands.

``python rollout_app.py deploy ENV [ARG…]`` records the call; ``route PCT`` writes PCT to the
``traffic`` file (the guide's traffic routing) and starts the reference workload in the
background, PCT% of requests on the batched path (runs of 80 requests, 40 at a time, one after
another, until stopped), returning once its first run is done; ``loadtest PCT`` says it passed;
``rollback`` stops the workload and writes 0 to ``traffic``. Every call is appended to
``calls.log``; a command that is started writes ``COMMAND.started`` first.

``app.json`` beside this script holds the DSN, the variants' roles, how often requests repeat
(``duplication``: the application cache's hit ratio), and what to misbehave with:
``fail_deploy`` / ``fail_rollback`` (exit with that code), ``wait_deploy`` / ``wait_load_test``
/ ``wait_rollback`` (seconds to sleep first: a test signals the rollout meanwhile), ``secret``
(printed as ``password: S``, ``DB_PASSWORD=S`` and ``PGPASSWORD=S``), ``say`` (lines
printed as they are), ``delete_on_deploy`` (files the deploy removes).
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
PIDFILE, READY, TRAFFIC = HERE / "serve.pid", HERE / "serve.ready", HERE / "traffic"


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
    (HERE / f"{command}.started").touch()
    time.sleep(float(SETTINGS.get(f"wait_{command.replace('loadtest', 'load_test')}", 0)))
    if "secret" in SETTINGS:
        secret = SETTINGS["secret"]
        print(f"password: {secret}\nDB_PASSWORD={secret}\nPGPASSWORD={secret}")
    for line in SETTINGS.get("say", []):
        print(line)
    if command == "deploy":
        for path in SETTINGS.get("delete_on_deploy", []):  # a file that later goes missing
            Path(path).unlink()
        print(f"deployed the batched path to {args[0]}")
        return int(SETTINGS.get("fail_deploy", 0))
    if command == "route":
        READY.unlink(missing_ok=True)
        TRAFFIC.write_text(args[0])
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
    if command == "loadtest":
        print(f"load test at {args[0]}%: ok")
        return 0
    if command == "rollback":
        if SETTINGS.get("fail_rollback"):
            print("the router refused: traffic not routed back")
            return int(SETTINGS["fail_rollback"])
        stop()
        TRAFFIC.write_text("0")
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
