"""The pipe framing of the writer process (store/writer_process.Frames, frame)."""

from __future__ import annotations

import multiprocessing
import os
import struct

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
