"""Offline checks of deploy/: Kubernetes manifests, the compose file, the Grafana dashboard.

* Built-in kinds are validated with ``kubernetes-validate`` (strict: unknown fields fail)
  against the schemas of Kubernetes ``K8S_VERSION`` shipped in the package (no network);
  custom resources (Strimzi, KEDA, Prometheus Operator) against tests/deploy/crd_schemas.py,
  and their embedded core types (HPA behavior, resources, selectors) against the core schemas.
* The pieces are cross-checked: the ConfigMap + Secret load as custscore settings; topic
  names, partition counts, replication and compaction agree with the KafkaTopics; KEDA scales
  the right group and never past the partition count; probes, ports, mounts, secrets, the
  model ConfigMap and the monitoring selectors point at things that exist.
* The compose file parses, every worker setting comes from CUSTSCORE_* variables that load,
  addresses point at the compose services, and every mounted file exists.
* The dashboard JSON parses, its layout is sane, and it uses only metric names the worker's
  registry declares (the live check against a running worker is in test_deploy_prometheus.py).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import jsonschema
import kubernetes_validate
import pytest
import yaml
from crd_schemas import CRD_SCHEMAS
from deploy_support import (
    COMPOSE,
    DEPLOY,
    K8S,
    PROMETHEUS_SYNTHETIC,
    RULE_TESTS,
    RULES,
    SCRAPE_CONFIG,
    dashboard,
    dashboard_targets,
    exposition_names,
    load_yaml_docs,
    metric_names,
    rule_list,
)
from prometheus_client import generate_latest

from config.settings import Settings, load_settings
from models.params_file import parse_params
from streams.metrics import build_metrics
from streams.outcome_metrics import OutcomeMetrics

K8S_VERSION = "1.30.0"

# Settings the deployments deliberately leave at their defaults, with the reason.
EMBEDDED_ONLY = {
    "run_dir",
    "broker_host",
    "broker_port",
    "redis_host",
    "redis_port",
    "stack_start_timeout_s",
}
COMPOSE_UNSET = EMBEDDED_ONLY | {
    # PLAINTEXT and password-less network in compose
    "kafka_sasl_mechanism",
    "kafka_sasl_username",
    "kafka_sasl_password",
    "kafka_ssl_cafile",
    "redis_username",
    "redis_password",
    # built-in model and its own window
    "params_file",
    "effective_window_months",
}
K8S_UNSET = EMBEDDED_ONLY | {
    "redis_username",  # the default user with requirepass
    "effective_window_months",  # the params file's window
}


# --------------------------------------------------------------------------- loading


def _k8s_docs() -> list[tuple[Path, dict[str, Any]]]:
    return [
        (path, doc)
        for path in sorted(K8S.glob("*.yaml"))
        if path.name != "kustomization.yaml"
        for doc in load_yaml_docs(path)
    ]


def _find(kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [
        doc
        for _, doc in _k8s_docs()
        if doc["kind"] == kind and (name is None or doc["metadata"]["name"] == name)
    ]


def _one(kind: str, name: str | None = None) -> dict[str, Any]:
    found = _find(kind, name)
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def _worker_pod() -> dict[str, Any]:
    return dict(_one("Deployment", "custscore-worker")["spec"]["template"])


def _worker_container() -> dict[str, Any]:
    (container,) = _worker_pod()["spec"]["containers"]
    return dict(container)


def _k8s_env() -> dict[str, str]:
    """The worker's CUSTSCORE_* environment as the Deployment builds it."""
    env: dict[str, str] = {}
    container = _worker_container()
    for source in container["envFrom"]:
        if "configMapRef" in source:
            env.update(_one("ConfigMap", source["configMapRef"]["name"])["data"])
        else:
            env.update(_one("Secret", source["secretRef"]["name"])["stringData"])
    for var in container.get("env", []):
        env[var["name"]] = var.get("value", "<from a secret>")
    return env


