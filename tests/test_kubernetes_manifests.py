"""The Kubernetes manifests (deploy/kubernetes/), checked offline: every rendered object against
Kubernetes' own OpenAPI schemas (kubernetes-validate, strict: unknown fields fail), their commands
through guestkey's real CLI parser, their variables through the real Settings.

The overlay is rendered by `render` below, a small kustomize for the fields these files use
(resources, namespace, labels, images, strategic-merge patches). Where `kubectl` is installed, its
built-in kustomize renders both directories too, and the two must agree object for object."""

from __future__ import annotations

import copy
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from pydantic import SecretStr

from app.cli import build_parser
from app.config import Settings
from tests.test_container_files import runtime_stage, settings_names

REPO_ROOT = Path(__file__).resolve().parent.parent
KUBERNETES = REPO_ROOT / "deploy" / "kubernetes"
BASE = KUBERNETES / "base"
PRODUCTION = KUBERNETES / "overlays" / "production"
README = REPO_ROOT / "README.md"
SECRET_NAME = "guestkey-secrets"
REQUIRED_SECRETS = {
    "DATABASE_URL",
    "SEAM_API_KEY",
    "SEAM_WEBHOOK_SECRET",
    "GUESTKEY_ENCRYPTION_KEY",
}
# The oldest Kubernetes the manifests are for (the preStop `sleep` action), and the newest known.
KUBERNETES_VERSIONS = ["1.30.0", kubernetes_validate.latest_version()]
CLUSTER_SCOPED = {"Namespace"}
WORKLOADS = {"Deployment", "Job"}

Manifest = dict[str, Any]


# --- a kustomize for the fields these files use -------------------------------------------------


def load_documents(path: Path) -> list[Manifest]:
    return [document for document in yaml.safe_load_all(path.read_text()) if document]


def merge_patch(target: Any, patch: Any) -> Any:
    """Strategic merge as kustomize applies it here: maps merge key by key, lists of named items
    (containers, env, volumes) merge by `name`, any other list is replaced."""
    if isinstance(target, dict) and isinstance(patch, dict):
        merged = dict(target)
        for key, value in patch.items():
            merged[key] = merge_patch(target[key], value) if key in target else value
        return merged
    if (
        isinstance(target, list)
        and isinstance(patch, list)
        and all(isinstance(item, dict) and "name" in item for item in target + patch)
    ):
        merged_list = []
        patched = {item["name"]: item for item in patch}
        for item in target:
            merged_list.append(merge_patch(item, patched.pop(item["name"], {})))
        merged_list.extend(patched.values())
        return merged_list
    return copy.deepcopy(patch)


def pod_specs(manifest: Manifest) -> list[dict[str, Any]]:
    if manifest["kind"] in WORKLOADS:
        return [manifest["spec"]["template"]["spec"]]
    return []


def containers(manifest: Manifest) -> list[dict[str, Any]]:
    return [
        container
        for spec in pod_specs(manifest)
        for container in spec.get("initContainers", []) + spec["containers"]
    ]


def render(directory: Path) -> list[Manifest]:
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    known = {"apiVersion", "kind", "resources", "namespace", "labels", "images", "patches"}
    assert set(kustomization) <= known, f"render() does not know {set(kustomization) - known}"

    manifests: list[Manifest] = []
    for entry in kustomization.get("resources", []):
        path = directory / entry
        manifests.extend(render(path) if path.is_dir() else load_documents(path))

    for entry in kustomization.get("patches", []):
        for patch in load_documents(directory / entry["path"]):
            [index] = [
                i
                for i, manifest in enumerate(manifests)
                if (manifest["kind"], manifest["metadata"]["name"])
                == (patch["kind"], patch["metadata"]["name"])
            ]
            manifests[index] = merge_patch(manifests[index], patch)

    if "namespace" in kustomization:
        for manifest in manifests:
            if manifest["kind"] not in CLUSTER_SCOPED:
                manifest["metadata"]["namespace"] = kustomization["namespace"]

    for labels in kustomization.get("labels", []):
        assert not labels.get("includeSelectors") and not labels.get("includeTemplates")
        for manifest in manifests:
            manifest["metadata"].setdefault("labels", {}).update(labels["pairs"])

    for image in kustomization.get("images", []):
        for manifest in manifests:
            for container in containers(manifest):
                if container["image"].split(":")[0].split("@")[0] == image["name"]:
                    name = image.get("newName", image["name"])
                    container["image"] = f"{name}:{image['newTag']}" if "newTag" in image else name
    return manifests


