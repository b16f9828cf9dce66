"""The Kubernetes manifests (deploy/kubernetes), rendered by kubectl's Kustomize and checked offline:
built-in kinds against the Kubernetes JSON schemas, KEDA's and the Prometheus operator's kinds against
models made from their CRDs, and everything the manifests say about the app against the app itself
(probe paths, ports, settings names, the database driver, the queue query, the broker's address)."""

from __future__ import annotations

import copy
import os
import re
import urllib.request
import uuid

import kubernetes_validate
import pytest
import sqlalchemy as sa
from cloudcoil.models.keda.v1alpha1 import ScaledObject, TriggerAuthentication
from cloudcoil.models.prometheus_operator.v1 import ServiceMonitor
from deploy_support import OVERLAYS, container, env, env_names, find, render
from sqlmodel import Session

from control_plane import jobs
from control_plane.app import create_app
from control_plane.core.config import Settings
from control_plane.core.db import make_engine, upgrade
from control_plane.models import JobCreate
from edge_agent.config import AgentSettings
from edge_agent.probes import Probes, ProbeServer

# The oldest and newest Kubernetes releases the manifests are checked against.
K8S_VERSIONS = ("1.29.0", "1.37.0")
# Kinds whose CRDs come with typed models here; unknown fields are caught by a round trip.
CRD_MODELS = {"ScaledObject": ScaledObject, "TriggerAuthentication": TriggerAuthentication,
              "ServiceMonitor": ServiceMonitor}
# Kinds with no schema or model to be had offline (CloudNativePG, the EMQX operator): only the fields
# that the other manifests and the app rely on are checked, by the tests below.
UNCHECKED_CRDS = {"Cluster", "EMQX"}
# Secrets that something else makes: CloudNativePG (the database owner's), cert-manager (TLS), and in
# production the operator (voicefleet-secrets: admin, metrics and URL-signing secrets, broker passwords).
EXTERNAL_SECRETS = {"dev": {"voicefleet-db-app", "voicefleet-tls"},
                    "production": {"voicefleet-db-app", "voicefleet-tls", "voicefleet-secrets"}}
# Overlays for a one-node cluster, where a ReadWriteOnce volume serves every pod (it is per node).
ONE_NODE = {"dev"}
CONTROL_PLANE, WORKER = "voicefleet-control-plane", "voicefleet-cloud-worker"


@pytest.fixture(scope="module", params=OVERLAYS)
def overlay(request) -> tuple[str, list[dict]]:
    return request.param, render(request.param)


@pytest.fixture(scope="module")
def app_paths() -> set[str]:
    """The paths the control plane serves, from its OpenAPI document (the app is built, not started)."""
    return set(create_app(Settings()).openapi()["paths"])


def _deployment(objects, name):
    return find(objects, "Deployment", name)


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_built_in_kinds_match_the_kubernetes_schemas(overlay, version):
    name, objects = overlay
    checked = set()
    for obj in objects:
        if obj["kind"] in CRD_MODELS or obj["kind"] in UNCHECKED_CRDS:
            continue
        try:
            kubernetes_validate.validate(obj, version, strict=True)  # strict: an unknown field is an error
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{name}: {obj['kind']} {obj['metadata']['name']}: {exc}")
        checked.add(obj["kind"])
    assert checked >= {"Namespace", "ConfigMap", "PersistentVolumeClaim", "Deployment", "Service",
                       "PodDisruptionBudget", "Ingress"}


def test_the_schema_check_rejects_a_misspelt_field():
    """The strict check is not vacuous: a typo in a probe is refused."""
    deployment = copy.deepcopy(_deployment(render("dev"), CONTROL_PLANE))
    probe = container(deployment)["readinessProbe"]
    probe["httpGett"] = probe.pop("httpGet")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSIONS[-1], strict=True)


def test_custom_resources_match_their_crd_models(overlay):
    name, objects = overlay
    for obj in objects:
        model = CRD_MODELS.get(obj["kind"])
        if model is None:
            continue
        parsed = model.model_validate(obj)
        # the models ignore unknown fields: a round trip that loses one means the CRD has no such field
        assert parsed.model_dump(by_alias=True, exclude_unset=True, mode="json") == obj, \
            f"{name}: {obj['kind']} {obj['metadata']['name']} has fields its CRD does not know"


def test_every_kind_is_checked_one_way_or_another(overlay):
    name, objects = overlay
    for obj in objects:
        if obj["kind"] in CRD_MODELS or obj["kind"] in UNCHECKED_CRDS:
            continue
        try:
            kubernetes_validate.validate(obj, K8S_VERSIONS[-1])
        except kubernetes_validate.SchemaNotFoundError:
            pytest.fail(f"{name}: {obj['kind']} has neither a Kubernetes schema nor a CRD model here")


