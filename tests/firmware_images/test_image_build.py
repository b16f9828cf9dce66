"""Device images: real RAUC 1.8 and squashfs-tools, a throwaway CA made here, the committed zh-student
bundle. Each profile's image verifies with ``rauc info --keyring``; another CA, a tampered payload or
signature and a listing that does not match are refused; the mark-good step speaks from the image's
own bundle. The device's RAUC system (slots, bootloader) cannot be here: ``rauc status`` is a
stand-in script, named as such below."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from packaging.utils import canonicalize_name

from firmware_images import mark_good
from firmware_images.build import Recipe, Signer, build_image, build_wheel
from firmware_images.lock import read_lock
from firmware_images.manifest import ImageListing, ImageManifest, listing_path
from firmware_images.profile import ImageError, load_profile, profile_names
from firmware_images.verify import verify_image
from voicefleet import bundle as vb

ROOT = Path(__file__).resolve().parents[2]
COMMITTED_BUNDLE = ROOT / "models" / "bundles" / "zh-student"
RAUC = shutil.which("rauc") or "rauc"  # the real one (make test installs it), even with a stand-in on PATH


# --------------------------------------------------------------------------- certificates


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(subject: str, key, issuer: str, issuer_key, ca: bool) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    b = (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(_name(issuer))
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=365))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    usage = dict(digital_signature=not ca, key_cert_sign=ca, crl_sign=ca, content_commitment=False,
                 key_encipherment=False, data_encipherment=False, key_agreement=False, encipher_only=False,
                 decipher_only=False)
    return b.add_extension(x509.KeyUsage(**usage), critical=True).sign(issuer_key, hashes.SHA256())


def make_ca(folder: Path, cn: str) -> Signer:
    """A CA (``ca.pem``, the devices' keyring) and a signing certificate it issued."""
    folder.mkdir()
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    pem = serialization.Encoding.PEM
    (folder / "ca.pem").write_bytes(_cert(cn, ca_key, cn, ca_key, ca=True).public_bytes(pem))
    (folder / "signer.pem").write_bytes(_cert(f"{cn} signer", key, cn, ca_key, ca=False).public_bytes(pem))
    (folder / "signer.key").write_bytes(key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                                          serialization.NoEncryption()))
    return Signer(folder / "signer.pem", folder / "signer.key", folder / "ca.pem")


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("images")


@pytest.fixture(scope="module")
def signer(work: Path) -> Signer:
    return make_ca(work / "ca", "voicefleet test CA")


@pytest.fixture(scope="module")
def other_ca(work: Path) -> Signer:
    return make_ca(work / "other-ca", "someone else's CA")


@pytest.fixture(scope="module")
def wheel(work: Path) -> Path:
    return build_wheel(work / "wheel")


@pytest.fixture(scope="module")
def images(work: Path, signer: Signer) -> dict[str, Path]:
    """One image per profile, built through the real command line (``voicefleet image build``)."""
    out = {}
    for name in profile_names():
        out[name] = work / "out" / f"{name}.raucb"
        proc = subprocess.run([sys.executable, "-m", "voicefleet_cli", "image", "build", "--profile", name,
                               "--out", str(out[name]), "--bundle", str(COMMITTED_BUNDLE), "--version", "1.4.0",
                               "--cert", str(signer.cert), "--key", str(signer.key), "--keyring",
                               str(signer.keyring)], capture_output=True, text=True, cwd=ROOT, timeout=120)
        assert proc.returncode == 0, proc.stderr
        assert f"verified against {signer.keyring}" in proc.stdout
    return out


