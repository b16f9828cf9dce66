"""``voicefleet image build|verify``: signed device images (docs/images.md)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from firmware_images.profile import ImageError, profile_names


def cmd_build(args) -> int:
    from firmware_images.build import Recipe, Signer, build_image

    recipe = Recipe(version=args.version, wheel=args.wheel, with_wheels=args.with_wheels, rootfs=args.rootfs,
                    **({"bundles": tuple(args.bundle)} if args.bundle else {}))
    listing = build_image(args.profile, args.out, Signer(args.cert, args.key, args.keyring), recipe)
    verified = "verified against " + str(args.keyring) if args.keyring else "NOT verified (no --keyring)"
    print(f"{args.out}: {listing.profile} image {listing.image_version}, {listing.rauc_bundle.size} bytes, "
          f"sha256 {listing.rauc_bundle.sha256}; {verified}")
    return 0


def cmd_verify(args) -> int:
    from firmware_images.verify import verify_image

    image = verify_image(args.image, args.keyring)
    sys.stdout.write((image.listing or image.manifest).to_bytes().decode())
    return 0


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="voicefleet image", description=__doc__)
    sub = ap.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="build a signed RAUC image for a hardware profile")
    b.add_argument("--profile", required=True, help=f"{', '.join(profile_names())}, or a profile .toml file")
    b.add_argument("--out", required=True, type=Path, help="the .raucb to write (NAME.raucb.json is written beside)")
    b.add_argument("--bundle", action="append", type=Path,
                   help="a signed model bundle, folder or archive; repeatable (default: models/bundles/zh-student)")
    b.add_argument("--cert", required=True, type=Path, help="PEM signing certificate")
    b.add_argument("--key", required=True, type=Path, help="its PEM private key")
    b.add_argument("--keyring", type=Path, help="PEM CA certificate(s) the devices trust: verify the result")
    b.add_argument("--version", help="image version (default: agent version + build time)")
    b.add_argument("--wheel", type=Path, help="a prebuilt agent wheel (default: pip wheel of this project)")
    b.add_argument("--rootfs", type=Path, help="the OS root filesystem image (.ext4, .img, .tar.*) for the "
                   "profile's rootfs slot, e.g. from a Yocto build")
    b.add_argument("--with-wheels", action="store_true",
                   help="also download every pinned wheel for the profile's platform (offline install; large)")
    b.set_defaults(func=cmd_build)
    v = sub.add_parser("verify", help="check an image's signature, payload and manifests against a keyring")
    v.add_argument("image", type=Path)
    v.add_argument("--keyring", required=True, type=Path)
    v.set_defaults(func=cmd_verify)
    return ap


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ImageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
