"""The model registry: signed bundle versions uploaded to the control plane, kept as plain files
under ``<home>/models/<model_id>/<version>/`` and served to agents from there (docs/rollouts.md).

A bundle is accepted only when ``voicefleet.bundle.verify_bundle`` passes against the trusted keys
(``VOICEFLEET_TRUSTED_KEYS`` plus the project key); a version is immutable once stored: the same
bytes again are a no-op, different bytes under the same version are refused.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import tempfile
from pathlib import Path

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from control_plane.models import DeviceModel, ModelVersion
from voicefleet import bundle as b
from voicefleet.errors import CodedError
from voicefleet.protocol import OtaFile


class RegistryError(CodedError):
    """An upload or lookup the registry refuses; ``code`` for machines, ``text`` says what to do."""


def _refused(code: str, text: str) -> RegistryError:
    return RegistryError(code, f"bundle refused ({code}): {text}")


class Registry:
    def __init__(self, root: Path, trusted_keys=None):
        self.root = Path(root)
        self.trusted_keys = b.trusted_keys_from_env() if trusted_keys is None else trusted_keys

    def folder(self, model_id: str, version: str) -> Path:
        return self.root / model_id / version

    def add(self, session: Session, source: Path) -> tuple[ModelVersion, bool]:
        """Verify the bundle at ``source`` (folder or .tar/.tar.gz), store it, record it; returns the
        row and whether it is new. Raises RegistryError (BundleError's code and text when unsigned,
        tampered or signed by an untrusted key)."""
        with tempfile.TemporaryDirectory(dir=self.tmp_dir()) as unpack:
            try:
                verified = b.verify_bundle(source, self.trusted_keys, cache_dir=unpack)
            except b.BundleError as exc:
                raise _refused(exc.code, exc.text) from None
            m = verified.manifest
            if bad := [x for x in (m.model_id, m.version) if not re.fullmatch(b.FILE_NAME_PATTERN, x)]:
                raise _refused("bad_manifest", f"model id and version name folders and URL paths: {bad} must "
                                               f"match {b.FILE_NAME_PATTERN}; rebuild the bundle")
            files = [{"name": n, "size": e.size, "sha256": e.sha256} for n, e in sorted(m.files.items())]
            files += [_entry(verified.path / name) for name in (b.MANIFEST, b.SIGNATURE)]
            existing = self.get(session, m.model_id, m.version)
            if existing is not None:
                if existing.files != files:
                    raise _refused("version_exists", f"{m.model_id} {m.version} is already stored with other "
                                                     "contents; a version never changes: give it a new version")
                return existing, False
            self._store(verified.path, self.folder(m.model_id, m.version))
        row = ModelVersion(model_id=m.model_id, version=m.version, engine=m.engine, key_id=m.key_id,
                           bytes=sum(f["size"] for f in files), files=files, manifest=m.model_dump(mode="json"))
        session.add(row)
        try:
            session.commit()
        except IntegrityError:  # the same version uploaded concurrently: the first one stands
            session.rollback()
            return self.add(session, source)
        session.refresh(row)
        return row, True

    def get(self, session: Session, model_id: str, version: str) -> ModelVersion | None:
        return session.exec(select(ModelVersion).where(ModelVersion.model_id == model_id,
                                                       ModelVersion.version == version)).first()

    def versions(self, session: Session, model_id: str | None = None) -> list[ModelVersion]:
        query = select(ModelVersion).order_by(ModelVersion.model_id, ModelVersion.uploaded_at)
        if model_id is not None:
            query = query.where(ModelVersion.model_id == model_id)
        return list(session.exec(query).all())

    def file_path(self, row: ModelVersion, name: str) -> Path | None:
        """The stored file ``name`` of a version, or None when the version has no such file."""
        if name not in {f["name"] for f in row.files}:
            return None
        return self.folder(row.model_id, row.version) / name

    def tmp_dir(self) -> Path:
        """Scratch space on the registry's own file system (uploads, unpacking), so stores are renames."""
        tmp = self.root / ".tmp"
        tmp.mkdir(parents=True, exist_ok=True)
        return tmp

    def _store(self, src: Path, dest: Path) -> None:
        """Copy into place through a temp folder and a rename: a half-copied version is never served."""
        if dest.is_dir():
            shutil.rmtree(dest)  # left by an upload whose row never committed
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=self.tmp_dir()))
        for file in src.iterdir():
            shutil.copyfile(file, tmp / file.name)
        tmp.rename(dest)


def ota_files(row: ModelVersion) -> list[OtaFile]:
    return [OtaFile(**f) for f in row.files]


def running(session: Session, model_id: str | None = None) -> list[DeviceModel]:
    """Which devices run what (those that report a model)."""
    query = select(DeviceModel).where(DeviceModel.model_id.is_not(None)).order_by(DeviceModel.device_id)
    if model_id is not None:
        query = query.where(DeviceModel.model_id == model_id)
    return list(session.exec(query).all())


def _entry(path: Path) -> dict:
    data = path.read_bytes()  # manifest.json and manifest.sig: small; the model files' hashes are signed
    return {"name": path.name, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
