"""Prefect's temporary server dies with the process that started it, however that process ends (Linux).

Without PREFECT_API_URL, the first flow run starts a temporary Prefect server: a `python -m uvicorn`
child (prefect.server.api.server.SubprocessASGIServer) of about 250 MB, which an atexit handler stops.
A process killed with SIGKILL (the OOM killer, a scheduler's timeout) runs no atexit handler, and the
server lived on, orphaned.

So each temporary server gets a watchdog: this file run as a script (standard library only, about 10 MB,
started in milliseconds) holding a pidfd of the process that started the server and one of the server,
and waiting on both. The server ends first (the normal stop at exit): the watchdog ends. The starter
ends first, in any way at all: the watchdog stops the server as Prefect's own stop does (SIGTERM, then
SIGKILL after 5 s). The server has no children of its own (uvicorn without workers or reload), so
signalling it is enough.

Why not the alternatives:
- PR_SET_PDEATHSIG in the server fires when the *thread* that spawned it exits, not the process, and
  Prefect starts the server from whichever thread first needs its API (a log or event worker thread, for
  one); it would also have to run inside Prefect's own Popen call.
- A pipe the watchdog reads until EOF: a process forked later without exec (multiprocessing's fork
  start method) inherits its write end, whatever its close-on-exec flag, and keeps it open after we die.
pidfds name one process exactly (no pid reuse) and wake the watchdog without polling. They need Linux
5.3 or later (`os.pidfd_open`); elsewhere the server is left as Prefect starts it.

`watch_temporary_server()` installs this for every temporary server the process starts: importing the
`flows` package calls it, so it covers every way our flows run in a process without PREFECT_API_URL
(`selfmodel nightly`, `selfmodel ingest --prefect`, a script calling a flow).
"""

from __future__ import annotations

import logging
import os
import select
import signal
import subprocess
import sys

STOP_GRACE_SECONDS = 5  # as Prefect's own SubprocessASGIServer.stop(): SIGTERM, then SIGKILL after 5 s

_watchdogs: list[subprocess.Popen] = []  # kept, so they are not garbage-collected (and warned about) while running


def watch_temporary_server() -> None:
    """Give every temporary Prefect server this process starts from now on a watchdog (idempotent).

    Nothing to do without pidfds (not Linux), or when Prefect's server module is not loaded yet and an API
    URL is set (a worker, a running server): no temporary server will start, and loading that module
    would cost seconds.
    """
    if not hasattr(os, "pidfd_open"):
        return
    if "prefect.server.api.server" not in sys.modules:
        from prefect.settings import PREFECT_API_URL

        if PREFECT_API_URL.value():
            return
    from prefect.server.api.server import SubprocessASGIServer

    start_server = SubprocessASGIServer._run_uvicorn_command
    if getattr(start_server, "watched", False):
        return

    # Wrapped where the server process is made (also the restart on a taken port), so the watchdog exists
    # within milliseconds of the server, long before Prefect has waited for it to answer.
    def start_watched_server(self):
        server = start_server(self)
        start_watchdog(server.pid)
        return server

    start_watched_server.watched = True
    SubprocessASGIServer._run_uvicorn_command = start_watched_server


def start_watchdog(server_pid: int) -> subprocess.Popen | None:
    """Start a watchdog that stops process `server_pid` (our child) when this process ends first."""
    pidfds: list[int] = []
    try:
        # Both pidfds are opened here, where the server is our child not yet reaped and we are alive, so
        # each names the right process; the watchdog inherits them.
        pidfds.append(os.pidfd_open(os.getpid()))
        pidfds.append(os.pidfd_open(server_pid))
        watchdog = subprocess.Popen(
            # -I -S: the standard library only, so it starts fast and nothing in the environment or a
            # folder beside this file changes what it runs.
            [sys.executable, "-I", "-S", os.path.abspath(__file__), *map(str, pidfds)],
            pass_fds=pidfds, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    except OSError as exc:  # never keep the server from starting: it is only left unwatched, as before
        logging.getLogger(__name__).warning("no watchdog for the temporary Prefect server %d: %s", server_pid, exc)
        return None
    finally:
        for pidfd in pidfds:
            os.close(pidfd)
    _watchdogs.append(watchdog)
    return watchdog


def watch(starter: int, server: int) -> None:
    """Wait for the starter or the server (pidfds) to end; if the starter ended first, stop the server."""
    # Ctrl-C and a closed terminal reach the whole foreground process group: the starter stops the server
    # itself then, and the watchdog stays to make sure it did.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    if server in _wait_for_end(starter, server):
        return
    _send(server, signal.SIGTERM)
    if not _wait_for_end(server, timeout_seconds=STOP_GRACE_SECONDS):
        _send(server, signal.SIGKILL)


def _wait_for_end(*pidfds: int, timeout_seconds: float | None = None) -> list[int]:
    """The pidfds whose process has ended, once one has (or the timeout passed: maybe none)."""
    # poll, not select: a pidfd inherited from a process with many files open may be numbered past 1024.
    poller = select.poll()
    for pidfd in pidfds:
        poller.register(pidfd, select.POLLIN)
    return [pidfd for pidfd, _ in poller.poll(None if timeout_seconds is None else timeout_seconds * 1000)]


def _send(pidfd: int, signum: int) -> None:
    try:
        signal.pidfd_send_signal(pidfd, signum)
    except ProcessLookupError:  # it ended meanwhile
        pass


if __name__ == "__main__":
    watch(int(sys.argv[1]), int(sys.argv[2]))
