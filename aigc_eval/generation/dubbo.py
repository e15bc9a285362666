"""A small client for the image-generation service over Dubbo, with two transports.

- `jsonrpc`: providers registered in ZooKeeper under /dubbo/<interface>/providers as
  jsonrpc:// (or http://) URLs, called through dubbo-python3's DubboClient (package
  `dubbo_client`), which picks a provider by version, group, weight and `disabled` overrides.
- `telnet`: Dubbo's `invoke com.foo.Service.method(args)` command over a TCP socket to one
  provider (`host:port` of the dubbo protocol, or of the Dubbo 3 QoS port), for providers that
  export only the native dubbo protocol.

Both return the decoded JSON result, or raise one of:
TransientError (worth retrying: connection refused or reset, timeout, no provider right now,
HTTP 502/503/504), ServiceError (the service answered about this request: it failed,
rejected the arguments, or replied with something unreadable) and SetupError (nothing can work:
ZooKeeper unreachable, no provider registered, no such service or method, broken install).
Used by generate_request.py; not run on its own.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
import warnings
from dataclasses import dataclass
from typing import Any, Sequence
from urllib.parse import parse_qsl, unquote, urlparse

log = logging.getLogger("aigc_eval")

TELNET_PROMPT = "dubbo>"
ZOOKEEPER_ROOT = "/dubbo"


class DubboCallError(Exception):
    """A call failed; `kind` is the short name written to the error file's error_type."""

    retryable = False

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


class TransientError(DubboCallError):
    """The call may succeed if tried again later."""

    retryable = True


class ServiceError(DubboCallError):
    """The service answered about this request; trying again would give the same answer."""


class SetupError(RuntimeError):
    """The service cannot be used at all (configuration, discovery or installation)."""


@dataclass(frozen=True)
class ServiceAddress:
    """What to call: the Dubbo interface, method, version and group."""

    interface: str
    method: str
    version: str = ""
    group: str = ""


def parse_host_port(text: str, flag: str) -> tuple[str, int]:
    """'host:port' -> (host, port); ValueError naming `flag` otherwise."""
    host, sep, port = text.strip().rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{flag} {text!r}: expected host:port, such as 127.0.0.1:20880")
    return host.strip("[]"), int(port)


# ---------------------------------------------------------------- telnet


def _strip_telnet_noise(text: str) -> str:
    """The last reply between prompts, without 'Use default service' and 'elapsed' lines."""
    segments = [part.strip() for part in text.replace("\r\n", "\n").split(TELNET_PROMPT)]
    reply = next((part for part in reversed(segments) if part), "")
    lines = [line for line in reply.split("\n") if not line.startswith("Use default service")]
    while lines and (not lines[-1].strip() or lines[-1].startswith("elapsed:")):
        lines.pop()
    return "\n".join(lines).strip()


def parse_telnet_reply(text: str, address: ServiceAddress) -> Any:
    """Decode the reply to `invoke`: Dubbo 2.6's `<json>\\r\\nelapsed: N ms.\\r\\ndubbo>` or
    2.7's and Dubbo 3 QoS's `result: <json>` (optionally after `Use default service ...`).

    Raises SetupError for `No such service`, `No such method` and `Unsupported command`
    (every row would fail the same way), ServiceError for `Failed to invoke method ...`,
    bad arguments and any reply that is not JSON.
    """
    reply = _strip_telnet_noise(text)
    target = f"{address.interface}.{address.method}"
    if reply.startswith(("No such service", "No such method", "Unsupported command")):
        hint = " (is the provider's telnet/QoS port right, and does it allow invoke?)" if reply.startswith("Unsupported") else ""
        raise SetupError(f"invoke {target}: the provider answered {reply.splitlines()[0]!r}{hint}")
    if reply.startswith("Failed to invoke method"):
        raise ServiceError("ServiceError", reply.replace("\n", " ")[:500])
    if reply.startswith("result:"):
        reply = reply[len("result:"):].strip()
    try:
        return json.loads(reply)
    except json.JSONDecodeError:
        raise ServiceError("BadResponse", f"invoke {target}: not a JSON result: {reply[:300]!r}") from None


