"""The README's results are the shipped reference's tables, regenerated, never typed."""

import subprocess
import sys
from pathlib import Path

from conftest import ROOT, workflow_env
from kdconcepts.readme import BEGIN, END, results_section


def test_the_readme_results_are_what_the_reference_gives():
    text = (ROOT / "README.md").read_text()
    section = text[text.index(BEGIN): text.index(END) + len(END)]
    assert section == results_section(ROOT / "reference/default", "reference/default"), \
        "README.md's results section is stale: run `kdconcepts readme`"


def test_the_readme_is_a_users_guide():
    text = (ROOT / "README.md").read_text()
    lines = text.splitlines()
    assert len(lines) <= 170, len(lines)
    assert lines[2:5] == ["```bash", "make reproduce   # set-up (.venv from envs/requirements.lock) + the whole default pipeline",
                          "make test        # set-up if needed + the whole test suite"]
    import re

    assert not re.search(r"`[0-9a-f]{7,40}`", text), "a commit hash in the README: history goes in docs/"
    assert "make verify" in text


def test_the_readme_command_checks_and_rewrites(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\n{BEGIN}\nold\n{END}\n\nafter\n")
    run = lambda *args: subprocess.run([sys.executable, "-m", "kdconcepts.cli", "readme", "--readme", str(readme),  # noqa: E731
                                        "--run", str(ROOT / "reference/default"), *args], cwd=ROOT,
                                       env=workflow_env(), capture_output=True, text=True, timeout=120)
    assert run("--check").returncode == 1
    assert run().returncode == 0 and run("--check").returncode == 0
    assert readme.read_text().endswith(f"{END}\n\nafter\n") and Path(readme).read_text().startswith("# x\n\n")
