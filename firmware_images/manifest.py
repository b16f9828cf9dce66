"""Our image manifest: ``image.json`` inside the slot, and beside the RAUC bundle with its sha256.

The control plane lists and offers images from the file beside the bundle (``ImageListing``); the
device reads the one inside its slot (``ImageManifest``), which the bundle's signature covers.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

FORMAT = "voicefleet-image/1"
IMAGE_MANIFEST = "image.json"  # at the root of the slot
PAYLOAD = "appfs.tar"  # the slot's tree, inside the RAUC bundle
_SHA256 = r"^[0-9a-f]{64}$"
VERSION_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.+~-]{0,99}$"  # one line of manifest.raucm, one file name part


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FileRef(_Frozen):
    path: str  # inside the slot; for the RAUC bundle, its file name
    size: int = Field(ge=0)
    sha256: str = Field(pattern=_SHA256)


class AgentRef(_Frozen):
    name: str
    version: str
    wheel: FileRef


class Dependencies(_Frozen):
    lock: FileRef  # requirements.lock: exact pins for the profile
    pins: dict[str, str]
    wheels: list[FileRef] = Field(default_factory=list)  # present only when built with --with-wheels


class ImageBundleRef(_Frozen):
    model_id: str
    version: str
    engine: str
    key_id: str
    manifest_sha256: str = Field(pattern=_SHA256)  # the signed bundle manifest names every file's hash
    path: str


class ImageManifest(_Frozen):
    format: Literal["voicefleet-image/1"] = FORMAT
    image_version: str = Field(pattern=VERSION_PATTERN)
    profile: str
    arch: str
    python: str  # the lock's Python (major.minor); the device's python3 must match
    compatible: str
    slot_class: str
    mount_point: str
    created_at: str
    agent: AgentRef
    dependencies: Dependencies
    bundles: list[ImageBundleRef]
    config: FileRef
    rootfs: FileRef | None = None  # the OS image for the rootfs slot, when the build carried one

    def to_bytes(self) -> bytes:
        return (json.dumps(self.model_dump(mode="json"), sort_keys=True, indent=2) + "\n").encode()


class ImageListing(ImageManifest):
    """What the control plane reads beside ``NAME.raucb``: the manifest plus the bundle's own hash."""

    rauc_bundle: FileRef

    def manifest(self) -> ImageManifest:
        return ImageManifest(**self.model_dump(exclude={"rauc_bundle"}))


def listing_path(bundle: Path) -> Path:
    return bundle.with_name(bundle.name + ".json")


def file_ref(path: Path, name: str) -> FileRef:
    with open(path, "rb") as f:
        digest = hashlib.file_digest(f, "sha256").hexdigest()
        return FileRef(path=name, size=os.fstat(f.fileno()).st_size, sha256=digest)
