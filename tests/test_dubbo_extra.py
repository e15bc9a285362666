"""The Dubbo client as an optional extra, `aigc-image-eval[dubbo]`.

- generate_request.py without the extra: one line saying how to install it, exit 4 (service
  unusable), nothing lost; the missing package is simulated in a child process by an import
  finder that answers for it as Python does for a package that is not installed.
- `pip install aigc-image-eval` without the extra must leave click and jsonschema alone: the
  package's metadata is built as pip builds it (setuptools' PEP 517 hook), and its dependency
  closure is followed through the installed distributions' own metadata; every constraint on
  click or jsonschema in it must allow their current majors. The same walk with the extra finds
  jsonrpcclient 3.x's caps, so the check is shown to catch them.
"""

from __future__ import annotations

import re
import subprocess
import sys
from email.parser import Parser
from importlib import metadata
from pathlib import Path

import pytest
from conftest import ROOT, read_csv, write_csv
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from aigc_eval import columns as col
from aigc_eval.generation.runner import EXIT_SERVICE

HELD_BACK = {"click": "8.1.8", "jsonschema": "4.23.0"}  # current majors' releases that must stay installable


# A finder ahead of the others that answers for `module` as the import system does for a package
# that is not installed: ModuleNotFoundError naming the top-level module.
HIDE = """import sys
class Hidden:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] == {module!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
sys.meta_path.insert(0, Hidden())
"""


def generate_without(module: str, tmp_path: Path, *flags: str) -> subprocess.CompletedProcess:
    """generate_request.py's main() in a child process where `module` cannot be imported."""
    write_csv(tmp_path / "in.csv", [{col.ID: "r-1", col.PROMPT: "背景", col.PRODUCT_IMAGE_URL: "http://x/p.png",
                                     col.CATEGORY: "蛋糕"}])
    code = HIDE.format(module=module) + "from aigc_eval.cli.generate import main; raise SystemExit(main(sys.argv[1:]))"
    args = ["--input", str(tmp_path / "in.csv"), "--output", str(tmp_path / "out.csv"),
            "--error", str(tmp_path / "err.csv"), "--interface", "com.example.ImageService", "--method", "generate",
            "--zookeeper", "127.0.0.1:9", "-q", *flags]
    return subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("module", ["dubbo_client", "jsonrpcclient", "kazoo"])
def test_jsonrpc_without_the_extra_says_how_to_install_it(tmp_path, module):
    run = generate_without(module, tmp_path)
    assert run.returncode == EXIT_SERVICE, run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    assert lines[0] == (f"error: --transport jsonrpc needs the Dubbo client ({module} is not installed): "
                        "pip install 'aigc-image-eval[dubbo]' (or pip install -r requirements.txt); "
                        "--transport telnet needs none of it")
    assert read_csv(tmp_path / "out.csv") == [] and read_csv(tmp_path / "err.csv") == []  # nothing lost, nothing invented


def test_telnet_runs_without_the_extra(tmp_path):
    """Port 9 on loopback refuses: the row fails as a transient error, with no word about installing."""
    run = generate_without("dubbo_client", tmp_path, "--transport", "telnet", "--provider", "127.0.0.1:9",
                           "--retries", "0")
    assert run.returncode == 1, run.stderr
    assert "aigc-image-eval[dubbo]" not in run.stderr
    assert [row[col.ID] for row in read_csv(tmp_path / "err.csv")] == ["r-1"]


def package_requirements(tmp_path: Path) -> list[Requirement]:
    """Requires-Dist of the package as pip would build it from this checkout."""
    out = tmp_path / "meta"
    out.mkdir()
    build = subprocess.run([sys.executable, "-c", "import sys; from setuptools import build_meta; "
                            "print(build_meta.prepare_metadata_for_build_wheel(sys.argv[1]))", str(out)],
                           cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr[-2000:]
    info = Parser().parsestr((out / build.stdout.strip().splitlines()[-1] / "METADATA").read_text(encoding="utf-8"))
    return [Requirement(line) for line in info.get_all("Requires-Dist") or []]


def closure(requirements: list[Requirement], extras: set[str]) -> dict[str, list[Requirement]]:
    """Every requirement reached from `requirements` with the package's `extras`, following each
    installed distribution's own metadata (with the extras asked of it), by distribution name."""
    found: dict[str, list[Requirement]] = {}
    todo = [(req, extras) for req in requirements]
    seen: set[tuple[str, frozenset[str]]] = set()
    while todo:
        req, asked = todo.pop()
        if req.marker is not None and not any(req.marker.evaluate({"extra": extra}) for extra in asked | {""}):
            continue
        name = canonicalize_name(req.name)
        found.setdefault(name, []).append(req)
        if (name, frozenset(req.extras)) in seen:
            continue
        seen.add((name, frozenset(req.extras)))
        try:
            dist = metadata.distribution(req.name)
        except metadata.PackageNotFoundError:
            continue  # not installed here (a platform-only wheel): nothing below it to follow
        todo += [(Requirement(line), set(req.extras)) for line in dist.requires or []]
    return found


def caps(found: dict[str, list[Requirement]]) -> dict[str, list[str]]:
    """The constraints in `found` that exclude HELD_BACK's releases."""
    return {name: [str(req) for req in found.get(name, []) if not req.specifier.contains(release)]
            for name, release in HELD_BACK.items() if any(not req.specifier.contains(release)
                                                           for req in found.get(name, []))}


def test_installing_without_the_extra_leaves_click_and_jsonschema_alone(tmp_path):
    requirements = package_requirements(tmp_path)
    base = closure(requirements, set())
    assert {"torch", "fastapi", "uvicorn"} <= set(base)  # the walk reaches the real dependencies
    assert not {"dubbo-python3", "jsonrpcclient", "kazoo"} & set(base)
    assert caps(base) == {}
    with_extra = closure(requirements, {"dubbo"})
    assert {"dubbo-python3", "jsonrpcclient", "kazoo"} <= set(with_extra)
    assert {name: {re.sub(r"\s", "", text) for text in found} for name, found in caps(with_extra).items()} == {
        "click": {"click<8"}, "jsonschema": {"jsonschema<4"}}  # jsonrpcclient 3.x's, reached through the extra
