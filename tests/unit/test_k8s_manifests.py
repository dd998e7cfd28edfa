"""deploy/k8s: every overlay renders (tests/k8s_render.py), validates against the Kubernetes
schemas kubernetes-validate ships (strict, its two newest minors), keeps the policies below and
fits the database connection budget. Each policy is a function returning the problems it
finds; every one is also run on a deliberately broken copy and must report it."""

from __future__ import annotations

import configparser
import copy
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import kubernetes_validate.utils
import pytest
import yaml

from app import settings as settings_module
from app.settings import Settings
from tests.k8s_render import render
from tests.unit.test_deploy_files import leaf_settings

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
OVERLAYS = ("dev", "prod")
IMAGE = "ghcr.io/storefront/storefront"
# CRDs of the Prometheus Operator: kubernetes-validate ships only the core API's schemas. They
# are checked here by content instead (the rules equal deploy/prometheus/alerts.yml; the
# ServiceMonitor's ports exist on the Services).
NOT_SCHEMA_VALIDATED = {
    ("ServiceMonitor", "storefront"): "CRD monitoring.coreos.com/v1: no schema shipped",
    ("PrometheusRule", "storefront"): "CRD monitoring.coreos.com/v1: no schema shipped",
}
# Read by app/settings.py from the environment itself, not settings fields.
PROCESS_VARIABLES = {"STOREFRONT_CONFIG_DIR", "STOREFRONT_SECRETS_DIR", "STOREFRONT_LOCAL_DIR"}
SENSITIVE = re.compile(r"SECRET|PASSWORD|TOKEN|KEY")
URL_CREDENTIALS = re.compile(r"://[^/@:]+:[^/@]+@")

Obj = dict[str, Any]
Check = Callable[[list[Obj]], list[str]]


def rendered(overlay: str) -> list[Obj]:
    return render(K8S / "overlays" / overlay)


def the(objects: list[Obj], kind: str, name: str) -> Obj:
    return next(o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name)


def pod_specs(objects: list[Obj]) -> Iterator[tuple[Obj, Obj]]:
    for obj in objects:
        if obj["kind"] in {"Deployment", "Job"}:
            yield obj, obj["spec"]["template"]["spec"]


def containers(objects: list[Obj], kinds: set[str]) -> Iterator[tuple[Obj, Obj, Obj]]:
    for obj, pod in pod_specs(objects):
        if obj["kind"] in kinds:
            for container in pod["containers"]:
                yield obj, pod, container


def where(obj: Obj, container: Obj) -> str:
    return f"{obj['kind']}/{obj['metadata']['name']}/{container['name']}"


def storefront_env(objects: list[Obj], container: Obj) -> dict[str, Any]:
    """Every variable a container gets: its env entries and its ConfigMaps' keys (envFrom)."""
    variables: dict[str, Any] = {}
    for source in container.get("envFrom", []):
        config_map = the(objects, "ConfigMap", source["configMapRef"]["name"])
        variables |= {name: {"value": value} for name, value in config_map["data"].items()}
    for entry in container.get("env", []):
        variables[entry["name"]] = entry
    return variables


def manifest_settings(objects: list[Obj], monkeypatch: pytest.MonkeyPatch, tmp: Path) -> Settings:
    """Settings as the API pod gets them, without its secrets: the ConfigMap's settings files
    (written to `tmp`, read as STOREFRONT_CONFIG_DIR) and its plain environment values."""
    _, _, api = next(containers(objects, {"Deployment"}))
    for name, entry in storefront_env(objects, api).items():
        if "value" in entry and name not in PROCESS_VARIABLES:
            monkeypatch.setenv(name, str(entry["value"]))
    for file_name, text in the_generated(objects, "storefront-config")["data"].items():
        (tmp / file_name).write_text(text)
    monkeypatch.setattr(settings_module, "CONFIG_DIR", tmp)
    return Settings()


def the_generated(objects: list[Obj], name: str) -> Obj:
    """A configMapGenerator's ConfigMap (its name carries the content hash)."""
    pattern = re.compile(rf"{name}-[a-z0-9]{{10}}")
    return next(
        o for o in objects if o["kind"] == "ConfigMap" and pattern.fullmatch(o["metadata"]["name"])
    )


