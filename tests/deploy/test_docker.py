"""deploy/docker: the Dockerfiles pass hadolint, pin their bases, run as a non-root user,
check health over gRPC, copy only what their build context holds, and install the right
onnxruntime build from pyproject.toml's own requirements."""

from __future__ import annotations

import fnmatch
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from service.config import ServiceConfig
from tests.deploy.support import DEPLOY, DOCKERFILES, REPO, load_script, tool

image_requirements = load_script(DEPLOY / "docker" / "requirements.py")

SERVING = tuple(d for d in DOCKERFILES if d.name in {"Dockerfile.cpu", "Dockerfile.cuda"})
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n", " ", dockerfile.read_text())
    pairs = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            pairs.append((word.upper(), rest.strip()))
    return pairs


def final_stage(dockerfile: Path) -> list[tuple[str, str]]:
    steps = instructions(dockerfile)
    last_from = max(i for i, (word, _) in enumerate(steps) if word == "FROM")
    return steps[last_from:]


def test_the_three_images_exist() -> None:
    assert {d.name for d in DOCKERFILES} == {"Dockerfile.cpu", "Dockerfile.cuda", "Dockerfile.train"}


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint_passes(dockerfile: Path) -> None:
    result = subprocess.run(
        [tool("hadolint"), "--no-color", str(dockerfile)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_finds_problems(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install numpy\nCMD python app.py\n")
    result = subprocess.run([tool("hadolint"), "--no-color", str(bad)], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "DL3007" in result.stdout  # latest tag


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_bases_are_pinned_to_exact_versions(dockerfile: Path) -> None:
    bases = [args.split()[0] for word, args in instructions(dockerfile) if word == "FROM"]
    assert bases
    for base in bases:
        _, _, tag = base.partition(":")
        assert re.match(r"^v?\d+\.\d+\.\d+", tag), f"{dockerfile.name}: base {base} is not pinned to x.y.z"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_runs_as_a_numeric_non_root_user(dockerfile: Path) -> None:
    users = [args for word, args in final_stage(dockerfile) if word == "USER"]
    assert users, f"{dockerfile.name} runs as root"
    uid, _, gid = users[-1].partition(":")
    # Numeric, so that Kubernetes' runAsNonRoot can check it.
    assert uid.isdigit()
    assert int(uid) != 0
    assert gid.isdigit()
    assert int(gid) != 0
    assert f"--uid {uid}" in dockerfile.read_text()


@pytest.mark.parametrize("dockerfile", SERVING, ids=lambda p: p.name)
def test_serving_images_check_health_over_grpc_and_serve(dockerfile: Path) -> None:
    stage = dict(final_stage(dockerfile))
    assert "healthcheck.py" in stage["HEALTHCHECK"]
    assert stage["ENTRYPOINT"] == '["latentwatch"]'
    assert stage["CMD"] == '["serve"]'
    exposed = {int(p) for p in stage["EXPOSE"].split()}
    defaults = ServiceConfig()
    assert exposed == {defaults.port, defaults.metrics_port}


@pytest.mark.parametrize("dockerfile", SERVING, ids=lambda p: p.name)
def test_environment_is_made_of_service_settings(dockerfile: Path) -> None:
    settings = {}
    for word, args in final_stage(dockerfile):
        if word == "ENV":
            settings.update(dict(re.findall(r"(LATENTWATCH_\w+)=(\S+)", args)))
    assert settings["LATENTWATCH_MODELS"] == "/models"
    config = ServiceConfig.load(env=settings)
    assert config.port == 50051
    assert config.metrics_port == 9108
    expected_device = "cuda" if dockerfile.name == "Dockerfile.cuda" else "cpu"
    assert config.device == expected_device


def test_training_image_is_not_a_service() -> None:
    stage = dict(final_stage(DEPLOY / "docker" / "Dockerfile.train"))
    assert stage["HEALTHCHECK"] == "NONE"
    assert "EXPOSE" not in stage
    assert "torch" in (DEPLOY / "docker" / "Dockerfile.train").read_text()


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_copies_only_what_the_build_context_holds(dockerfile: Path) -> None:
    """Every COPY source exists in the repository and passes the image's .dockerignore."""
    ignore = Path(f"{dockerfile}.dockerignore")
    assert ignore.is_file(), f"{ignore.name} is missing"
    patterns = [line.strip() for line in ignore.read_text().splitlines() if line.strip() and not line.startswith("#")]
    for word, args in instructions(dockerfile):
        if word != "COPY" or args.startswith("--from"):
            continue
        *sources, _destination = args.split()
        for source in sources:
            path = REPO / source
            assert path.exists(), f"{dockerfile.name}: COPY {source}: no such file in the repository"
            assert _included(source.rstrip("/"), patterns), f"{dockerfile.name}: {source} is excluded by {ignore.name}"


def _included(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last matching pattern wins; ``!`` re-includes."""
    included = True
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        if fnmatch.fnmatch(path, pattern) or fnmatch.fnmatch(path, pattern.replace("**/", "")):
            included = negate
    return included


def test_cpu_requirements_swap_onnxruntime_gpu_for_the_cpu_build() -> None:
    lines = image_requirements.image_requirements(PYPROJECT, "cpu", "onnxruntime==1.31.1")
    names = [image_requirements.requirement_name(line) for line in lines]
    assert "onnxruntime-gpu" not in names
    assert "onnxruntime==1.31.1" in lines
    assert "torch" not in names
    base = {image_requirements.requirement_name(d) for d in PYPROJECT["project"]["dependencies"]}
    assert base - {"onnxruntime", "onnxruntime-gpu"} <= set(names)


def test_cuda_requirements_take_onnxruntime_gpu() -> None:
    lines = image_requirements.image_requirements(PYPROJECT, "cuda", "onnxruntime-gpu==1.31.1")
    names = [image_requirements.requirement_name(line) for line in lines]
    assert names.count("onnxruntime-gpu") == 1
    assert "onnxruntime" not in names
    with pytest.raises(ValueError, match="needs onnxruntime-gpu"):
        image_requirements.image_requirements(PYPROJECT, "cuda", "onnxruntime==1.31.1")


def test_train_requirements_add_the_train_extra() -> None:
    lines = image_requirements.image_requirements(PYPROJECT, "train")
    names = {image_requirements.requirement_name(line) for line in lines}
    assert {"torch", "scikit-learn", "onnx", "onnxruntime"} <= names
    assert "onnxruntime-gpu" not in names


def test_requirements_script_runs_as_the_dockerfiles_call_it() -> None:
    for dockerfile in DOCKERFILES:
        match = re.search(r"requirements\.py (\w+) --onnxruntime \"\$\{ONNXRUNTIME_SPEC\}\"", dockerfile.read_text())
        assert match, dockerfile.name
        spec = re.search(r'ARG ONNXRUNTIME_SPEC="([^"]+)"', dockerfile.read_text()).group(1)
        result = subprocess.run(
            [sys.executable, str(DEPLOY / "docker" / "requirements.py"), match.group(1), "--onnxruntime", spec],
            capture_output=True,
            text=True,
            cwd=REPO,
            timeout=30,
        )
        assert result.returncode == 0, result.stderr
        assert spec in result.stdout.splitlines()


def test_image_tags_follow_the_project_version() -> None:
    version = PYPROJECT["project"]["version"]
    for dockerfile in DOCKERFILES:
        tags = re.findall(r"docker build -f (\S+) -t \S+:(\S+) \.", dockerfile.read_text())
        assert tags, f"{dockerfile.name} documents no build command"
        for path, tag in tags:
            assert path == f"deploy/docker/{dockerfile.name}"
            assert tag.startswith(version), f"{dockerfile.name}: tag {tag} is not version {version}"
