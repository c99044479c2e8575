"""Prefect's temporary server dies with the process that started it, `kill -9` included (Linux).

Real processes, real signals. The watchdog on its own, with a stand-in server (a sleeping process): a
killed starter takes the server with it, a server deaf to SIGTERM is killed after the grace, a normal
end (the starter stops the server itself) ends the watchdog too. Then each command of ours that can
start the temporary server runs as a child with a new PREFECT_HOME and no PREFECT_API_URL; as soon as
its server process exists, only the parent is SIGKILLed (what an OOM killer or a scheduler's timeout
does, not a kill of the process group), and every process it had started must be gone soon after.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

pytestmark = pytest.mark.skipif(not hasattr(os, "pidfd_open"), reason="the watchdog needs Linux pidfds")

# A process that starts a stand-in server with a watchdog, prints both pids, then on "stop" stops the
# server itself (as Prefect's atexit handler does) and lives on until its stdin closes.
STARTER = """
import subprocess, sys
from selfmodel.prefect_server import start_watchdog
server = subprocess.Popen([sys.executable, "-c", sys.argv[1]], stdout=subprocess.PIPE, text=True)
assert server.stdout.readline().strip() == "ready"
watchdog = start_watchdog(server.pid)
print(server.pid, watchdog.pid, flush=True)
for line in sys.stdin:
    if line.strip() == "stop":
        server.terminate()
        server.wait()
        print("stopped", flush=True)
"""
SERVER = "import time; print('ready', flush=True); time.sleep(120)"
DEAF_SERVER = ("import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); "
               "time.sleep(120)")

SERVER_APPEARS_WITHIN_S = 90  # the parent imports Prefect first; on a loaded machine that takes a while
GONE_WITHIN_S = 15  # the watchdog asks the server to stop and kills it 5 s later if it has not


def _write_tiny_config(folder: Path) -> Path:
    (folder / "logs.jsonl").write_text(
        '{"event_id": "e1", "user_id": "u1", "occurred_at": "2024-01-01T00:00:00Z", "kind": "message",'
        ' "text": "hello"}\n', encoding="utf-8")
    config = folder / "selfmodel.yaml"
    config.write_text("warehouse: {path: wh/warehouse.duckdb, analyst_copy: null}\n"
                      "sources:\n  - {name: app, format: jsonl, path: logs.jsonl}\n", encoding="utf-8")
    return config


def _commands(config: Path) -> dict[str, list[str]]:
    selfmodel = str(Path(sys.executable).with_name("selfmodel"))
    return {
        "selfmodel nightly": [selfmodel, "nightly", "--config", str(config)],
        "selfmodel ingest --prefect": [selfmodel, "--config", str(config), "ingest", "--prefect"],
        # A flow called from a plain Python script.
        "plain script": [sys.executable, "-c", "import sys; from flows.ingest import ingest; "
                                               "ingest(config_path=sys.argv[1])", str(config)],
    }


def _temporary_server_env(prefect_home: Path) -> dict[str, str]:
    # Nothing from the session's own Prefect set-up (its server's API URL above all): a temporary server.
    env = {name: value for name, value in os.environ.items() if not name.startswith("PREFECT_")}
    return {**env, "PREFECT_HOME": str(prefect_home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90"}


def _wait_for_server(parent: subprocess.Popen) -> list[psutil.Process]:
    """The parent's descendants once one of them is Prefect's server (`python -m uvicorn ...`), and its
    watchdog if one comes (it is started a few milliseconds after the server; without one, go on)."""
    deadline = time.monotonic() + SERVER_APPEARS_WITHIN_S
    server_seen_at = None
    while time.monotonic() < deadline:
        assert parent.poll() is None, f"the command exited {parent.returncode} before its server started"
        try:
            descendants = psutil.Process(parent.pid).children(recursive=True)
            commands = [" ".join(child.cmdline()) for child in descendants]
        except psutil.NoSuchProcess:  # a short-lived descendant went away while we looked
            descendants, commands = [], []
        if any("uvicorn" in command for command in commands):
            server_seen_at = server_seen_at or time.monotonic()
            if any("prefect_server.py" in command for command in commands) or time.monotonic() > server_seen_at + 2:
                return descendants
        time.sleep(0.05)
    pytest.fail(f"no temporary server within {SERVER_APPEARS_WITHIN_S} s")


def _alive(process: psutil.Process) -> bool:
    # A process nobody has reaped yet (a zombie) holds no memory and no port: it is gone.
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _start(server_code: str) -> tuple[subprocess.Popen, psutil.Process, psutil.Process]:
    starter = subprocess.Popen([sys.executable, "-c", STARTER, server_code], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True)
    server_pid, watchdog_pid = map(int, starter.stdout.readline().split())
    return starter, psutil.Process(server_pid), psutil.Process(watchdog_pid)


def _gone_within(seconds: float, *processes: psutil.Process) -> bool:
    deadline = time.monotonic() + seconds
    while any(_alive(p) for p in processes):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _cleanup(*processes: psutil.Process) -> None:
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()


def test_the_watchdog_stops_the_server_when_its_starter_is_killed() -> None:
    starter, server, watchdog = _start(SERVER)
    try:
        os.kill(starter.pid, signal.SIGKILL)
        starter.wait(10)
        assert _gone_within(3, server, watchdog)
    finally:
        _cleanup(server, watchdog)


def test_a_server_deaf_to_sigterm_is_killed_after_the_grace() -> None:
    from selfmodel.prefect_server import STOP_GRACE_SECONDS

    starter, server, watchdog = _start(DEAF_SERVER)
    try:
        os.kill(starter.pid, signal.SIGKILL)
        starter.wait(10)
        assert not _gone_within(STOP_GRACE_SECONDS - 2, server)  # asked first, as Prefect's stop() does ...
        assert _gone_within(5, server, watchdog)  # ... then killed
    finally:
        _cleanup(server, watchdog)


def test_when_the_starter_stops_its_server_itself_the_watchdog_ends_and_signals_nothing() -> None:
    starter, server, watchdog = _start(SERVER)
    try:
        starter.stdin.write("stop\n")
        starter.stdin.flush()
        assert starter.stdout.readline().strip() == "stopped"
        assert _gone_within(3, watchdog)
        assert starter.poll() is None  # the watchdog left its starter alone
    finally:
        starter.stdin.close()
        starter.wait(10)
        _cleanup(server, watchdog)


@pytest.mark.slow
@pytest.mark.parametrize("command", ["selfmodel nightly", "selfmodel ingest --prefect", "plain script"])
def test_the_temporary_server_dies_with_a_parent_killed_by_sigkill(tmp_path: Path, command: str) -> None:
    config = _write_tiny_config(tmp_path)
    parent = subprocess.Popen(_commands(config)[command], cwd=tmp_path, env=_temporary_server_env(tmp_path / "ph"),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    descendants: list[psutil.Process] = []
    try:
        descendants = _wait_for_server(parent)
        os.kill(parent.pid, signal.SIGKILL)  # the parent only, not its process group
        parent.wait(10)
        if not _gone_within(GONE_WITHIN_S, *descendants):
            left = [" ".join(p.cmdline()[:3]) for p in descendants if _alive(p)]
            pytest.fail(f"still running {GONE_WITHIN_S} s after their parent was killed: {left}")
    finally:  # whatever happened, leave nothing running (an orphaned server holds ~250 MB)
        if parent.poll() is None:
            parent.kill()
            parent.wait(10)
        _cleanup(*descendants)