# --- policies ---------------------------------------------------------------------------------


def probes_and_resources(objects: list[Obj]) -> list[str]:
    problems = []
    for obj, _, container in containers(objects, {"Deployment"}):
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            if probe not in container:
                problems.append(f"{where(obj, container)}: no {probe}")
    for obj, _, container in containers(objects, {"Deployment", "Job"}):
        resources = container.get("resources", {})
        for part in ("requests", "limits"):
            if not {"cpu", "memory"} <= set(resources.get(part, {})):
                problems.append(f"{where(obj, container)}: resources.{part} lacks cpu or memory")
    return problems


def pinned_images(objects: list[Obj]) -> list[str]:
    problems = []
    for obj, _, container in containers(objects, {"Deployment", "Job"}):
        image = container["image"]
        tag = image.rsplit("/", 1)[-1].partition(":")[2]
        if "@sha256:" not in image and (not tag or tag == "latest"):
            problems.append(f"{where(obj, container)}: image {image} is not pinned")
    return problems


def non_root(objects: list[Obj]) -> list[str]:
    problems = []
    for obj, pod, container in containers(objects, {"Deployment", "Job"}):
        pod_context = pod.get("securityContext", {})
        context = {**pod_context, **container.get("securityContext", {})}
        if context.get("runAsNonRoot") is not True or not context.get("runAsUser"):
            problems.append(f"{where(obj, container)}: not runAsNonRoot with a non-zero runAsUser")
        if context.get("readOnlyRootFilesystem") is not True:
            problems.append(f"{where(obj, container)}: root filesystem is writable")
        mounts = {mount["mountPath"] for mount in container.get("volumeMounts", [])}
        if "/tmp" not in mounts:
            problems.append(f"{where(obj, container)}: no writable /tmp")
    return problems


def disruption_budget(objects: list[Obj]) -> list[str]:
    problems = []
    for hpa in (o for o in objects if o["kind"] == "HorizontalPodAutoscaler"):
        target = the(objects, "Deployment", hpa["spec"]["scaleTargetRef"]["name"])
        labels = target["spec"]["template"]["metadata"]["labels"]
        pdbs = [
            o
            for o in objects
            if o["kind"] == "PodDisruptionBudget"
            and o["spec"]["selector"]["matchLabels"].items() <= labels.items()
        ]
        if len(pdbs) != 1:
            problems.append(f"{target['metadata']['name']}: {len(pdbs)} PodDisruptionBudgets")
        for pdb in pdbs:
            if not pdb["spec"]["minAvailable"] < hpa["spec"]["minReplicas"]:
                problems.append(f"{pdb['metadata']['name']}: minAvailable >= HPA minReplicas")
    return problems


def job_image(objects: list[Obj]) -> list[str]:
    job = the(objects, "Job", "storefront-migrate")["spec"]
    api = the(objects, "Deployment", "storefront-api")["spec"]["template"]["spec"]
    job_images = {c["image"] for c in job["template"]["spec"]["containers"]}
    problems = [] if job_images == {api["containers"][0]["image"]} else [f"Job runs {job_images}"]
    if job.get("backoffLimit") not in (0, 1):
        problems.append(f"Job backoffLimit {job.get('backoffLimit')}")
    return problems


def env_names(objects: list[Obj]) -> list[str]:
    settings_source = Path(settings_module.__file__).read_text()
    known = leaf_settings(Settings)
    problems = []
    for obj, _, container in containers(objects, {"Deployment", "Job"}):
        if not container["image"].startswith(IMAGE + ":"):
            continue
        for name in storefront_env(objects, container):
            if name in PROCESS_VARIABLES and f'"{name}"' in settings_source:
                continue
            dotted = name.removeprefix("STOREFRONT_").lower().replace("__", ".")
            if not name.startswith("STOREFRONT_") or dotted not in known:
                problems.append(f"{where(obj, container)}: {name} is no setting")
    return problems


