"""voicefleet.bundle: signing, verification refusals with their codes, keys and archives (real crypto)."""

from __future__ import annotations

import io
import json
import shutil
import stat
import tarfile
from pathlib import Path

import pytest

from voicefleet import bundle as b

FIELDS = dict(model_id="student-zh-yue", version="0.3.1", engine="student-onnx", languages=["zh", "en"],
              dialects=["yue"], voices=["default"], sample_rate=22050, licence="Apache-2.0",
              provenance={"teacher": "CosyVoice3", "corpus": "synthetic-zh-yue", "steps": 120_000},
              evaluation={"cer": 0.041, "utmos": 3.9}, extra={"hop_size": 256})


@pytest.fixture
def key(tmp_path: Path) -> b.Ed25519PrivateKey:
    return b.generate_signing_key(tmp_path / "signing.pem")


@pytest.fixture
def bundle(tmp_path: Path, key: b.Ed25519PrivateKey) -> Path:
    src = tmp_path / "src"
    src.mkdir()
    files = {"acoustic.onnx": b"\x08\x01acoustic" * 1000, "vocoder.onnx": bytes(range(256)) * 5000,
             "symbols.json": json.dumps(["_", "a", "b", "你"]).encode()}
    for name, data in files.items():
        (src / name).write_bytes(data)
    b.write_bundle(tmp_path / "bundle", {n: src / n for n in files}, FIELDS, key)
    return tmp_path / "bundle"


def refused(path: Path, key: b.Ed25519PrivateKey, code: str) -> b.BundleError:
    with pytest.raises(b.BundleError) as e:
        b.verify_bundle(path, [key.public_key()])
    assert e.value.code == code, e.value
    return e.value


def flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


# --------------------------------------------------------------------------------- keys


def test_key_files(tmp_path: Path, key: b.Ed25519PrivateKey) -> None:
    pem = tmp_path / "signing.pem"
    assert stat.S_IMODE(pem.stat().st_mode) == 0o600
    pub_hex = (tmp_path / "signing.pem.pub").read_text().strip()
    assert len(pub_hex) == 64
    kid = b.key_id(key.public_key())
    assert len(kid) == 16
    assert b.key_id(b.load_public_key(pub_hex)) == kid
    assert b.key_id(b.load_public_key(tmp_path / "signing.pem.pub")) == kid
    assert b.key_id(b.load_private_key(pem).public_key()) == kid
    with pytest.raises(FileExistsError):
        b.generate_signing_key(pem)  # a signing key is never overwritten
    with pytest.raises(b.BundleError, match="bad_key"):
        b.load_public_key("not-a-key")


def test_trusted_keys_from_env(tmp_path: Path, key: b.Ed25519PrivateKey) -> None:
    other = b.generate_signing_key(tmp_path / "other.pem")
    env = {b.TRUSTED_KEYS_ENV: f" {tmp_path / 'signing.pem.pub'} , {tmp_path / 'other.pem.pub'},"}
    ids = {b.key_id(k) for k in b.trusted_keys_from_env(env)}
    assert {b.key_id(key.public_key()), b.key_id(other.public_key())} <= ids
    if b.PROJECT_KEY.is_file():
        assert b.key_id(b.load_public_key(b.PROJECT_KEY)) in ids
    with pytest.raises(b.BundleError, match="bad_key"):
        b.trusted_keys_from_env({b.TRUSTED_KEYS_ENV: "abc"})


# ------------------------------------------------------------------------- sign + verify


def test_round_trip(bundle: Path, key: b.Ed25519PrivateKey) -> None:
    verified = b.verify_bundle(bundle, [key.public_key()])
    m = verified.manifest
    assert verified.path == bundle
    assert (m.format, m.model_id, m.key_id) == (b.FORMAT, "student-zh-yue", b.key_id(key.public_key()))
    assert sorted(m.files) == ["acoustic.onnx", "symbols.json", "vocoder.onnx"]
    assert m.files["vocoder.onnx"].size == 256 * 5000
    assert m.extra == {"hop_size": 256} and m.provenance["teacher"] == "CosyVoice3"
    raw = (bundle / "manifest.json").read_bytes()
    assert raw == m.to_bytes() and raw.endswith(b"}\n")
    assert len((bundle / "manifest.sig").read_bytes()) == 64
    assert not [p for p in bundle.parent.iterdir() if p.name.startswith(".bundle.tmp")]


def test_write_refuses_bad_names_and_existing_folder(tmp_path: Path, bundle: Path, key: b.Ed25519PrivateKey) -> None:
    src = bundle / "acoustic.onnx"
    for name in ("../evil.onnx", "sub/acoustic.onnx", ".hidden", "manifest.json"):
        with pytest.raises(b.BundleError, match="bad_manifest"):
            b.write_bundle(tmp_path / "new", {name: src}, FIELDS, key)
    with pytest.raises(b.BundleError, match="exists"):
        b.write_bundle(bundle, {"a.onnx": src}, FIELDS, key)
    with pytest.raises(b.BundleError, match="bad_manifest"):
        b.write_bundle(tmp_path / "new", {"a.onnx": src}, {**FIELDS, "sample_rate": 0}, key)
    assert not (tmp_path / "new").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".new.tmp")]