def _k8s_settings() -> Settings:
    return load_settings(None, environ=_k8s_env())


# --------------------------------------------------------------------------- Kubernetes


def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    present = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == present
    assert kustomization["namespace"] == "custscore"


@pytest.mark.parametrize(
    "path", sorted(p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")
)
def test_manifest_validates_offline(path: str) -> None:
    docs = load_yaml_docs(K8S / path)
    assert docs, f"{path} is empty"
    for doc in docs:
        key = (doc["apiVersion"], doc["kind"])
        what = f"{path}: {doc['kind']}/{doc['metadata']['name']}"
        if doc["kind"] != "Namespace":
            assert doc["metadata"].get("namespace") == "custscore", what
        if key in CRD_SCHEMAS:
            try:
                jsonschema.validate(doc, CRD_SCHEMAS[key])
            except jsonschema.ValidationError as exc:
                raise AssertionError(f"{what}: {exc.json_path}: {exc.message}") from None
            continue
        try:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path_ = ".".join(str(p) for p in exc.path)
            raise AssertionError(f"{what}: {path_}: {exc.message}") from None
        except kubernetes_validate.SchemaNotFoundError as exc:
            raise AssertionError(f"{what}: no schema ({exc.message})") from None


def _validate_core(fragment: Any, wrap: dict[str, Any], what: str) -> None:
    """Validate a core-type fragment embedded in a custom resource by wrapping it in a
    built-in object that has the same type at some path."""
    try:
        kubernetes_validate.validate(wrap, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        raise AssertionError(f"{what}: {exc.message}") from None


def test_core_types_inside_custom_resources_validate() -> None:
    scaled = _one("ScaledObject", "custscore-worker")
    behavior = scaled["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    hpa = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "probe"},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "x"},
            "maxReplicas": 2,
            "behavior": behavior,
        },
    }
    _validate_core(behavior, hpa, "ScaledObject behavior")
    pool = _one("KafkaNodePool")
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "probe"},
        "spec": {"containers": [{"name": "c", "resources": pool["spec"]["resources"]}]},
    }
    _validate_core(pool["spec"]["resources"], pod, "KafkaNodePool resources")
    monitor = _one("PodMonitor")
    pdb = {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": "probe"},
        "spec": {"maxUnavailable": 1, "selector": monitor["spec"]["selector"]},
    }
    _validate_core(monitor["spec"]["selector"], pdb, "PodMonitor selector")


def test_configmap_and_secret_load_as_custscore_settings() -> None:
    env = _k8s_env()
    unknown = sorted(k for k in env if not k.startswith("CUSTSCORE_"))
    assert not unknown, unknown
    settings = _k8s_settings()
    configured = {k[len("CUSTSCORE_") :].lower() for k in env}
    missing = set(Settings.model_fields) - configured - K8S_UNSET
    assert not missing, f"settings the Deployment leaves unset: {sorted(missing)}"
    assert settings.redis_cluster is True
    assert settings.web_host == "0.0.0.0"
    assert settings.kafka_security_protocol == "SASL_SSL"


def test_topics_match_the_settings() -> None:
    settings = _k8s_settings()
    topics = {t["spec"]["topicName"]: t["spec"] for t in _find("KafkaTopic")}
    # every topic setting (inputs, alert kinds incl. nudge, outcomes, holdout, scores, dead letter)
    expected = {getattr(settings, n) for n in Settings.model_fields if n.startswith("topic_")}
    assert {"customer.nudge", "customer.outcomes", "customer.holdout"} <= expected
    assert set(topics) == expected
    for name, spec in topics.items():
        assert spec["partitions"] == settings.partitions, name
        assert spec["replicas"] == settings.replication_factor, name
        assert spec["config"]["min.insync.replicas"] < spec["replicas"], name
        policy = spec["config"]["cleanup.policy"]
        assert policy == ("compact" if name == settings.topic_scores else "delete"), name
    kafka = _one("Kafka")
    assert kafka["spec"]["kafka"]["config"]["auto.create.topics.enable"] is False
    assert kafka["spec"]["kafka"]["config"]["default.replication.factor"] == (
        settings.replication_factor
    )
    for topic in _find("KafkaTopic") + _find("KafkaUser") + _find("KafkaNodePool"):
        assert topic["metadata"]["labels"]["strimzi.io/cluster"] == kafka["metadata"]["name"]