def secrets_referenced(objects: list[Obj]) -> list[str]:
    problems = []
    for obj, _, container in containers(objects, {"Deployment", "Job"}):
        for name, entry in storefront_env(objects, container).items():
            if "value" not in entry:
                continue
            if SENSITIVE.search(name) or URL_CREDENTIALS.search(str(entry["value"])):
                problems.append(f"{where(obj, container)}: {name} inlined, not a secretKeyRef")
    for config_map in (o for o in objects if o["kind"] == "ConfigMap"):
        for key, text in config_map["data"].items():
            if URL_CREDENTIALS.search(text):
                problems.append(f"ConfigMap {config_map['metadata']['name']}/{key}: credentials")
    return problems


def graceful_shutdown(objects: list[Obj], settings: Settings) -> list[str]:
    problems = []
    for obj, pod, container in containers(objects, {"Deployment"}):
        sleep = container.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds")
        if obj["metadata"]["name"] == "storefront-api" and not sleep:
            problems.append(f"{where(obj, container)}: no preStop sleep")
        needed = (sleep or 0) + settings.server.graceful_shutdown_seconds
        if not pod.get("terminationGracePeriodSeconds", 30) > needed:
            problems.append(f"{where(obj, container)}: grace period not above {needed} s")
    return problems


def pool_budget(objects: list[Obj], settings: Settings) -> list[str]:
    """The `storefront db status` formula (app/ops/service.py `capacity`) on the manifests:
    client side, (HPA maxReplicas + workers) x (size + max_overflow) per server, against
    PgBouncer's max_client_conn x its replicas; server side, PgBouncer's max_db_connections x
    its replicas (+ the migration Job's direct pool on the primary), per server, against
    max_connections - superuser_reserved_connections - reserve."""
    pgbouncer = the(objects, "Deployment", "pgbouncer")
    declared = {k.split("/")[1]: int(v) for k, v in pgbouncer["metadata"]["annotations"].items()}
    ini = configparser.ConfigParser(inline_comment_prefixes=(";",))
    ini.read_string(the_generated(objects, "pgbouncer-config")["data"]["pgbouncer.ini"])
    bouncer = ini["pgbouncer"]
    bouncers = pgbouncer["spec"]["replicas"]
    api = the(objects, "HorizontalPodAutoscaler", "storefront-api")["spec"]["maxReplicas"]
    workers = the(objects, "Deployment", "storefront-worker")["spec"]["replicas"]
    database = settings.database
    primary = database.pool.size + database.pool.max_overflow
    replica = database.replica_pool.size + database.replica_pool.max_overflow
    servers = {"storefront": primary, "storefront_replica": replica}
    if set(ini["databases"]) != set(servers):
        return [f"pgbouncer.ini databases {sorted(ini['databases'])}, expected {sorted(servers)}"]
    problems = []
    clients = sum((api + workers) * per_process for per_process in servers.values())
    if clients > bouncers * bouncer.getint("max_client_conn"):
        problems.append(f"{clients} client connections > {bouncers} x max_client_conn")
    usable = (
        declared["postgres-max-connections"]
        - declared["postgres-superuser-reserved-connections"]
        - declared["connection-reserve"]
    )
    for name in servers:
        server_side = bouncers * bouncer.getint("max_db_connections")
        server_side += primary if name == "storefront" else 0  # the Job, straight to the primary
        if server_side > usable:
            problems.append(f"{name}: {server_side} server connections > usable {usable}")
    return problems


POLICIES: dict[str, tuple[Check, Callable[[list[Obj]], None]]] = {}


def breaks(check: Check) -> Callable[[Callable[[list[Obj]], None]], Callable[[list[Obj]], None]]:
    def register(mutate: Callable[[list[Obj]], None]) -> Callable[[list[Obj]], None]:
        POLICIES[mutate.__name__] = (check, mutate)
        return mutate

    return register


def _api(objects: list[Obj]) -> Obj:
    container: Obj = the(objects, "Deployment", "storefront-api")["spec"]["template"]["spec"][
        "containers"
    ][0]
    return container


@breaks(probes_and_resources)
def no_readiness_probe(objects: list[Obj]) -> None:
    del _api(objects)["readinessProbe"]


