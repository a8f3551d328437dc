"""One settings object, built by the CLI (never at import) and passed to `create_app`.

Every field is declared once as (name, default, help); the environment variable is
`POSTBACKD_<NAME>` and the CLI flag `--<name>`. `postbackd settings` prints them all.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any


def _setting(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True, slots=True)
class Settings:
    database_url: str = _setting(
        "sqlite:///postbackd.db", "SQLAlchemy URL; sqlite:///file.db or postgresql://…"
    )
    host: str = _setting("127.0.0.1", "address `serve` listens on")
    port: int = _setting(8080, "port `serve` listens on")
    public_url: str = _setting(
        "", "base URL printed in postback templates (default http://host:port)"
    )
    max_body_bytes: int = _setting(65536, "largest accepted request body; larger gets 413")
    worker: bool = _setting(True, "run the delivery worker inside the server process")
    worker_concurrency: int = _setting(64, "outbound requests in flight per worker process")
    per_target_concurrency: int = _setting(
        16, "outbound requests in flight per target (host and port)"
    )
    lease_seconds: float = _setting(60.0, "how long a claimed delivery stays leased to a worker")
    allow_loopback_targets: bool = _setting(False, "let postbacks reach 127.0.0.0/8 and ::1")
    allow_private_targets: bool = _setting(False, "let postbacks reach private networks")
    secret_key: str = _setting(
        "", "key that encrypts postback secrets (share it between processes)"
    )
    secret_key_file: str = _setting(
        "postbackd.key", "where a generated key is kept when secret_key is empty"
    )
    attempt_body_limit: int = _setting(8192, "bytes of request/response body kept per attempt")
    writer_threads: int = _setting(0, "database writer threads (0 = 1 on SQLite, 4 on PostgreSQL)")
    writer_process: str = _setting(
        "auto",
        "run the database writer in a child process of `serve` (a second core): auto (on for "
        "SQLite), on, off",
    )
    sqlite_synchronous: str = _setting("FULL", "SQLite synchronous pragma: FULL or NORMAL")
    sqlite_server_sync: bool = _setting(
        True,
        "with FULL and the writer process: the writer commits at NORMAL and the server syncs "
        "the WAL before answering (the writer does not wait for the disk); off: inside COMMIT",
    )
    log_level: str = _setting("info", "log level: debug, info, warning, error")

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides: Any) -> Settings:
        """Defaults, then POSTBACKD_* variables, then explicit overrides (CLI flags)."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            raw = env.get(f"POSTBACKD_{f.name.upper()}")
            if raw is not None:
                values[f.name] = _coerce(raw, type(f.default))
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def wants_writer_process(self) -> bool:
        mode = self.writer_process.strip().lower()
        if mode not in {"auto", "on", "off"}:
            raise ValueError(f"writer_process must be auto, on or off, not {mode!r}")
        return mode == "on" or (mode == "auto" and self.is_sqlite)

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


def _coerce(raw: str, kind: type) -> Any:
    if kind is bool:
        return raw.strip().lower() in {"1", "true", "yes", "on"}
    return kind(raw)


def describe() -> list[tuple[str, str, Any, str]]:
    """(env var, flag, default, help) for docs and `postbackd settings`."""
    return [
        (
            f"POSTBACKD_{f.name.upper()}",
            "--" + f.name.replace("_", "-"),
            f.default,
            f.metadata["help"],
        )
        for f in dataclasses.fields(Settings)
    ]