def test_kafka_connection_settings_point_at_the_strimzi_cluster() -> None:
    settings = _k8s_settings()
    kafka = _one("Kafka")
    cluster = kafka["metadata"]["name"]
    host, port = settings.bootstrap_servers.split(":")
    assert host.split(".")[0] == f"{cluster}-kafka-bootstrap"
    (listener,) = [lis for lis in kafka["spec"]["kafka"]["listeners"] if lis["port"] == int(port)]
    assert listener["tls"] is True
    assert listener["authentication"]["type"] == "scram-sha-512"
    assert settings.kafka_sasl_mechanism == "SCRAM-SHA-512"
    user = _one("KafkaUser", settings.kafka_sasl_username)
    # the password comes from the Secret the User Operator writes (named like the user)
    container = _worker_container()
    (password,) = [v for v in container["env"] if v["name"] == "CUSTSCORE_KAFKA_SASL_PASSWORD"]
    assert password["valueFrom"]["secretKeyRef"] == {
        "name": user["metadata"]["name"],
        "key": "password",
    }
    # the cluster CA Strimzi publishes is mounted where CUSTSCORE_KAFKA_SSL_CAFILE says
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in _worker_pod()["spec"]["volumes"]}
    ca = volumes["kafka-ca"]["secret"]
    assert ca["secretName"] == f"{cluster}-cluster-ca-cert"
    assert str(settings.kafka_ssl_cafile) == f"{mounts['kafka-ca']}/{ca['items'][0]['path']}"
    # ACLs: every topic (prefix) and the consumer group
    acls = user["spec"]["authorization"]["acls"]
    topic_acl = [a for a in acls if a["resource"]["type"] == "topic"]
    group_acl = [a for a in acls if a["resource"]["type"] == "group"]
    topics = [t["spec"]["topicName"] for t in _find("KafkaTopic")]
    for name in topics:
        assert any(
            name.startswith(a["resource"]["name"])
            if a["resource"]["patternType"] == "prefix"
            else name == a["resource"]["name"]
            for a in topic_acl
        ), name
    assert {"Read", "Write", "Describe"} <= {op for a in topic_acl for op in a["operations"]}
    assert group_acl[0]["resource"]["name"] == settings.app_id


def test_keda_scales_the_group_up_to_the_partition_count() -> None:
    settings = _k8s_settings()
    scaled = _one("ScaledObject", "custscore-worker")["spec"]
    assert scaled["scaleTargetRef"]["name"] == "custscore-worker"
    assert _find("Deployment", scaled["scaleTargetRef"]["name"])
    assert 1 <= scaled["minReplicaCount"] <= scaled["maxReplicaCount"] <= settings.partitions
    triggers = scaled["triggers"]
    inputs = {settings.topic_purchase, settings.topic_visit, settings.topic_complaint}
    assert {t["metadata"]["topic"] for t in triggers} == inputs
    for trigger in triggers:
        meta = trigger["metadata"]
        assert trigger["type"] == "kafka"
        assert meta["consumerGroup"] == settings.app_id
        assert meta["bootstrapServers"] == settings.bootstrap_servers
        assert meta["allowIdleConsumers"] == "false"
        assert int(meta["lagThreshold"]) > 0
        auth = _one("TriggerAuthentication", trigger["authenticationRef"]["name"])
        params = {ref["parameter"] for ref in auth["spec"]["secretTargetRef"]}
        assert {"sasl", "username", "password", "tls", "ca"} <= params
    keda_secret = _one("Secret", "custscore-keda-kafka")["stringData"]
    assert keda_secret["username"] == settings.kafka_sasl_username
    assert keda_secret["sasl"] == "scram_sha512"