def rauc_info(image: Path, keyring: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([RAUC, "info", f"--keyring={keyring}", "--output-format=json", str(image)],
                          capture_output=True, text=True, timeout=60)


def slot_files(image: Path, keyring: Path, dest: Path) -> Path:
    """The slot's tree as a device would unpack it (after `rauc extract` checked every block)."""
    dest.mkdir(parents=True, exist_ok=True)
    subprocess.run([RAUC, "extract", f"--keyring={keyring}", str(image), str(dest / "content")], check=True,
                   capture_output=True, timeout=60)
    with tarfile.open(dest / "content" / "appfs.tar") as tar:
        tar.extractall(dest / "slot", filter="data")
    return dest / "slot"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --------------------------------------------------------------------------------- builds


@pytest.mark.parametrize("name", ["jetson-orin-nano", "x86_64-hub"])
def test_image_verifies_with_rauc_and_matches_its_manifests(name: str, images: dict[str, Path], signer: Signer,
                                                            tmp_path: Path) -> None:
    profile, image = load_profile(name), images[name]
    proc = rauc_info(image, signer.keyring)
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert (info["compatible"], info["version"]) == (profile.compatible, "1.4.0")
    assert info["hooks"] == ["install-check"]
    [[slot_class, payload]] = [next(iter(i.items())) for i in info["images"]]
    assert slot_class == profile.slot_class and payload["hooks"] == ["post-install"]

    listing = ImageListing.model_validate_json(listing_path(image).read_bytes())
    assert listing.rauc_bundle.sha256 == sha256(image) and listing.rauc_bundle.size == image.stat().st_size
    assert (listing.profile, listing.arch, listing.image_version) == (name, profile.arch, "1.4.0")
    assert listing.dependencies.pins == read_lock(profile) and "onnxruntime" in listing.dependencies.pins
    committed = json.loads((COMMITTED_BUNDLE / "manifest.json").read_text())
    [b] = listing.bundles
    assert (b.model_id, b.version, b.manifest_sha256) == (committed["model_id"], committed["version"],
                                                          sha256(COMMITTED_BUNDLE / "manifest.json"))

    slot = slot_files(image, signer.keyring, tmp_path)
    assert ImageManifest.model_validate_json((slot / "image.json").read_bytes()) == listing.manifest()
    for ref in (listing.agent.wheel, listing.dependencies.lock, listing.config):
        assert sha256(slot / ref.path) == ref.sha256
    for f in committed["files"]:  # the model files travel byte for byte and still verify as a bundle
        assert sha256(slot / b.path / f) == sha256(COMMITTED_BUNDLE / f)
    assert vb.verify_bundle(slot / b.path, vb.trusted_keys_from_env()).manifest.model_id == b.model_id
    env = (slot / "config" / "agent.env").read_text().splitlines()
    assert f"VOICEFLEET_STUDENT_BUNDLE={profile.mount_point}/{b.path}" in env
    assert f"VOICEFLEET_MAX_CONCURRENCY={profile.agent['max_concurrency']}" in env
    assert f"VOICEFLEET_TAGS={profile.agent['tags']}" in env  # rollouts target devices by hw: tag
    unit = (slot / "systemd" / "voicefleet-mark-good.service").read_text()
    assert f"--manifest {profile.mount_point}/image.json" in unit and "@" not in unit
    assert verify_image(image, signer.keyring).listing == listing


def test_an_os_image_goes_into_the_rootfs_slot(tmp_path: Path, signer: Signer, wheel: Path) -> None:
    """With --rootfs the bundle updates the OS and the agent together (the root filesystem here is a
    small real ext4, made with mkfs.ext4; a device's comes from its Yocto build)."""
    tree = tmp_path / "tree" / "etc"
    tree.mkdir(parents=True)
    (tree / "os-release").write_text('NAME="voicefleet test OS"\n')
    rootfs = tmp_path / "core-image.ext4"
    subprocess.run(["mkfs.ext4", "-q", "-F", "-d", str(tree.parent), str(rootfs), "2M"], check=True, timeout=30)
    image = tmp_path / "os.raucb"
    listing = build_image("jetson-orin-nano", image, signer, Recipe(wheel=wheel, rootfs=rootfs, version="2.0.0"))
    assert listing.rootfs is not None and listing.rootfs.sha256 == sha256(rootfs)
    info = json.loads(rauc_info(image, signer.keyring).stdout)
    slots = {k: v for i in info["images"] for k, v in i.items()}
    assert set(slots) == {"appfs", "rootfs"}
    assert (slots["rootfs"]["filename"], slots["rootfs"]["checksum"]) == ("rootfs.ext4", sha256(rootfs))
    assert verify_image(image, signer.keyring).manifest.rootfs == listing.rootfs


def test_another_ca_refuses_the_image(images: dict[str, Path], other_ca: Signer) -> None:
    image = images["x86_64-hub"]
    proc = rauc_info(image, other_ca.keyring)
    assert proc.returncode != 0 and "signature verification failed" in proc.stderr
    with pytest.raises(ImageError) as e:
        verify_image(image, other_ca.keyring)
    assert e.value.code == "bad_signature"


def _tampered(image: Path, dest: Path, offset: int) -> Path:
    data = bytearray(image.read_bytes())
    data[offset] ^= 0x01
    dest.write_bytes(data)
    return dest


def test_a_tampered_image_is_refused(images: dict[str, Path], signer: Signer, tmp_path: Path) -> None:
    image = images["jetson-orin-nano"]
    # A flipped bit in the payload (the model files): the dm-verity hash tree no longer matches.
    with pytest.raises(ImageError) as e:
        verify_image(_tampered(image, tmp_path / "payload.raucb", image.stat().st_size // 2), signer.keyring)
    assert e.value.code == "bad_payload" and "corrupted" in e.value.text
    # A flipped bit in the CMS signature (the bundle's last bytes, before the 8-byte size): rauc info refuses.
    bad_sig = _tampered(image, tmp_path / "sig.raucb", image.stat().st_size - 100)
    assert rauc_info(bad_sig, signer.keyring).returncode != 0


def test_a_listing_that_does_not_match_is_refused(images: dict[str, Path], signer: Signer, tmp_path: Path) -> None:
    image = shutil.copy(images["x86_64-hub"], tmp_path / "hub.raucb")
    listing = json.loads(listing_path(images["x86_64-hub"]).read_text())
    listing_path(image).write_text(json.dumps({**listing, "image_version": "9.9.9"}))
    with pytest.raises(ImageError) as e:
        verify_image(image, signer.keyring)
    assert e.value.code == "manifest_mismatch"
    # The jetson image, correctly signed, under the hub's listing: its hash gives it away.
    shutil.copy(images["jetson-orin-nano"], image)
    listing_path(image).write_text(json.dumps(listing))
    with pytest.raises(ImageError) as e:
        verify_image(image, signer.keyring)
    assert e.value.code == "checksum_mismatch"


def test_build_refuses_bad_inputs(tmp_path: Path, signer: Signer, wheel: Path) -> None:
    def refused(code: str, **kw) -> None:
        args = dict(profile="x86_64-hub", signer=signer) | kw
        with pytest.raises(ImageError) as e:
            build_image(args.pop("profile"), tmp_path / "x.raucb", args.pop("signer"), Recipe(wheel=wheel, **args))
        assert e.value.code == code, e.value
        assert not (tmp_path / "x.raucb").exists()

    refused("unknown_profile", profile="raspberry-pi")
    refused("bad_version", version="1.0\n[hooks]")  # one line of manifest.raucm, nothing more
    refused("missing_cert", signer=Signer(tmp_path / "none.pem", signer.key, signer.keyring))
    untrusted = tmp_path / "untrusted"  # a well-formed bundle signed by a key nobody trusts
    vb.write_bundle(untrusted, {"a.onnx": COMMITTED_BUNDLE / "symbols.json"},
                    dict(model_id="m", version="1", engine="student-onnx", languages=["zh"], sample_rate=24000,
                         licence="test"), vb.generate_signing_key(tmp_path / "k.pem"))
    refused("bad_bundle", bundles=(untrusted,))
    refused("duplicate_bundle", bundles=(COMMITTED_BUNDLE, COMMITTED_BUNDLE))
    refused("bad_rootfs", rootfs=COMMITTED_BUNDLE / "symbols.json")
    # A certificate from another CA than the keyring: rauc bundle refuses to sign against it.
    other = make_ca(tmp_path / "ca2", "other")
    refused("sign_failed", signer=Signer(other.cert, other.key, signer.keyring))


# ---------------------------------------------------------------------------- device side


def _hook(step: str, content: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """The bundle's hook as RAUC runs it: from the bundle's folder, with RAUC_* variables."""
    return subprocess.run([str(content / "hook"), step], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **env})


def test_install_check_hook_refuses_another_board_or_cpu(images: dict[str, Path], signer: Signer,
                                                         tmp_path: Path) -> None:
    host = os.uname().machine
    for name, image in images.items():
        content = slot_files(image, signer.keyring, tmp_path / name).parent / "content"
        compatible = load_profile(name).compatible
        other_board = _hook("install-check", content, RAUC_MF_COMPATIBLE=compatible,
                            RAUC_SYSTEM_COMPATIBLE="voicefleet-other")
        assert other_board.returncode == 10 and "this device is 'voicefleet-other'" in other_board.stderr
        same = _hook("install-check", content, RAUC_MF_COMPATIBLE=compatible, RAUC_SYSTEM_COMPATIBLE=compatible)
        if load_profile(name).arch == host:
            assert same.returncode == 0, same.stderr
        else:
            assert same.returncode == 10 and f"this CPU is {host}" in same.stderr


@pytest.mark.slow  # 20-30 s: it installs the whole edge environment (onnxruntime, numpy, ...)
def test_post_install_hook_installs_exactly_the_lock(images: dict[str, Path], signer: Signer,
                                                    tmp_path: Path) -> None:
    """The slot's own venv gets the agent and exactly the pinned versions, from the package index
    pip is configured with (the image carries no dependency wheels without --with-wheels)."""
    image = images["x86_64-hub" if os.uname().machine == "x86_64" else "jetson-orin-nano"]
    slot = slot_files(image, signer.keyring, tmp_path)
    proc = _hook("slot-post-install", tmp_path / "content", RAUC_SLOT_MOUNT_POINT=str(slot))
    assert proc.returncode == 0, proc.stderr[-2000:]
    listed = subprocess.run([str(slot / "venv" / "bin" / "python"), "-c", "import importlib.metadata as m; "
                             "print('\\n'.join(f'{d.name} {d.version}' for d in m.distributions()))"],
                            capture_output=True, text=True, check=True).stdout.split("\n")
    installed = {canonicalize_name(n): v for n, v in (line.split() for line in listed if line)}
    for seeded in ("pip", "setuptools"):  # the venv's own, from ensurepip
        installed.pop(seeded, None)
    listing = ImageListing.model_validate_json(listing_path(image).read_bytes())
    assert installed == {**listing.dependencies.pins, "voicefleet": listing.agent.version}


@pytest.fixture
def stand_in_rauc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """STAND-IN for the device's RAUC service (its slots and bootloader cannot be here): a `rauc`
    first on PATH that says slot A booted and logs what it was told."""
    log = tmp_path / "rauc.log"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "rauc"
    script.write_text(f'#!/bin/sh\necho "$*" >> {log}\n'
                      'case "$*" in *output-format*) echo \'{"booted": "A"}\';; esac\n')
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    return log


def test_mark_good_speaks_from_the_image_and_marks_the_slot(images: dict[str, Path], signer: Signer,
                                                            tmp_path: Path, stand_in_rauc: Path) -> None:
    from edge_agent.engines.student import StudentEngine
    from edge_agent.local_api import LocalApi

    slot = slot_files(images["x86_64-hub"], signer.keyring, tmp_path)  # before the stand-in matters
    [b] = json.loads((slot / "image.json").read_text())["bundles"]
    api = LocalApi(StudentEngine(bundle=slot / b["path"]), None, None, unix_socket=tmp_path / "local-api.sock")
    api.start()
    try:
        record = mark_good.check_image(slot / "image.json", api.unix_socket, tmp_path / "status.json", wait_s=30)
    finally:
        api.stop()
    assert record["state"] == "good" and record["test"]["audio_bytes"] > mark_good.MIN_AUDIO_BYTES
    assert stand_in_rauc.read_text().splitlines()[-1] == "status mark-good"
    assert mark_good.image_report(tmp_path / "status.json") == {
        "image_version": "1.4.0", "profile": "x86_64-hub", "slot": "A", "state": "good",
        "checked_at": record["checked_at"]}

    # Nothing answers on the socket: the slot is marked bad (the unit then reboots into the other one).
    record = mark_good.check_image(slot / "image.json", str(tmp_path / "local-api.sock"), tmp_path / "status.json",
                                   wait_s=0)
    assert record["state"] == "bad" and record["error"]
    assert stand_in_rauc.read_text().splitlines()[-1] == "status mark-bad"
    assert mark_good.image_report(tmp_path / "status.json")["state"] == "bad"


def test_lock_lists_exact_pins_for_every_profile() -> None:
    for name in profile_names():
        pins = read_lock(load_profile(name))
        assert {"numpy", "onnxruntime", "paho-mqtt", "pydantic"} <= set(pins)
        assert "torch" not in pins and "fastapi" not in pins  # the edge install stays small
