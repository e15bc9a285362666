"""The test broker's wire format and queue state: frames, messages, topics and channels.

Follows nsqd: a message's id is 16 hex characters; a topic copies each message to every
channel, or keeps it until the first channel exists; a channel hands each message to one
client at a time and takes it back when it is REQueued or its timeout passes.
"""

from __future__ import annotations

import heapq
import itertools
import re
import struct
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

FRAME_RESPONSE, FRAME_ERROR, FRAME_MESSAGE = 0, 1, 2
MAGIC_V2 = b"  V2"
HEARTBEAT = b"_heartbeat_"
MSG_ID_LENGTH = 16
NAME_RE = re.compile(r"^[.a-zA-Z0-9_-]+(#ephemeral)?$")
_ids = itertools.count(1)
_NODE = int(time.time()) & 0xFFFFFF  # differs between runs, as nsqd's node id and clock do


def valid_name(name: str) -> bool:
    return 0 < len(name) <= 64 and bool(NAME_RE.match(name))


def frame(frame_type: int, data: bytes) -> bytes:
    """[size][frame type][data], the size counting the 4-byte type and the data."""
    return struct.pack(">ii", len(data) + 4, frame_type) + data


class ClientError(Exception):
    """An error frame (`E_CODE text`); a fatal one closes the connection after it is sent."""

    def __init__(self, code: str, text: str, fatal: bool = True):
        super().__init__(f"{code} {text}")
        self.fatal = fatal


@dataclass(eq=False)
class Message:
    id: bytes
    body: bytes
    timestamp: int  # ns since the epoch, when the broker received it
    attempts: int = 0

    def copy(self) -> "Message":
        return Message(self.id, self.body, self.timestamp)

    def encode(self) -> bytes:
        """A message frame's data: timestamp (int64), attempts (uint16), id, body, big-endian."""
        return struct.pack(">qH", self.timestamp, self.attempts) + self.id + self.body


def new_message(body: bytes) -> Message:
    return Message(f"{_NODE:06x}{next(_ids):010x}".encode(), body, time.time_ns())


@dataclass(eq=False)
class Channel:
    name: str
    queue: deque = field(default_factory=deque)
    in_flight: dict = field(default_factory=dict)  # id -> [message, client or None, deadline]
    deferred: list = field(default_factory=list)  # heap of (ready at, sequence, message)
    clients: list = field(default_factory=list)
    turn: int = 0
    delivered: int = 0
    finished: int = 0
    requeued: int = 0
    timed_out: int = 0
    _seq: Any = field(default_factory=itertools.count)

    def put(self, message: Message, defer_ms: int = 0) -> None:
        if defer_ms > 0:
            heapq.heappush(self.deferred, (time.monotonic() + defer_ms / 1000, next(self._seq), message))
        else:
            self.queue.append(message)

    def start_in_flight(self, message: Message, client, deadline: float) -> None:
        self.in_flight[message.id] = [message, client, deadline]
        self.delivered += 1

    def _owned(self, client, message_id: bytes, command: str) -> list:
        entry = self.in_flight.get(message_id)
        if entry is None:
            raise ClientError(f"E_{command}_FAILED", f"{command} {message_id.decode(errors='replace')} failed Message ID not in flight", fatal=False)
        if entry[1] is not client:
            raise ClientError(f"E_{command}_FAILED", f"{command} {message_id.decode(errors='replace')} failed client does not own message", fatal=False)
        return entry

    def finish(self, client, message_id: bytes) -> None:
        self._owned(client, message_id, "FIN")
        del self.in_flight[message_id]
        self.finished += 1
        client.in_flight -= 1

    def requeue(self, client, message_id: bytes, delay_ms: int) -> None:
        message = self._owned(client, message_id, "REQ")[0]
        del self.in_flight[message_id]
        self.requeued += 1
        client.in_flight -= 1
        self.put(message, delay_ms)

    def touch(self, client, message_id: bytes, timeout: float) -> None:
        self._owned(client, message_id, "TOUCH")[2] = time.monotonic() + timeout

    def expire(self, now: float) -> list:
        """Take back messages whose timeout passed; returns [(message, client)]."""
        expired = [(mid, entry) for mid, entry in self.in_flight.items() if entry[2] <= now]
        for mid, (message, client, _) in expired:
            del self.in_flight[mid]
            self.timed_out += 1
            self.queue.append(message)
        return [(entry[0], entry[1]) for _, entry in expired]

    def release_deferred(self, now: float) -> None:
        while self.deferred and self.deferred[0][0] <= now:
            self.queue.append(heapq.heappop(self.deferred)[2])

    def requeue_client(self, client) -> None:
        """youzan/nsq's behaviour on disconnect: the client's in-flight messages come back at once."""
        for mid, entry in list(self.in_flight.items()):
            if entry[1] is client:
                del self.in_flight[mid]
                self.requeued += 1
                self.queue.append(entry[0])

    def orphan(self, client) -> None:
        """nsqd's behaviour on disconnect: the messages stay in flight, owned by nobody, until they time out."""
        for entry in self.in_flight.values():
            if entry[1] is client:
                entry[1] = None


@dataclass(eq=False)
class Topic:
    name: str
    channels: dict = field(default_factory=dict)
    backlog: deque = field(default_factory=deque)  # (message, defer_ms) kept until the first channel

    def put(self, body: bytes, defer_ms: int = 0) -> bytes:
        message = new_message(body)
        if not self.channels:
            self.backlog.append((message, defer_ms))
        for chan in self.channels.values():
            chan.put(message.copy(), defer_ms)
        return message.id

    def channel(self, name: str) -> Channel:
        if name not in self.channels:
            chan = self.channels[name] = Channel(name)
            if len(self.channels) == 1:
                while self.backlog:
                    message, defer_ms = self.backlog.popleft()
                    chan.put(message, defer_ms)
        return self.channels[name]