class TelnetTransport:
    """`invoke` over a fresh TCP connection per call (Dubbo's telnet handler, or the QoS port)."""

    def __init__(self, provider: str, address: ServiceAddress, timeout: float):
        self.host, self.port = parse_host_port(provider, "--provider")
        self.address = address
        self.timeout = timeout

    def describe(self) -> str:
        return f"telnet {self.host}:{self.port} {self.address.interface}.{self.address.method}"

    def command(self, args: Sequence[Any]) -> bytes:
        """The invoke line; arguments as ASCII-only JSON so the provider's charset cannot mangle them."""
        text = ",".join(json.dumps(arg, ensure_ascii=True, separators=(",", ":")) for arg in args)
        return f"invoke {self.address.interface}.{self.address.method}({text})\r\n".encode("ascii")

    def call(self, args: Sequence[Any]) -> Any:
        where = f"{self.host}:{self.port}"
        deadline = time.monotonic() + self.timeout
        try:
            # The command goes out at once: Dubbo 3's QoS port prints its banner only to
            # clients that stay silent for 500 ms, so the only prompt we read is the reply's.
            with socket.create_connection((self.host, self.port), timeout=self.timeout) as sock:
                sock.sendall(self.command(args))
                chunks: list[bytes] = []
                while not b"".join(chunks).rstrip().endswith(TELNET_PROMPT.encode()):
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise socket.timeout()
                    sock.settimeout(remaining)
                    chunk = sock.recv(65536)
                    if not chunk:
                        break
                    chunks.append(chunk)
        except socket.timeout:
            raise TransientError("Timeout", f"{where}: no complete reply within {self.timeout:g} s") from None
        except ConnectionRefusedError:
            raise TransientError("ConnectionRefused", f"{where}: connection refused") from None
        except OSError as exc:
            raise TransientError("ConnectionError", f"{where}: {exc.strerror or exc}") from None
        text = b"".join(chunks).decode("utf-8", errors="replace")
        if not text.strip():
            raise TransientError("ConnectionError", f"{where}: connection closed without a reply")
        return parse_telnet_reply(text, self.address)

    def close(self) -> None:
        pass


# ---------------------------------------------------------------- jsonrpc through dubbo_client

# dubbo_client builds a jsonrpcclient HTTPClient per call with no timeout, so a hung provider
# would block a worker for ever. The class it uses is swapped (once) for a subclass that reads
# the calling thread's timeout; everything else in dubbo_client runs unchanged.
_call_options = threading.local()


EXTRA_MODULES = {"dubbo_client", "jsonrpcclient", "kazoo"}  # what the [dubbo] extra installs
INSTALL_EXTRA = "pip install 'aigc-image-eval[dubbo]' (or pip install -r requirements.txt)"


def _load_dubbo_client():
    """Import dubbo_client, turning its install problems into one clear SetupError: the [dubbo]
    extra not installed, or a jsonrpcclient or setuptools too new for dubbo-python3."""
    try:
        with warnings.catch_warnings():
            # jsonrpcclient 3.x imports pkg_resources, which warns on every import.
            warnings.filterwarnings("ignore", message="pkg_resources is deprecated")
            import kazoo  # noqa: F401 - check_registry's, imported here so that its absence says the same
            import dubbo_client
            import jsonrpcclient.parse  # noqa: F401 - the module that imports pkg_resources
            from dubbo_client import rpclib
            from jsonrpcclient.clients.http_client import HTTPClient
    except ImportError as exc:
        missing = (exc.name or "").partition(".")[0]
        if isinstance(exc, ModuleNotFoundError) and missing in EXTRA_MODULES and missing == exc.name:
            raise SetupError(f"--transport jsonrpc needs the Dubbo client ({missing} is not installed): "
                             f"{INSTALL_EXTRA}; --transport telnet needs none of it") from None
        try:
            from importlib.metadata import version

            found = f"jsonrpcclient {version('jsonrpcclient')} is installed"
        except Exception:  # noqa: BLE001 - only for the message
            found = "jsonrpcclient is not installed"
        raise SetupError(
            f"dubbo-python3 cannot be imported ({exc}); it needs jsonrpcclient 3.x and pkg_resources, "
            f"and {found}: pip install 'jsonrpcclient[requests]==3.3.6' 'setuptools<82', or {INSTALL_EXTRA}"
        ) from None
    if not getattr(rpclib.HTTPClient, "_aigc_timeout", False):

        class TimedHTTPClient(HTTPClient):
            _aigc_timeout = True

            def send_message(self, request: str, response_expected: bool, **kwargs: Any):
                kwargs.setdefault("timeout", getattr(_call_options, "timeout", None))
                return super().send_message(request, response_expected, **kwargs)

            def validate_response(self, response) -> None:
                # Dubbo's jsonrpc (jsonrpc4j) answers a failed call with HTTP 500 and a JSON-RPC
                # error body; let that body through so the service's own message is kept.
                try:
                    body = json.loads(response.text)
                except (ValueError, TypeError):
                    body = None
                if not (isinstance(body, dict) and isinstance(body.get("error"), dict)):
                    super().validate_response(response)

        rpclib.HTTPClient = TimedHTTPClient
    for name in ("dubbo", "kazoo", "jsonrpcclient"):
        # dubbo_client logs every watch event and jsonrpcclient every request at INFO.
        logging.getLogger(name).setLevel(logging.WARNING)
    return dubbo_client