@breaks(probes_and_resources)
def no_memory_limit(objects: list[Obj]) -> None:
    del the(objects, "Job", "storefront-migrate")["spec"]["template"]["spec"]["containers"][0][
        "resources"
    ]["limits"]["memory"]


@breaks(pinned_images)
def latest_image(objects: list[Obj]) -> None:
    _api(objects)["image"] = f"{IMAGE}:latest"


@breaks(pinned_images)
def untagged_image(objects: list[Obj]) -> None:
    the(objects, "Deployment", "pgbouncer")["spec"]["template"]["spec"]["containers"][0][
        "image"
    ] = "ghcr.io/cloudnative-pg/pgbouncer"


@breaks(non_root)
def root_allowed(objects: list[Obj]) -> None:
    _api(objects)["securityContext"]["runAsNonRoot"] = False


@breaks(disruption_budget)
def pdb_blocks_drains(objects: list[Obj]) -> None:
    hpa = the(objects, "HorizontalPodAutoscaler", "storefront-api")
    the(objects, "PodDisruptionBudget", "storefront-api")["spec"]["minAvailable"] = hpa["spec"][
        "minReplicas"
    ]


@breaks(job_image)
def job_on_another_tag(objects: list[Obj]) -> None:
    the(objects, "Job", "storefront-migrate")["spec"]["template"]["spec"]["containers"][0][
        "image"
    ] = f"{IMAGE}:0.0.9"


@breaks(env_names)
def misspelled_setting(objects: list[Obj]) -> None:
    _api(objects)["env"].append({"name": "STOREFRONT_DATABASE__POOL__SIZ", "value": "5"})


@breaks(secrets_referenced)
def inlined_token(objects: list[Obj]) -> None:
    env = _api(objects)["env"]
    entry = next(e for e in env if e["name"] == "STOREFRONT_OPS__OPERATOR_TOKEN")
    entry.pop("valueFrom")
    entry["value"] = "an-operator-token"


@breaks(secrets_referenced)
def url_with_password(objects: list[Obj]) -> None:
    config_map = the_generated(objects, "storefront-env")
    config_map["data"]["STOREFRONT_BROKER__URL"] = "amqp://app:hunter2@rabbitmq:5672/"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_manifests_validate_strictly_on_the_two_newest_kubernetes_minors(overlay: str) -> None:
    versions = newest_minors()
    assert len(versions) == 2
    assert versions[-1] == kubernetes_validate.utils.latest_version()
    skipped = {}
    for obj in rendered(overlay):
        key = (obj["kind"], obj["metadata"]["name"])
        if key in NOT_SCHEMA_VALIDATED:
            skipped[key] = NOT_SCHEMA_VALIDATED[key]
            continue
        for version in versions:
            kubernetes_validate.validate(obj, version, strict=True)
    assert skipped == NOT_SCHEMA_VALIDATED  # exactly these, each with its reason


def newest_minors() -> list[str]:
    by_minor: dict[tuple[int, int], str] = {}
    for version in kubernetes_validate.utils.all_versions():
        major, minor, *_ = (int(part) for part in version.split("."))
        by_minor[(major, minor)] = max(by_minor.get((major, minor), version), version)
    return [by_minor[key] for key in sorted(by_minor)[-2:]]


def test_strict_validation_rejects_an_unknown_field() -> None:
    deployment = copy.deepcopy(the(rendered("prod"), "Deployment", "storefront-api"))
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.utils.ValidationError):
        kubernetes_validate.validate(deployment, newest_minors()[-1], strict=True)


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize(
    "check",
    [
        probes_and_resources,
        pinned_images,
        non_root,
        disruption_budget,
        job_image,
        env_names,
        secrets_referenced,
    ],
    ids=lambda check: check.__name__,
)
def test_policy_holds(overlay: str, check: Check) -> None:
    assert check(rendered(overlay)) == []


