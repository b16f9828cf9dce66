"""What the deploy/ tests share: the command-line tools they drive, the rendered Kustomize overlays and
small look-ups into the rendered objects."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
OVERLAYS = ("dev", "production")


def tool(name: str) -> str:
    """The tool from the virtualenv (kubectl comes as a wheel) or the PATH (promtool comes from Debian).
    Missing here it skips the test; missing under CI it fails it, since CI installs it."""
    found = shutil.which(name, path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    if found:
        return found
    if os.environ.get("CI") == "true":
        pytest.fail(f"{name} is not installed, and CI must have it")
    pytest.skip(f"{name} is not installed")


def render(overlay: str) -> list[dict]:
    """The objects `kubectl kustomize` makes of an overlay."""
    out = subprocess.run([tool("kubectl"), "kustomize", str(DEPLOY / "kubernetes" / "overlays" / overlay)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, f"kustomize failed on {overlay}: {out.stderr}"
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


def find(objects: list[dict], kind: str, name: str) -> dict:
    matches = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind} {name}, found {len(matches)}"
    return matches[0]


def container(deployment: dict) -> dict:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1, f"{deployment['metadata']['name']}: one container expected"
    return containers[0]


def env(objects: list[dict], deployment: dict) -> dict[str, str]:
    """A container's plain environment: its ConfigMaps' entries, then its own literal values (later wins,
    as in a pod). Values taken from Secrets or fields are left out."""
    c = container(deployment)
    values: dict[str, str] = {}
    for source in c.get("envFrom", []):
        values.update(find(objects, "ConfigMap", source["configMapRef"]["name"])["data"])
    values.update({e["name"]: e["value"] for e in c.get("env", []) if "value" in e})
    return values


def env_names(objects: list[dict], deployment: dict) -> set[str]:
    """Every variable name the container gets, whatever its source."""
    c = container(deployment)
    names = {e["name"] for e in c.get("env", [])}
    for source in c.get("envFrom", []):
        names |= set(find(objects, "ConfigMap", source["configMapRef"]["name"])["data"])
    return names