def test_everything_lands_in_the_overlays_namespace(overlay):
    name, objects = overlay
    namespace = find(objects, "Namespace", "voicefleet-dev" if name == "dev" else "voicefleet")["metadata"]["name"]
    assert {o["metadata"].get("namespace") for o in objects if o["kind"] != "Namespace"} == {namespace}


def test_probes_use_the_apps_health_routes(overlay, app_paths):
    _, objects = overlay
    c = container(_deployment(objects, CONTROL_PLANE))
    probes = {kind: c[kind]["httpGet"]["path"] for kind in ("startupProbe", "livenessProbe", "readinessProbe")}
    assert probes == {"startupProbe": "/healthz", "livenessProbe": "/healthz", "readinessProbe": "/readyz"}
    assert set(probes.values()) <= app_paths
    scrape = find(objects, "ServiceMonitor", CONTROL_PLANE)["spec"]["endpoints"][0]["path"]
    assert scrape in app_paths


def test_ports_agree_with_the_settings(overlay):
    _, objects = overlay
    deployment = _deployment(objects, CONTROL_PLANE)
    c = container(deployment)
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"http": int(env(objects, deployment)["VOICEFLEET_HTTP_PORT"])}
    for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert c[kind]["httpGet"]["port"] in ports
    service = find(objects, "Service", CONTROL_PLANE)
    assert [p["targetPort"] for p in service["spec"]["ports"]] == ["http"]
    assert find(objects, "ServiceMonitor", CONTROL_PLANE)["spec"]["endpoints"][0]["port"] == "http"
    backend = find(objects, "Ingress", CONTROL_PLANE)["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": CONTROL_PLANE, "port": {"name": "http"}}


def _settings_fields(settings_class) -> set[str]:
    return {f"VOICEFLEET_{field.upper()}" for field in settings_class.model_fields}


@pytest.mark.parametrize(("deployment", "settings_class"), [(CONTROL_PLANE, Settings), (WORKER, AgentSettings)])
def test_every_voicefleet_variable_is_a_setting(overlay, deployment, settings_class):
    """A misspelt VOICEFLEET_ variable would be ignored without a word: each must be a real setting."""
    _, objects = overlay
    names = {n for n in env_names(objects, _deployment(objects, deployment)) if n.startswith("VOICEFLEET_")}
    assert names, deployment
    assert names <= _settings_fields(settings_class), names - _settings_fields(settings_class)


@pytest.fixture
def clean_env(monkeypatch):
    for name in list(os.environ):
        if name.startswith("VOICEFLEET_"):
            monkeypatch.delenv(name)
    return monkeypatch


def test_the_control_plane_keeps_its_files_in_the_shared_store(overlay, clean_env):
    name, objects = overlay
    deployment = _deployment(objects, CONTROL_PLANE)
    for key, value in env(objects, deployment).items():
        clean_env.setenv(key, value)
    settings = Settings()
    mounts = {m["name"]: m for m in container(deployment)["volumeMounts"]}
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    store = next(n for n, v in volumes.items()
                 if v.get("persistentVolumeClaim", {}).get("claimName") == "voicefleet-store")
    root = mounts[store]["mountPath"]
    assert not mounts[store].get("readOnly")
    # audio, the model registry and rollouts' test phrases (control_plane/app.py) all under the mount
    for path in (settings.resolved_audio_dir(), settings.home / "models", settings.home / "rollouts"):
        assert str(path).startswith(root + "/"), path
    assert settings.http_host == "0.0.0.0"
    public = env(objects, deployment)["VOICEFLEET_PUBLIC_URL"]
    assert settings.api_url() == public.rstrip("/")
    ingress_host = find(objects, "Ingress", CONTROL_PLANE)["spec"]["rules"][0]["host"]
    assert public.split("://")[1].split("/")[0] == ingress_host, f"{name}: agents are handed another host"


def test_the_store_is_shared_wherever_several_pods_mount_it(overlay):
    name, objects = overlay
    mounting = sum(d["spec"]["replicas"] for d in objects if d["kind"] == "Deployment" and any(
        v.get("persistentVolumeClaim", {}).get("claimName") == "voicefleet-store"
        for v in d["spec"]["template"]["spec"]["volumes"]))
    scaled = find(objects, "ScaledObject", CONTROL_PLANE)["spec"]["maxReplicaCount"]
    modes = find(objects, "PersistentVolumeClaim", "voicefleet-store")["spec"]["accessModes"]
    if (mounting > 1 or scaled > 1) and name not in ONE_NODE:
        assert "ReadWriteMany" in modes, f"{name}: several pods mount the store but it is {modes}"


