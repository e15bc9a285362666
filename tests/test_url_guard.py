"""The SSRF guard: which addresses check_url refuses, and that guarded_session connects only to
addresses it checked at connection time (rebinding, redirects, TLS name checks).

No traffic leaves 127.0.0.1: DNS is a fake resolver (real getaddrinfo only with AI_NUMERICHOST,
which never queries DNS), and "public" hosts reach the loopback test server through a
replaced url_guard._open."""

from __future__ import annotations

import ipaddress
import re
import shutil
import socket
import ssl
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote

import pytest
import requests

from aigc_eval.io import url_guard
from aigc_eval.io.url_guard import BlockedAddress, UnsafeURL, check_url, guarded_session

PUBLIC_V4, PUBLIC_V6 = "93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"
real_getaddrinfo = socket.getaddrinfo


def _info(address: str, port: int) -> tuple:
    ip = ipaddress.ip_address(address)
    if ip.version == 6:
        return (socket.AF_INET6, socket.SOCK_STREAM, 6, "", (address, port, 0, 0))
    return (socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))


class FakeDNS:
    """getaddrinfo for made-up names; numeric hosts parsed locally; anything else fails."""

    def __init__(self, names: dict[str, list[str] | list[list[str]]] | None = None):
        self.names = names or {}
        self.calls: list[str] = []

    def __call__(self, host, port, family=0, type=0, proto=0, flags=0):
        self.calls.append(host)
        answers = self.names.get(host)
        if answers is None:  # numeric forms only: AI_NUMERICHOST never sends a DNS query
            return real_getaddrinfo(host, port, family, socket.SOCK_STREAM, 0, socket.AI_NUMERICHOST)
        if answers and isinstance(answers[0], list):  # a changing answer: rebinding
            answers = answers[min(self.calls.count(host), len(answers)) - 1]
        return [_info(a, port) for a in answers]


@pytest.fixture(autouse=True)
def dns(monkeypatch) -> FakeDNS:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)  # the guard refuses proxies; tests must not meet one
    fake = FakeDNS({"shop.example": [PUBLIC_V4, PUBLIC_V6]})
    monkeypatch.setattr(socket, "getaddrinfo", fake)
    return fake


@pytest.fixture
def server():
    """A loopback server: /img answers bytes, /go?to=URL redirects; records paths and Host headers."""
    seen: list[tuple[str, str]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            seen.append((self.path, self.headers.get("Host", "")))
            if self.path.startswith("/go?to="):
                self.send_response(302)
                self.send_header("Location", unquote(self.path[len("/go?to="):]))
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Length", "5")
            self.end_headers()
            self.wfile.write(b"image")

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True).start()
    httpd.seen = seen
    yield httpd
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def route_public_to(monkeypatch):
    """Make sockets for PUBLIC_V4/PUBLIC_V6 connect to a loopback port instead: the guard has
    already checked the public address by then, which is what these tests look at."""
    opened: list[tuple] = []

    def install(port: int):
        def fake_open(sock, sockaddr):
            opened.append(sockaddr)
            if sockaddr[0] not in (PUBLIC_V4, PUBLIC_V6):
                raise AssertionError(f"guard connected to unchecked {sockaddr}")
            if sock.family != socket.AF_INET:
                raise OSError("no IPv6 here")  # the guard then tries the next checked address
            sock.connect(("127.0.0.1", port))
        monkeypatch.setattr(url_guard, "_open", fake_open)
        return opened
    return install


def test_public_host_passes_with_every_address():
    assert check_url("https://shop.example/a.png") == [ipaddress.ip_address(PUBLIC_V4), ipaddress.ip_address(PUBLIC_V6)]


def test_message_names_url_address_and_reason():
    with pytest.raises(BlockedAddress) as info:
        check_url("http://10.0.0.5/x.png")
    assert str(info.value) == (
        "http://10.0.0.5/x.png resolves to 10.0.0.5, a private address; the service refuses private, loopback, "
        "link-local and metadata addresses (--allow-private-urls lifts this on a closed network)")


