"""The test broker's commands: the TCP protocol V2 command set and the HTTP /pub, /mpub, /lookup.

Responses, error codes and texts follow nsqd's protocol_v2.go and http.go, and
nsqlookupd's /lookup answer for the `application/vnd.nsq; version=1.0` Accept header.
"""

from __future__ import annotations

import asyncio
import json
import struct
from urllib.parse import parse_qs, urlsplit

from nsq_wire import MSG_ID_LENGTH, ClientError, valid_name

VERSION = "1.3.0"
MAX_MSG_SIZE = 1024 * 1024
MAX_BODY_SIZE = 5 * 1024 * 1024
MAX_REQ_TIMEOUT_MS = 60 * 60 * 1000
MAX_HEARTBEAT_MS = 60_000


async def _read_body(reader: asyncio.StreamReader, command: str, limit: int) -> bytes:
    size = struct.unpack(">i", await reader.readexactly(4))[0]
    if size <= 0 or size > limit:
        code = "E_BAD_MESSAGE" if command in ("PUB", "DPUB") else "E_BAD_BODY"
        raise ClientError(code, f"{command} invalid body size {size}")
    return await reader.readexactly(size)


def _message_id(params: list[bytes], command: str, count: int) -> bytes:
    if len(params) < count:
        raise ClientError("E_INVALID", f"{command} insufficient number of params")
    if len(params[1]) != MSG_ID_LENGTH:
        raise ClientError("E_INVALID", "Invalid Message ID")
    return params[1]


def _topic_param(params: list[bytes], command: str) -> str:
    if len(params) < 2:
        raise ClientError("E_INVALID", f"{command} insufficient number of parameters")
    topic = params[1].decode(errors="replace")
    if not valid_name(topic):
        raise ClientError("E_BAD_TOPIC", f"{command} topic name {topic!r} is not valid")
    return topic


def _identify(broker, client, data: dict) -> bytes:
    heartbeat = int(data.get("heartbeat_interval", 0))
    if heartbeat == -1:
        client.heartbeat_interval = 0.0
    elif heartbeat != 0:
        if not 1000 <= heartbeat <= MAX_HEARTBEAT_MS:
            raise ClientError("E_BAD_BODY", f"IDENTIFY heartbeat interval ({heartbeat}) is invalid")
        client.heartbeat_interval = heartbeat / 1000
    msg_timeout = int(data.get("msg_timeout", 0))
    if msg_timeout:
        if not 1000 <= msg_timeout <= broker.max_msg_timeout * 1000:
            raise ClientError("E_BAD_BODY", f"IDENTIFY msg timeout ({msg_timeout}) is invalid")
        client.msg_timeout = msg_timeout / 1000
    client.identify, client.identified = data, True
    if not data.get("feature_negotiation"):
        return b"OK"
    return json.dumps({
        "max_rdy_count": broker.max_rdy_count, "version": VERSION,
        "max_msg_timeout": int(broker.max_msg_timeout * 1000), "msg_timeout": int(client.msg_timeout * 1000),
        "tls_v1": False, "deflate": False, "deflate_level": 6, "max_deflate_level": 6, "snappy": False,
        "sample_rate": 0, "auth_required": False,
        "output_buffer_size": int(data.get("output_buffer_size", 16384)),
        "output_buffer_timeout": int(data.get("output_buffer_timeout", 250)),
    }).encode()


