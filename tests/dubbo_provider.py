"""Test providers of the image-generation service, all on 127.0.0.1.

- ImageServer: a plain HTTP server with a small PNG at every /gen/<name>.png.
- GenerationService: what the provider does for one call (two image URLs per request), and
  the faults it can be told to inject per call: error responses, timeouts, dropped
  connections, HTTP 503.
- JsonRpcProvider: answers JSON-RPC 2.0 POSTs to /<interface> the way Dubbo's jsonrpc protocol
  (jsonrpc4j) does, HTTP 500 plus an error body for a failed call, and registers itself in
  ZooKeeper as a Dubbo provider does: a URL-encoded jsonrpc:// URL under
  /dubbo/<interface>/providers (ephemeral), plus the configurators node.
- TelnetProvider: answers `invoke iface.method(args)` like Dubbo 2.6's telnet handler, 2.7's,
  or Dubbo 3's QoS port (banner for clients silent for 500 ms), ending each reply with `dubbo>`.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import select
import socket
import socketserver
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable
from urllib.parse import quote, urlencode

from PIL import Image

Fault = Callable[[str, int], str]  # (request key, nth call for that key, from 1) -> action
# Actions: "ok", "error" (-32001, outside dubbo_client's table), "invalid-params" (-32602, inside it),
# "timeout" (stall hang_seconds), "drop" (close without answering), "http503".


def transient_faults(rate_percent: int, seed: str = "s") -> Fault:
    """A deterministic fault per (key, call number): drop, timeout or HTTP 503 for `rate_percent`%."""
    def fault(key: str, nth: int) -> str:
        digest = hashlib.sha256(f"{seed}|{key}|{nth}".encode()).digest()
        if digest[0] * 100 // 256 >= rate_percent:
            return "ok"
        return ("drop", "timeout", "http503")[digest[1] % 3]
    return fault


def fault_is_transient_failure(fault: Fault, key: str, attempts: int) -> bool:
    """Whether the first `attempts` calls for `key` all fail under `fault`."""
    return all(fault(key, n) != "ok" for n in range(1, attempts + 1))


class _Server:
    """A threading server on an ephemeral loopback port, run in a daemon thread."""

    server: socketserver.BaseServer

    def _serve(self) -> None:
        self.server.daemon_threads = True
        # socketserver listens with a backlog of 5; more concurrent workers would see refused
        # connections that the tests did not ask for.
        self.server.socket.listen(128)
        # A short poll interval keeps shutdown() quick.
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class ImageServer(_Server):
    """Serves a small solid-colour PNG (colour from the name) at /gen/<name>.png."""

    def __init__(self):
        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                digest = hashlib.sha256(self.path.encode()).digest()
                buffer = io.BytesIO()
                Image.new("RGB", (64, 48), tuple(digest[:3])).save(buffer, "PNG")
                body = buffer.getvalue()
                self.send_response(200 if self.path.startswith("/gen/") else 404)
                self.send_header("Content-Type", "image/png")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._serve()
        self.base_url = f"http://127.0.0.1:{self.port}"


class GenerationService:
    """The provider's logic: two image URLs per call, faults chosen by `fault`."""

    def __init__(self, image_base: str, fault: Fault | None = None, images_per_call: int = 2,
                 delay: float = 0.0, hang_seconds: float = 3.0):
        self.image_base = image_base
        self.fault = fault or (lambda key, nth: "ok")
        self.images_per_call = images_per_call
        self.delay = delay  # seconds every call takes
        self.hang_seconds = hang_seconds  # how long a "timeout" fault stalls
        self.calls: Counter[str] = Counter()
        self.actions: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    def decide(self, args: list) -> tuple[str, str]:
        """(request key, action) for a call, counting it."""
        first = args[0] if args else None
        key = first.get("productImageUrl", "") if isinstance(first, dict) else json.dumps(args)
        with self._lock:
            self.calls[key] += 1
            action = self.fault(key, self.calls[key])
            self.actions.append((key, action))
        if self.delay:
            time.sleep(self.delay)
        if action == "timeout":
            time.sleep(self.hang_seconds)
        return key, action

    def result(self, key: str) -> dict:
        name = hashlib.sha256(key.encode()).hexdigest()[:12]
        return {"imageUrls": [f"{self.image_base}/gen/{name}-{i}.png" for i in range(self.images_per_call)],
                "taskId": name}


def provider_url(protocol: str, port: int, interface: str, methods: str, version: str, group: str) -> str:
    """A provider URL as Dubbo registers it (before URL-encoding as a node name)."""
    query = {"anyhost": "true", "application": "aigc-image-generator", "dubbo": "2.6.2", "generic": "false",
             "interface": interface, "methods": methods, "pid": str(os.getpid()), "side": "provider",
             "timestamp": str(int(time.time() * 1000)), "version": version}
    if group:
        query["group"] = group
    return f"{protocol}://127.0.0.1:{port}/{interface}?{urlencode(query)}"