@pytest.mark.parametrize("address, reason", [
    ("127.0.0.1", "loopback"), ("127.9.9.9", "loopback"), ("10.1.2.3", "private"), ("172.16.0.1", "private"),
    ("192.168.1.1", "private"), ("100.64.0.1", "shared"), ("169.254.169.254", "metadata"),
    ("100.100.100.200", "metadata"), ("169.254.1.1", "link-local"), ("0.0.0.0", "unspecified"),
    ("224.0.0.1", "multicast"), ("240.0.0.1", "private"), ("255.255.255.255", "private"),
    ("::1", "loopback"), ("::", "unspecified"), ("fc00::1", "private"), ("fd12:3456::1", "private"),
    ("fe80::1", "link-local"), ("ff02::1", "multicast"), ("fec0::1", "site-local"),
    ("fd00:ec2::254", "metadata"), ("::ffff:127.0.0.1", "loopback address (embedded 127.0.0.1)"),
    ("::ffff:10.0.0.1", "private address (embedded 10.0.0.1)"), ("::127.0.0.1", "reserved"),
    ("2002:7f00:1::1", "loopback address (embedded 127.0.0.1)"), ("2002:a9fe:a9fe::1", "metadata"),
    ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "private"), ("64:ff9b::a9fe:a9fe", "metadata"),
])
def test_non_public_addresses_are_refused(address, reason, dns):
    dns.names["evil.example"] = [address]
    with pytest.raises(BlockedAddress, match=re.escape(reason)):
        check_url("http://evil.example/a.png")
    literal = f"[{address}]" if ":" in address else address
    with pytest.raises(BlockedAddress):
        check_url(f"http://{literal}:8080/a.png")


def test_one_private_answer_among_public_ones_is_refused(dns):
    dns.names["mixed.example"] = [PUBLIC_V4, "10.0.0.7"]
    with pytest.raises(BlockedAddress, match="10.0.0.7"):
        check_url("http://mixed.example/a.png")


@pytest.mark.parametrize("url", ["http://2130706433/", "http://0177.0.0.1/", "http://0x7f.1/",
                                 "http://127.1/", "http://017700000001/"])
def test_numeric_spellings_of_loopback_are_refused(url):
    with pytest.raises(BlockedAddress, match="127.0.0.1, a loopback address"):
        check_url(url)


@pytest.mark.parametrize("url", ["http://localhost/a.png", "http://LOCALHOST.:8000/", "http://api.localhost/"])
def test_localhost_names_are_refused_without_a_lookup(url, dns):
    with pytest.raises(BlockedAddress, match="loopback name"):
        check_url(url)
    assert dns.calls == []


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://shop.example/a.png", "gopher://shop.example/",
                                 "shop.example/a.png", "http:///a.png", "http://shop.example:99999/"])
def test_other_schemes_and_malformed_urls_are_refused(url):
    with pytest.raises(UnsafeURL):
        check_url(url)


def test_credentials_are_refused_and_not_echoed():
    with pytest.raises(UnsafeURL, match="credentials") as info:
        check_url("http://admin:hunter2@shop.example/a.png")
    assert "hunter2" not in str(info.value)


def test_unresolvable_host_is_refused():
    with pytest.raises(UnsafeURL, match="does not resolve"):
        check_url("http://nowhere.invalid/a.png")


def test_allow_private_lifts_address_refusals():
    resolve = FakeDNS({"localhost.": ["127.0.0.1"]})
    assert check_url("http://localhost.:1/", allow_private=True, resolve=resolve) == [ipaddress.ip_address("127.0.0.1")]
    assert check_url("http://10.0.0.5/x.png", allow_private=True) == [ipaddress.ip_address("10.0.0.5")]