def _causes(exc: BaseException) -> list[BaseException]:
    """exc and the exceptions it was raised while handling, innermost last."""
    chain, seen = [], set()
    while exc is not None and id(exc) not in seen:
        chain.append(exc)
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return chain


def classify_jsonrpc_failure(exc: BaseException, where: str) -> Exception:
    """The TransientError, ServiceError or SetupError that a DubboClient.call failure means.

    DubboClient re-raises most failures badly: an error code in its table raises TypeError
    (its classes take no `code`), one outside the table AttributeError, a code-less error
    AssertionError, anything else InternalError. The original exception is always on the
    __context__ chain, so that is what is classified.
    """
    import requests
    from dubbo_client.rpcerror import NoProvider
    from jsonrpcclient.exceptions import (
        ReceivedErrorResponseError,
        ReceivedNon2xxResponseError,
    )

    for cause in reversed(_causes(exc)):
        if isinstance(cause, NoProvider):
            return TransientError("NoProvider", f"{where}: no provider is registered in ZooKeeper right now")
        if isinstance(cause, requests.exceptions.Timeout):
            return TransientError("Timeout", f"{where}: no reply within the timeout ({cause.__class__.__name__})")
        if isinstance(cause, requests.exceptions.ConnectionError):
            text = str(cause)
            kind = "ConnectionRefused" if "refused" in text.lower() else "ConnectionError"
            return TransientError(kind, f"{where}: {text[:300]}")
        if isinstance(cause, ReceivedErrorResponseError):
            code, message = cause.response.code, cause.response.message
            data = cause.response.data
            detail = f"; data: {json.dumps(data, ensure_ascii=False)[:300]}" if data not in (None, "") else ""
            if code == -32601:
                return SetupError(f"{where}: the provider has no such method (JSON-RPC {code}: {message})")
            return ServiceError("ServiceError", f"{where}: JSON-RPC error {code}: {message}{detail}")
        if isinstance(cause, ReceivedNon2xxResponseError):
            if cause.code in (502, 503, 504) or cause.code == 500:
                return TransientError(f"HTTP{cause.code}", f"{where}: HTTP {cause.code} without a JSON-RPC answer")
            if cause.code == 404:
                return SetupError(f"{where}: HTTP 404, the provider does not serve this interface")
            return ServiceError(f"HTTP{cause.code}", f"{where}: HTTP {cause.code}")
    root = _causes(exc)[-1]
    return ServiceError("BadResponse", f"{where}: unreadable reply ({root.__class__.__name__}: {str(root)[:300]})")


def _providers_summary(children: Sequence[str]) -> str:
    urls = [urlparse(unquote(child)) for child in children]
    parts = []
    for url in urls[:5]:
        query = dict(parse_qsl(url.query))
        parts.append(f"{url.scheme}://{url.netloc} version={query.get('version', '')!r} group={query.get('group', '')!r}")
    return "; ".join(parts) + (f" and {len(urls) - 5} more" if len(urls) > 5 else "")