def test_worker_deployment_probes_resources_and_shutdown() -> None:
    settings = _k8s_settings()
    pod = _worker_pod()
    container = _worker_container()
    assert "--no-create-topics" in container["args"]
    (port,) = container["ports"]
    assert port["containerPort"] == settings.web_port and port["name"] == "web"
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "web"}, probe
    resources = container["resources"]
    assert {"cpu", "memory"} <= set(resources["requests"]) and "memory" in resources["limits"]
    assert pod["spec"]["terminationGracePeriodSeconds"] >= 30
    anti = pod["spec"]["affinity"]["podAntiAffinity"]
    terms = anti["preferredDuringSchedulingIgnoredDuringExecution"]
    assert any(t["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname" for t in terms)
    for term in terms:
        selector = term["podAffinityTerm"]["labelSelector"]["matchLabels"]
        assert selector.items() <= pod["metadata"]["labels"].items()
    # volumes that are mounted exist, and the model file sits in its mount
    volumes = {v["name"] for v in pod["spec"]["volumes"]}
    assert {m["name"] for m in container["volumeMounts"]} <= volumes
    strategy = _one("Deployment", "custscore-worker")["spec"]["strategy"]["rollingUpdate"]
    assert strategy["maxUnavailable"] == 0
    pdb = _one("PodDisruptionBudget", "custscore-worker")["spec"]
    assert pdb["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()


def test_model_configmap_is_the_versioned_params_file() -> None:
    settings = _k8s_settings()
    pod = _worker_pod()
    container = _worker_container()
    (model_volume,) = [v for v in pod["spec"]["volumes"] if v["name"] == "model"]
    name = model_volume["configMap"]["name"]
    configmap = _one("ConfigMap", name)
    assert configmap["immutable"] is True
    params = parse_params(json.loads(configmap["data"]["params.json"]), name)
    version = params.model_version
    assert name == f"custscore-model-{version}"
    assert configmap["metadata"]["labels"]["custscore/model-version"] == version
    assert pod["metadata"]["annotations"]["custscore/model-version"] == version
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == "model"]
    assert str(settings.params_file) == f"{mount['mountPath']}/params.json"


def test_valkey_cluster_matches_the_worker_settings() -> None:
    settings = _k8s_settings()
    url = urlparse(settings.redis_address)
    service = _one("Service", url.hostname.split(".")[0] if url.hostname else "")
    statefulset = _one("StatefulSet", "valkey")
    pod_labels = statefulset["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert service["spec"]["ports"][0]["port"] == url.port
    assert statefulset["spec"]["replicas"] == 6
    assert _one("Service", statefulset["spec"]["serviceName"])["spec"]["clusterIP"] == "None"
    config = _one("ConfigMap", "valkey-cluster")["data"]
    assert "cluster-enabled yes" in config["valkey.conf"]
    assert "maxmemory-policy noeviction" in config["valkey.conf"]
    assert "--cluster-replicas 1" in config["create-cluster.sh"]
    # servers and workers share one password
    (container,) = statefulset["spec"]["template"]["spec"]["containers"]
    (password,) = [e for e in container["env"] if e["name"] == "VALKEY_PASSWORD"]
    ref = password["valueFrom"]["secretKeyRef"]
    assert ref["key"] == "CUSTSCORE_REDIS_PASSWORD"
    assert "CUSTSCORE_REDIS_PASSWORD" in _one("Secret", ref["name"])["stringData"]
    anti = statefulset["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]
    assert anti["requiredDuringSchedulingIgnoredDuringExecution"]
    job = _one("Job", "valkey-cluster-create")
    (job_container,) = job["spec"]["template"]["spec"]["containers"]
    assert job_container["image"] == container["image"]


def test_monitoring_scrapes_the_workers_with_the_rules_of_deploy_prometheus() -> None:
    monitor = _one("PodMonitor")["spec"]
    pod = _worker_pod()
    assert monitor["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    (endpoint,) = monitor["podMetricsEndpoints"]
    assert endpoint["port"] in {p["name"] for p in _worker_container()["ports"]}
    assert endpoint["path"] == "/metrics"
    # the rules select job="custscore": the job label comes from this pod label
    assert pod["metadata"]["labels"][monitor["jobLabel"]] == "custscore"
    rules = yaml.safe_load(RULES.read_text())
    assert _one("PrometheusRule")["spec"] == rules, "monitoring.yaml differs from rules.yml"


# --------------------------------------------------------------------------- compose


def _compose() -> dict[str, Any]:
    return dict(yaml.safe_load(COMPOSE.read_text()))


def _compose_workers() -> dict[str, dict[str, Any]]:
    return {n: s for n, s in _compose()["services"].items() if n.startswith("worker")}


def test_compose_services_and_images() -> None:
    services = _compose()["services"]
    assert {"kafka", "valkey", "prometheus", "grafana"} <= set(services)
    assert len(_compose_workers()) == 2
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert "controller" in services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"]
    assert not any("zookeeper" in name for name in services)
    assert services["valkey"]["image"].startswith(("valkey/valkey:", "redis:"))
    assert services["prometheus"]["image"].startswith("prom/prometheus:")
    assert services["grafana"]["image"].startswith("grafana/grafana:")
    for name, worker in _compose_workers().items():
        build = worker["build"]
        assert (COMPOSE.parent / build["context"] / build["dockerfile"]).is_file(), name


def test_compose_workers_take_every_setting_from_env() -> None:
    services = _compose()["services"]
    kafka_env = services["kafka"]["environment"]
    advertised = dict(
        re.match(r"(\w+)://(.+)", item).groups()  # type: ignore[union-attr]
        for item in kafka_env["KAFKA_ADVERTISED_LISTENERS"].split(",")
    )
    groups = set()
    for name, worker in _compose_workers().items():
        env = {k: str(v) for k, v in worker["environment"].items()}
        assert all(k.startswith("CUSTSCORE_") for k in env), name
        settings = load_settings(None, environ=env)
        configured = {k[len("CUSTSCORE_") :].lower() for k in env}
        missing = set(Settings.model_fields) - configured - COMPOSE_UNSET
        assert not missing, f"{name}: settings not set from env: {sorted(missing)}"
        assert not (configured & EMBEDDED_ONLY), name
        # addresses point at the compose services
        assert settings.bootstrap_servers == advertised["PLAINTEXT"]
        assert urlparse(settings.redis_address).hostname == "valkey"
        assert settings.web_host == "0.0.0.0"
        (mapping,) = worker["ports"]
        assert mapping.split(":")[1] == str(settings.web_port), name
        groups.add(settings.app_id)
    assert len(groups) == 1, "both workers must share one consumer group"
    # worker-2 waits for worker-1 (which creates the topics) and creates none itself
    assert "--no-create-topics" in services["worker-2"]["command"]
    assert services["worker-2"]["depends_on"]["worker-1"]["condition"] == "service_healthy"


def test_compose_mounts_exist_and_prometheus_scrapes_the_workers() -> None:
    services = _compose()["services"]
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (COMPOSE.parent / source).exists(), f"{name}: {source}"
    config = yaml.safe_load(SCRAPE_CONFIG.read_text())
    (job,) = config["scrape_configs"]
    assert job["job_name"] == "custscore"  # the job the rules and the dashboard select
    targets = set(job["static_configs"][0]["targets"])
    expected = set()
    for name, worker in _compose_workers().items():
        settings = load_settings(
            None, environ={k: str(v) for k, v in worker["environment"].items()}
        )
        expected.add(f"{name}:{settings.web_port}")
    assert targets == expected
    mounts = dict(v.split(":")[:2] for v in services["prometheus"]["volumes"] if ":" in v)
    assert mounts["./prometheus/rules.yml"] in config["rule_files"]
    assert mounts["./prometheus/prometheus.yml"] == "/etc/prometheus/prometheus.yml"


def test_grafana_provisioning_finds_the_dashboard_and_the_datasource() -> None:
    grafana = _compose()["services"]["grafana"]
    mounts = dict(v.split(":")[:2] for v in grafana["volumes"])
    provider_dir = DEPLOY / "grafana" / "provisioning" / "dashboards"
    (provider,) = yaml.safe_load((provider_dir / "custscore.yaml").read_text())["providers"]
    dashboards_in = mounts["./grafana/dashboards"]
    assert provider["options"]["path"] == dashboards_in
    assert (DEPLOY / "grafana" / "dashboards" / "custscore.json").is_file()
    assert grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"].startswith(
        dashboards_in + "/"
    )
    sources = DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yaml"
    (source,) = yaml.safe_load(sources.read_text())["datasources"]
    assert source["type"] == "prometheus"
    assert urlparse(source["url"]).hostname == "prometheus"
    variables = {v["name"]: v for v in dashboard()["templating"]["list"]}
    assert variables["datasource"]["current"]["value"] == source["uid"]


# --------------------------------------------------------------------------- dashboard


def _panels() -> list[dict[str, Any]]:
    return [p for p in dashboard()["panels"] if p["type"] != "row"]


def test_dashboard_layout() -> None:
    board = dashboard()
    assert board["uid"] and board["title"]
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    boxes = []
    for panel in board["panels"]:
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["w"] > 0 and pos["x"] + pos["w"] <= 24, panel["title"]
        boxes.append((panel["title"], pos["x"], pos["y"], pos["w"], pos["h"]))
    for i, (a, ax, ay, aw, ah) in enumerate(boxes):
        for b, bx, by, bw, bh in boxes[i + 1 :]:
            overlap = ax < bx + bw and bx < ax + aw and ay < by + bh and by < ay + ah
            assert not overlap, f"panels overlap: {a!r} and {b!r}"
    for panel in _panels():
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert refs and len(refs) == len(set(refs)), panel["title"]
        assert panel.get("description"), f"{panel['title']}: no description"


def _declared_by_the_worker() -> set[str]:
    """Every name the worker's registry declares: its own metrics and the marketing loop's
    (streams.outcome_metrics registers on the same registry)."""
    registry = build_metrics().registry
    OutcomeMetrics(registry)
    _, declared = exposition_names(generate_latest(registry).decode())
    return declared


def test_dashboard_and_rules_use_only_metrics_the_worker_declares() -> None:
    declared = _declared_by_the_worker() | PROMETHEUS_SYNTHETIC
    for title, expr in dashboard_targets():
        unknown = metric_names(expr) - declared
        assert not unknown, f"dashboard panel {title!r}: {sorted(unknown)}"
    for rule in rule_list():
        unknown = metric_names(rule["expr"]) - declared
        assert not unknown, f"rule {rule['alert']}: {sorted(unknown)}"


def test_dashboard_covers_the_operational_views() -> None:
    used = {name for _, expr in dashboard_targets() for name in metric_names(expr)}
    by_type = any(
        "custscore_events_in_total" in metric_names(e) and "by (type)" in e
        for _, e in dashboard_targets()
    )
    assert by_type, "throughput by event type"
    for name in (
        "custscore_consumer_lag",
        "custscore_batch_seconds_bucket",
        "custscore_kernel_seconds_bucket",
        "custscore_redis_seconds_bucket",
        "custscore_alerts_total",
        "custscore_population_value_tier",
        "custscore_population_rfm_segment",
        "custscore_population_effective_members",
        "custscore_population_churn_rate",
    ):
        assert name in used, name


def test_dashboard_covers_the_customer_kpis_and_the_outcomes() -> None:
    """Issue 15: a panel for every KPI gauge (docs/scoring.md, "KPIs") and the marketing loop's
    contacts, outcomes, response spend, uplift with its interval and suppressions; response
    rates are responded / closed windows by kind and group."""
    targets = dashboard_targets()
    used = {name for _, expr in targets for name in metric_names(expr)}
    for name in (
        "custscore_pop_second_purchase_rate",
        "custscore_pop_pareto_share",
        "custscore_pop_month_customers",
        "custscore_pop_complaint_rate",
        "custscore_pop_complaints_per_100_purchase_days",
        "custscore_pop_repurchase_after_complaint",
        "custscore_pop_complaints",
        "custscore_pop_quadrant",
        "custscore_pop_abcd",
        "custscore_contacts_total",
        "custscore_contact_outcomes_total",
        "custscore_contact_response_spend_total",
        "custscore_uplift",
        "custscore_uplift_low",
        "custscore_uplift_high",
        "custscore_alerts_suppressed_total",
    ):
        assert name in used, name
    rows = [p["title"] for p in dashboard()["panels"] if p["type"] == "row"]
    assert "Customer KPIs" in rows and "Outcomes / uplift" in rows
    response = [
        expr for _, expr in targets if "custscore_contact_outcomes_total" in metric_names(expr)
    ]
    assert any(
        'responded="true"' in e and e.count("sum by (kind, group)") == 2 for e in response
    ), response


# --------------------------------------------------------------------------- rules (offline part)


def test_rules_cover_the_required_alerts_and_each_has_a_firing_unit_test() -> None:
    rules = {r["alert"]: r for r in rule_list()}
    for required in (
        "CustscoreConsumerLagGrowing",
        "CustscoreDeadLetterRateHigh",
        "CustscoreNoInput",
        "CustscoreRedisErrors",
        "CustscoreRedisLatencyHigh",
        "CustscoreRedisDown",
        "CustscoreFenceConflicts",
        "CustscoreFenceSkipsSpiking",
        "CustscoreWorkerDown",
    ):
        assert required in rules, required
    tests = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    firing = {
        case["alertname"]
        for test in tests
        for case in test["alert_rule_test"]
        if case["exp_alerts"]
    }
    quiet = {
        case["alertname"]
        for test in tests
        for case in test["alert_rule_test"]
        if not case["exp_alerts"]
    }
    assert set(rules) <= firing, f"no firing unit test: {sorted(set(rules) - firing)}"
    assert len(quiet) >= 5, "too few 'must stay quiet' cases"
    for name, rule in rules.items():
        assert rule["labels"]["severity"] in {"warning", "critical"}, name
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], name
        assert rule["annotations"]["runbook_url"] == f"docs/operations.md#{name.lower()}", name


def test_the_validators_catch_typical_mistakes() -> None:
    """The checks above would fail on a misspelt field, a wrong type or a wrong metric name."""
    import copy

    deployment = copy.deepcopy(_one("Deployment", "custscore-worker"))
    deployment["spec"]["replicass"] = 3
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSION, strict=True)
    topic = copy.deepcopy(_find("KafkaTopic")[0])
    topic["spec"]["partitions"] = "24"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(topic, CRD_SCHEMAS[("kafka.strimzi.io/v1beta2", "KafkaTopic")])
    scaled = copy.deepcopy(_one("ScaledObject", "custscore-worker"))
    scaled["spec"]["triggers"][0]["metadata"]["lagThreshold"] = 40000  # must be a string
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(scaled, CRD_SCHEMAS[("keda.sh/v1alpha1", "ScaledObject")])
    pool = copy.deepcopy(_one("KafkaNodePool"))
    pool["spec"]["roles"] = ["broker", "zookeeper"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(pool, CRD_SCHEMAS[("kafka.strimzi.io/v1beta2", "KafkaNodePool")])
    typo = "sum(rate(custscore_event_in_total[5m]))"
    assert metric_names(typo) - _declared_by_the_worker() == {"custscore_event_in_total"}
