"""Build a signed device image: stage the slot's files, pack them, sign the RAUC bundle, verify it.

The slot (mounted at the profile's ``mount_point``, e.g. /opt/voicefleet) holds::

    image.json             our manifest (manifest.py)
    requirements.lock      exact pins of voicefleet[edge] for the profile (lock.py)
    wheels/                the agent wheel (+ every pinned wheel with --with-wheels)
    bundles/MODEL_ID/      verified, signed model bundles, as they are
    config/agent.env       the profile's default agent configuration
    systemd/               the agent and mark-good units the OS links in

and the RAUC bundle holds ``manifest.raucm``, ``appfs.tar`` (that tree) and ``hook`` (device/rauc-hook).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from firmware_images import rauc
from firmware_images.lock import read_lock
from firmware_images.manifest import (
    IMAGE_MANIFEST,
    PAYLOAD,
    VERSION_PATTERN,
    AgentRef,
    Dependencies,
    FileRef,
    ImageBundleRef,
    ImageListing,
    ImageManifest,
    file_ref,
    listing_path,
)
from firmware_images.profile import ImageError, Profile, load_profile
from firmware_images.verify import verify_image

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEVICE_DIR = Path(__file__).resolve().parent / "device"
DEFAULT_BUNDLES = (PROJECT_ROOT / "models" / "bundles" / "zh-student",)
HOOK = "hook"
ROOTFS_SUFFIXES = (".ext4", ".img", ".tar", ".tar.gz", ".tar.xz", ".tar.bz2", ".tar.zst")


@dataclass(frozen=True)
class Signer:
    cert: Path  # PEM signing certificate (chained to the devices' keyring)
    key: Path  # its PEM private key
    keyring: Path | None = None  # CA certificate(s) the devices trust: the result is verified against it


@dataclass(frozen=True)
class Recipe:
    """What goes into an image besides the profile's defaults."""

    bundles: tuple[Path, ...] = DEFAULT_BUNDLES  # signed model bundles (folders or archives)
    version: str | None = None  # default: agent version + build time
    wheel: Path | None = None  # a prebuilt agent wheel; default: pip wheel of this project
    with_wheels: bool = False  # also every pinned dependency's wheel, for an install with no index
    rootfs: Path | None = None  # the OS root filesystem image (e.g. from Yocto) for the rootfs slot


def build_image(profile: str | Profile, out: str | Path, signer: Signer, recipe: Recipe = Recipe()) -> ImageListing:
    """Write ``out`` (a ``.raucb``) and ``out.json`` beside it; return that listing."""
    profile = profile if isinstance(profile, Profile) else load_profile(profile)
    rootfs_name = _rootfs_name(recipe.rootfs) if recipe.rootfs else None
    out = Path(out)
    if recipe.version is not None and not re.fullmatch(VERSION_PATTERN, recipe.version):
        raise ImageError("bad_version", f"version {recipe.version!r} must match {VERSION_PATTERN}")
    if out.suffix != ".raucb":
        raise ImageError("bad_output", f"{out}: a RAUC bundle's name ends in .raucb")
    if out.exists() or listing_path(out).exists():
        raise ImageError("exists", f"{out} or {listing_path(out).name} already exists; remove it or pick another name")
    for path in (signer.cert, signer.key, *([signer.keyring] if signer.keyring else [])):
        if not Path(path).is_file():
            raise ImageError("missing_cert", f"{path} not found: pass --cert, --key and --keyring as PEM files")
    rauc.require_tools()
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.tmp-") as tmp:
        stage, content = Path(tmp) / "slot", Path(tmp) / "content"
        stage.mkdir()
        content.mkdir()
        rootfs = shutil.copy(recipe.rootfs, content / rootfs_name) if rootfs_name else None
        manifest = _stage(profile, stage, recipe, file_ref(Path(rootfs), rootfs_name) if rootfs else None)
        _pack(stage, content / PAYLOAD)
        shutil.copy(DEVICE_DIR / "rauc-hook", content / HOOK)
        (content / "manifest.raucm").write_text(_rauc_manifest(profile, manifest))
        signed = Path(tmp) / out.name
        rauc.make_bundle(content, signed, cert=signer.cert, key=signer.key, keyring=signer.keyring)
        listing = ImageListing(**manifest.model_dump(), rauc_bundle=file_ref(signed, out.name))
        listing_tmp = Path(tmp) / listing_path(out).name
        listing_tmp.write_bytes(listing.to_bytes())
        if signer.keyring:
            verify_image(signed, signer.keyring)
        signed.rename(out)
        listing_tmp.rename(listing_path(out))
    return listing