def check_registry(zookeeper: str, address: ServiceAddress, connect_timeout: float) -> None:
    """Fail early and clearly where dubbo_client would hang or raise NoNodeError.

    Connects with its own short timeout (ZookeeperRegistry waits 15 s, then says only
    'Connection time-out'), checks that a jsonrpc provider with the version and group is
    registered, and creates the `configurators` node when missing, as Java consumers do,
    since dubbo_client's subscribe raises NoNodeError without it.
    """
    from kazoo.client import KazooClient
    from kazoo.exceptions import KazooException, NoAuthError
    from kazoo.handlers.threading import KazooTimeoutError

    client = KazooClient(hosts=zookeeper, timeout=connect_timeout)
    kazoo_log = logging.getLogger("kazoo")
    level = kazoo_log.level
    kazoo_log.setLevel(logging.CRITICAL)  # its retry warnings would bury the one-line message below
    try:
        client.start(timeout=connect_timeout)
    except KazooTimeoutError:
        raise SetupError(f"ZooKeeper at {zookeeper} did not answer within {connect_timeout:g} s; check --zookeeper") from None
    finally:
        kazoo_log.setLevel(level)
    try:
        base = f"{ZOOKEEPER_ROOT}/{address.interface}"
        providers_path = f"{base}/providers"
        children = client.get_children(providers_path) if client.exists(providers_path) else []
        if not children:
            raise SetupError(f"no provider of {address.interface} is registered in ZooKeeper at {zookeeper} "
                             f"({providers_path} is missing or empty); check --interface")
        wanted = [
            child for child in children
            if urlparse(unquote(child)).scheme in ("jsonrpc", "http")
            and dict(parse_qsl(urlparse(unquote(child)).query)).get("version", "") == address.version
            and dict(parse_qsl(urlparse(unquote(child)).query)).get("group", "") == address.group
        ]
        if not wanted:
            raise SetupError(
                f"no jsonrpc provider of {address.interface} with version={address.version!r} group={address.group!r} "
                f"in ZooKeeper at {zookeeper}; registered: {_providers_summary(children)} "
                "(dubbo:// providers need --transport telnet --provider host:port)"
            )
        try:
            client.ensure_path(f"{base}/configurators")
        except NoAuthError:
            raise SetupError(f"{base}/configurators is missing and this ZooKeeper user may not create it; "
                             "dubbo-python3 cannot subscribe without it") from None
    except KazooException as exc:
        raise SetupError(f"ZooKeeper at {zookeeper}: {exc.__class__.__name__} {exc}") from None
    finally:
        client.stop()
        client.close()


class JsonRpcTransport:
    """dubbo_client's DubboClient on a ZookeeperRegistry, with a per-call timeout."""

    def __init__(self, zookeeper: str, address: ServiceAddress, timeout: float, connect_timeout: float = 10.0):
        dubbo_client = _load_dubbo_client()
        check_registry(zookeeper, address, connect_timeout)
        self.address = address
        self.timeout = timeout
        self.zookeeper = zookeeper
        self.registry = None
        try:
            self.registry = dubbo_client.ZookeeperRegistry(zookeeper)
            self.client = dubbo_client.DubboClient(address.interface, self.registry,
                                                   version=address.version, group=address.group)
        except Exception as exc:  # noqa: BLE001 - kazoo and dubbo_client raise many kinds
            self.close()
            raise SetupError(f"dubbo-python3 could not subscribe to {address.interface} in ZooKeeper at "
                             f"{zookeeper}: {exc.__class__.__name__} {exc}") from None

    def describe(self) -> str:
        return f"jsonrpc via ZooKeeper {self.zookeeper} {self.address.interface}.{self.address.method}"

    def call(self, args: Sequence[Any]) -> Any:
        _call_options.timeout = self.timeout
        where = f"{self.address.interface}.{self.address.method}"
        try:
            return self.client.call(self.address.method, *args)
        except Exception as exc:  # noqa: BLE001 - classified from its cause chain
            error = classify_jsonrpc_failure(exc, where)
        raise error

    def close(self) -> None:
        # ZookeeperRegistry has no close(); stopping its client ends the session, which removes
        # the consumer node dubbo_client registered and stops kazoo's threads.
        zk = getattr(self.registry, "_ZookeeperRegistry__zk", None)
        if zk is not None:
            zk.stop()
            zk.close()


TRANSPORTS = {"jsonrpc": JsonRpcTransport, "telnet": TelnetTransport}
