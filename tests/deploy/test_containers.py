"""The container files (deploy/containers). Images cannot be built here (no container engine, no
registry for the base images), so what can be checked without building is: each role installs the
project with exactly the extras it needs, the edge's install cannot pull PyTorch, the files copied in
exist and carry every first-party package the role imports, the entry points are real commands, and
the base images fit the role (arm64 Jetson, CUDA, Python at the version the project requires)."""

from __future__ import annotations

import ast
import json
import re
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from deploy_support import DEPLOY, ROOT
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from voicefleet.bundle import PROJECT_KEY
from voicefleet_cli.main import build_parser

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
CONTAINERS = DEPLOY / "containers"
# role -> (extras, the first-party packages its process runs, base image, its platform)
ROLES = {
    "control-plane": ({"control", "asr"}, ["control_plane"], r"python:(\d+\.\d+)-slim", None),
    "edge-agent": ({"edge"}, ["edge_agent"], r"nvcr\.io/nvidia/l4t-base:r36", "linux/arm64"),
    "cloud-worker": ({"edge"}, ["edge_agent"], r"nvidia/cuda:12\.\d+\.\d+-cudnn\d*-runtime", None),
}
FIRST_PARTY = {"voicefleet", "voicefleet_cli", "control_plane", "edge_agent", "models", "firmware_images"}
HEAVY = {"torch", "torchaudio", "tensorflow", "tensorflow-cpu"}


