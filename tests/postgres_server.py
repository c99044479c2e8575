"""A real, throwaway PostgreSQL server for tests and benchmarks: the binaries of the pip-installed `pgserver`
package (or else the machine's initdb, postgres, pg_ctl), in a fresh data folder, listening on a free
loopback port, password authentication on (scram-sha-256) so a DSN carries a real password to keep secret.

Run as root (CI), the server runs as the `postgres` (or `pgserver`) system user: PostgreSQL refuses root.
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import shutil
import subprocess
import tempfile
from glob import glob
from pathlib import Path

from tests.loopback import free_port

# The password planted in every DSN: a test greps tables, logs and output for it.
PLANTED_PASSWORD = "pw-planted-5ecret-9c1d"


def postgres_bin_dir() -> Path | None:
    """The folder holding initdb and pg_ctl: the pip-installed `pgserver` package's (PostgreSQL 16, locked in
    requirements.lock, so a clean machine has it), else the machine's (on PATH, or /usr/lib/postgresql/N/bin)."""
    spec = importlib.util.find_spec("pgserver")  # found, not imported: only its binaries are used
    if spec is not None and spec.submodule_search_locations:
        bundled = Path(list(spec.submodule_search_locations)[0]) / "pginstall" / "bin"
        if (bundled / "initdb").is_file():
            return bundled
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(os.path.realpath(found)).parent
    candidates = sorted(glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    return Path(candidates[-1]).parent if candidates else None


def server_account() -> pwd.struct_passwd:
    """The system account the server runs as when we are root: `postgres` (the distribution's), else
    `pgserver`, added as the pgserver package itself does."""
    for name in ("postgres", "pgserver"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    subprocess.run(["useradd", "--system", "--no-create-home", "pgserver"], check=True, capture_output=True)
    return pwd.getpwnam("pgserver")


class PostgresServer:
    def __init__(self) -> None:
        self.bin_dir = postgres_bin_dir()
        if self.bin_dir is None:
            raise RuntimeError("no PostgreSQL binaries (initdb, pg_ctl): apt-get install postgresql")
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="selfmodel-pg-"))
        self.data = self.root / "data"
        self.user = "postgres"
        self._as_user: list[str] = []
        self._account = None
        if os.geteuid() == 0:
            self._account = server_account()
            os.chmod(self.root, 0o755)
            os.chown(self.root, self._account.pw_uid, self._account.pw_gid)
            self._as_user = ["runuser", "-u", self._account.pw_name, "--"]
            if subprocess.run([*self._as_user, "test", "-x", str(self.bin_dir / "initdb")]).returncode != 0:
                # The binaries sit where the server's account cannot reach them (a checkout under a folder
                # only root may enter, as `mktemp -d` makes): a copy beside the data (~40 MB) it can run,
                # with the shared libraries a wheel keeps beside the package (RPATH $ORIGIN/../../../<pkg>.libs).
                install = self.bin_dir.parent
                copy = self.root / install.parent.name / install.name
                shutil.copytree(install, copy, symlinks=True)
                libs = install.parent.parent / f"{install.parent.name}.libs"
                if libs.is_dir():
                    shutil.copytree(libs, self.root / libs.name, symlinks=True)
                for folder in (self.root / install.parent.name, copy, self.root / libs.name):
                    if folder.exists():
                        os.chmod(folder, 0o755)
                self.bin_dir = copy / "bin"

    def _run(self, *args: str) -> None:
        subprocess.run([*self._as_user, *args], check=True, capture_output=True, text=True)

    def start(self) -> "PostgresServer":
        pwfile = self.root / "pw"
        pwfile.write_text(PLANTED_PASSWORD + "\n")
        if self._account is not None:
            os.chown(pwfile, self._account.pw_uid, self._account.pw_gid)
        self._run(str(self.bin_dir / "initdb"), "-D", str(self.data), "-U", self.user, "--auth=scram-sha-256",
                  f"--pwfile={pwfile}", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync")
        options = (f"-c listen_addresses=127.0.0.1 -c port={self.port} -c unix_socket_directories={self.root} "
                   "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c shared_buffers=64MB")
        self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-o", options, "-l",
                  str(self.root / "log"), "-w", "-t", "60", "start")
        return self

    def stop(self) -> None:
        try:
            self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(self.root, ignore_errors=True)

    def dsn(self, database: str = "postgres", password: str = PLANTED_PASSWORD) -> str:
        return f"postgresql://{self.user}:{password}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """A fresh database (one per test); its DSN."""
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
        return self.dsn(name)
