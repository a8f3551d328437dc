"""Run the real `postbackd` executable as a child process, on 127.0.0.1 only.

Used by the system tests (and by bench/ingest.py): start `postbackd serve`, wait for
/readyz, SIGKILL it, and always reap it. Every wait here is bounded in time.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

HOST = "127.0.0.1"
BIN = Path(sys.executable).parent / "postbackd"
REPO = Path(__file__).resolve().parents[2]


def die_with_parent() -> None:
    """preexec_fn: the child gets SIGKILL if the process that started it dies (Linux), so a
    test run killed outright leaves no server behind. (Tied to the starting thread, which
    here is always the main thread.)"""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def server_env(**extra: str) -> dict[str, str]:
    """The caller's environment without POSTBACKD_* settings, plus `extra`.

    PYTHONPATH puts this checkout first: the child then runs the code under test even when
    the venv's editable install is stale (one made before the packages had `__init__.py`
    maps them as namespace packages, and `postbackd serve` fails to import).
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSTBACKD_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    env["POSTBACKD_LOG_LEVEL"] = "warning"
    env.update(extra)
    return env


def create_api_key(db_url: str, org_name: str, cwd: Path, timeout: float = 60) -> tuple[str, str]:
    """`postbackd apikey create --org-name …`; returns (org id, key) parsed from its output."""
    out = subprocess.run(
        [str(BIN), "apikey", "create", "--org-name", org_name, "--database-url", db_url],
        cwd=cwd,
        env=server_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=True,
    ).stdout
    org = re.search(r"organization\s+(org_\S+)", out)
    key = re.search(r"api key\s+(pbk_\S+)", out)
    assert org and key, f"unexpected `apikey create` output: {out!r}"
    return org.group(1), key.group(1)


class Server:
    """One `postbackd serve` child process; output goes to a log file."""

    def __init__(
        self, db_url: str, workdir: Path, *, port: int | None = None, env=None, launcher=None
    ):
        """`launcher` replaces the `postbackd` executable (e.g. a profiling wrapper)."""
        self.db_url = db_url
        self.launcher = list(launcher or [str(BIN)])
        self.workdir = workdir
        self.port = port or free_port()
        self.env = server_env(**(env or {}))
        self.proc: subprocess.Popen | None = None
        self.log_path: Path | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, ready_timeout: float = 30) -> Server:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.starts += 1
        self.log_path = self.workdir / f"server-{self.port}-{self.starts}.log"
        cmd = [*self.launcher, "serve", "--host", HOST, "--port", str(self.port)]
        cmd += ["--database-url", self.db_url, "--no-worker"]
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                cmd,
                cwd=self.workdir,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent,
            )
        self.wait_ready(ready_timeout)
        return self

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log_tail()}")
            with (
                contextlib.suppress(OSError, urllib.error.URLError),
                urllib.request.urlopen(f"{self.url}/readyz", timeout=2) as r,
            ):
                if r.status == 200:
                    return
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"server not ready after {timeout}s:\n{self.log_tail()}")

    def kill(self) -> None:
        """SIGKILL (a crash, no shutdown hooks) and reap."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self._reap(10)

    def stop(self, timeout: float = 10) -> None:
        """SIGTERM (graceful), SIGKILL if it does not exit in time."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self._reap(10)

    def _reap(self, timeout: float) -> None:
        if self.proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout)

    def log_tail(self, lines: int = 40) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
