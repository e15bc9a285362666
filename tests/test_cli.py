"""The layout and the `aigc-eval` command: root scripts, subcommands, aliases, installed entry point."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from aigc_eval.cli import ALIASES, SUBCOMMANDS, main
from conftest import ROOT, read_csv
from test_decisions import _scored

# The scripts users run: the article's seven (consumer_util.py and dubbo_util.py keep its names)
# and the stages added since.
STAGE_SCRIPTS = {"message_listener.py", "consumer_util.py", "generate_request.py", "dubbo_util.py",
                 "evaluate_clipscore.py", "evaluate_is.py", "main.py", "evaluate_product.py", "serve.py", "evaluate_stream.py",
                 "calibrate.py", "label.py"}
RUNNABLE = {"message_listener.py": "listen", "generate_request.py": "generate", "evaluate_clipscore.py": "clipscore",
            "evaluate_is.py": "is", "main.py": "score", "evaluate_product.py": "product", "serve.py": "serve",
            "evaluate_stream.py": "stream", "calibrate.py": "calibrate", "label.py": "label"}


def test_the_root_holds_only_the_stage_scripts():
    assert {path.name for path in ROOT.glob("*.py")} == STAGE_SCRIPTS


def test_each_runnable_script_is_a_thin_entry_point_into_its_subcommand():
    for script, subcommand in RUNNABLE.items():
        text = (ROOT / script).read_text(encoding="utf-8")
        assert f"from {SUBCOMMANDS[subcommand][0]} import main" in text, script
        assert len(text.splitlines()) <= 20, f"{script} should only call into the package"


def test_the_article_helper_modules_stay_importable_under_their_names():
    import consumer_util
    import dubbo_util

    assert consumer_util.message_to_rows.__module__ == "aigc_eval.collection.messages"
    assert callable(consumer_util.clean_prompt)
    assert dubbo_util.JsonRpcTransport.__module__ == "aigc_eval.generation.dubbo"


@pytest.mark.parametrize("name", sorted(SUBCOMMANDS))
def test_every_subcommand_has_help_with_its_scripts_flags(name, capsys):
    with pytest.raises(SystemExit) as stopped:
        main([name, "--help"])
    assert stopped.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith(f"usage: aigc-eval {name}")
    assert "--quiet" in text and "exit codes:" in text


def test_the_command_lists_its_subcommands_and_refuses_unknown_ones(capsys):
    assert main(["--help"]) == 0
    listing = capsys.readouterr().out
    assert all(name in listing for name in [*SUBCOMMANDS, *ALIASES])
    assert main(["evaluate"]) == 2
    assert "unknown subcommand 'evaluate'" in capsys.readouterr().err
    assert main([]) == 2


def test_compare_alias_runs_main_py_compare(tmp_path):
    a = _scored(tmp_path / "a.csv", [0.30, 0.35, 0.40, 0.32])
    b = _scored(tmp_path / "b.csv", [0.33, 0.36, 0.48, 0.30])
    assert main(["compare", str(a), str(b), "--compare-output", str(tmp_path / "alias.csv"), "-q"]) == 0
    assert main(["score", "--compare", str(a), str(b), "--compare-output", str(tmp_path / "direct.csv"), "-q"]) == 0
    assert read_csv(tmp_path / "alias.csv") == read_csv(tmp_path / "direct.csv") != []


def test_python_dash_m_and_the_root_script_run_the_same_stage(tmp_path):
    module = subprocess.run([sys.executable, "-m", "aigc_eval", "is", "--help"], capture_output=True, text=True,
                            cwd=ROOT, timeout=120)
    script = subprocess.run([sys.executable, str(ROOT / "evaluate_is.py"), "--help"], capture_output=True, text=True,
                            cwd=tmp_path, timeout=120)
    assert module.returncode == script.returncode == 0
    flags_of = lambda text: sorted(word for word in text.split() if word.startswith("--"))  # noqa: E731
    assert flags_of(module.stdout) == flags_of(script.stdout) and "--save-logits" in script.stdout


def test_the_installed_console_command_works_outside_the_checkout(tmp_path):
    command = Path(sys.executable).with_name("aigc-eval")
    if not command.exists():
        pytest.skip("aigc-eval is not installed in this environment (bash scripts/test.sh installs it)")
    listing = subprocess.run([str(command), "--help"], capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert listing.returncode == 0 and "clipscore" in listing.stdout
    listen = subprocess.run([str(command), "listen", "--help"], capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert listen.returncode == 0 and "--nsqd-tcp-address" in listen.stdout
