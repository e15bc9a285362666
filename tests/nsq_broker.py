"""A small nsqd for tests: NSQ's TCP protocol V2 on 127.0.0.1, plus /pub, /mpub and /lookup over HTTP.

No nsqd binary can be installed here, so the listener's tests talk to this broker through
the real pynsq client. It follows https://nsq.io/clients/tcp_protocol_spec.html and
nsqd's protocol_v2.go:

- the client sends the magic "  V2", then commands as lines `CMD params\\n`, some followed
  by a 4-byte big-endian size and a body (IDENTIFY, PUB, MPUB, DPUB);
- frames to the client are [4-byte size][4-byte type: 0 response, 1 error, 2 message][data],
  the size counting the type and the data; a message is an 8-byte timestamp (ns), a 2-byte
  attempts counter, a 16-byte hex id and the body;
- IDENTIFY with feature_negotiation is answered with nsqd's JSON (no TLS, snappy, deflate,
  sampling or auth); heartbeat_interval and msg_timeout are negotiated as nsqd does;
- SUB, RDY (the client's maximum in flight), FIN, REQ (with delay), TOUCH, NOP, CLS
  (answered CLOSE_WAIT), PUB, MPUB and DPUB, with nsqd's error codes; E_INVALID, E_BAD_*
  are fatal (the connection is closed after the error frame), E_FIN_FAILED, E_REQ_FAILED
  and E_TOUCH_FAILED are not;
- every message published to a topic is copied to each of its channels (a topic without
  channels keeps its messages until the first SUB); attempts is raised at each delivery;
  an un-FINished message comes back after its msg timeout; heartbeats every negotiated
  interval, and a client silent for two intervals is disconnected.

A disconnected client's in-flight messages wait for their timeout, as in nsqd; with
requeue_on_disconnect=True they come back at once, as in youzan/nsq (the fork the
article's team runs). The protocol runs in asyncio on a background thread; the methods
below are safe to call from the test's thread.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from dataclasses import dataclass, field

from nsq_commands import execute, serve_http
from nsq_wire import (
    FRAME_ERROR,
    FRAME_MESSAGE,
    FRAME_RESPONSE,
    HEARTBEAT,
    MAGIC_V2,
    Channel,
    ClientError,
    Topic,
    frame,
)


@dataclass(eq=False)
class Client:
    """One TCP connection's state, as nsqd's clientV2 keeps it."""

    writer: asyncio.StreamWriter
    number: int
    heartbeat_interval: float
    msg_timeout: float
    state: str = "init"  # init -> subscribed -> closing
    identified: bool = False
    channel: Channel | None = None
    ready_count: int = 0
    in_flight: int = 0
    last_recv: float = field(default_factory=time.monotonic)
    last_heartbeat: float = field(default_factory=time.monotonic)
    identify: dict = field(default_factory=dict)

    def send(self, frame_type: int, data: bytes) -> None:
        if not self.writer.is_closing():
            self.writer.write(frame(frame_type, data))

    def ready_for_message(self) -> bool:
        return self.state == "subscribed" and 0 < self.ready_count and self.in_flight < self.ready_count


class NsqBroker:
    """Start with start() (or as a context manager); tcp_address and http_address say where."""

    def __init__(self, *, msg_timeout: float = 60.0, max_msg_timeout: float = 900.0, max_rdy_count: int = 2500,
                 default_heartbeat: float = 30.0, requeue_on_disconnect: bool = False):
        self.msg_timeout, self.max_msg_timeout = msg_timeout, max_msg_timeout
        self.max_rdy_count, self.default_heartbeat = max_rdy_count, default_heartbeat
        self.requeue_on_disconnect = requeue_on_disconnect
        self.drop_fins = 0  # this many FINs are lost on the way, so their messages come back
        self.topics: dict[str, Topic] = {}
        self.clients: list[Client] = []
        self.commands: list[tuple[int, bytes]] = []  # (client number, command line) in arrival order
        self._numbers = itertools.count(1)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True, name="nsq-broker")
        self._tcp: asyncio.AbstractServer | None = None
        self._http: asyncio.AbstractServer | None = None
        self.tcp_port = self.http_port = 0

    # -- control from the test's thread -------------------------------------------------
    def start(self) -> "NsqBroker":
        self._thread.start()
        self._call(self._start_servers())
        return self

    def stop(self) -> None:
        self._call(self._stop_servers())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def __enter__(self) -> "NsqBroker":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    @property
    def tcp_address(self) -> str:
        return f"127.0.0.1:{self.tcp_port}"

    @property
    def http_address(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    def publish(self, topic: str, bodies: list[bytes]) -> list[str]:
        """Publish messages as PUB would; returns their ids."""
        return self._call(self._publish(topic, bodies))

    def disconnect_clients(self) -> int:
        """Drop every client connection, as a crashing or restarting nsqd would; returns how many."""
        return self._call(self._disconnect_all())

    def stats(self, topic: str, channel: str) -> dict[str, int]:
        """depth, in_flight, deferred, delivered, finished, requeued, timed_out and clients of a channel."""
        return self._call(self._stats(topic, channel))

    def wait_until(self, predicate, timeout: float = 10.0, interval: float = 0.02) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(interval)
        return predicate()

    def _call(self, coroutine):
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(10)

    # -- loop side ------------------------------------------------------------------------
    async def _start_servers(self) -> None:
        self._tcp = await asyncio.start_server(self._serve_tcp, "127.0.0.1", 0)
        self._http = await asyncio.start_server(self._serve_http, "127.0.0.1", 0)
        self.tcp_port = self._tcp.sockets[0].getsockname()[1]
        self.http_port = self._http.sockets[0].getsockname()[1]
        self._ticker = asyncio.create_task(self._tick())

    async def _stop_servers(self) -> None:
        self._ticker.cancel()
        for server in (self._tcp, self._http):
            server.close()
        await self._disconnect_all()

    async def _disconnect_all(self) -> int:
        clients = list(self.clients)
        for client in clients:
            client.writer.transport.abort()  # a reset, not a polite close
        return len(clients)

    async def _stats(self, topic: str, channel: str) -> dict[str, int]:
        chan = self.topics.get(topic) and self.topics[topic].channels.get(channel)
        if not chan:
            backlog = len(self.topics[topic].backlog) if topic in self.topics else 0
            return {"depth": backlog, "in_flight": 0, "deferred": 0, "delivered": 0, "finished": 0,
                    "requeued": 0, "timed_out": 0, "clients": 0}
        return {"depth": len(chan.queue), "in_flight": len(chan.in_flight), "deferred": len(chan.deferred),
                "delivered": chan.delivered, "finished": chan.finished, "requeued": chan.requeued,
                "timed_out": chan.timed_out, "clients": len(chan.clients)}

    def _topic(self, name: str) -> Topic:
        if name not in self.topics:
            self.topics[name] = Topic(name)
        return self.topics[name]

    async def _publish(self, topic: str, bodies: list[bytes], defer_ms: int = 0) -> list[str]:
        target = self._topic(topic)
        ids = [target.put(body, defer_ms) for body in bodies]
        for chan in target.channels.values():
            self._pump(chan)
        return [i.decode() for i in ids]

    def _pump(self, chan: Channel) -> None:
        """Send queued messages to ready clients, round robin, as nsqd's messagePump does."""
        while chan.queue:
            ready = [c for c in chan.clients if c.ready_for_message()]
            if not ready:
                return
            client = ready[chan.turn % len(ready)]
            chan.turn += 1
            message = chan.queue.popleft()
            message.attempts += 1
            chan.start_in_flight(message, client, time.monotonic() + client.msg_timeout)
            client.in_flight += 1
            client.send(FRAME_MESSAGE, message.encode())

    async def _tick(self) -> None:
        """Timeouts, deferred messages and heartbeats, every 20 ms."""
        while True:
            await asyncio.sleep(0.02)
            now = time.monotonic()
            for topic in self.topics.values():
                for chan in topic.channels.values():
                    for message, client in chan.expire(now):
                        if client is not None and client in chan.clients:
                            client.in_flight -= 1
                    chan.release_deferred(now)
                    self._pump(chan)
            for client in list(self.clients):
                if client.heartbeat_interval <= 0:
                    continue
                if now - client.last_recv > 2 * client.heartbeat_interval:
                    client.writer.transport.abort()  # nsqd's read deadline: two missed heartbeats
                elif now - client.last_heartbeat >= client.heartbeat_interval:
                    client.last_heartbeat = now
                    client.send(FRAME_RESPONSE, HEARTBEAT)

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        client = Client(writer, next(self._numbers), self.default_heartbeat, self.msg_timeout)
        try:
            magic = await reader.readexactly(4)
            if magic != MAGIC_V2:
                client.send(FRAME_ERROR, b"E_BAD_PROTOCOL bad protocol magic")
                return
            self.clients.append(client)
            while True:
                line = await reader.readline()
                if not line.endswith(b"\n"):
                    return  # EOF
                client.last_recv = time.monotonic()
                params = line.rstrip(b"\n").rstrip(b"\r").split(b" ")
                self.commands.append((client.number, line.rstrip(b"\r\n")))
                try:
                    response = await self._execute(client, params, reader)
                except ClientError as exc:
                    client.send(FRAME_ERROR, str(exc).encode())
                    if exc.fatal:
                        await writer.drain()
                        return
                    continue
                if response is not None:
                    client.send(FRAME_RESPONSE, response)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._client_gone(client)
            writer.close()

    def _client_gone(self, client: Client) -> None:
        if client in self.clients:
            self.clients.remove(client)
        chan = client.channel
        if chan is not None and client in chan.clients:
            chan.clients.remove(client)
            if self.requeue_on_disconnect:
                chan.requeue_client(client)
            chan.orphan(client)
            self._pump(chan)

    async def _execute(self, client: Client, params: list[bytes], reader: asyncio.StreamReader) -> bytes | None:
        return await execute(self, client, params, reader)

    async def _serve_http(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await serve_http(self, reader, writer)
