"""Debian's ``rauc`` 1.8 command line: make a signed bundle, read and verify one.

A ``verity`` bundle's CMS signature covers its manifest, and the manifest pins the payload's
dm-verity root hash: ``rauc info`` checks the signature chain only, ``rauc extract`` (like an
install) also checks every payload block. Verification here runs both.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from firmware_images.profile import ImageError

TIMEOUT_S = 600


def require_tools() -> None:
    if missing := [t for t in ("rauc", "mksquashfs", "unsquashfs") if shutil.which(t) is None]:
        raise ImageError("rauc_missing", f"{', '.join(missing)} not found: install Debian's rauc and "
                                         "squashfs-tools (apt-get install -y rauc squashfs-tools)")


def _run(args: list[str], code: str, what: str) -> str:
    require_tools()
    proc = subprocess.run(["rauc", *args], capture_output=True, text=True, timeout=TIMEOUT_S)
    if proc.returncode != 0:
        noise = ("WARNING", "rauc-Message")  # progress and certificate-expiry lines, not the reason
        detail = " ".join(ln for ln in proc.stderr.splitlines() if not any(n in ln for n in noise)).strip()
        raise ImageError(code, f"{what}: rauc {args[0]} failed: {detail or proc.stdout.strip()}")
    return proc.stdout


def make_bundle(content: Path, out: Path, *, cert: Path, key: Path, keyring: Path | None) -> None:
    """Sign ``content`` (manifest.raucm and the images it names) into ``out``; with a keyring, rauc
    also checks that the signer chains to it."""
    args = ["bundle", f"--cert={cert}", f"--key={key}"] + ([f"--keyring={keyring}"] if keyring else [])
    _run([*args, str(content), str(out)], "sign_failed", f"signing {out} with {cert}")


def info(bundle: Path, keyring: Path) -> dict:
    """The bundle's RAUC manifest as ``rauc info`` prints it, after checking its signature chain."""
    out = _run(["info", f"--keyring={keyring}", "--output-format=json", str(bundle)], "bad_signature",
               f"{bundle} is not signed by a certificate that {keyring} trusts")
    return json.loads(out)


def extract(bundle: Path, keyring: Path, dest: Path) -> Path:
    """Unpack the bundle into ``dest`` (which must not exist), checking signature and payload."""
    _run(["extract", f"--keyring={keyring}", str(bundle), str(dest)], "bad_payload",
         f"{bundle} does not verify against {keyring}")
    return dest
