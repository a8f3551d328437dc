"""What a running SQLite server writes per commit, by table and index (on demand; not pytest).

Every commit appends each page it changed to the write-ahead log as one frame (a whole
page, 4 KiB here), and every checkpoint copies them into the database file: pages per
commit are what the writer's disk traffic, checkpoints and fsync times follow. Run this
next to any benchmark (or a real server) on the same file; it copies the WAL every
`--every` seconds for `--seconds`, keeps the complete commits of each copy (a checkpoint
restarts the log with new salts, so each copy holds the commits since the last one), and
counts each commit once. Pages are named after the b-tree that owns them now (`dbstat`
on a snapshot taken at the end).

    .venv/bin/python bench/wal.py --db /path/to/postbackd.db --seconds 10

Reads only copies; never writes the database.
"""

from __future__ import annotations

import argparse
import shutil
import sqlite3
import struct
import tempfile
import time
from collections import Counter
from pathlib import Path

HEADER, FRAME_HEADER = 32, 24


def commits_in(wal: bytes) -> dict[tuple[int, int, int], list[int]]:
    """Complete commits of the log's current generation: (salt1, salt2, offset of the
    commit frame) -> the page numbers of its frames."""
    if len(wal) < HEADER:
        return {}
    page_size = struct.unpack(">I", wal[8:12])[0]
    salts = wal[16:24]
    step = FRAME_HEADER + page_size
    out: dict[tuple[int, int, int], list[int]] = {}
    pages: list[int] = []
    offset = HEADER
    while offset + step <= len(wal):
        if wal[offset + 8 : offset + 16] != salts:
            break  # an older generation's frame: the log ends here
        page, size_after = struct.unpack(">II", wal[offset : offset + 8])
        pages.append(page)
        if size_after:
            out[(*struct.unpack(">II", salts), offset)] = pages
            pages = []
        offset += step
    return out


def owners(db: Path) -> dict[int, str]:
    """Page number -> table or index name, on a consistent snapshot of the live file."""
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "snapshot.db"
        source = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        target = sqlite3.connect(copy)
        source.backup(target)
        source.close()
        try:
            return dict(target.execute("SELECT pageno, name FROM dbstat"))
        finally:
            target.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, required=True)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--every", type=float, default=0.05)
    args = parser.parse_args()
    wal_path = Path(f"{args.db}-wal")
    seen: dict[tuple[int, int, int], list[int]] = {}
    started = time.monotonic()
    while time.monotonic() - started < args.seconds:
        with tempfile.TemporaryFile() as tmp, open(wal_path, "rb") as wal:
            shutil.copyfileobj(wal, tmp)
            tmp.seek(0)
            seen.update(commits_in(tmp.read()))
        time.sleep(args.every)
    if not seen:
        print("no commits seen")
        return
    names = owners(args.db)
    frames = sum(len(p) for p in seen.values())
    print(f"{len(seen):,} commits, {frames:,} frames: {frames / len(seen):.1f} pages per commit")
    by = Counter(names.get(page, "?") for pages in seen.values() for page in pages)
    for name, n in by.most_common():
        print(f"  {name:45s} {n / len(seen):6.2f} per commit")
    print("(commits between two copies that a checkpoint overwrote are not seen)")


if __name__ == "__main__":
    main()