async def execute(broker, client, params: list[bytes], reader: asyncio.StreamReader) -> bytes | None:
    """Run one command; returns the response frame's data, None for no response; raises ClientError."""
    command = params[0].decode(errors="replace")
    if command == "IDENTIFY":
        if client.state != "init":
            raise ClientError("E_INVALID", "cannot IDENTIFY in current state")
        body = await _read_body(reader, command, MAX_BODY_SIZE)
        try:
            data = json.loads(body)
        except ValueError:
            raise ClientError("E_BAD_BODY", "IDENTIFY failed to decode JSON body") from None
        return _identify(broker, client, data)
    if command == "SUB":
        if client.state != "init":
            raise ClientError("E_INVALID", "cannot SUB in current state")
        if client.heartbeat_interval <= 0:
            raise ClientError("E_INVALID", "cannot SUB with heartbeats disabled")
        if len(params) < 3:
            raise ClientError("E_INVALID", "SUB insufficient number of parameters")
        topic, channel = params[1].decode(errors="replace"), params[2].decode(errors="replace")
        if not valid_name(topic):
            raise ClientError("E_BAD_TOPIC", f"SUB topic name {topic!r} is not valid")
        if not valid_name(channel):
            raise ClientError("E_BAD_CHANNEL", f"SUB channel name {channel!r} is not valid")
        chan = broker._topic(topic).channel(channel)
        client.channel, client.state = chan, "subscribed"
        chan.clients.append(client)
        return b"OK"
    if command == "RDY":
        if client.state == "closing":
            return None
        if client.state != "subscribed":
            raise ClientError("E_INVALID", "cannot RDY in current state")
        try:
            count = int(params[1]) if len(params) > 1 else 1
        except ValueError:
            raise ClientError("E_INVALID", f"RDY could not parse count {params[1].decode(errors='replace')}") from None
        if not 0 <= count <= broker.max_rdy_count:
            raise ClientError("E_INVALID", f"RDY count {count} out of range 0-{broker.max_rdy_count}")
        client.ready_count = count
        broker._pump(client.channel)
        return None
    if command in ("FIN", "REQ", "TOUCH"):
        if client.state not in ("subscribed", "closing"):
            raise ClientError("E_INVALID", f"cannot {command} in current state")
        message_id = _message_id(params, command, 3 if command == "REQ" else 2)
        if command == "FIN" and broker.drop_fins > 0:
            broker.drop_fins -= 1  # lost in transit: the message stays in flight until it times out
        elif command == "FIN":
            client.channel.finish(client, message_id)
        elif command == "TOUCH":
            client.channel.touch(client, message_id, client.msg_timeout)
        else:
            try:
                delay_ms = int(params[2])
            except ValueError:
                raise ClientError("E_INVALID", f"REQ could not parse timeout {params[2].decode(errors='replace')}") from None
            client.channel.requeue(client, message_id, min(max(delay_ms, 0), MAX_REQ_TIMEOUT_MS))
        broker._pump(client.channel)
        return None
    if command == "NOP":
        return None
    if command == "CLS":
        if client.state != "subscribed":
            raise ClientError("E_INVALID", "cannot CLS in current state")
        client.state = "closing"
        return b"CLOSE_WAIT"
    if command in ("PUB", "DPUB"):
        topic = _topic_param(params, command)
        defer_ms = 0
        if command == "DPUB":
            try:
                defer_ms = int(params[2])
            except (IndexError, ValueError):
                raise ClientError("E_INVALID", "DPUB could not parse timeout") from None
            if not 0 <= defer_ms <= MAX_REQ_TIMEOUT_MS:
                raise ClientError("E_INVALID", f"DPUB timeout {defer_ms} out of range 0-{MAX_REQ_TIMEOUT_MS}")
        body = await _read_body(reader, command, MAX_MSG_SIZE)
        await broker._publish(topic, [body], defer_ms)
        return b"OK"
    if command == "MPUB":
        topic = _topic_param(params, command)
        body = await _read_body(reader, command, MAX_BODY_SIZE)
        count, offset, bodies = struct.unpack(">i", body[:4])[0] if len(body) >= 4 else 0, 4, []
        if count <= 0:
            raise ClientError("E_BAD_BODY", "MPUB invalid message count")
        for index in range(count):
            size = struct.unpack(">i", body[offset:offset + 4])[0] if offset + 4 <= len(body) else -1
            if size <= 0 or offset + 4 + size > len(body):
                raise ClientError("E_BAD_MESSAGE", f"MPUB invalid message({index}) body size {size}")
            bodies.append(body[offset + 4:offset + 4 + size])
            offset += 4 + size
        await broker._publish(topic, bodies)
        return b"OK"
    if command == "AUTH":
        raise ClientError("E_AUTH_DISABLED", "AUTH disabled")
    raise ClientError("E_INVALID", f"invalid command {command}")


def _http_response(writer: asyncio.StreamWriter, status: int, body: bytes, content_type: str = "text/plain") -> None:
    reason = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed"}[status]
    writer.write(f"HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
                 f"Connection: close\r\n\r\n".encode() + body)


async def serve_http(broker, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """One request per connection: POST /pub?topic=, POST /mpub?topic= (one message per line), GET /lookup?topic=, GET /ping."""
    try:
        method, target, _ = (await reader.readline()).decode("latin-1").split(" ", 2)
        headers = {}
        while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        body = await reader.readexactly(int(headers.get("content-length", 0)))
        url = urlsplit(target)
        query = {key: values[0] for key, values in parse_qs(url.query).items()}
        error = lambda text: _http_response(writer, 400, json.dumps({"message": text}).encode(), "application/json")  # noqa: E731
        if url.path == "/ping":
            _http_response(writer, 200, b"OK")
        elif url.path in ("/pub", "/mpub"):
            topic = query.get("topic", "")
            if method != "POST":
                _http_response(writer, 405, b'{"message":"METHOD_NOT_ALLOWED"}', "application/json")
            elif not topic:
                error("MISSING_ARG_TOPIC")
            elif not valid_name(topic):
                error("INVALID_TOPIC")
            elif not body:
                error("MSG_EMPTY")
            else:
                bodies = [body] if url.path == "/pub" else [m for m in body.split(b"\n") if m]
                await broker._publish(topic, bodies, int(query.get("defer", 0)))
                _http_response(writer, 200, b"OK")
        elif url.path == "/lookup":
            topic = query.get("topic", "")
            if topic not in broker.topics:
                _http_response(writer, 404, b'{"message":"TOPIC_NOT_FOUND"}', "application/json")
            else:
                _http_response(writer, 200, json.dumps({
                    "channels": sorted(broker.topics[topic].channels),
                    "producers": [{"remote_address": broker.tcp_address, "hostname": "localhost",
                                   "broadcast_address": "127.0.0.1", "tcp_port": broker.tcp_port,
                                   "http_port": broker.http_port, "version": VERSION}],
                }).encode(), "application/json")
        else:
            _http_response(writer, 404, b'{"message":"NOT_FOUND"}', "application/json")
        await writer.drain()
    except (ValueError, asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()
