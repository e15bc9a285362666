"""The test broker speaks NSQ's TCP protocol V2 as nsq.io's spec and nsqd describe it.

These tests talk raw bytes to it, so the listener's tests rest on a broker whose frames,
responses, errors and redelivery were checked independently of pynsq.
"""

from __future__ import annotations

import json
import socket
import struct
import time
import urllib.request

import pytest
from nsq_broker import NsqBroker

TOPIC, CHANNEL = "t_topic", "t_chan"


class RawClient:
    """A blocking socket speaking the protocol by hand."""

    def __init__(self, address: str):
        host, port = address.split(":")
        self.sock = socket.create_connection((host, int(port)), timeout=5)
        self.sock.sendall(b"  V2")

    def send(self, line: bytes, body: bytes | None = None) -> None:
        self.sock.sendall(line + b"\n" + (b"" if body is None else struct.pack(">i", len(body)) + body))

    def _exactly(self, size: int) -> bytes:
        data = b""
        while len(data) < size:
            chunk = self.sock.recv(size - len(data))
            if not chunk:
                raise ConnectionError("closed")
            data += chunk
        return data

    def frame(self) -> tuple[int, bytes]:
        size = struct.unpack(">i", self._exactly(4))[0]
        frame_type = struct.unpack(">i", self._exactly(4))[0]
        return frame_type, self._exactly(size - 4)

    def message(self) -> tuple[int, int, bytes, bytes]:
        frame_type, data = self.frame()
        assert frame_type == 2, (frame_type, data)
        timestamp, attempts = struct.unpack(">qH", data[:10])
        return timestamp, attempts, data[10:26], data[26:]

    def subscribe(self, heartbeat_ms: int = 30000, msg_timeout_ms: int | None = None) -> dict:
        identify = {"feature_negotiation": True, "heartbeat_interval": heartbeat_ms}
        if msg_timeout_ms:
            identify["msg_timeout"] = msg_timeout_ms
        self.send(b"IDENTIFY", json.dumps(identify).encode())
        frame_type, data = self.frame()
        assert frame_type == 0
        self.send(f"SUB {TOPIC} {CHANNEL}".encode())
        assert self.frame() == (0, b"OK")
        return json.loads(data)

    def closed(self) -> bool:
        try:
            return self.sock.recv(1) == b""
        except ConnectionError:
            return True


@pytest.fixture
def broker():
    with NsqBroker(msg_timeout=0.5) as running:
        yield running


def test_identify_negotiates_features_and_messages_have_the_spec_layout(broker):
    client = RawClient(broker.tcp_address)
    features = client.subscribe()
    assert features["max_rdy_count"] == 2500 and features["msg_timeout"] == 500
    assert not features["tls_v1"] and not features["snappy"] and not features["deflate"] and not features["auth_required"]
    before = time.time_ns()
    ids = broker.publish(TOPIC, [b"hello", "蛋糕".encode()])
    client.send(b"RDY 5")
    got = [client.message(), client.message()]
    assert [(attempts, mid.decode(), body) for _, attempts, mid, body in got] == [(1, ids[0], b"hello"), (1, ids[1], "蛋糕".encode())]
    assert all(len(mid) == 16 and abs(ts - before) < 5e9 for ts, _, mid, _ in got)
    client.send(b"FIN " + got[0][2])
    client.send(b"FIN " + got[1][2])
    client.send(b"CLS")
    assert client.frame() == (0, b"CLOSE_WAIT")
    assert broker.wait_until(lambda: broker.stats(TOPIC, CHANNEL)["finished"] == 2)


def test_rdy_bounds_in_flight_and_req_timeout_redeliver_with_attempts_raised(broker):
    client = RawClient(broker.tcp_address)
    client.subscribe()
    broker.publish(TOPIC, [b"a", b"b", b"c"])
    client.send(b"RDY 1")
    _, attempts, first, body = client.message()
    assert (attempts, body) == (1, b"a")
    client.sock.settimeout(0.2)
    with pytest.raises(socket.timeout):  # RDY 1: nothing more while one is in flight
        client.frame()
    client.sock.settimeout(5)
    client.send(b"REQ " + first + b" 300")  # a is deferred 300 ms
    _, attempts, second, body = client.message()
    assert (attempts, body) == (1, b"b")
    client.send(b"FIN " + second)
    started = time.monotonic()
    assert client.message()[1::2] == (1, b"c")
    # c is never FINished: a (back from its delay) waits until c's 0.5 s timeout frees the RDY slot
    assert client.message()[1::2] == (2, b"a")
    assert time.monotonic() - started >= 0.45
    client.send(b"FIN " + first)
    assert client.message()[1::2] == (2, b"c")
    stats = broker.stats(TOPIC, CHANNEL)
    assert (stats["requeued"], stats["timed_out"], stats["finished"], stats["delivered"]) == (1, 1, 2, 5)


