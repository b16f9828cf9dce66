"""Check a built image as a device and the control plane would: RAUC signature and payload against
a keyring, our manifest inside against RAUC's, and the listing beside against both."""

from __future__ import annotations

import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from firmware_images import rauc
from firmware_images.manifest import IMAGE_MANIFEST, PAYLOAD, ImageListing, ImageManifest, file_ref, listing_path
from firmware_images.profile import ImageError


@dataclass(frozen=True)
class VerifiedImage:
    rauc_info: dict  # `rauc info --output-format=json`
    manifest: ImageManifest  # image.json from inside the signed payload
    listing: ImageListing | None  # the file beside the bundle, when there is one


def verify_image(bundle: str | Path, keyring: str | Path) -> VerifiedImage:
    bundle, keyring = Path(bundle), Path(keyring)
    info = rauc.info(bundle, keyring)
    with tempfile.TemporaryDirectory(prefix="voicefleet-image-") as tmp:
        content = rauc.extract(bundle, keyring, Path(tmp) / "content")
        manifest = _inner_manifest(content, bundle)
    if (info["compatible"], info["version"]) != (manifest.compatible, manifest.image_version):
        raise ImageError("manifest_mismatch", f"{bundle}: RAUC says {info['compatible']} {info['version']}, "
                                              f"image.json says {manifest.compatible} {manifest.image_version}")
    listing = _listing(bundle, manifest)
    return VerifiedImage(info, manifest, listing)


def _inner_manifest(content: Path, bundle: Path) -> ImageManifest:
    try:
        with tarfile.open(content / PAYLOAD) as tar, tar.extractfile(IMAGE_MANIFEST) as f:
            return ImageManifest.model_validate_json(f.read())
    except (OSError, KeyError, tarfile.TarError, ValidationError) as e:
        raise ImageError("bad_manifest", f"{bundle}: no valid {IMAGE_MANIFEST} in {PAYLOAD}: {e}") from None


def _listing(bundle: Path, manifest: ImageManifest) -> ImageListing | None:
    path = listing_path(bundle)
    if not path.exists():
        return None
    try:
        listing = ImageListing.model_validate_json(path.read_bytes())
    except ValidationError as e:
        raise ImageError("bad_manifest", f"{path} is not a valid image listing: {e}") from None
    actual = file_ref(bundle, bundle.name)
    if (listing.rauc_bundle.size, listing.rauc_bundle.sha256) != (actual.size, actual.sha256):
        raise ImageError("checksum_mismatch", f"{bundle}: {actual.size} bytes, sha256 {actual.sha256}; {path.name} "
                                              f"says {listing.rauc_bundle.size} bytes, {listing.rauc_bundle.sha256}")
    if listing.manifest() != manifest:
        raise ImageError("manifest_mismatch", f"{path.name} differs from the {IMAGE_MANIFEST} signed inside {bundle}")
    return listing