class JsonRpcProvider(_Server):
    """Dubbo's jsonrpc protocol for one interface: POST /<interface>, JSON-RPC 2.0."""

    def __init__(self, service: GenerationService, interface: str, method: str):
        provider = self
        self.service, self.interface, self.method = service, interface, method
        self.node: str | None = None

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _send(self, status: int, payload: dict | None, text: str = "") -> None:
                body = json.dumps(payload).encode() if payload is not None else text.encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json-rpc" if payload is not None else "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self):
                try:
                    self._post()
                except OSError:  # the client gave up (timeout) or went away: nothing to answer
                    self.close_connection = True

            def _post(self):
                request = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                rid = request.get("id")
                if self.path != f"/{provider.interface}":
                    return self._send(404, None, "Not Found")
                if request.get("method") != provider.method:
                    return self._send(404, {"jsonrpc": "2.0", "id": rid, "error": {"code": -32601, "message": "method not found"}})
                key, action = provider.service.decide(request.get("params") or [])
                if action == "drop":
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if action == "http503":
                    return self._send(503, None, "Service Unavailable")
                if action == "error":  # a Java exception in the service, as jsonrpc4j reports it
                    return self._send(500, {"jsonrpc": "2.0", "id": rid, "error": {
                        "code": -32001, "message": f"prompt rejected for {key}",
                        "data": {"exceptionTypeName": "java.lang.IllegalArgumentException", "message": "prompt rejected"}}})
                if action == "invalid-params":
                    return self._send(500, {"jsonrpc": "2.0", "id": rid, "error": {"code": -32602, "message": "Invalid method parameters"}})
                self._send(200, {"jsonrpc": "2.0", "id": rid, "result": provider.service.result(key)})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._serve()

    def register(self, zk, version: str = "1.0.0", group: str = "", configurators: bool = True) -> str:
        """Register like a Dubbo provider: ephemeral URL node under providers, configurators node."""
        base = f"/dubbo/{self.interface}"
        zk.ensure_path(f"{base}/providers")
        if configurators:
            zk.ensure_path(f"{base}/configurators")
        url = provider_url("jsonrpc", self.port, self.interface, self.method, version, group)
        self.node = f"{base}/providers/{quote(url, safe='')}"
        zk.create(self.node, ephemeral=True)
        return url

    def deregister(self, zk) -> None:
        if self.node and zk.exists(self.node):
            zk.delete(self.node)


INVOKE = re.compile(r"^invoke\s+(?:(?P<service>[\w.$]+)\.)?(?P<method>\w+)\((?P<args>.*)\)\s*$", re.S)
QOS_BANNER = "   ___   __  __ ___   ___   ____     \n  / _ \\ / / / // _ ) / _ ) / __ \\  \n / // // /_/ // _  |/ _  |/ /_/ /    \n/____/ \\____//____//____/ \\____/   \n"


class TelnetProvider(_Server):
    """Dubbo's telnet `invoke`, in the reply format of `style`: "2.6", "2.7" or "3" (QoS)."""

    def __init__(self, service: GenerationService, interface: str, method: str, style: str = "2.6"):
        provider = self
        self.service, self.interface, self.method, self.style = service, interface, method, style

        class Handler(socketserver.StreamRequestHandler):
            def handle(self):
                try:
                    self._session()
                except OSError:  # the client gave up (timeout) or went away: nothing to answer
                    pass

            def _session(self):
                if provider.style == "3" and not select.select([self.connection], [], [], 0.5)[0]:
                    self.wfile.write((QOS_BANNER + "dubbo>").encode())  # QoS greets clients silent for 500 ms
                while True:
                    line = self.rfile.readline()
                    if not line:
                        return
                    text = line.decode("utf-8").strip()
                    if text in ("exit", "quit"):
                        return
                    reply = provider.answer(text)
                    if reply is None:  # a dropped connection
                        self.connection.shutdown(socket.SHUT_RDWR)
                        return
                    self.wfile.write((reply + "\r\ndubbo>").encode("utf-8"))

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self._serve()
        self.address = f"127.0.0.1:{self.port}"

    def answer(self, text: str) -> str | None:
        if not text:
            return ""
        match = INVOKE.match(text)
        if not match:
            return f"Unsupported command: {text.split()[0]}"
        service, method = match.group("service") or self.interface, match.group("method")
        if service != self.interface:
            return f"No such service {service}"
        if method != self.method:
            return f"No such method {method} in service {service}"
        try:
            args = json.loads(f"[{match.group('args')}]")
        except json.JSONDecodeError:
            return "Invalid json argument, cause: syntax error"
        key, action = self.service.decide(args)
        if action in ("drop", "http503"):
            return None
        if action in ("error", "invalid-params"):
            return (f"Failed to invoke method {method}, cause: java.lang.IllegalArgumentException: "
                    f"prompt rejected for {key}")
        result = json.dumps(self.service.result(key), ensure_ascii=False, separators=(",", ":"))
        if self.style == "2.6":
            return f"{result}\r\nelapsed: 3 ms."
        prefix = f"Use default service {self.interface}.\r\n" if self.style == "2.7" else ""
        return f"{prefix}result: {result}\r\nelapsed: 2 ms."