def by_kind_and_name(manifests: list[Manifest]) -> dict[tuple[str, str], Manifest]:
    indexed = {(m["kind"], m["metadata"]["name"]): m for m in manifests}
    assert len(indexed) == len(manifests), "two objects share a kind and a name"
    return indexed


def find(manifests: list[Manifest], kind: str, name: str) -> Manifest:
    return by_kind_and_name(manifests)[(kind, name)]


def environment_names(container: dict[str, Any]) -> set[str]:
    return {variable["name"] for variable in container.get("env", [])}


def config_map_keys(manifests: list[Manifest]) -> set[str]:
    return set(find(manifests, "ConfigMap", "guestkey-config")["data"])


def secret_settings() -> set[str]:
    """The variables Settings keeps as SecretStr, and DATABASE_URL (it carries a password)."""
    names = {"DATABASE_URL"}
    for field_name, field in Settings.model_fields.items():
        if SecretStr in getattr(field.annotation, "__args__", (field.annotation,)):
            names.add((field.alias or field_name).upper())
    return names


class Rendered(dict[str, list[Manifest]]):
    """Each directory rendered once, on first use."""

    def __missing__(self, name: str) -> list[Manifest]:
        self[name] = render(DIRECTORIES[name])
        return self[name]


DIRECTORIES = {"base": BASE, "production": PRODUCTION}
RENDERED = Rendered()


# --- the renderer itself -------------------------------------------------------------------------


def test_strategic_merge_merges_named_items_and_replaces_other_lists() -> None:
    target = {
        "replicas": 1,
        "containers": [{"name": "api", "args": ["a"], "resources": {"cpu": 1}}, {"name": "b"}],
        "ports": [1, 2],
    }
    patch = {
        "containers": [{"name": "api", "resources": {"memory": 2}}, {"name": "c"}],
        "ports": [3],
    }
    assert merge_patch(target, patch) == {
        "replicas": 1,
        "containers": [
            {"name": "api", "args": ["a"], "resources": {"cpu": 1, "memory": 2}},
            {"name": "b"},
            {"name": "c"},
        ],
        "ports": [3],
    }


@pytest.mark.parametrize("directory", [BASE, PRODUCTION], ids=["base", "production"])
def test_render_agrees_with_kubectl_kustomize(directory: Path) -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed; the manifests are still checked through render()")
    output = subprocess.run(
        [kubectl, "kustomize", str(directory)], capture_output=True, text=True, timeout=60
    )
    assert output.returncode == 0, output.stderr
    from_kubectl = by_kind_and_name([d for d in yaml.safe_load_all(output.stdout) if d])
    assert from_kubectl == by_kind_and_name(render(directory))


# --- every object is valid Kubernetes ------------------------------------------------------------


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("name", sorted(DIRECTORIES))
def test_every_object_is_valid_against_the_kubernetes_schemas(name: str, version: str) -> None:
    for manifest in RENDERED[name]:
        kubernetes_validate.validate(manifest, version, strict=True)


def test_an_invalid_object_is_caught() -> None:
    deployment = copy.deepcopy(find(RENDERED["base"], "Deployment", "guestkey-api"))
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"][
        "pathh"
    ] = "/readyz"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[-1], strict=True)


