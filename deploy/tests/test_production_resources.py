"""Issue 12 in the manifests: KafkaUsers and ACLs from the registry, secured Kafka, NetworkPolicies, monitoring, KEDA."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

from billing_contracts.registry import SERVICES, TOPICS, dead_letter_topic
from service_runtime.metrics import CATALOG, STANDARD_PREFIXES, exported_samples

from .conftest import DEPLOY, Manifest, Rendered

DOCS = DEPLOY.parent / "docs"
KAFKA_OPERATIONS = {
    "All",
    "Read",
    "Write",
    "Create",
    "Delete",
    "Alter",
    "Describe",
    "ClusterAction",
    "DescribeConfigs",
    "AlterConfigs",
    "IdempotentWrite",
}


def env_prefix(service: str) -> str:
    return service.upper().replace("-", "_") + "_"


def server_config(rendered: Rendered, service: str) -> dict[str, str]:
    container = rendered.one("Deployment", service)["spec"]["template"]["spec"]["containers"][0]
    name = next(e["configMapRef"]["name"] for e in container["envFrom"] if "configMapRef" in e)
    data: dict[str, str] = rendered.one("ConfigMap", name)["data"]
    return data


# --- KafkaUsers --------------------------------------------------------------------------------


def acls(user: Manifest) -> dict[tuple[str, str, str], set[str]]:
    return {
        (a["resource"]["type"], a["resource"]["name"], a["resource"]["patternType"]): set(a["operations"])
        for a in user["spec"]["authorization"]["acls"]
    }


def test_every_service_has_a_scram_kafka_user_with_valid_acl_rules(rendered: Rendered) -> None:
    for service in SERVICES:
        user = rendered.one("KafkaUser", service)
        assert user["metadata"]["labels"]["strimzi.io/cluster"] == "billing-kafka"
        assert user["spec"]["authentication"] == {"type": "scram-sha-512"}
        assert user["spec"]["authorization"]["type"] == "simple"
        for rule in user["spec"]["authorization"]["acls"]:
            assert "operation" not in rule, "kafka.strimzi.io/v1 has only `operations`"
            assert rule["operations"]
            assert set(rule["operations"]) <= KAFKA_OPERATIONS
            assert rule["resource"]["type"] in ("topic", "group")
            assert rule["resource"]["patternType"] in ("literal", "prefix")


def test_kafka_user_acls_are_exactly_what_the_registry_says(rendered: Rendered) -> None:
    for service in SERVICES:
        wanted = {
            ("topic", t.name, "literal"): {"Describe", "Read"} for t in TOPICS if service in t.consumers
        }
        wanted |= {
            ("topic", t.name, "literal"): {"Describe", "Write"} for t in TOPICS if service in t.producers
        }
        wanted[("topic", dead_letter_topic(service), "literal")] = {"Describe", "Write"}
        wanted[("group", service, "prefix")] = {"Describe", "Read"}
        assert acls(rendered.one("KafkaUser", service)) == wanted, service


def running_subscriptions() -> Iterator[tuple[str, str, list[str]]]:
    """(service, group, topics) of every subscription the composition roots really make."""
    from invoicing.app import create_app as invoicing
    from invoicing.settings import InvoicingSettings
    from metering.app import create_app as metering
    from metering.settings import MeteringSettings
    from partners.app import create_app as partners
    from partners.settings import PartnersSettings
    from procountor_sync.app import create_app as sync
    from procountor_sync.settings import ProcountorSyncSettings
    from service_runtime.clock import SystemClock

    apps = {
        "metering": metering(MeteringSettings(), SystemClock()),
        "invoicing": invoicing(InvoicingSettings(), SystemClock()),
        "partners": partners(PartnersSettings(), SystemClock()),
        "procountor-sync": sync(ProcountorSyncSettings(), SystemClock()),
    }
    for service, app in apps.items():
        for group, subscriber in app.state.host._subscribers:
            yield service, group, list(subscriber.topic_names)


def test_the_acls_cover_every_group_and_topic_the_services_actually_consume() -> None:
    from billing_contracts.registry import SERVICES as services

    rendered = Rendered("base", _users())
    seen = set()
    for service, group, topics in running_subscriptions():
        rules = acls(rendered.one("KafkaUser", service))
        assert any(
            kind == "group" and pattern == "prefix" and group.startswith(name) and "Read" in ops
            for (kind, name, pattern), ops in rules.items()
        ), (service, group)
        for topic in topics:
            assert "Read" in rules.get(("topic", topic, "literal"), set()), (service, topic)
        seen.add(service)
    assert seen == set(services)


def _users() -> list[Manifest]:
    import yaml

    text = (DEPLOY / "base" / "kafka-users.yaml").read_text(encoding="utf-8")
    return [d for d in yaml.safe_load_all(text) if d]


# --- secured Kafka in the pods -----------------------------------------------------------------


def test_every_server_connects_with_scram_over_tls_as_its_kafka_user(rendered: Rendered) -> None:
    for service in SERVICES:
        data, prefix = server_config(rendered, service), env_prefix(service)
        pod = rendered.one("Deployment", service)["spec"]["template"]["spec"]
        container = pod["containers"][0]

        assert data[f"{prefix}KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
        assert data[f"{prefix}KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"
        assert data[f"{prefix}KAFKA_BOOTSTRAP_SERVERS"].endswith(":9093")
        user = data[f"{prefix}KAFKA_SASL_USERNAME"]
        rendered.one("KafkaUser", user)
        password = next(e for e in container["env"] if e["name"] == f"{prefix}KAFKA_SASL_PASSWORD")
        assert password["valueFrom"]["secretKeyRef"] == {"name": user, "key": "password"}
        ca_dir = data[f"{prefix}KAFKA_SSL_CAFILE"].rsplit("/", 1)[0]
        mount = next(m for m in container["volumeMounts"] if m["mountPath"] == ca_dir)
        volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
        assert volume["secret"]["secretName"] == "billing-kafka-cluster-ca-cert"


def test_production_names_a_real_issuer_and_refuses_sample_values(rendered: Rendered) -> None:
    for service in SERVICES:
        data, prefix = server_config(rendered, service), env_prefix(service)
        assert data[f"{prefix}AUTH_ISSUER"].startswith("https://")
        assert data[f"{prefix}AUTH_AUDIENCE"] == "billing"
        if rendered.overlay == "prod":
            assert data[f"{prefix}ENVIRONMENT"] == "production"
            assert f"{prefix}ALLOW_IN_PRODUCTION" not in data
    assert server_config(rendered, "invoicing")["INVOICING_OAUTH_TOKEN_URL"].startswith("https://")


# --- NetworkPolicies ---------------------------------------------------------------------------


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    if not all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        value, operator = labels.get(expression["key"]), expression["operator"]
        if operator == "In" and value not in expression["values"]:
            return False
        if operator == "NotIn" and value in expression["values"]:
            return False
        if operator == "Exists" and value is None:
            return False
    return True


def pods(rendered: Rendered) -> Iterator[tuple[str, dict[str, str]]]:
    for o in rendered.objects:
        if o["kind"] in ("Deployment", "Job"):
            yield f"{o['kind']}/{o['metadata']['name']}", o["spec"]["template"]["metadata"]["labels"]
        elif o["kind"] == "CronJob":
            yield (
                f"CronJob/{o['metadata']['name']}",
                o["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"],
            )


def egress(rendered: Rendered, labels: dict[str, str]) -> list[tuple[str, int, dict[str, Any]]]:
    """(policy, port, peer) of every egress rule that applies to a pod with `labels`."""
    rules = []
    for policy in rendered.of_kind("NetworkPolicy"):
        if not selects(policy["spec"]["podSelector"], labels):
            continue
        for rule in policy["spec"].get("egress", []):
            for port in rule.get("ports", []):
                for peer in rule.get("to", [{}]):
                    rules.append((policy["metadata"]["name"], port["port"], peer))
    return rules


def ingress_ports(rendered: Rendered, labels: dict[str, str]) -> dict[str, set[int]]:
    allowed: dict[str, set[int]] = {}
    for policy in rendered.of_kind("NetworkPolicy"):
        if selects(policy["spec"]["podSelector"], labels):
            for rule in policy["spec"].get("ingress", []):
                allowed[policy["metadata"]["name"]] = {p["port"] for p in rule.get("ports", [])}
    return allowed


def test_everything_is_denied_unless_a_policy_allows_it(rendered: Rendered) -> None:
    deny = rendered.one("NetworkPolicy", "default-deny-all")
    assert deny["spec"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}


def test_each_pod_may_reach_exactly_what_it_needs(rendered: Rendered) -> None:
    for name, labels in pods(rendered):
        component, service = labels["app.kubernetes.io/component"], labels["app.kubernetes.io/name"]
        rules = egress(rendered, labels)
        ports = {port for _, port, _ in rules}
        internet = [p for _, p, peer in rules if peer.get("ipBlock", {}).get("cidr") == "0.0.0.0/0"]
        assert 53 in ports, name
        assert (9093 in ports) == (component == "server"), name
        assert (5432 in ports) == (component in ("server", "migration")), name
        assert (443 in ports) == (component in ("server", "billing-run")), name
        assert internet == ([443] if (service, component) == ("procountor-sync", "server") else []), name


def test_apis_take_traffic_from_the_ingress_and_prometheus_and_internal_callers_only(
    rendered: Rendered,
) -> None:
    for service in SERVICES:
        labels = rendered.one("Deployment", service)["spec"]["template"]["metadata"]["labels"]
        allowed = ingress_ports(rendered, labels)
        assert allowed["allow-prometheus-scrape"] == {8080}
        assert allowed["allow-api-ingress"] == {8080}
        assert ("allow-invoicing-to-metering" in allowed) == (service == "metering")
        assert ("allow-billing-run-to-invoicing" in allowed) == (service == "invoicing")
    (job, *_) = [labels for name, labels in pods(rendered) if name.startswith("Job/")]
    assert ingress_ports(rendered, job) == {}


# --- monitoring --------------------------------------------------------------------------------

_PROMQL_WORDS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "and",
    "or",
    "unless",
    "offset",
    "bool",
    "inf",
    "nan",
}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (functions, labels, keywords and durations left out)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", "", text)
    text = re.sub(r"\[[^\]]*\]", "", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        rest = text[match.end() :].lstrip()
        if rest.startswith("(") or match.group() in _PROMQL_WORDS:
            continue
        if re.fullmatch(r"\d+[smhdwy]", match.group()):
            continue
        names.add(match.group())
    return names


def test_the_metric_name_reader_knows_promql() -> None:
    expr = 'histogram_quantile(0.95, sum by (service, le) (rate(http_request_duration_seconds_bucket{status=~"5.."}[5m]))) > on (namespace) up'
    assert metric_names(expr) == {"http_request_duration_seconds_bucket", "up"}


def referenced_expressions(rendered: Rendered) -> Iterator[tuple[str, str]]:
    for rule_set in rendered.of_kind("PrometheusRule"):
        for group in rule_set["spec"]["groups"]:
            for rule in group["rules"]:
                yield f"alert {rule['alert']}", rule["expr"]
    dashboard = json.loads(
        (DEPLOY / "base" / "monitoring" / "billing-dashboard.json").read_text(encoding="utf-8")
    )
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            yield f"panel {panel['title']}", target["expr"]
    for scaler in rendered.of_kind("ScaledObject"):
        for trigger in scaler["spec"]["triggers"]:
            yield "KEDA metering", trigger["metadata"]["query"]


def test_every_metric_an_alert_dashboard_or_scaler_reads_is_one_the_runtime_defines(
    rendered: Rendered,
) -> None:
    defined = exported_samples()
    unknown = [
        (where, name)
        for where, expr in referenced_expressions(rendered)
        for name in metric_names(expr)
        if name not in defined and name != "up" and not name.startswith(STANDARD_PREFIXES)
    ]
    assert unknown == []


def test_the_alerts_cover_what_issue_12_asks_for(rendered: Rendered) -> None:
    (rules,) = rendered.of_kind("PrometheusRule")
    alerts = {r["alert"]: r for g in rules["spec"]["groups"] for r in g["rules"]}
    read = {name: metric_names(rule["expr"]) for name, rule in alerts.items()}
    assert "kafka_consumer_lag" in read["KafkaConsumerLagGrowing"]
    assert "messages_dead_lettered_total" in read["DeadLettersGrowing"]
    assert "outbox_oldest_age_seconds" in read["OutboxStuck"]
    assert {"billing_run_due_timestamp_seconds", "billing_run_last_completed_timestamp_seconds"} <= read[
        "BillingRunNotFinished"
    ]
    assert "procountor_deliveries_total" in read["ProcountorDeliveriesFailing"]
    assert "procountor_throttled_total" in read["ProcountorThrottling"]
    for rule in alerts.values():
        assert rule["labels"]["severity"] in ("warning", "critical")


def test_every_alert_has_a_runbook_for_the_person_paged_at_night(rendered: Rendered) -> None:
    operations = (DOCS / "operations.md").read_text(encoding="utf-8")
    headings = {line.lstrip("#").strip() for line in operations.splitlines() if line.startswith("### ")}
    (rules,) = rendered.of_kind("PrometheusRule")
    for group in rules["spec"]["groups"]:
        for rule in group["rules"]:
            assert rule["alert"] in headings, f"docs/operations.md has no runbook '### {rule['alert']}'"
            assert rule["annotations"]["runbook_url"].endswith(f"docs/operations.md#{rule['alert'].lower()}")


def test_prometheus_scrapes_every_server_pod(rendered: Rendered) -> None:
    (monitor,) = rendered.of_kind("PodMonitor")
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    assert endpoint["path"] == "/metrics"
    for service in SERVICES:
        template = rendered.one("Deployment", service)["spec"]["template"]
        assert selects(monitor["spec"]["selector"], template["metadata"]["labels"])
        ports = {p["name"] for p in template["spec"]["containers"][0]["ports"]}
        assert endpoint["port"] in ports


def test_the_dashboard_is_shipped_to_grafana_as_committed(rendered: Rendered) -> None:
    config = rendered.one("ConfigMap", "billing-dashboard")
    assert config["metadata"]["labels"]["grafana_dashboard"] == "1"
    committed = (DEPLOY / "base" / "monitoring" / "billing-dashboard.json").read_text(encoding="utf-8")
    assert json.loads(config["data"]["billing-dashboard.json"]) == json.loads(committed)


def test_service_metrics_are_named_for_their_owners() -> None:
    owners = {spec.name: spec.filled_by for spec in CATALOG}
    assert owners["billing_run_due_timestamp_seconds"] == "invoicing: billing run"
    assert owners["procountor_throttled"] == "procountor-sync"
    assert owners["kafka_consumer_lag"] == "runtime"


# --- scaling -----------------------------------------------------------------------------------


def test_metering_scales_on_lag_up_to_its_partition_count_in_prod_only(rendered: Rendered) -> None:
    scalers = rendered.of_kind("ScaledObject")
    if rendered.overlay == "dev":
        assert scalers == []
        return
    (scaler,) = scalers
    partitions = max(t.partitions for t in TOPICS if "metering" in t.consumers)
    assert scaler["spec"]["scaleTargetRef"]["name"] == "metering"
    assert scaler["spec"]["maxReplicaCount"] == partitions
    assert 1 <= scaler["spec"]["minReplicaCount"] <= partitions
    assert "kafka_consumer_lag" in metric_names(scaler["spec"]["triggers"][0]["metadata"]["query"])
    assert "replicas" not in rendered.one("Deployment", "metering")["spec"]
    assert {"invoicing", "partners", "procountor-sync"} == {
        d["metadata"]["name"] for d in rendered.of_kind("Deployment") if "replicas" in d["spec"]
    }


@pytest.mark.parametrize("kind", ["KafkaTopic", "KafkaUser"])
def test_strimzi_resources_use_the_v1_api(rendered: Rendered, kind: str) -> None:
    assert {o["apiVersion"] for o in rendered.of_kind(kind)} == {"kafka.strimzi.io/v1"}
