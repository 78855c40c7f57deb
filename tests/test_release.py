"""What a reviewer reads matches the repository: the licence, the citation, the commands in the
docs, and the image's default command (issue 20)."""

import json
import re
import shlex
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
AE = ROOT / "docs/ARTIFACT_EVALUATION.md"


def test_licence_file_matches_the_package_and_the_image():
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
    assert tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["license"] == "MIT"
    assert 'org.opencontainers.image.licenses="MIT"' in (ROOT / "Dockerfile").read_text()


def test_citation_file_cites_the_artifact_and_the_paper():
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert cff["cff-version"] == "1.2.0" and cff["type"] == "software" and cff["license"] == "MIT"
    assert cff["version"] == tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    paper = cff["preferred-citation"]
    assert paper["title"] == "Explaining Knowledge Distillation by Quantifying the Knowledge"
    assert [a["family-names"] for a in paper["authors"]] == ["Cheng", "Rao", "Chen", "Zhang"]
    assert paper["year"] == 2020 and (paper["start"], paper["end"]) == (12922, 12932)
    assert {"type": "other", "value": "arXiv:2003.03622"} in paper["identifiers"]


def test_the_evaluation_guide_has_no_placeholder_and_names_files_that_exist():
    text = AE.read_text()
    assert not re.search(r"<this repository>|<[a-z ]+repository>", text)
    # Every repository file that a command or sentence of the guide names exists.
    named = set(re.findall(r"(?<![\w./<-])((?:config|tests|benchmarks|workflow|envs|docs)/[\w./-]+"
                           r"\.(?:yaml|py|sh|lock|md))\b", text))
    assert "tests/overlays/exhaustive.yaml" in named
    missing = sorted(p for p in named if "<" not in p and "*" not in p and not (ROOT / p).exists())
    assert not missing, missing
    # The manual install installs the package too (workflow/rules/common.smk imports it).
    assert "pip install --no-deps -e ." in text


def test_the_image_runs_what_make_reproduce_runs():
    """`docker run IMAGE` without a command runs the DAG and writes the report, as `make
    reproduce` does (it used to run the DAG only: no report.html)."""
    cmd = re.search(r"^CMD\s+(\[.*\])\s*$", (ROOT / "Dockerfile").read_text(), re.M)
    argv = json.loads(cmd[1])
    assert argv[:2] == ["sh", "-c"]
    steps = [shlex.split(step) for step in argv[2].split("&&")]
    recipe = re.search(r"^reproduce:.*\n((?:\t.*\n)+)", (ROOT / "Makefile").read_text(), re.M)[1]
    # (the default run: no CONFIG, so RUN is "default"; the config check and the closing line
    # are make's own additions around the two commands)
    make_steps = [shlex.split(line.strip().replace("$(BIN)/", "").replace("$(CORES)", "all")
                              .replace(" $(CONFIG_ARGS)", "").replace("$(RUN)", "default"))
                  for line in recipe.splitlines() if "snakemake" in line and not line.strip().startswith("@")]
    assert steps == make_steps == [["snakemake", "--cores", "all", "--rerun-incomplete"],
                                   ["snakemake", "--report", "results/default/report.html"]]


def test_the_exhaustive_overlay_is_the_check_schedule():
    overlay = yaml.safe_load((ROOT / "tests/overlays/exhaustive.yaml").read_text())
    assert overlay == {"quantify": {"schedule": "exhaustive", "stop": "full"}}