def test_base_holds_every_piece() -> None:
    assert set(by_kind_and_name(RENDERED["base"])) == {
        ("ServiceAccount", "guestkey"),
        ("ConfigMap", "guestkey-config"),
        ("Job", "guestkey-migrate"),
        ("Deployment", "guestkey-api"),
        ("Service", "guestkey-api"),
        ("HorizontalPodAutoscaler", "guestkey-api"),
        ("PodDisruptionBudget", "guestkey-api"),
        ("Deployment", "guestkey-worker"),
        ("PodDisruptionBudget", "guestkey-worker"),
        ("NetworkPolicy", "guestkey"),
        ("NetworkPolicy", "guestkey-api"),
    }


# --- what runs ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(DIRECTORIES))
def test_each_workload_runs_a_guestkey_command(name: str) -> None:
    expected = {
        ("Deployment", "guestkey-api"): "serve",
        ("Deployment", "guestkey-worker"): "worker",
        ("Job", "guestkey-migrate"): "migrate",
    }
    manifests = RENDERED[name]
    for (kind, object_name), handler in expected.items():
        [container] = containers(find(manifests, kind, object_name))
        assert "command" not in container, "the image's entrypoint is `guestkey`"
        args = build_parser().parse_args(container["args"])
        assert args.handler.__name__ == handler, (object_name, container["args"])


def test_api_is_a_replica_with_readiness_and_liveness_on_its_port() -> None:
    [api] = containers(find(RENDERED["production"], "Deployment", "guestkey-api"))
    args = build_parser().parse_args(api["args"])
    assert args.no_worker
    assert args.host == "0.0.0.0"
    [port] = api["ports"]
    assert port == {"name": "http", "containerPort": args.port, "protocol": "TCP"}
    assert api["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert api["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert api["startupProbe"]["httpGet"]["path"] == "/healthz"


def test_migration_job_runs_once_and_is_not_restarted_in_place() -> None:
    job = find(RENDERED["production"], "Job", "guestkey-migrate")
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    assert 0 < job["spec"]["backoffLimit"] <= 6


# --- security -------------------------------------------------------------------------------------


def dockerfile_uid() -> int:
    user = [arguments for keyword, arguments in runtime_stage() if keyword == "USER"][-1]
    return int(user.split(":")[0])


def dockerfile_data_dir() -> str:
    environment = " ".join(arguments for keyword, arguments in runtime_stage() if keyword == "ENV")
    return environment.split("GUESTKEY_DATA_DIR=")[1].split()[0]


@pytest.mark.parametrize("name", sorted(DIRECTORIES))
def test_every_pod_is_non_root_read_only_and_without_capabilities(name: str) -> None:
    workloads = [m for m in RENDERED[name] if m["kind"] in WORKLOADS]
    assert len(workloads) == 3
    for workload in workloads:
        [spec] = pod_specs(workload)
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["runAsUser"] == dockerfile_uid() == 10001
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert spec["automountServiceAccountToken"] is False
        volumes = {volume["name"] for volume in spec["volumes"]}
        for container in containers(workload):
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True
            assert context["allowPrivilegeEscalation"] is False
            assert context["capabilities"] == {"drop": ["ALL"]}
            # What the image writes to (the data dir, temporary files) is a volume.
            mounts = {mount["mountPath"]: mount["name"] for mount in container["volumeMounts"]}
            assert {dockerfile_data_dir(), "/tmp"} <= set(mounts)
            assert set(mounts.values()) <= volumes


@pytest.mark.parametrize("name", sorted(DIRECTORIES))
def test_secrets_are_only_referenced_never_written(name: str) -> None:
    manifests = RENDERED[name]
    assert not [m for m in manifests if m["kind"] == "Secret"]
    assert not config_map_keys(manifests) & secret_settings()
    for workload in (m for m in manifests if m["kind"] in WORKLOADS):
        for container in containers(workload):
            references = {}
            for variable in container["env"]:
                assert "value" not in variable, f"{variable['name']} is written in the manifest"
                reference = variable["valueFrom"]["secretKeyRef"]
                assert reference["name"] == SECRET_NAME
                assert reference["key"] == variable["name"]
                references[variable["name"]] = reference.get("optional", False)
            assert set(references) >= REQUIRED_SECRETS
            assert not any(references[name] for name in REQUIRED_SECRETS)
            # Every secret guestkey reads can be given through the Secret.
            assert set(references) >= secret_settings()
            [source] = container["envFrom"]
            assert source == {"configMapRef": {"name": "guestkey-config"}}


@pytest.mark.parametrize("name", sorted(DIRECTORIES))
def test_every_variable_is_one_guestkey_reads(name: str) -> None:
    known = settings_names()
    manifests = RENDERED[name]
    assert config_map_keys(manifests) <= known
    for workload in (m for m in manifests if m["kind"] in WORKLOADS):
        for container in containers(workload):
            assert environment_names(container) <= known


def test_the_three_workloads_read_the_same_settings() -> None:
    workloads = [m for m in RENDERED["production"] if m["kind"] in WORKLOADS]
    environments = [(c["env"], c["envFrom"]) for w in workloads for c in containers(w)]
    assert all(environment == environments[0] for environment in environments)


# --- scaling, disruption, network ---------------------------------------------------------------


def template_labels(manifest: Manifest) -> dict[str, str]:
    labels: dict[str, str] = manifest["spec"]["template"]["metadata"]["labels"]
    return labels


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return selector.items() <= labels.items()


@pytest.mark.parametrize("name", sorted(DIRECTORIES))
def test_hpa_scales_the_api_on_cpu_which_the_api_requests(name: str) -> None:
    manifests = RENDERED[name]
    hpa = find(manifests, "HorizontalPodAutoscaler", "guestkey-api")
    target = hpa["spec"]["scaleTargetRef"]
    api = find(manifests, target["kind"], target["name"])
    assert (target["kind"], target["name"]) == ("Deployment", "guestkey-api")
    assert "replicas" not in api["spec"], "the HPA owns the API's replica count"
    [metric] = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu"
    assert metric["resource"]["target"]["type"] == "Utilization"
    [container] = containers(api)
    assert container["resources"]["requests"]["cpu"]
    assert 2 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]


