"""The ``kdconcepts`` entry point dispatches to every sub-command."""

import subprocess
import sys

import pytest

from kdconcepts.cli import COMMANDS, main


def test_usage_lists_every_command(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in COMMANDS)


def test_unknown_command_fails_with_usage(capsys):
    assert main(["quantfy"]) == 2
    assert "unknown command 'quantfy'" in capsys.readouterr().err


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_each_command_has_help(command):
    run = subprocess.run([sys.executable, "-m", "kdconcepts.cli", command, "--help"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "usage" in run.stdout.lower()
