"""The disk's own fsync latency, probed while a benchmark runs (on demand; not pytest).

Every acknowledged event waits for an fsync (SQLite `synchronous=FULL`), so no p99 can
beat the disk's. On this VM a 4 KiB append + fsync takes ~0.4 ms at the median but spikes
to 36 ms on a quiet box and to ~140 ms while the host flushes a large write (after a
drain, say). The probe appends 4 KiB and fsyncs it every `gap` seconds in a thread, next to
the database file, for as long as the run lasts: a p99 miss that coincides with its `max`
was the disk's. ~20 fsyncs a second add little load.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path


class FsyncProbe:
    """`with FsyncProbe(directory) as probe: …` then `probe.figures()`."""

    def __init__(self, directory: Path, gap: float = 0.05, max_samples: int = 20_000):
        self.path = Path(directory) / ".fsync-probe"
        self.gap = gap
        self.max_samples = max_samples
        self.ms: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fsync-probe", daemon=True)

    def __enter__(self) -> FsyncProbe:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(5)
        self.path.unlink(missing_ok=True)

    def _run(self) -> None:
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        block = b"\0" * 4096
        try:
            while not self._stop.wait(self.gap) and len(self.ms) < self.max_samples:
                os.write(fd, block)
                start = time.perf_counter()
                os.fsync(fd)
                self.ms.append((time.perf_counter() - start) * 1000)
        finally:
            os.close(fd)

    def figures(self) -> dict:
        """Count, p50, p99, max (ms) and how many fsyncs took over 20 ms."""
        ms = sorted(self.ms)
        if not ms:
            return {"fsyncs": 0}
        return {
            "fsyncs": len(ms),
            "p50_ms": ms[len(ms) // 2],
            "p99_ms": ms[min(len(ms) - 1, int(len(ms) * 0.99))],
            "max_ms": ms[-1],
            "over_20ms": sum(1 for x in ms if x > 20),
        }


def cells(figures: dict) -> tuple[str, str]:
    """(p50 / p99 / max, how many were slow): the two table cells both benchmarks print."""
    return (
        f"{figures['p50_ms']:.1f} / {figures['p99_ms']:.1f} / {figures['max_ms']:.0f} ms",
        f"{figures['over_20ms']:.0f} of {figures['fsyncs']:.0f} fsyncs > 20 ms",
    )


def describe(figures: dict) -> str:
    """The run line's note."""
    if not figures.get("fsyncs"):
        return "no fsync sampled"
    latency, slow = cells(figures)
    return f"disk fsync p50 / p99 / max {latency} ({slow})"