def test_guarded_session_refuses_loopback_before_connecting(server):
    port = server.server_address[1]
    session = guarded_session(False)
    for url in (f"http://127.0.0.1:{port}/img", f"http://2130706433:{port}/img", f"http://localhost:{port}/img"):
        with pytest.raises(BlockedAddress, match="loopback"):
            session.get(url, timeout=5)
    assert server.seen == []


def test_allow_private_session_fetches_from_loopback(server):
    port = server.server_address[1]
    assert guarded_session(True).get(f"http://127.0.0.1:{port}/img", timeout=5).content == b"image"


def test_connection_goes_to_the_checked_address_with_the_name_as_host(server, route_public_to, dns):
    port = server.server_address[1]
    opened = route_public_to(port)
    response = guarded_session(False).get(f"http://shop.example:{port}/img", timeout=5)
    assert response.content == b"image"
    assert server.seen == [("/img", f"shop.example:{port}")]
    assert opened[0] == (PUBLIC_V4, port)
    assert dns.calls == ["shop.example"]  # one lookup, and the socket used its answer


def test_dns_rebinding_after_the_check_is_refused_at_connection(server, dns):
    port = server.server_address[1]
    dns.names["rebind.example"] = [[PUBLIC_V4], ["127.0.0.1"]]
    assert check_url(f"http://rebind.example:{port}/img")  # first answer: public
    with pytest.raises(BlockedAddress, match="resolves to 127.0.0.1"):
        guarded_session(False).get(f"http://rebind.example:{port}/img", timeout=5)
    assert server.seen == []


@pytest.mark.parametrize("target", ["http://127.0.0.1:{port}/secret", "http://localhost:{port}/secret",
                                    "http://[::ffff:127.0.0.1]:{port}/secret"])
def test_redirect_to_loopback_is_refused(server, route_public_to, target):
    port = server.server_address[1]
    route_public_to(port)
    hop = target.format(port=port)
    with pytest.raises(BlockedAddress) as info:
        guarded_session(False).get(f"http://shop.example:{port}/go?to={hop}", timeout=5)
    assert str(info.value).startswith(hop)  # names the hop refused, not the first URL
    assert [unquote(path) for path, _ in server.seen] == [f"/go?to={hop}"]


def test_redirect_with_credentials_is_refused(server, route_public_to):
    port = server.server_address[1]
    route_public_to(port)
    with pytest.raises(UnsafeURL, match="credentials"):
        guarded_session(False).get(f"http://shop.example:{port}/go?to=http://u:p@shop.example:{port}/img", timeout=5)


def test_proxies_are_refused_rather_than_trusted(server):
    port = server.server_address[1]
    with pytest.raises(UnsafeURL, match="proxy"):
        guarded_session(False).get("http://shop.example/img", proxies={"http": f"http://127.0.0.1:{port}"}, timeout=5)
    assert server.seen == []


def test_base_session_keeps_its_settings():
    base = requests.Session()
    base.headers["User-Agent"] = "probe"
    base.max_redirects = 2
    session = guarded_session(False, base)
    assert session is base and session.headers["User-Agent"] == "probe" and session.max_redirects == 2
    assert isinstance(session.get_adapter("https://x.example/"), url_guard.GuardedAdapter)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_https_checks_the_certificate_against_the_name(tmp_path, route_public_to, dns):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-days", "2", "-subj", "/CN=shop.example", "-addext", "subjectAltName=DNS:shop.example",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    sni: list[str] = []
    context.sni_callback = lambda sock, name, ctx: sni.append(name)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True).start()
    try:
        port = httpd.server_address[1]
        route_public_to(port)
        dns.names["other.example"] = [PUBLIC_V4]
        session = guarded_session(False)
        assert session.get(f"https://shop.example:{port}/", verify=str(cert), timeout=5).content == b"ok"
        assert sni[0] == "shop.example"
        with pytest.raises(requests.exceptions.SSLError):  # same address, a name the cert lacks
            session.get(f"https://other.example:{port}/", verify=str(cert), timeout=5)
    finally:
        httpd.shutdown()
        httpd.server_close()