@pytest.mark.parametrize("name", sorted(DIRECTORIES))
def test_disruption_budgets_cover_the_pods_and_leave_room_to_drain(name: str) -> None:
    manifests = RENDERED[name]
    api_budget = find(manifests, "PodDisruptionBudget", "guestkey-api")
    api = find(manifests, "Deployment", "guestkey-api")
    assert selects(api_budget["spec"]["selector"]["matchLabels"], template_labels(api))
    hpa = find(manifests, "HorizontalPodAutoscaler", "guestkey-api")
    assert api_budget["spec"]["minAvailable"] < hpa["spec"]["minReplicas"]
    worker_budget = find(manifests, "PodDisruptionBudget", "guestkey-worker")
    worker = find(manifests, "Deployment", "guestkey-worker")
    assert selects(worker_budget["spec"]["selector"]["matchLabels"], template_labels(worker))
    assert worker_budget["spec"]["maxUnavailable"] < worker["spec"]["replicas"]


@pytest.mark.parametrize("name", sorted(DIRECTORIES))
def test_deployment_selectors_match_their_own_pods_only(name: str) -> None:
    manifests = RENDERED[name]
    api = find(manifests, "Deployment", "guestkey-api")
    worker = find(manifests, "Deployment", "guestkey-worker")
    for deployment, other in ((api, worker), (worker, api)):
        selector = deployment["spec"]["selector"]["matchLabels"]
        assert selects(selector, template_labels(deployment))
        assert not selects(selector, template_labels(other))