@pytest.mark.parametrize("mutation", sorted(POLICIES))
def test_policy_reports_a_broken_manifest(mutation: str) -> None:
    check, mutate = POLICIES[mutation]
    objects = copy.deepcopy(rendered("prod"))
    assert check(objects) == []
    mutate(objects)
    assert check(objects) != []


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_grace_period_and_pool_budget(
    overlay: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    objects = rendered(overlay)
    settings = manifest_settings(objects, monkeypatch, tmp_path)
    assert settings.database.pgbouncer is True
    assert settings.database.pool.size + settings.database.pool.max_overflow == 20
    assert pool_budget(objects, settings) == []
    assert settings.server.graceful_shutdown_seconds == 20.0
    assert graceful_shutdown(objects, settings) == []
    the(objects, "Deployment", "storefront-api")["spec"]["template"]["spec"][
        "terminationGracePeriodSeconds"
    ] = 25
    assert graceful_shutdown(objects, settings) == [
        "Deployment/storefront-api/api: grace period not above 25.0 s"
    ]


def test_pool_budget_fails_past_max_replicas(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    objects = rendered("prod")
    settings = manifest_settings(objects, monkeypatch, tmp_path)
    hpa = the(objects, "HorizontalPodAutoscaler", "storefront-api")
    hpa["spec"]["maxReplicas"] = 18  # (18 + 2 workers) x 40 = 800 still fits 2 x 400
    assert pool_budget(objects, settings) == []
    hpa["spec"]["maxReplicas"] = 19
    assert pool_budget(objects, settings) == ["840 client connections > 2 x max_client_conn"]


def test_pool_budget_fails_when_pgbouncer_outgrows_postgres(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    objects = rendered("prod")
    settings = manifest_settings(objects, monkeypatch, tmp_path)
    the(objects, "Deployment", "pgbouncer")["spec"]["replicas"] = 3  # 3 x 80 (+ 20) > 187
    assert pool_budget(objects, settings) == [
        "storefront: 260 server connections > usable 187",
        "storefront_replica: 240 server connections > usable 187",
    ]


def test_pool_budget_follows_pool_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    objects = rendered("prod")
    the_generated(objects, "storefront-env")["data"]["STOREFRONT_DATABASE__POOL__SIZE"] = "30"
    settings = manifest_settings(objects, monkeypatch, tmp_path)
    assert settings.database.pool.size == 30
    assert pool_budget(objects, settings) != []


def test_config_copies_equal_config_dir() -> None:
    for name in ("base.yaml", "production.yaml"):
        copied = (K8S / "base" / "config" / name).read_text()
        assert copied == (ROOT / "config" / name).read_text(), (
            f"cp config/{name} deploy/k8s/base/config/"
        )


def test_prometheus_rule_carries_the_alert_rules() -> None:
    alerts = yaml.safe_load((ROOT / "deploy" / "prometheus" / "alerts.yml").read_text())
    for overlay in OVERLAYS:
        objects = rendered(overlay)
        assert the(objects, "PrometheusRule", "storefront")["spec"]["groups"] == alerts["groups"]
        monitor = the(objects, "ServiceMonitor", "storefront")["spec"]
        ports = {
            port["name"]
            for service in objects
            if service["kind"] == "Service"
            and monitor["selector"]["matchLabels"].items()
            <= service["metadata"].get("labels", {}).items()
            for port in service["spec"]["ports"]
        }
        assert (
            {endpoint["port"] for endpoint in monitor["endpoints"]} == ports == {"http", "metrics"}
        )


def test_overlays_differ_in_scale_and_tag() -> None:
    dev, prod = (rendered(overlay) for overlay in OVERLAYS)
    assert _api(dev)["image"] == f"{IMAGE}:0.1.0-rc.1"
    assert _api(prod)["image"] == f"{IMAGE}:0.1.0"
    hpa = [the(o, "HorizontalPodAutoscaler", "storefront-api")["spec"] for o in (dev, prod)]
    assert [(h["minReplicas"], h["maxReplicas"]) for h in hpa] == [(2, 3), (3, 10)]
    assert _api(prod)["resources"]["limits"] == {"cpu": "2", "memory": "1Gi"}
    # a patch merges: the API container keeps its probes and secret references
    assert {"startupProbe", "readinessProbe", "livenessProbe", "env"} <= set(_api(prod))
