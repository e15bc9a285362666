"""A real ZooKeeper server for the tests: Debian's `zookeeper` package, started standalone on a
free loopback port with its own data folder and config, stopped at the end."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

# Debian's jar names its dependencies in its manifest's Class-Path; slf4j-nop keeps SLF4J quiet.
DEBIAN_JAR = Path("/usr/share/java/zookeeper.jar")
SLF4J_NOP = Path("/usr/share/java/slf4j-nop.jar")
INSTALL_HINT = ("ZooKeeper is not installed: run `apt-get install zookeeper` (Debian/Ubuntu; bash scripts/test.sh does it) "
                "or set ZOOKEEPER_CLASSPATH to the server's jars")


def zookeeper_classpath() -> str | None:
    """The server's classpath: $ZOOKEEPER_CLASSPATH, or Debian's jar; None when neither exists."""
    if os.environ.get("ZOOKEEPER_CLASSPATH"):
        return os.environ["ZOOKEEPER_CLASSPATH"]
    if DEBIAN_JAR.is_file():
        return os.pathsep.join(str(p) for p in (DEBIAN_JAR, SLF4J_NOP) if p.is_file())
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def four_letter_word(port: int, word: str = "ruok", timeout: float = 0.5) -> str:
    """Send a ZooKeeper four-letter command; '' when nothing answers."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.sendall(word.encode())
            return sock.recv(64).decode(errors="replace")
    except OSError:
        return ""


class ZooKeeperServer:
    """One standalone ZooKeeper on 127.0.0.1; `address` is its host:port."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.port = 0
        self.process: subprocess.Popen | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, wait_seconds: float = 60.0) -> "ZooKeeperServer":
        classpath, java = zookeeper_classpath(), shutil.which("java")
        if classpath is None or java is None:
            raise RuntimeError(INSTALL_HINT if classpath is None else "java is not on PATH; ZooKeeper needs Java 8 or later")
        self.port = free_port()
        data = self.folder / "data"
        data.mkdir(parents=True, exist_ok=True)
        config = self.folder / "zoo.cfg"
        config.write_text(
            "tickTime=500\n"  # sessions of closed clients expire within seconds
            f"dataDir={data}\nclientPort={self.port}\nclientPortAddress=127.0.0.1\n"
            "admin.enableServer=false\n4lw.commands.whitelist=ruok,srvr\nmaxSessionTimeout=20000\n"
        )
        log = open(self.folder / "zookeeper.log", "wb")
        self.process = subprocess.Popen(
            [java, "-Xmx128m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-cp", classpath,
             "org.apache.zookeeper.server.ZooKeeperServerMain", str(config)],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
        log.close()
        deadline = time.monotonic() + wait_seconds
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                tail = (self.folder / "zookeeper.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"ZooKeeper exited with code {self.process.returncode}:\n{tail}")
            if four_letter_word(self.port) == "imok":
                return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"ZooKeeper did not answer ruok on {self.address} within {wait_seconds:g} s")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