def _stage(profile: Profile, stage: Path, recipe: Recipe, rootfs: FileRef | None) -> ImageManifest:
    (stage / "wheels").mkdir()
    wheel = shutil.copy(recipe.wheel, stage / "wheels") if recipe.wheel else build_wheel(stage / "wheels")
    agent_version = Path(wheel).name.split("-")[1]
    pins = read_lock(profile)
    shutil.copy(profile.lock_path, stage / "requirements.lock")
    wheels = download_wheels(profile, stage / "requirements.lock", stage / "wheels") if recipe.with_wheels else []
    refs = [_add_bundle(b, stage) for b in recipe.bundles]
    student = next((r.path for r in refs if r.engine == "student-onnx"), None)
    env = {"student_bundle": f"{profile.mount_point}/{student}"} if student else {}
    (stage / "config").mkdir()
    (stage / "config" / "agent.env").write_text(profile.agent_env(env))
    _render_units(profile, stage / "systemd")
    created = datetime.now(UTC)
    manifest = ImageManifest(
        image_version=recipe.version or f"{agent_version}+{created:%Y%m%d.%H%M%S}", profile=profile.name,
        arch=profile.arch, python=profile.python, compatible=profile.compatible, slot_class=profile.slot_class,
        mount_point=profile.mount_point, created_at=created.isoformat(timespec="seconds"),
        agent=AgentRef(name="voicefleet", version=agent_version,
                       wheel=file_ref(Path(wheel), f"wheels/{Path(wheel).name}")),
        dependencies=Dependencies(lock=file_ref(stage / "requirements.lock", "requirements.lock"), pins=pins,
                                  wheels=[file_ref(w, f"wheels/{w.name}") for w in wheels]),
        bundles=refs, config=file_ref(stage / "config" / "agent.env", "config/agent.env"), rootfs=rootfs)
    (stage / IMAGE_MANIFEST).write_bytes(manifest.to_bytes())
    return manifest


def _render_units(profile: Profile, dest: Path) -> None:
    dest.mkdir()
    for unit in sorted((DEVICE_DIR / "systemd").glob("*.service")):
        (dest / unit.name).write_text(unit.read_text().replace("@MOUNT_POINT@", profile.mount_point))


def build_wheel(dest: Path) -> Path:
    """``pip wheel --no-deps`` of this project (the agent; its dependencies come from the lock)."""
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                           "-w", str(dest), str(PROJECT_ROOT)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise ImageError("wheel_failed", f"pip wheel of {PROJECT_ROOT} failed: {proc.stderr.strip()[-2000:]}")
    return next(dest.glob("voicefleet-*.whl"))


def download_wheels(profile: Profile, lock: Path, dest: Path) -> list[Path]:
    """Every pinned wheel for the profile's platform, so the device installs with no index at all."""
    before = set(dest.iterdir())
    newest = int(profile.glibc.split(".")[1])
    platforms = [f"--platform=manylinux_2_{n}_{profile.arch}" for n in range(17, newest + 1)]
    proc = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                           *platforms, f"--python-version={profile.python}", "-r", str(lock), "-d", str(dest)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise ImageError("download_failed", f"pip download for {profile.arch}, glibc {profile.glibc} failed: "
                                            f"{proc.stderr.strip()[-2000:]}")
    return sorted(set(dest.iterdir()) - before)


def _add_bundle(path: Path, stage: Path) -> ImageBundleRef:
    """Copy a model bundle that verifies with this machine's trusted keys; refuse any other."""
    from voicefleet.bundle import FILE_NAME_PATTERN, BundleError, open_bundle, trusted_keys_from_env, verify_bundle

    try:
        verified = verify_bundle(open_bundle(path), trusted_keys_from_env())
    except BundleError as e:
        raise ImageError("bad_bundle", f"model bundle {path}: {e.text}") from None
    m = verified.manifest
    if not re.fullmatch(FILE_NAME_PATTERN, m.model_id):  # it names the bundle's folder in the slot
        raise ImageError("bad_bundle", f"model bundle {path}: model id {m.model_id!r} must match {FILE_NAME_PATTERN}")
    dest = stage / "bundles" / m.model_id
    if dest.exists():
        raise ImageError("duplicate_bundle", f"two bundles of model {m.model_id!r}; an image carries one of each")
    shutil.copytree(verified.path, dest)
    return ImageBundleRef(model_id=m.model_id, version=m.version, engine=m.engine, key_id=m.key_id,
                          manifest_sha256=file_ref(dest / "manifest.json", "").sha256,
                          path=f"bundles/{m.model_id}")


def _rootfs_name(path: Path) -> str:
    """RAUC picks how to write an image by its name's ending: keep it."""
    suffix = next((s for s in ROOTFS_SUFFIXES if path.name.endswith(s)), None)
    if suffix is None or not path.is_file():
        raise ImageError("bad_rootfs", f"{path}: a root filesystem image is a file ending in "
                                       f"{', '.join(ROOTFS_SUFFIXES)}")
    return f"rootfs{suffix}"


def _pack(stage: Path, out: Path) -> None:
    """A tar of the slot's tree: sorted, owned by root, no times (same files in, same bytes out)."""
    def clean(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
        info.mtime = 0
        info.mode = 0o755 if info.isdir() or info.mode & 0o111 else 0o644
        return info

    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(stage.rglob("*")):
            tar.add(path, arcname=str(path.relative_to(stage)), recursive=False, filter=clean)


def _rauc_manifest(profile: Profile, m: ImageManifest) -> str:
    """manifest.raucm: RAUC checks ``compatible`` against the device; ``hook`` runs the install checks."""
    return (f"[update]\ncompatible={profile.compatible}\nversion={m.image_version}\n"
            f"description=voicefleet {m.agent.version} for {profile.name}\nbuild={m.created_at}\n\n"
            f"[bundle]\nformat=verity\n\n[hooks]\nfilename={HOOK}\nhooks=install-check\n\n"
            f"[image.{profile.slot_class}]\nfilename={PAYLOAD}\nhooks=post-install\n"
            + (f"\n[image.{profile.rootfs_slot_class}]\nfilename={m.rootfs.path}\n" if m.rootfs else ""))