def instructions(role: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined, comments dropped."""
    text = (CONTAINERS / f"{role}.Dockerfile").read_text()
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n\s*", " ", "\n".join(lines))
    return [(m.group(1).upper(), m.group(2).strip()) for m in re.finditer(r"^(\w+)\s+(.*)$", joined, re.M)]


def project_installs(role: str) -> list[set[str]]:
    """The extras of each `pip install ".[...]"` of the project in a Dockerfile."""
    return [set(m.group(1).split(",")) for op, args in instructions(role) if op == "RUN"
            for m in re.finditer(r'pip install "\.\[([\w,-]+)\]"', args)]


def extra_requirements(extra: str) -> list[Requirement]:
    """An extra's requirements, the project's own extras it names expanded, plus the core ones."""
    reqs = [Requirement(r) for r in PYPROJECT["project"]["dependencies"]]
    for spec in PYPROJECT["project"]["optional-dependencies"][extra]:
        req = Requirement(spec)
        if canonicalize_name(req.name) == "voicefleet":
            for inner in req.extras:
                reqs += extra_requirements(inner)
        else:
            reqs.append(req)
    return reqs


def installed_closure(reqs: list[Requirement]) -> set[str]:
    """Every distribution these requirements pull in, walked through what is installed here."""
    env = default_environment() | {"extra": ""}
    seen: set[str] = set()
    todo = [(r, set(r.extras)) for r in reqs if r.marker is None or r.marker.evaluate(env)]
    while todo:
        req, extras = todo.pop()
        name = canonicalize_name(req.name)
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = metadata.requires(req.name) or []
        except metadata.PackageNotFoundError:
            pytest.fail(f"{req.name} is not installed here, so what it pulls in cannot be checked")
        for spec in requires:
            sub = Requirement(spec)
            if sub.marker is None or any(sub.marker.evaluate(env | {"extra": e}) for e in extras | {""}):
                todo.append((sub, set(sub.extras)))
    return seen


@pytest.mark.parametrize("role", ROLES)
def test_each_role_installs_exactly_its_extras(role):
    assert project_installs(role) == [ROLES[role][0]], f"{role}: one install of the project with its extras"
    assert ROLES[role][0] <= set(PYPROJECT["project"]["optional-dependencies"])


def test_the_edge_install_cannot_pull_pytorch():
    direct = {canonicalize_name(r.name) for r in extra_requirements("edge")}
    assert not direct & HEAVY
    pulled = installed_closure(extra_requirements("edge"))
    assert "onnxruntime" in pulled and not pulled & HEAVY, pulled & HEAVY
    runs = [args for op, args in instructions("edge-agent") if op == "RUN"]
    assert sum(args.count("pip install") for args in runs) == 1  # nothing installed beside the extra


def test_the_cloud_workers_extra_packages_leave_the_edge_extras_alone():
    """CosyVoice's packages swap the CPU onnxruntime for the GPU one and pin nothing the edge extra pins."""
    path = CONTAINERS / "cloud-worker-requirements.txt"
    lines = [line.split("#")[0].strip() for line in path.read_text().splitlines()]
    reqs = {canonicalize_name(Requirement(line).name) for line in lines if line and not line.startswith("-")}
    assert {"torch", "onnxruntime-gpu"} <= reqs
    assert not reqs & {canonicalize_name(r.name) for r in extra_requirements("edge")}
    runs = [args for op, args in instructions("cloud-worker") if op == "RUN"]
    swap = next(args for args in runs if "cloud-worker-requirements.txt" in args)
    assert swap.index("pip uninstall -y onnxruntime") < swap.index("pip install -r")


@pytest.mark.parametrize("role", ROLES)
def test_entrypoints_are_real_commands(role):
    entry = next(json.loads(args) for op, args in instructions(role) if op == "ENTRYPOINT")
    assert entry[0] in PYPROJECT["project"]["scripts"]
    commands = next(a.choices for a in build_parser()._actions if a.dest == "command")
    assert entry[1] in commands, f"{role}: voicefleet has no command {entry[1]!r}"
    assert entry[1] == ("control-plane" if role == "control-plane" else "agent")


@pytest.mark.parametrize("role", ROLES)
def test_base_images_fit_the_role(role):
    pattern, platform = ROLES[role][2], ROLES[role][3]
    froms = [args for op, args in instructions(role) if op == "FROM"]
    assert len(froms) == 1 and re.search(pattern, froms[0]), froms
    assert (f"--platform={platform}" in froms[0]) if platform else "--platform" not in froms[0]
    text = (CONTAINERS / f"{role}.Dockerfile").read_text()
    versions = {Version(v) for v in re.findall(r"python:?(3\.\d+)", text)}
    required = Version(PYPROJECT["project"]["requires-python"].removeprefix(">="))
    assert versions and all(v >= required for v in versions), (role, versions)


def _copied(role: str) -> list[str]:
    sources = []
    for op, args in instructions(role):
        if op == "COPY" and not args.startswith("--from"):
            sources += args.split()[:-1]
    return sources


@pytest.mark.parametrize("role", ROLES)
def test_copied_files_exist_and_carry_what_the_role_imports(role):
    copied = _copied(role)
    for source in copied:
        assert (ROOT / source).exists(), f"{role}: COPY {source}: no such path in the repository"
    packages = {Path(s).parts[0] for s in copied if Path(s).parts[0] in FIRST_PARTY}
    imported = set()
    for package in ROLES[role][1] + ["voicefleet"]:
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    imported.add(node.module.split(".")[0])
                elif isinstance(node, ast.Import):
                    imported |= {alias.name.split(".")[0] for alias in node.names}
    assert imported & FIRST_PARTY <= packages, f"{role}: imports {imported & FIRST_PARTY - packages} not copied"


def test_the_edge_image_ships_the_committed_student():
    env = " ".join(args for op, args in instructions("edge-agent") if op == "ENV")
    bundle = re.search(r"VOICEFLEET_STUDENT_BUNDLE=(\S+)", env).group(1)
    copies = [args.split() for op, args in instructions("edge-agent") if op == "COPY"]
    source = next(src for src, dest in ((c[0], c[-1]) for c in copies) if dest == bundle)
    assert (ROOT / source / "manifest.json").is_file()


@pytest.mark.parametrize("role", ROLES)
def test_images_carry_the_key_that_verifies_bundles(role):
    """voicefleet.bundle finds the project's public key beside the installed packages (package data)."""
    key = PROJECT_KEY.relative_to(ROOT)
    assert any(key.is_relative_to(source) for source in _copied(role)), f"{role}: {key} not copied"
    assert (ROOT / "models" / "__init__.py").relative_to(ROOT).as_posix() in _copied(role)