def test_the_database_url_uses_the_installed_driver_and_the_clusters_service(overlay):
    _, objects = overlay
    cluster = find(objects, "Cluster", "voicefleet-db")
    c = container(_deployment(objects, CONTROL_PLANE))
    order = [e["name"] for e in c["env"]]
    url_entry = next(e for e in c["env"] if e["name"] == "VOICEFLEET_DATABASE_URL")
    # Kubernetes expands $(NAME) only for variables defined earlier in the list
    refs = re.findall(r"\$\((\w+)\)", url_entry["value"])
    assert refs and all(order.index(r) < order.index("VOICEFLEET_DATABASE_URL") for r in refs)
    for ref in refs:
        source = next(e for e in c["env"] if e["name"] == ref)["valueFrom"]["secretKeyRef"]
        assert source["name"] == f"{cluster['metadata']['name']}-app"  # the Secret CloudNativePG makes
        assert source["key"] in {"username", "password"}
    url = sa.make_url(re.sub(r"\$\((\w+)\)", "x", url_entry["value"]))
    url.get_dialect()  # raises when the driver is not the one the control extra installs
    assert url.drivername == "postgresql+psycopg"
    assert url.host == f"{cluster['metadata']['name']}-rw"
    assert url.database == cluster["spec"]["bootstrap"]["initdb"]["database"]


def test_agents_and_replicas_reach_the_emqx_listeners(overlay):
    _, objects = overlay
    emqx = find(objects, "EMQX", "voicefleet-emqx")
    for name in (CONTROL_PLANE, WORKER):
        url = sa.make_url(env(objects, _deployment(objects, name))["VOICEFLEET_MQTT_URL"].replace("mqtt://", "x://"))
        assert (url.host, url.port) == (f"{emqx['metadata']['name']}-listeners", 1883), name


def test_replicas_share_the_clusters_redis(overlay):
    _, objects = overlay
    url = sa.make_url(env(objects, _deployment(objects, CONTROL_PLANE))["VOICEFLEET_REDIS_URL"])
    service = find(objects, "Service", url.host)
    assert [p["port"] for p in service["spec"]["ports"]] == [url.port]
    redis = _deployment(objects, service["spec"]["selector"]["app.kubernetes.io/name"])
    assert [p["containerPort"] for p in container(redis)["ports"]] == [url.port]