@pytest.mark.parametrize("name", sorted(DIRECTORIES))
def test_service_sends_traffic_to_the_api_port(name: str) -> None:
    manifests = RENDERED[name]
    service = find(manifests, "Service", "guestkey-api")
    api = find(manifests, "Deployment", "guestkey-api")
    worker = find(manifests, "Deployment", "guestkey-worker")
    assert selects(service["spec"]["selector"], template_labels(api))
    assert not selects(service["spec"]["selector"], template_labels(worker))
    [port] = service["spec"]["ports"]
    [container] = containers(api)
    assert port["targetPort"] in {p["name"] for p in container["ports"]}


@pytest.mark.parametrize("name", sorted(DIRECTORIES))
def test_network_policies_let_in_only_api_traffic_and_out_only_what_guestkey_uses(
    name: str,
) -> None:
    manifests = RENDERED[name]
    default = find(manifests, "NetworkPolicy", "guestkey")
    api_policy = find(manifests, "NetworkPolicy", "guestkey-api")
    workloads = [m for m in manifests if m["kind"] in WORKLOADS]
    for workload in workloads:
        assert selects(default["spec"]["podSelector"]["matchLabels"], template_labels(workload))
    assert default["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert default["spec"]["ingress"] == []
    egress_ports = {
        (port["port"], port["protocol"])
        for rule in default["spec"]["egress"]
        for port in rule["ports"]
    }
    assert {(53, "UDP"), (5432, "TCP"), (443, "TCP"), (587, "TCP")} <= egress_ports
    assert all("to" not in rule for rule in default["spec"]["egress"])
    # Ingress only to the API pods, only on the API's port.
    admitted = [
        w
        for w in workloads
        if selects(api_policy["spec"]["podSelector"]["matchLabels"], template_labels(w))
    ]
    assert [w["metadata"]["name"] for w in admitted] == ["guestkey-api"]
    [rule] = api_policy["spec"]["ingress"]
    assert rule["ports"] == [{"port": "http", "protocol": "TCP"}]


# --- the production overlay -----------------------------------------------------------------------


def test_production_runs_in_its_own_restricted_namespace() -> None:
    manifests = RENDERED["production"]
    namespace = find(manifests, "Namespace", "guestkey")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    for manifest in manifests:
        if manifest["kind"] not in CLUSTER_SCOPED:
            assert manifest["metadata"]["namespace"] == "guestkey", manifest["metadata"]["name"]


def test_production_pins_the_image_and_sends_real_mail() -> None:
    manifests = RENDERED["production"]
    images = {c["image"] for m in manifests for c in containers(m)}
    [image] = images
    name, _, tag = image.rpartition(":")
    assert "/" in name and tag and tag != "latest", image
    data = find(manifests, "ConfigMap", "guestkey-config")["data"]
    assert data["SMTP_HOST"] and data["SMTP_TLS"] in {"starttls", "tls"}
    assert data["SEAM_ENDPOINT"] == "https://connect.getseam.com"


def test_production_scales_beyond_the_base() -> None:
    base, production = RENDERED["base"], RENDERED["production"]
    for kind, name, field in (
        ("HorizontalPodAutoscaler", "guestkey-api", "minReplicas"),
        ("Deployment", "guestkey-worker", "replicas"),
    ):
        assert find(production, kind, name)["spec"][field] > find(base, kind, name)["spec"][field]
    # The patches change resources, and leave the security settings and probes of the base.
    [base_api] = containers(find(base, "Deployment", "guestkey-api"))
    [production_api] = containers(find(production, "Deployment", "guestkey-api"))
    assert production_api["resources"] != base_api["resources"]
    for field in ("securityContext", "readinessProbe", "livenessProbe", "env", "args"):
        assert production_api[field] == base_api[field], field


def test_readme_points_at_the_manifests() -> None:
    text = README.read_text()
    assert "deploy/kubernetes" in text
    assert SECRET_NAME in text