def test_heartbeats_are_sent_and_silent_clients_are_dropped(broker):
    client = RawClient(broker.tcp_address)
    client.subscribe(heartbeat_ms=1000)
    started = time.monotonic()
    assert client.frame() == (0, b"_heartbeat_")
    assert 0.8 < time.monotonic() - started < 2.0
    client.send(b"NOP")
    assert client.frame() == (0, b"_heartbeat_")
    client.sock.settimeout(3)
    assert broker.wait_until(lambda: client.closed(), timeout=4)  # silent for 2 intervals


def test_errors_fatal_and_not(broker):
    client = RawClient(broker.tcp_address)
    client.subscribe()
    client.send(b"FIN 0000000000000000")
    assert client.frame() == (1, b"E_FIN_FAILED FIN 0000000000000000 failed Message ID not in flight")
    client.send(b"RDY 99999")
    assert client.frame() == (1, b"E_INVALID RDY count 99999 out of range 0-2500")
    assert client.closed()
    other = RawClient(broker.tcp_address)
    other.send(b"BOGUS")
    assert other.frame() == (1, b"E_INVALID invalid command BOGUS")
    bad = socket.create_connection(("127.0.0.1", broker.tcp_port), timeout=5)
    bad.sendall(b"  V1")
    assert bad.recv(100)[8:] == b"E_BAD_PROTOCOL bad protocol magic"


def test_disconnect_leaves_messages_in_flight_until_timeout_like_nsqd(broker):
    first = RawClient(broker.tcp_address)
    first.subscribe()
    broker.publish(TOPIC, [b"x"])
    first.send(b"RDY 1")
    mid = first.message()[2]
    first.sock.close()
    second = RawClient(broker.tcp_address)
    second.subscribe()
    second.send(b"RDY 1")
    _, attempts, again, body = second.message()  # after the 0.5 s timeout
    assert (again, attempts, body) == (mid, 2, b"x")
    assert broker.stats(TOPIC, CHANNEL)["timed_out"] == 1


def test_requeue_on_disconnect_variant():
    with NsqBroker(msg_timeout=30, requeue_on_disconnect=True) as broker:
        first = RawClient(broker.tcp_address)
        first.subscribe()
        broker.publish(TOPIC, [b"x"])
        first.send(b"RDY 1")
        first.message()
        first.sock.close()
        second = RawClient(broker.tcp_address)
        second.subscribe()
        second.send(b"RDY 1")
        assert second.message()[1] == 2  # at once, not after 30 s


def test_publish_over_tcp_and_http_and_lookup(broker):
    client = RawClient(broker.tcp_address)
    client.send(f"PUB {TOPIC}".encode(), b"one")
    assert client.frame() == (0, b"OK")
    bodies = [b"two", b"three"]
    client.send(f"MPUB {TOPIC}".encode(), struct.pack(">i", 2) + b"".join(struct.pack(">i", len(b)) + b for b in bodies))
    assert client.frame() == (0, b"OK")
    base = f"http://{broker.http_address}"
    assert urllib.request.urlopen(urllib.request.Request(f"{base}/pub?topic={TOPIC}", data=b"four")).read() == b"OK"
    assert urllib.request.urlopen(urllib.request.Request(f"{base}/mpub?topic={TOPIC}", data=b"five\nsix\n")).read() == b"OK"
    lookup = json.load(urllib.request.urlopen(f"{base}/lookup?topic={TOPIC}"))
    assert lookup["producers"][0]["tcp_port"] == broker.tcp_port
    consumer = RawClient(broker.tcp_address)
    consumer.subscribe()
    consumer.send(b"RDY 10")
    assert [consumer.message()[3] for _ in range(6)] == [b"one", b"two", b"three", b"four", b"five", b"six"]