def test_model_file_byte_changed(bundle: Path, key: b.Ed25519PrivateKey) -> None:
    flip_byte(bundle / "vocoder.onnx", 1000)
    err = refused(bundle, key, "checksum_mismatch")
    assert "vocoder.onnx" in err.text


def test_manifest_byte_changed(bundle: Path, key: b.Ed25519PrivateKey) -> None:
    manifest = bundle / "manifest.json"
    manifest.write_bytes(manifest.read_bytes().replace(b'"0.3.1"', b'"0.3.2"'))
    err = refused(bundle, key, "bad_signature")
    assert b.key_id(key.public_key()) in err.text


def test_signed_by_another_key(tmp_path: Path, bundle: Path) -> None:
    other = b.generate_signing_key(tmp_path / "other.pem")
    err = refused(bundle, other, "bad_signature")
    manifest_key = json.loads((bundle / "manifest.json").read_text())["key_id"]
    assert manifest_key in err.text and b.key_id(other.public_key()) in err.text
    with pytest.raises(b.BundleError, match="bad_signature"):
        b.verify_bundle(bundle, [])


def test_missing_file(bundle: Path, key: b.Ed25519PrivateKey) -> None:
    (bundle / "symbols.json").unlink()
    assert "symbols.json" in refused(bundle, key, "missing_file").text


def test_extra_file(bundle: Path, key: b.Ed25519PrivateKey) -> None:
    (bundle / "backdoor.onnx").write_bytes(b"x")
    assert "backdoor.onnx" in refused(bundle, key, "unexpected_file").text


def test_truncated_signature(bundle: Path, key: b.Ed25519PrivateKey) -> None:
    sig = bundle / "manifest.sig"
    sig.write_bytes(sig.read_bytes()[:40])
    assert "40 bytes" in refused(bundle, key, "bad_signature").text


def test_missing_manifest_or_signature(bundle: Path, key: b.Ed25519PrivateKey) -> None:
    (bundle / "manifest.sig").unlink()
    refused(bundle, key, "missing_signature")
    (bundle / "manifest.json").unlink()
    refused(bundle, key, "missing_manifest")


def test_unparsable_manifest(bundle: Path, key: b.Ed25519PrivateKey) -> None:
    (bundle / "manifest.json").write_text("{not json")
    refused(bundle, key, "bad_manifest")


# ----------------------------------------------------------------------------- archives


def test_archive_round_trip(tmp_path: Path, bundle: Path, key: b.Ed25519PrivateKey) -> None:
    first = b.pack_archive(bundle, tmp_path / "one.tar.gz")
    second = b.pack_archive(bundle, tmp_path / "two.tar.gz")
    assert first.read_bytes() == second.read_bytes()  # deterministic
    verified = b.verify_bundle(first, [key.public_key()], cache_dir=tmp_path / "cache")
    assert verified.path.parent == tmp_path / "cache"
    assert verified.manifest == b.verify_bundle(bundle, [key.public_key()]).manifest
    assert b.open_bundle(first, tmp_path / "cache") == verified.path  # unpacked once, then reused
    fresh = b.verify_bundle(first, [key.public_key()]).path  # no cache: a fresh temp folder
    assert fresh != verified.path
    shutil.rmtree(fresh)


def test_archive_with_top_folder(tmp_path: Path, bundle: Path, key: b.Ed25519PrivateKey) -> None:
    archive = tmp_path / "folder.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(bundle, arcname="student-zh-yue")
    assert b.verify_bundle(archive, [key.public_key()], cache_dir=tmp_path).manifest.model_id == "student-zh-yue"


def _tar_with(path: Path, *members: tarfile.TarInfo) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for info in members:
            tar.addfile(info, io.BytesIO(b"x" * info.size) if info.isreg() else None)
    return path


@pytest.mark.parametrize("name,kind", [("../evil", tarfile.REGTYPE), ("/etc/evil", tarfile.REGTYPE),
                                       ("a/../../evil", tarfile.REGTYPE), ("link", tarfile.SYMTYPE),
                                       ("hard", tarfile.LNKTYPE), ("dev", tarfile.CHRTYPE),
                                       ("a/b/c.onnx", tarfile.REGTYPE)])
def test_unsafe_archive_refused(tmp_path: Path, name: str, kind: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.type, info.size, info.linkname = kind, 1 if kind == tarfile.REGTYPE else 0, "/etc/passwd"
    archive = _tar_with(tmp_path / "evil.tar.gz", info)
    with pytest.raises(b.BundleError) as e:
        b.open_bundle(archive, tmp_path / "cache")
    assert e.value.code == "unsafe_archive" and name in e.value.text
    assert not (tmp_path / "evil").exists() and not list((tmp_path / "cache").iterdir())


def test_archive_size_cap(tmp_path: Path) -> None:
    info = tarfile.TarInfo("big.onnx")
    info.size = 2048
    archive = _tar_with(tmp_path / "big.tar.gz", info)
    with pytest.raises(b.BundleError, match="archive_too_large"):
        b.open_bundle(archive, max_bytes=1024)


def test_not_a_bundle(tmp_path: Path, key: b.Ed25519PrivateKey) -> None:
    (tmp_path / "model.zip").write_bytes(b"PK")
    refused(tmp_path / "model.zip", key, "not_a_bundle")
    (tmp_path / "junk.tar.gz").write_bytes(b"not a tar")
    refused(tmp_path / "junk.tar.gz", key, "bad_archive")
