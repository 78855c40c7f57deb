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


def test_kdconcepts_quantify_runs_with_the_portable_pins_set_before_torch(tmp_path):
    """`kdconcepts quantify` sets the numerics pins before it imports torch, so its default
    (portable) takes effect; the same maps as in a process started with the pins."""
    from test_quantify_cli import _checkpoint, _plain_folder

    _plain_folder(tmp_path / "imgs")
    _checkpoint(tmp_path / "net.pt")
    args = ["--checkpoint", str(tmp_path / "net.pt"), "--layer", "conv", "--images", str(tmp_path / "imgs"),
            "--grid", "8", "--steps", "5", "--boost-after", "3", "--samples", "3", "--no-figures"]
    for name, extra in (("portable", []), ("native", ["--numerics", "native"])):
        run = subprocess.run([sys.executable, "-m", "kdconcepts.cli", "quantify", *args, "--out",
                              str(tmp_path / name), *extra], capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stderr[-2000:]
    import pandas as pd

    portable = pd.read_parquet(tmp_path / "portable/entropy.parquet")
    assert portable["usable"].all()
