"""The rendered Kubernetes manifests of every overlay are valid, safe and match the topic registry."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import kubernetes_validate
import yaml

from billing_contracts.registry import SERVICES, TOPICS, dead_letter_topic

from .conftest import DEPLOY, Manifest, Rendered

# The oldest Kubernetes we promise to run on; CronJob timeZone and the preStop sleep
# action need at least 1.30.
KUBERNETES_VERSION = "1.32"
# Strimzi 0.49 introduced kafka.strimzi.io/v1; v1beta2 is removed in Strimzi 1.0 / 0.52.
STRIMZI_API = "kafka.strimzi.io/v1"
MONITORING_API = "monitoring.coreos.com/v1"
KEDA_API = "keda.sh/v1alpha1"
# Validated by hand (here and in test_production_resources.py): kubernetes-validate only knows
# the built-in kinds, and the CRDs' schemas are not available offline.
CUSTOM_KINDS = {
    (STRIMZI_API, "KafkaTopic"),
    (STRIMZI_API, "KafkaUser"),
    (MONITORING_API, "PodMonitor"),
    (MONITORING_API, "PrometheusRule"),
    (KEDA_API, "ScaledObject"),
}
SECRET_LOOKING = ("DATABASE_URL", "SECRET", "PASSWORD", "API_KEY", "CLIENT_ID", "TOKEN")
#: Names that contain a secret-looking word but hold none.
NOT_SECRET = ("OAUTH_TOKEN_URL", "AUTH_DOCS_CLIENT_ID")  # a URL; the id of a public (PKCE) client
UID = 10001


def pod_specs(rendered: Rendered) -> Iterator[tuple[str, Manifest]]:
    """Every pod template: Deployments, Jobs and the CronJob's job template."""
    for o in rendered.objects:
        name = f"{rendered.overlay}: {o['kind']}/{o['metadata']['name']}"
        if o["kind"] in ("Deployment", "Job"):
            yield name, o["spec"]["template"]["spec"]
        elif o["kind"] == "CronJob":
            yield name, o["spec"]["jobTemplate"]["spec"]["template"]["spec"]


def config_data(rendered: Rendered, service: str) -> dict[str, str]:
    deployment = rendered.one("Deployment", service)
    env_from = deployment["spec"]["template"]["spec"]["containers"][0]["envFrom"]
    config_name = next(e["configMapRef"]["name"] for e in env_from if "configMapRef" in e)
    data: dict[str, str] = rendered.one("ConfigMap", config_name)["data"]
    return data


def env_prefix(service: str) -> str:
    return service.upper().replace("-", "_") + "_"


