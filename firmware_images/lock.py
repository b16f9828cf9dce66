"""The pinned dependency list of a profile: the closure of ``voicefleet[edge]`` at exact versions.

Resolved from the environment this runs in (its installed versions), with each requirement's marker
evaluated for the profile's platform, so an x86_64 build machine writes the Jetson's list too.
Regenerate with ``python -m firmware_images.lock --profile NAME`` after changing dependencies.
"""

from __future__ import annotations

import argparse
import sys
from importlib.metadata import PackageNotFoundError, distribution

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from firmware_images.profile import ImageError, Profile, load_profile, profile_names

ROOT = "voicefleet"
EXTRA = "edge"


def marker_env(profile: Profile) -> dict[str, str]:
    return {"platform_machine": profile.arch, "sys_platform": "linux", "os_name": "posix",
            "platform_system": "Linux", "python_version": profile.python,
            "python_full_version": f"{profile.python}.0", "implementation_name": "cpython",
            "platform_python_implementation": "CPython"}


def resolve(profile: Profile) -> dict[str, str]:
    """Name -> installed version of every distribution ``voicefleet[edge]`` needs on the profile."""
    env = marker_env(profile)
    pins: dict[str, str] = {}
    todo = [(ROOT, frozenset({EXTRA}))]
    seen: set[tuple[str, frozenset[str]]] = set()
    while todo:
        name, extras = todo.pop()
        if (name, extras) in seen:
            continue
        seen.add((name, extras))
        try:
            dist = distribution(name)
        except PackageNotFoundError:
            raise ImageError("unresolved", f"{name} is needed on {profile.name} but not installed here; "
                                           f"install voicefleet[{EXTRA}] in this environment first") from None
        if canonicalize_name(name) != ROOT:
            pins[canonicalize_name(name)] = dist.version
        for text in dist.requires or []:
            req = Requirement(text)
            if req.marker is None or any(req.marker.evaluate({**env, "extra": e}) for e in extras or {""}):
                todo.append((req.name, frozenset(req.extras)))
    return pins


def lock_text(profile: Profile) -> str:
    head = (f"# voicefleet[{EXTRA}] for {profile.name} ({profile.arch}, Python {profile.python}).\n"
            "# Written by `python -m firmware_images.lock`; do not edit by hand.\n")
    return head + "".join(f"{name}=={version}\n" for name, version in sorted(resolve(profile).items()))


def read_lock(profile: Profile) -> dict[str, str]:
    """The committed lock of a profile; every line must pin one exact version."""
    if not profile.lock_path.is_file():
        raise ImageError("missing_lock", f"{profile.lock_path} is missing: run python -m firmware_images.lock "
                                         f"--profile {profile.name}")
    pins = {}
    for line in profile.lock_path.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            req = Requirement(line)
            spec = list(req.specifier)
            if len(spec) != 1 or spec[0].operator != "==":
                raise ImageError("bad_lock", f"{profile.lock_path}: {line!r} is not pinned to one exact version")
            pins[canonicalize_name(req.name)] = spec[0].version
    return pins


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m firmware_images.lock", description=__doc__)
    ap.add_argument("--profile", action="append", choices=profile_names(), help="default: every profile")
    for name in ap.parse_args(argv).profile or profile_names():
        profile = load_profile(name)
        profile.lock_path.write_text(lock_text(profile))
        print(f"wrote {profile.lock_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
