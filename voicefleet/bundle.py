"""Signed model bundles: model files, ``manifest.json`` and ``manifest.sig`` in one folder (docs/bundles.md).

The manifest lists each file's size and sha256 and ``manifest.sig`` is the raw ed25519 signature over its
exact bytes, so one signature covers the bundle. Agents load models only from a folder verify_bundle accepted.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import shutil
import tarfile
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO, Literal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from voicefleet.errors import CodedError

FORMAT = "voicefleet-bundle/1"
MANIFEST, SIGNATURE = "manifest.json", "manifest.sig"
FILE_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$"  # plain names: no folders, no "..", no dot files
MAX_BUNDLE_BYTES = 4 << 30  # an archive unpacking to more than this is refused
MAX_MEMBERS = 256
TRUSTED_KEYS_ENV = "VOICEFLEET_TRUSTED_KEYS"
PROJECT_KEY = Path(__file__).resolve().parent.parent / "models" / "keys" / "voicefleet-dev.pub"
_BLOCK = 1 << 20
_NAME_RE = re.compile(FILE_NAME_PATTERN)


def _bad_names(names: Iterable[str]) -> list[str]:
    return [n for n in names if not _NAME_RE.fullmatch(n) or n in (MANIFEST, SIGNATURE)]


class BundleError(CodedError):
    """A bundle that cannot be used; ``code`` is for machines, ``text`` says what is wrong and what to do."""


class FileEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    size: int = Field(ge=0)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class BundleManifest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    format: Literal["voicefleet-bundle/1"] = FORMAT
    model_id: str = Field(min_length=1)
    version: str = Field(min_length=1)
    engine: str = Field(min_length=1)
    languages: list[str]
    dialects: list[str] = Field(default_factory=list)
    voices: list[str] = Field(default_factory=list)
    sample_rate: int = Field(gt=0)
    files: dict[str, FileEntry] = Field(min_length=1)
    created_at: str
    key_id: str = Field(pattern=r"^[0-9a-f]{16}$")
    provenance: dict[str, Any] = Field(default_factory=dict)  # teacher, corpus, training steps, licence notes
    licence: str
    evaluation: dict[str, Any] = Field(default_factory=dict)
    extra: dict[str, Any] = Field(default_factory=dict)  # model config the engine needs, e.g. hop size

    @model_validator(mode="after")
    def _check(self) -> BundleManifest:
        datetime.fromisoformat(self.created_at)  # ValueError for a time that is not ISO 8601
        if bad := _bad_names(self.files):
            raise ValueError(f"file names {bad} must match {FILE_NAME_PATTERN} and not be {MANIFEST}/{SIGNATURE}")
        return self

    def to_bytes(self) -> bytes:
        """The canonical manifest.json bytes: the signature covers exactly these."""
        return (json.dumps(self.model_dump(mode="json"), sort_keys=True, indent=2, ensure_ascii=False) + "\n").encode()


@dataclass(frozen=True)
class VerifiedBundle:
    path: Path
    manifest: BundleManifest


# ------------------------------------------------------------------------------------ keys


def key_id(public_key: Ed25519PublicKey) -> str:
    return hashlib.sha256(public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)).hexdigest()[:16]


def generate_signing_key(path: str | Path) -> Ed25519PrivateKey:
    """Write a new PEM private key at ``path`` (mode 0600) and its raw public key, hex, at ``<path>.pub``."""
    key = Ed25519PrivateKey.generate()
    # O_EXCL: never overwrite a signing key; created 0600 so it is never readable by others, even briefly.
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as f:
        f.write(key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    Path(f"{path}.pub").write_text(key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex() + "\n")
    return key


def load_private_key(path: str | Path) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise BundleError("bad_key", f"{path} is not an ed25519 private key")
    return key


def load_public_key(path_or_hex: str | Path) -> Ed25519PublicKey:
    """A 64-hex-digit raw public key, or the path of a ``.pub`` file holding one."""
    text = str(path_or_hex).strip()
    if not re.fullmatch(r"[0-9a-fA-F]{64}", text):
        try:
            text = Path(path_or_hex).read_text().strip()
        except OSError as e:
            raise BundleError("bad_key", f"{path_or_hex!r} is no hex public key nor a readable file ({e})") from None
    try:
        return Ed25519PublicKey.from_public_bytes(bytes.fromhex(text))
    except ValueError:
        raise BundleError("bad_key", f"{path_or_hex}: expected 64 hex digits, a raw ed25519 public key") from None


def trusted_keys_from_env(environ: dict[str, str] | None = None) -> list[Ed25519PublicKey]:
    """Keys from ``VOICEFLEET_TRUSTED_KEYS`` (hex keys or .pub paths, comma-separated) plus the project key."""
    env = os.environ if environ is None else environ
    entries = [e.strip() for e in env.get(TRUSTED_KEYS_ENV, "").split(",") if e.strip()]
    if PROJECT_KEY.is_file():
        entries.append(str(PROJECT_KEY))
    keys: dict[str, Ed25519PublicKey] = {}
    for entry in entries:
        key = load_public_key(entry)  # a bad entry is an error, not silently skipped: trust must be explicit
        keys.setdefault(key_id(key), key)
    return list(keys.values())


# ---------------------------------------------------------------------------- write/verify


def _digest(src: Path, out: BinaryIO | None = None) -> tuple[int, str]:
    """Stream ``src`` in 1 MiB blocks (into ``out`` when given); return its size and sha256."""
    h, size = hashlib.sha256(), 0
    with open(src, "rb") as f:
        while block := f.read(_BLOCK):
            h.update(block)
            size += len(block)
            if out is not None:
                out.write(block)
    return size, h.hexdigest()


def _copy(src: Path, dst: Path) -> dict[str, Any]:
    with open(dst, "xb") as out:
        size, sha256 = _digest(src, out)
    return {"size": size, "sha256": sha256}


def write_bundle(out_dir: str | Path, files: dict[str, Path], manifest_fields: dict[str, Any],
                 private_key: Ed25519PrivateKey) -> BundleManifest:
    """Build a signed bundle at ``out_dir`` (which must not exist); ``files`` maps bundle names to sources."""
    out_dir = Path(out_dir)
    if out_dir.exists():
        raise BundleError("exists", f"{out_dir} already exists; remove it or choose another folder")
    if computed := {"format", "files", "key_id"} & manifest_fields.keys():
        raise BundleError("bad_manifest", f"{sorted(computed)} are computed by write_bundle; leave them out")
    if bad := _bad_names(files):  # checked before copying: a name like "../x" would land outside the bundle
        raise BundleError("bad_manifest", f"file names {bad} must match {FILE_NAME_PATTERN}")
    # Build beside out_dir and rename into place, so a half-written bundle is never seen there.
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.tmp-"))
    try:
        entries = {name: _copy(Path(src), tmp / name) for name, src in sorted(files.items())}
        fields = {"created_at": datetime.now(UTC).isoformat(timespec="seconds"), **manifest_fields,
                  "files": entries, "key_id": key_id(private_key.public_key())}
        try:
            manifest = BundleManifest(**fields)
        except ValidationError as e:
            raise BundleError("bad_manifest", f"manifest fields are invalid: {e}") from None
        data = manifest.to_bytes()
        (tmp / MANIFEST).write_bytes(data)
        (tmp / SIGNATURE).write_bytes(private_key.sign(data))
        tmp.chmod(0o755)
        tmp.rename(out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


def verify_bundle(path: str | Path, trusted_keys: list[Ed25519PublicKey], *,
                  cache_dir: str | Path | None = None) -> VerifiedBundle:
    """Check a bundle folder (or archive, see ``open_bundle``); raise BundleError at the first problem."""
    root = open_bundle(path, cache_dir)
    for name, code in ((MANIFEST, "missing_manifest"), (SIGNATURE, "missing_signature")):
        if not (root / name).is_file():
            raise BundleError(code, f"{root} has no {name}: not a signed bundle; rebuild it with write_bundle")
    data, sig = (root / MANIFEST).read_bytes(), (root / SIGNATURE).read_bytes()
    if len(sig) != 64:
        raise BundleError("bad_signature", f"{root / SIGNATURE} is {len(sig)} bytes, not 64: copy the bundle again")
    try:
        manifest = BundleManifest.model_validate_json(data)
    except ValidationError as e:
        raise BundleError("bad_manifest", f"{root / MANIFEST} is not a valid {FORMAT} manifest: {e}") from None
    _check_signature(root, manifest, data, sig, trusted_keys)
    for name, entry in sorted(manifest.files.items()):
        file = root / name
        if file.is_symlink() or not file.is_file():
            raise BundleError("missing_file", f"{file} is listed but missing or not a file: copy the bundle again")
        size, digest = _digest(file)
        if (size, digest) != (entry.size, entry.sha256):
            raise BundleError("checksum_mismatch", f"{file}: {size} bytes, sha256 {digest}; signed: {entry.size} "
                                                   f"bytes, sha256 {entry.sha256}. Copy the bundle again")
    for file in sorted(root.iterdir()):
        if file.name not in manifest.files and file.name not in (MANIFEST, SIGNATURE):
            raise BundleError("unexpected_file", f"{file} is not in the signed manifest: remove it or rebuild")
    return VerifiedBundle(root, manifest)


def _check_signature(root: Path, manifest: BundleManifest, data: bytes, sig: bytes,
                     trusted_keys: list[Ed25519PublicKey]) -> None:
    trusted = {key_id(k): k for k in trusted_keys}
    key = trusted.get(manifest.key_id)
    if key is None:
        raise BundleError("bad_signature", f"{root} is signed by key {manifest.key_id}, which is not trusted "
                                           f"(trusted: {sorted(trusted) or 'none'}); add its public key to "
                                           f"{TRUSTED_KEYS_ENV} or re-sign the bundle with a trusted key")
    try:
        key.verify(sig, data)
    except InvalidSignature:
        raise BundleError("bad_signature", f"{root}: manifest.sig does not match manifest.json for key "
                                           f"{manifest.key_id} (trusted: {sorted(trusted)}); one of them was "
                                           "changed after signing: rebuild or copy the bundle again") from None


# -------------------------------------------------------------------------------- archives


def open_bundle(path: str | Path, cache_dir: str | Path | None = None, max_bytes: int = MAX_BUNDLE_BYTES) -> Path:
    """A bundle folder as is; a ``.tar``/``.tar.gz`` archive safely unpacked to a folder (not yet verified).

    With ``cache_dir`` the folder is named by the archive's sha256 and reused; without, a fresh temp folder.
    """
    path = Path(path)
    if path.is_dir():
        return path
    if not path.is_file() or not path.name.endswith((".tar", ".tar.gz", ".tgz")):
        raise BundleError("not_a_bundle", f"{path} is neither a bundle folder nor a .tar/.tar.gz archive")
    dest = Path(cache_dir) / _digest(path)[1][:32] if cache_dir else None
    if dest and dest.is_dir():
        return dest  # unpacked before; verify_bundle still checks every byte
    if dest:
        dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="voicefleet-unpack-", dir=cache_dir))
    try:
        _extract(path, tmp, max_bytes)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if dest is None:
        return tmp
    try:
        tmp.rename(dest)  # atomic: a half-unpacked folder never has the cache name
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not dest.is_dir():  # else another process unpacked the same archive first
            raise
    return dest


def _extract(archive: Path, dest: Path, max_bytes: int) -> None:
    """Unpack plain files, at the top or under one top folder, flat into ``dest``; refuse anything else."""
    total, top = 0, ()
    try:
        with tarfile.open(archive, "r:*") as tar:
            for n, member in enumerate(tar):
                parts = PurePosixPath(member.name).parts  # "./x" -> ("x",); "/x" -> ("/", "x")
                folder = parts if member.isdir() else parts[:-1]
                top = top or folder
                # Plain names only: this refuses absolute paths, "..", backslashes and dot files.
                if (n >= MAX_MEMBERS or not (member.isreg() or member.isdir()) or (member.isreg() and not parts)
                        or not all(_NAME_RE.fullmatch(p) for p in parts) or len(folder) > 1 or folder not in ((), top)):
                    raise BundleError("unsafe_archive", f"{archive}: member {member.name!r} is not a plain file of "
                                                        "the bundle (links, devices, paths and nested folders are "
                                                        "refused); rebuild the archive with pack_archive")
                if member.isdir():
                    continue
                total += member.size
                if total > max_bytes:
                    raise BundleError("archive_too_large", f"{archive} unpacks to more than {max_bytes} bytes")
                with tar.extractfile(member) as src, open(dest / parts[-1], "xb") as out:
                    shutil.copyfileobj(src, out, _BLOCK)
    except (tarfile.TarError, EOFError, OSError) as e:
        raise BundleError("bad_archive", f"{archive} cannot be unpacked ({e}); copy it again") from None


def pack_archive(bundle_dir: str | Path, out_path: str | Path) -> Path:
    """Write ``bundle_dir``'s files flat into a deterministic tar.gz (same bytes in, same bytes out)."""
    bundle_dir, out_path = Path(bundle_dir), Path(out_path)
    files = sorted(bundle_dir.iterdir())
    if odd := [f.name for f in files if f.is_symlink() or not f.is_file()]:
        raise BundleError("unexpected_file", f"{bundle_dir}: {odd} are not regular files; a bundle is flat")
    tmp = out_path.with_name(f".{out_path.name}.tmp")
    with open(tmp, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz, \
            tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for file in files:
            info = tarfile.TarInfo(file.name)
            info.size, info.mode, info.mtime = file.stat().st_size, 0o644, 0  # no owner, time or umask in it
            with open(file, "rb") as f:
                tar.addfile(info, f)
    tmp.replace(out_path)
    return out_path
