"""The writer process's pipe: framing (Frames, frame) and the child's inbox (gulped reads, the
group-commit gather, units off the wire)."""

from __future__ import annotations

import multiprocessing
import os
import pickle
import struct
import threading
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from postbackd.store.writer_process import Frames, frame


def test_frame_is_what_connection_send_bytes_writes():
    ours, theirs = multiprocessing.Pipe(duplex=True)
    try:
        for message in (b"", b"x", b"unit" * 5000):
            theirs.send_bytes(message)
            got = b""
            while len(got) < len(message) + 4:
                got += os.read(ours.fileno(), 1 << 16)
            assert got == frame(message)
            ours.send_bytes(message)  # and the other way: our frames read by recv_bytes
            os.write(ours.fileno(), frame(message))
            assert theirs.recv_bytes() == message and theirs.recv_bytes() == message
    finally:
        ours.close()
        theirs.close()


def test_messages_split_and_joined_across_reads():
    wire = frame(b"one") + frame(b"") + frame(b"three" * 100)
    frames = Frames()
    frames.feed(wire[:2])
    assert frames.pop() == []
    frames.feed(wire[2:9])  # "one" complete, the empty one's header cut
    assert frames.pop() == [b"one"]
    frames.feed(wire[9:])
    assert frames.pop() == [b"", b"three" * 100]
    assert frames.pop() == []


def test_limit_leaves_the_rest_for_the_next_pop():
    frames = Frames()
    frames.feed(b"".join(frame(bytes([i])) for i in range(10)))
    assert frames.pop(3) == [b"\x00", b"\x01", b"\x02"]
    assert frames.pop() == [bytes([i]) for i in range(3, 10)]


def test_long_header_form_is_read():
    frames = Frames()
    frames.feed(struct.pack("!i", -1) + struct.pack("!Q", 5) + b"hello" + frame(b"next"))
    assert frames.pop() == [b"hello", b"next"]


@given(st.lists(st.binary(max_size=300), max_size=20), st.lists(st.integers(1, 50), max_size=40))
def test_any_chunking_gives_back_the_same_messages(messages, cuts):
    wire = b"".join(frame(m) for m in messages)
    frames, got, pos = Frames(), [], 0
    for cut in cuts:
        frames.feed(wire[pos : pos + cut])
        pos += cut
        got += frames.pop()
    frames.feed(wire[pos:])
    got += frames.pop()
    assert got == messages


# ---- the writer child's inbox: gulped reads and the group-commit gather ------------------


@pytest.fixture
def pipe():
    """(the child's inbox, the server's end of the pipe)."""
    from postbackd.store.writer_process import _Inbox

    ours, theirs = multiprocessing.Pipe(duplex=True)
    yield _Inbox(theirs), ours
    ours.close()
    theirs.close()


def test_take_returns_every_unit_written_since_the_last_read(pipe):
    inbox, ours = pipe
    os.write(ours.fileno(), b"".join(frame(bytes([i])) for i in range(5)))
    assert inbox.take(3) == [b"\x00", b"\x01", b"\x02"]
    assert inbox.take(10) == [b"\x03", b"\x04"]  # left in the buffer, no read needed


def test_gather_keeps_what_arrives_within_the_window(pipe):
    inbox, ours = pipe
    later = threading.Timer(0.01, lambda: os.write(ours.fileno(), frame(b"late")))
    later.start()
    started = time.monotonic()
    inbox.gather(0.5)
    later.join()
    assert time.monotonic() - started >= 0.5  # it waits out its window, not one read
    assert inbox.frames.pop() == [b"late"]


def test_gather_with_nothing_coming_returns_after_its_window(pipe):
    inbox, _ours = pipe
    started = time.monotonic()
    inbox.gather(0.05)
    assert 0.05 <= time.monotonic() - started < 2
    assert inbox.frames.pop() == []


def test_gather_and_take_see_the_server_gone(pipe):
    inbox, ours = pipe
    os.write(ours.fileno(), frame(b"last"))
    ours.close()  # the server exits
    inbox.gather(5)  # returns at EOF, not after 5 s
    assert inbox.take(10) == [b"last"]
    assert inbox.take(10) == []  # and then: gone


def test_units_stop_at_the_empty_message_and_an_unreadable_one_fails_alone():
    from postbackd.store.writer_process import _units

    unit = (1).to_bytes(8, "little") + pickle.dumps((os.getpid, (), None))
    garbage = (2).to_bytes(8, "little") + b"not a pickle"
    reported = []
    batch, stop = _units([unit, garbage, unit, b""], report=reported.extend)
    assert [item.fn for item in batch] == [os.getpid, os.getpid] and stop
    [(failed, ok, error)] = reported
    assert failed.future == 2 and not ok and "unreadable unit" in str(error)
    batch, stop = _units([unit], report=reported.extend)
    assert len(batch) == 1 and not stop