def test_device_traffic_has_one_consumer_whose_session_outlives_a_failover(overlay, clean_env):
    """Every replica's dispatcher uses one client id (only the leader's connects) with a persistent
    session the broker keeps at least as long; each replica has its own name and its own address."""
    _, objects = overlay
    settings = find(objects, "ConfigMap", "voicefleet-control-plane")["data"]
    assert settings["VOICEFLEET_MQTT_CLIENT_ID"] and int(settings["VOICEFLEET_MQTT_SESSION_EXPIRY_S"]) >= 600
    config = find(objects, "EMQX", "voicefleet-emqx")["spec"]["config"]["data"]
    kept = re.search(r"^\s*mqtt\.session_expiry_interval\s*=\s*(\d+)h\s*$", config, re.M)
    assert kept and int(kept[1]) * 3600 >= int(settings["VOICEFLEET_MQTT_SESSION_EXPIRY_S"])
    env = {e["name"]: e for e in container(_deployment(objects, CONTROL_PLANE))["env"]}
    assert env["VOICEFLEET_CONTROL_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert env["POD_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
    assert env["VOICEFLEET_REPLICA_URL"]["value"] == f"http://$(POD_IP):{settings['VOICEFLEET_HTTP_PORT']}"


def test_the_gpu_worker_takes_one_gpu_and_two_jobs(overlay, clean_env):
    _, objects = overlay
    deployment = _deployment(objects, WORKER)
    spec = deployment["spec"]["template"]["spec"]
    resources = container(deployment)["resources"]
    assert resources["limits"]["nvidia.com/gpu"] == 1 and resources["requests"]["nvidia.com/gpu"] == 1
    assert spec["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in spec["tolerations"]
    for key, value in env(objects, deployment).items():
        clean_env.setenv(key, value)
    settings = AgentSettings(device_id="gpu-worker-0")
    assert (settings.role, settings.concurrency()) == ("cloud", 2)
    assert settings.engine_spec().split(",")[0] == "cosyvoice3"
    weights = next(m for m in container(deployment)["volumeMounts"] if m["name"] == "weights")
    assert weights["readOnly"] and str(settings.cosyvoice_dir).startswith(weights["mountPath"] + "/")


def test_the_gpu_workers_probes_are_the_agents_own_on_its_health_port(overlay, clean_env):
    _, objects = overlay
    deployment = _deployment(objects, WORKER)
    c = container(deployment)
    for key, value in env(objects, deployment).items():
        clean_env.setenv(key, value)
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"health": AgentSettings(device_id="gpu-worker-0").health_port}
    probes = {kind: c[kind]["httpGet"] for kind in ("startupProbe", "livenessProbe", "readinessProbe")}
    assert {kind: get["port"] for kind, get in probes.items()} == dict.fromkeys(probes, "health")
    assert probes["readinessProbe"]["path"] == "/readyz"
    assert probes["startupProbe"]["path"] == probes["livenessProbe"]["path"] == "/healthz"
    start = c["startupProbe"]
    assert start["periodSeconds"] * start["failureThreshold"] >= 300  # room to load the model
    server = ProbeServer(Probes(interval_s=5, connected=lambda: True, draining=lambda: False), "127.0.0.1", 0)
    server.start()
    try:  # the paths are routes of the agent's probe server
        for get in probes.values():
            with urllib.request.urlopen(f"http://127.0.0.1:{server.port}{get['path']}", timeout=5) as answer:
                assert answer.status == 200
    finally:
        server.stop()


def test_disruption_budget_service_and_scaler_select_the_control_plane(overlay):
    _, objects = overlay
    deployment = _deployment(objects, CONTROL_PLANE)
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"].items()
    service = find(objects, "Service", CONTROL_PLANE)
    assert find(objects, "PodDisruptionBudget", CONTROL_PLANE)["spec"]["selector"]["matchLabels"].items() <= pod_labels
    assert service["spec"]["selector"].items() <= pod_labels
    monitored = find(objects, "ServiceMonitor", CONTROL_PLANE)["spec"]["selector"]["matchLabels"]
    assert monitored.items() <= service["metadata"]["labels"].items()  # a ServiceMonitor selects Services
    pdb = find(objects, "PodDisruptionBudget", CONTROL_PLANE)["spec"]
    scaled = find(objects, "ScaledObject", CONTROL_PLANE)["spec"]
    assert scaled["scaleTargetRef"]["name"] == CONTROL_PLANE
    assert scaled["minReplicaCount"] >= 1 and scaled["maxReplicaCount"] > scaled["minReplicaCount"]
    assert pdb.get("maxUnavailable", 0) >= 1  # a drain can always proceed, one replica at a time


def test_every_secret_reference_resolves(overlay):
    name, objects = overlay
    made = {o["metadata"]["name"]: set(o.get("data", {})) for o in objects if o["kind"] == "Secret"}
    refs: list[tuple[str, str]] = []
    for deployment in (o for o in objects if o["kind"] == "Deployment"):
        refs += [(e["valueFrom"]["secretKeyRef"]["name"], e["valueFrom"]["secretKeyRef"]["key"])
                 for e in container(deployment).get("env", []) if "secretKeyRef" in e.get("valueFrom", {})]
    for auth in (o for o in objects if o["kind"] == "TriggerAuthentication"):
        refs += [(r["name"], r["key"]) for r in auth["spec"]["secretTargetRef"]]
    credentials = find(objects, "ServiceMonitor", CONTROL_PLANE)["spec"]["endpoints"][0]["authorization"]["credentials"]
    refs.append((credentials["name"], credentials["key"]))
    refs += [(tls["secretName"], "tls.crt")
             for o in objects if o["kind"] == "Ingress" for tls in o["spec"].get("tls", [])]
    for secret, key in refs:
        if secret in EXTERNAL_SECRETS[name]:
            continue
        assert secret in made, f"{name}: Secret {secret} is neither rendered nor made elsewhere"
        assert key in made[secret], f"{name}: Secret {secret} has no key {key}"


def test_kedas_query_counts_what_metrics_calls_the_queue(pg_server):
    """The scaler's SQL runs against the migrated schema and counts the jobs /metrics reports as
    voicefleet_queue_depth."""
    query = find(render("production"), "ScaledObject", CONTROL_PLANE)["spec"]["triggers"][0]["metadata"]["query"]
    url = pg_server.create_database(f"t_deploy_keda_query_{uuid.uuid4().hex[:10]}")
    upgrade(url)
    engine = make_engine(url)
    try:
        with Session(engine) as session:
            for text in ("你好", "早上好", "晚安"):
                jobs.add_job(session, spec=JobCreate(text=text), max_attempts=3)
            jobs.commit(session)
            queued = jobs.counts_by_state(session)["queued"]
        with engine.connect() as conn:
            assert conn.execute(sa.text(query)).scalar_one() == queued == 3
    finally:
        engine.dispose()


def test_postgresql_is_the_major_version_the_suite_runs_on(pg_server):
    """The cluster runs the PostgreSQL major version the tests (migrations, SKIP LOCKED, advisory locks)
    ran against."""
    image = find(render("production"), "Cluster", "voicefleet-db")["spec"]["imageName"]
    with pg_server.connect() as conn:
        tested = int(conn.execute("SHOW server_version_num").fetchone()[0]) // 10000
    assert re.fullmatch(rf"ghcr\.io/cloudnative-pg/postgresql:{tested}(\.\d+)?", image), (image, tested)
