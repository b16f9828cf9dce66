"""Model bundles for update tests: the committed student's files signed as new versions with a key
made in the test (the project's private key is not here), a "broken" one that verifies and loads but
speaks silence, and the OtaCommand that installs a bundle from a URL.

Trust the key in the process that verifies: ``VOICEFLEET_TRUSTED_KEYS=<key.public_hex>``.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from pathlib import Path

from edge_agent.engines.student import DEFAULT_BUNDLE
from voicefleet import protocol as p
from voicefleet.bundle import BundleManifest, generate_signing_key, write_bundle

COMMITTED = DEFAULT_BUNDLE
COMMITTED_MANIFEST = BundleManifest.model_validate_json((COMMITTED / "manifest.json").read_text())


@dataclass(frozen=True)
class SigningKey:
    private: object  # Ed25519PrivateKey
    public_hex: str


def make_key(folder: Path) -> SigningKey:
    folder.mkdir(parents=True, exist_ok=True)
    key = generate_signing_key(folder / f"test-{uuid.uuid4().hex[:6]}.pem")
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    return SigningKey(key, key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex())


def student_bundle(out_dir: Path, key: SigningKey, version: str, *, output_gain: float | None = None) -> BundleManifest:
    """The committed student re-signed as ``version``. ``output_gain`` scales the vocoder's output inside
    its ONNX graph: 0.0 makes a bundle that verifies and loads but is silent, nan one that outputs NaN."""
    committed = BundleManifest.model_validate_json((COMMITTED / "manifest.json").read_bytes())
    files = {name: COMMITTED / name for name in committed.files}
    if output_gain is not None:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        scaled = out_dir.parent / f".{out_dir.name}-synth.onnx"
        scale_output(COMMITTED / "synth.onnx", scaled, output_gain)
        files["synth.onnx"] = scaled
    fields = committed.model_dump(mode="json", exclude={"format", "files", "key_id", "created_at"})
    return write_bundle(out_dir, files, {**fields, "version": version}, key.private)


def scale_output(src: Path, dst: Path, gain: float) -> None:
    """Copy an ONNX graph with its (first) output multiplied by ``gain``."""
    import onnx
    from onnx import TensorProto, helper

    model = onnx.load(src)
    out = model.graph.output[0].name
    for node in model.graph.node:
        node.output[:] = [f"{out}_unscaled" if o == out else o for o in node.output]
    model.graph.initializer.append(helper.make_tensor("output_gain", TensorProto.FLOAT, [], [gain]))
    model.graph.node.append(helper.make_node("Mul", [f"{out}_unscaled", "output_gain"], [out]))
    onnx.checker.check_model(model)
    onnx.save(model, dst)


def ota_files(bundle_dir: Path) -> list[p.OtaFile]:
    """Every file of a bundle folder (manifest.json and manifest.sig too) with its size and sha256."""
    return [p.OtaFile(name=f.name, size=f.stat().st_size, sha256=hashlib.sha256(f.read_bytes()).hexdigest())
            for f in sorted(bundle_dir.iterdir())]


def install_command(bundle_dir: Path, base_url: str, **fields) -> p.OtaCommand:
    manifest = BundleManifest.model_validate_json((bundle_dir / "manifest.json").read_bytes())
    return p.OtaCommand(op="install", command_id=fields.pop("command_id", uuid.uuid4().hex),
                        model_id=manifest.model_id, version=manifest.version, base_url=base_url,
                        files=ota_files(bundle_dir), **fields)