def test_every_builtin_object_is_valid_against_the_kubernetes_schema(rendered: Rendered) -> None:
    errors = []
    for o in rendered.objects:
        if (o["apiVersion"], o["kind"]) in CUSTOM_KINDS:
            continue
        try:
            kubernetes_validate.validate(o, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            path = ".".join(str(p) for p in error.path)
            errors.append(f"{o['kind']}/{o['metadata']['name']}: {path}: {error.message}")
    assert not errors, f"{rendered.overlay}:\n" + "\n".join(errors)


def test_the_only_custom_resources_are_the_strimzi_prometheus_and_keda_kinds_we_check(
    rendered: Rendered,
) -> None:
    builtin_groups = ("v1", "apps/v1", "batch/v1", "policy/v1", "networking.k8s.io/v1")
    unknown = {
        (o["apiVersion"], o["kind"])
        for o in rendered.objects
        if o["apiVersion"] not in builtin_groups and (o["apiVersion"], o["kind"]) not in CUSTOM_KINDS
    }
    assert not unknown


def test_kafka_topics_carry_every_field_strimzi_needs(rendered: Rendered) -> None:
    for topic in rendered.of_kind("KafkaTopic"):
        metadata, spec = topic["metadata"], topic["spec"]
        assert metadata["labels"]["strimzi.io/cluster"], metadata["name"]
        assert metadata["namespace"], metadata["name"]
        assert spec["topicName"] == metadata["name"]
        assert isinstance(spec["partitions"], int)
        assert spec["partitions"] >= 1
        assert isinstance(spec["replicas"], int)
        assert spec["replicas"] >= 1
        assert 1 <= spec["config"]["min.insync.replicas"] <= spec["replicas"]
        assert spec["config"]["retention.ms"] > 0
        assert spec["config"]["cleanup.policy"] == "delete"


def test_kafka_topics_are_exactly_the_registry_with_its_partitions(rendered: Rendered) -> None:
    wanted = {spec.name: spec.partitions for spec in TOPICS}
    dead_letters = {dead_letter_topic(service) for service in SERVICES}
    actual = {t["spec"]["topicName"]: t["spec"]["partitions"] for t in rendered.of_kind("KafkaTopic")}

    assert set(actual) == set(wanted) | dead_letters
    assert {name: actual[name] for name in wanted} == wanted


def test_prod_topics_survive_a_lost_broker_and_dev_topics_fit_one_broker(
    rendered: Rendered,
) -> None:
    expected = {"prod": (3, 2), "dev": (1, 1)}[rendered.overlay]
    for topic in rendered.of_kind("KafkaTopic"):
        spec = topic["spec"]
        assert (spec["replicas"], spec["config"]["min.insync.replicas"]) == expected


def test_generated_topics_file_is_in_sync_with_the_registry() -> None:
    result = subprocess.run(
        [sys.executable, str(DEPLOY / "generate_topics.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


def test_topic_generation_detects_drift(tmp_path: Path) -> None:
    stale = tmp_path / "kafka-topics.yaml"
    stale.write_text("# an old file\n", encoding="utf-8")

    check = [sys.executable, str(DEPLOY / "generate_topics.py"), "--output", str(stale)]
    drift = subprocess.run([*check, "--check"], capture_output=True, check=False, timeout=60)
    subprocess.run(check, check=True, timeout=60)
    fixed = subprocess.run([*check, "--check"], capture_output=True, check=False, timeout=60)

    assert drift.returncode == 1
    assert fixed.returncode == 0


def test_every_service_has_a_deployment_service_budget_and_migration_job(
    rendered: Rendered,
) -> None:
    for service in SERVICES:
        rendered.one("Deployment", service)
        rendered.one("Service", service)
        rendered.one("PodDisruptionBudget", service)
        rendered.one("Job", f"{service}-migrate")
        rendered.one("ServiceAccount", service)


def test_every_deployment_has_probes_limits_and_runs_as_non_root(rendered: Rendered) -> None:
    for deployment in rendered.of_kind("Deployment"):
        name = deployment["metadata"]["name"]
        pod = deployment["spec"]["template"]["spec"]
        for container in pod["containers"]:
            assert container["livenessProbe"]["httpGet"]["path"] == "/healthz", name
            assert container["readinessProbe"]["httpGet"]["path"] == "/readyz", name
            assert container["resources"]["limits"]["memory"], name
            assert container["resources"]["limits"]["cpu"], name
            assert container["resources"]["requests"]["memory"], name
        assert pod["securityContext"]["runAsNonRoot"] is True, name


def test_every_pod_is_locked_down(rendered: Rendered) -> None:
    for name, pod in pod_specs(rendered):
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["runAsUser"] == UID, name
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", name
        assert pod["automountServiceAccountToken"] is False, name
        for container in pod["containers"]:
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True, name
            assert context["allowPrivilegeEscalation"] is False, name
            assert context["capabilities"]["drop"] == ["ALL"], name
            assert container["resources"]["limits"]["memory"], name


def test_deployments_roll_without_losing_capacity_and_are_scraped(rendered: Rendered) -> None:
    for deployment in rendered.of_kind("Deployment"):
        spec = deployment["spec"]
        annotations = spec["template"]["metadata"]["annotations"]
        assert spec["strategy"]["type"] == "RollingUpdate"
        assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
        assert annotations["prometheus.io/scrape"] == "true"
        assert annotations["prometheus.io/port"] == "8080"
        assert annotations["prometheus.io/path"] == "/metrics"


def test_services_send_port_80_to_the_server_pods_only(rendered: Rendered) -> None:
    for service in rendered.of_kind("Service"):
        name = service["metadata"]["name"]
        deployment = rendered.one("Deployment", name)
        pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
        container_ports = {
            p["name"]: p["containerPort"]
            for p in deployment["spec"]["template"]["spec"]["containers"][0]["ports"]
        }
        selector = service["spec"]["selector"]
        (port,) = service["spec"]["ports"]

        assert selector.items() <= pod_labels.items()
        assert port["port"] == 80
        assert container_ports[port["targetPort"]] == 8080
        for job in rendered.of_kind("Job"):
            job_pod_labels = job["spec"]["template"]["metadata"]["labels"]
            assert not selector.items() <= job_pod_labels.items(), job["metadata"]["name"]


def test_migration_jobs_migrate_with_the_same_image_and_config_as_the_service(
    rendered: Rendered,
) -> None:
    for service in SERVICES:
        server = rendered.one("Deployment", service)["spec"]["template"]["spec"]["containers"][0]
        job = rendered.one("Job", f"{service}-migrate")
        (migrate,) = job["spec"]["template"]["spec"]["containers"]

        assert migrate["args"] == ["migrate"]
        assert server["args"] == ["serve"]
        assert migrate["image"] == server["image"]
        assert migrate["envFrom"] == server["envFrom"]
        assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
        assert int(job["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"]) < 0


def test_images_are_pinned_to_a_registry_and_a_tag(rendered: Rendered) -> None:
    for name, pod in pod_specs(rendered):
        for container in pod["containers"]:
            repository, _, tag = container["image"].rpartition(":")
            assert "/" in repository, name
            assert tag, name
            assert tag != "latest", name


def test_configuration_reaches_every_service_without_secrets(rendered: Rendered) -> None:
    for service in SERVICES:
        data = config_data(rendered, service)
        prefix = env_prefix(service)

        assert data[f"{prefix}KAFKA_ENABLE_IDEMPOTENCE"] == "true"
        assert data[f"{prefix}KAFKA_BOOTSTRAP_SERVERS"]
        assert data[f"{prefix}LOG_FORMAT"] == "json"
        assert data[f"{prefix}HTTP_PORT"] == "8080"
        assert all(key.startswith(prefix) for key in data)
        assert not [
            key
            for key in data
            if any(word in key for word in SECRET_LOOKING) and not key.endswith(NOT_SECRET)
        ]
    assert config_data(rendered, "procountor-sync")["PROCOUNTOR_SYNC_PROCOUNTOR_BASE_URL"]


def test_secrets_come_from_outside_git(rendered: Rendered) -> None:
    assert not rendered.of_kind("Secret")
    for service in SERVICES:
        pod = rendered.one("Deployment", service)["spec"]["template"]["spec"]
        secret_refs = [e["secretRef"] for e in pod["containers"][0]["envFrom"] if "secretRef" in e]
        assert secret_refs == [{"name": f"{service}-secrets"}]


def test_no_secret_with_data_is_committed() -> None:
    offenders = []
    for path in sorted(DEPLOY.rglob("*.y*ml")):
        documents = [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]
        for document in documents:
            is_secret = document.get("kind") == "Secret"
            if is_secret and (document.get("data") or document.get("stringData")):
                offenders.append(str(path.relative_to(DEPLOY)))
            if path.name == "kustomization.yaml" and document.get("secretGenerator"):
                offenders.append(f"{path.relative_to(DEPLOY)} (secretGenerator)")
    assert not offenders


def test_billing_run_is_triggered_daily_at_six_helsinki_time(rendered: Rendered) -> None:
    cron = rendered.one("CronJob", "invoicing-billing-run")
    spec = cron["spec"]
    pod = spec["jobTemplate"]["spec"]["template"]["spec"]
    (trigger,) = pod["containers"]
    invoicing = rendered.one("Deployment", "invoicing")["spec"]["template"]["spec"]

    assert spec["schedule"] == "0 6 * * *"
    assert spec["timeZone"] == "Europe/Helsinki"
    assert spec["concurrencyPolicy"] == "Forbid"
    assert trigger["image"] == invoicing["containers"][0]["image"]
    args = trigger["args"]
    assert args[:3] == ["trigger-billing-run", "--url", "http://invoicing"]
    # It waits for metering's month close (409) only as long as the Job may live.
    wait = float(args[args.index("--wait-seconds") + 1])
    assert 0 < wait < spec["jobTemplate"]["spec"]["activeDeadlineSeconds"]
    # Its own client credentials (issue 12), never the service's database Secret.
    assert [e["secretRef"] for e in trigger["envFrom"] if "secretRef" in e] == [
        {"name": "invoicing-billing-run-credentials"}
    ]


def test_pod_disruption_budgets_allow_a_drain_at_any_replica_count(rendered: Rendered) -> None:
    for budget in rendered.of_kind("PodDisruptionBudget"):
        assert budget["spec"]["maxUnavailable"] == 1
        assert "minAvailable" not in budget["spec"]


def test_everything_lives_in_the_overlay_namespace_with_standard_labels(
    rendered: Rendered,
) -> None:
    (namespace,) = rendered.of_kind("Namespace")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    for o in rendered.objects:
        if o["kind"] == "Namespace":
            continue
        labels = o["metadata"]["labels"]
        assert o["metadata"]["namespace"] == namespace["metadata"]["name"]
        assert labels["app.kubernetes.io/part-of"] == "procountor-billing"
        if o["kind"] == "KafkaTopic":
            assert labels["app.kubernetes.io/component"] == "kafka-topic"
        elif "app.kubernetes.io/name" not in labels:
            # Platform-wide objects: default-deny and shared policies, monitors, rules, dashboard.
            assert labels["app.kubernetes.io/component"] in ("network-policy", "monitoring"), o["metadata"][
                "name"
            ]
        else:
            assert labels["app.kubernetes.io/name"] in SERVICES


def test_dockerfile_pins_uv_and_runs_the_console_script_as_uid_10001() -> None:
    dockerfile = (DEPLOY / "docker" / "Dockerfile").read_text(encoding="utf-8")
    final_stage = dockerfile.rsplit("\nFROM ", 1)[1]

    assert "ARG UV_IMAGE=ghcr.io/astral-sh/uv:0." in dockerfile
    assert "uv sync --frozen --no-dev --no-editable --package" in dockerfile
    assert "USER 10001:10001" in final_stage
    assert 'ENTRYPOINT ["/app/entrypoint"]' in final_stage
    assert "/usr/local/bin/uv" not in final_stage


def test_the_documented_apply_order_covers_every_object(rendered: Rendered) -> None:
    # deploy/README.md applies by these component labels, none (namespace, config,
    # service accounts) first; an object with another component would never be applied.
    steps = {
        None,
        "network-policy",
        "kafka-topic",
        "kafka-user",
        "monitoring",
        "migration",
        "server",
        "billing-run",
    }
    components = {
        o["metadata"].get("labels", {}).get("app.kubernetes.io/component") for o in rendered.objects
    }
    assert components <= steps


def test_only_prod_invoicing_insists_on_the_real_price_book(rendered: Rendered) -> None:
    data = config_data(rendered, "invoicing")
    if rendered.overlay == "dev":
        assert "INVOICING_ALLOW_SAMPLE_PRICES" not in data
        return
    pod = rendered.one("Deployment", "invoicing")["spec"]["template"]["spec"]
    mounts = {m["mountPath"]: m["name"] for m in pod["containers"][0]["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    price_list = Path(data["INVOICING_PRICE_LIST_FILE"])

    assert data["INVOICING_ALLOW_SAMPLE_PRICES"] == "false"
    assert volumes[mounts[str(price_list.parent)]]["configMap"]["name"] == "invoicing-price-list"
