"""A throwaway PostgreSQL server for the lake tests and benchmark: Debian's server binaries, a cluster in a
temporary folder, a unix socket and a free TCP port on 127.0.0.1. Run as root (as in CI), the server runs
as the `postgres` user, since PostgreSQL refuses to run as root."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import uuid
from pathlib import Path

USER, PASSWORD = "featstore", "featstore-test"


def server_bin() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        raise RuntimeError("PostgreSQL's server is not installed: apt-get install postgresql (the lake tests need it)")
    return Path(found[-1]).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Postgres:
    """One running cluster; `database()` makes a fresh database and returns its postgresql:// URL."""

    def __init__(self, folder: Path):
        self.bin, self.folder, self.port = server_bin(), folder, _free_port()
        self.data, self.socket = folder / "data", folder / "socket"
        self.as_root = os.geteuid() == 0
        folder.mkdir(parents=True, exist_ok=True)
        folder.parent.chmod(0o755)
        for path in (self.data, self.socket):
            path.mkdir()
            if self.as_root:
                shutil.chown(path, "postgres", "postgres")
        if self.as_root:
            shutil.chown(folder, "postgres", "postgres")
            folder.chmod(0o755)
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        self._run("pg_ctl", "-D", str(self.data), "-l", str(folder / "server.log"), "-w", "start", "-o",
                  f"-p {self.port} -k {self.socket} -c listen_addresses=127.0.0.1 -c max_connections=200 -c fsync=off")
        self.sql(f"CREATE ROLE {USER} LOGIN PASSWORD '{PASSWORD}'")

    def _run(self, program: str, *args: str) -> str:
        command = [str(self.bin / program), *args]
        if self.as_root:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, cwd="/", check=False)
        if done.returncode:
            raise RuntimeError(f"{program} failed: {done.stderr.strip() or done.stdout.strip()}")
        return done.stdout

    def sql(self, statement: str, database: str = "postgres") -> str:
        return self._run("psql", "-h", str(self.socket), "-p", str(self.port), "-U", "postgres", "-d", database,
                         "-v", "ON_ERROR_STOP=1", "-Atc", statement)

    def database(self, name: str | None = None) -> str:
        name = name or f"lake_{uuid.uuid4().hex[:10]}"
        self.sql(f"CREATE DATABASE {name} OWNER {USER}")
        return self.url(name)

    def url(self, name: str) -> str:
        return f"postgresql://{USER}:{PASSWORD}@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "stop")
