"""JSON Schemas (draft 2020-12) of the custom resources in deploy/k8s, for offline validation.

``kubernetes-validate`` ships the schemas of the built-in kinds only. These cover the fields
deploy/k8s uses of Strimzi (kafka.strimzi.io/v1beta2), KEDA (keda.sh/v1alpha1) and the
Prometheus Operator (monitoring.coreos.com/v1), written from those projects' API references:
every object lists its known fields and refuses others (so a typo fails), enums are the
documented values, and KEDA trigger metadata must be a map of strings as the CRD demands.
Parts that are plain Kubernetes types (resource requirements, HPA behavior, label selectors)
are validated separately against kubernetes-validate's schemas by the tests.
"""

from __future__ import annotations

from typing import Any

__all__ = ["CRD_SCHEMAS"]

_OBJ: dict[str, Any] = {"type": "object"}
_STR: dict[str, Any] = {"type": "string"}
_INT: dict[str, Any] = {"type": "integer"}
_BOOL: dict[str, Any] = {"type": "boolean"}
_DURATION: dict[str, Any] = {"type": "string", "pattern": r"^(0|([0-9]+(ms|s|m|h|d|w|y))+)$"}
_STR_MAP: dict[str, Any] = {"type": "object", "additionalProperties": {"type": "string"}}


def _closed(properties: dict[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": list(required),
        "additionalProperties": False,
    }


def _resource(spec: dict[str, Any], *, cluster_label: bool = False) -> dict[str, Any]:
    metadata = _closed(
        {
            "name": {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"},
            "namespace": _STR,
            "labels": _STR_MAP,
            "annotations": _STR_MAP,
        },
        ("name",),
    )
    if cluster_label:
        metadata["required"] = ["name", "labels"]
        metadata["properties"]["labels"] = {
            **_STR_MAP,
            "required": ["strimzi.io/cluster"],
        }
    return _closed(
        {"apiVersion": _STR, "kind": _STR, "metadata": metadata, "spec": spec},
        ("apiVersion", "kind", "metadata", "spec"),
    )


# --------------------------------------------------------------------------- Strimzi

_STRIMZI_VOLUME = _closed(
    {
        "id": {"type": "integer", "minimum": 0},
        "type": {"enum": ["ephemeral", "persistent-claim"]},
        "size": {"type": "string", "pattern": r"^[0-9]+([KMGTPE]i?)?$"},
        "class": _STR,
        "deleteClaim": _BOOL,
        "kraftMetadata": {"enum": ["shared"]},
        "selector": _STR_MAP,
    },
    ("type",),
)
_STRIMZI_STORAGE = _closed(
    {
        "type": {"enum": ["ephemeral", "persistent-claim", "jbod"]},
        "volumes": {"type": "array", "minItems": 1, "items": _STRIMZI_VOLUME},
        "size": _STR,
        "class": _STR,
        "deleteClaim": _BOOL,
    },
    ("type",),
)
_KAFKA_NODE_POOL = _resource(
    _closed(
        {
            "replicas": {"type": "integer", "minimum": 0},
            "roles": {
                "type": "array",
                "minItems": 1,
                "uniqueItems": True,
                "items": {"enum": ["controller", "broker"]},
            },
            "storage": _STRIMZI_STORAGE,
            "resources": _OBJ,  # core ResourceRequirements, validated separately
            "jvmOptions": _OBJ,
            "template": _OBJ,
        },
        ("replicas", "roles", "storage"),
    ),
    cluster_label=True,
)
_LISTENER = _closed(
    {
        "name": {"type": "string", "pattern": r"^[a-z0-9]{1,11}$"},
        "port": {"type": "integer", "minimum": 9092, "maximum": 65535},
        "type": {
            "enum": ["internal", "route", "loadbalancer", "nodeport", "ingress", "cluster-ip"]
        },
        "tls": _BOOL,
        "authentication": _closed(
            {"type": {"enum": ["tls", "scram-sha-512", "oauth", "custom"]}}, ("type",)
        ),
        "configuration": _OBJ,
        "networkPolicyPeers": {"type": "array"},
    },
    ("name", "port", "type", "tls"),
)
_KAFKA = _resource(
    _closed(
        {
            "kafka": _closed(
                {
                    "version": {"type": "string", "pattern": r"^[0-9]+\.[0-9]+\.[0-9]+$"},
                    "metadataVersion": {"type": "string", "pattern": r"^[0-9]+\.[0-9]+-IV[0-9]+$"},
                    "listeners": {"type": "array", "minItems": 1, "items": _LISTENER},
                    "authorization": _closed(
                        {
                            "type": {"enum": ["simple", "opa", "keycloak", "custom"]},
                            "superUsers": {"type": "array", "items": _STR},
                        },
                        ("type",),
                    ),
                    "config": {
                        "type": "object",
                        "additionalProperties": {
                            "type": ["string", "integer", "boolean", "number"]
                        },
                    },
                    "rack": _OBJ,
                    "resources": _OBJ,
                    "jvmOptions": _OBJ,
                    "metricsConfig": _OBJ,
                    "template": _OBJ,
                },
                ("listeners",),
            ),
            "entityOperator": _closed(
                {"topicOperator": _OBJ, "userOperator": _OBJ, "template": _OBJ}
            ),
            "cruiseControl": _OBJ,
            "kafkaExporter": _OBJ,
        },
        ("kafka",),
    )
)
_KAFKA_TOPIC = _resource(
    _closed(
        {
            "topicName": _STR,
            "partitions": {"type": "integer", "minimum": 1},
            "replicas": {"type": "integer", "minimum": 1, "maximum": 32767},
            "config": {
                "type": "object",
                "additionalProperties": {"type": ["string", "integer", "boolean", "number"]},
            },
        },
        ("partitions", "replicas"),
    ),
    cluster_label=True,
)
_ACL = _closed(
    {
        "resource": _closed(
            {
                "type": {"enum": ["topic", "group", "cluster", "transactionalId"]},
                "name": _STR,
                "patternType": {"enum": ["literal", "prefix"]},
            },
            ("type",),
        ),
        "operations": {
            "type": "array",
            "minItems": 1,
            "items": {
                "enum": [
                    "Read",
                    "Write",
                    "Create",
                    "Delete",
                    "Alter",
                    "Describe",
                    "ClusterAction",
                    "AlterConfigs",
                    "DescribeConfigs",
                    "IdempotentWrite",
                    "All",
                ]
            },
        },
        "host": _STR,
    },
    ("resource", "operations"),
)
_KAFKA_USER = _resource(
    _closed(
        {
            "authentication": _closed(
                {"type": {"enum": ["tls", "tls-external", "scram-sha-512"]}}, ("type",)
            ),
            "authorization": _closed(
                {"type": {"enum": ["simple"]}, "acls": {"type": "array", "items": _ACL}},
                ("type", "acls"),
            ),
            "quotas": _OBJ,
            "template": _OBJ,
        }
    ),
    cluster_label=True,
)

# --------------------------------------------------------------------------- KEDA

_TRIGGER = _closed(
    {
        "type": _STR,
        "name": _STR,
        "metadata": _STR_MAP,
        "metricType": {"enum": ["AverageValue", "Value", "Utilization"]},
        "useCachedMetrics": _BOOL,
        "authenticationRef": _closed(
            {
                "name": _STR,
                "kind": {"enum": ["TriggerAuthentication", "ClusterTriggerAuthentication"]},
            },
            ("name",),
        ),
    },
    ("type", "metadata"),
)
_SCALED_OBJECT = _resource(
    _closed(
        {
            "scaleTargetRef": _closed(
                {"name": _STR, "apiVersion": _STR, "kind": _STR, "envSourceContainerName": _STR},
                ("name",),
            ),
            "pollingInterval": {"type": "integer", "minimum": 1},
            "cooldownPeriod": {"type": "integer", "minimum": 0},
            "initialCooldownPeriod": {"type": "integer", "minimum": 0},
            "idleReplicaCount": {"type": "integer", "minimum": 0},
            "minReplicaCount": {"type": "integer", "minimum": 0},
            "maxReplicaCount": {"type": "integer", "minimum": 1},
            "fallback": _closed({"failureThreshold": _INT, "replicas": _INT}),
            "advanced": _closed(
                {
                    "restoreToOriginalReplicaCount": _BOOL,
                    "horizontalPodAutoscalerConfig": _closed(
                        {"name": _STR, "behavior": _OBJ}  # HPA v2 behavior: checked separately
                    ),
                    "scalingModifiers": _OBJ,
                }
            ),
            "triggers": {"type": "array", "minItems": 1, "items": _TRIGGER},
        },
        ("scaleTargetRef", "triggers"),
    )
)
_TRIGGER_AUTH = _resource(
    _closed(
        {
            "secretTargetRef": {
                "type": "array",
                "items": _closed(
                    {"parameter": _STR, "name": _STR, "key": _STR}, ("parameter", "name", "key")
                ),
            },
            "env": {"type": "array"},
            "podIdentity": _OBJ,
            "hashiCorpVault": _OBJ,
        }
    )
)

# --------------------------------------------------------------------------- Prometheus Operator

_POD_MONITOR = _resource(
    _closed(
        {
            "jobLabel": _STR,
            "podTargetLabels": {"type": "array", "items": _STR},
            "selector": _OBJ,  # core LabelSelector: checked separately
            "namespaceSelector": _OBJ,
            "podMetricsEndpoints": {
                "type": "array",
                "minItems": 1,
                "items": _closed(
                    {
                        "port": _STR,
                        "path": _STR,
                        "scheme": {"enum": ["http", "https"]},
                        "interval": _DURATION,
                        "scrapeTimeout": _DURATION,
                        "honorLabels": _BOOL,
                        "relabelings": {"type": "array"},
                        "metricRelabelings": {"type": "array"},
                    }
                ),
            },
        },
        ("selector", "podMetricsEndpoints"),
    )
)
_RULE = {
    "type": "object",
    "properties": {
        "alert": _STR,
        "record": _STR,
        "expr": {"type": ["string", "integer"]},
        "for": _DURATION,
        "keep_firing_for": _DURATION,
        "labels": _STR_MAP,
        "annotations": _STR_MAP,
    },
    "required": ["expr"],
    "additionalProperties": False,
    "oneOf": [{"required": ["alert"]}, {"required": ["record"]}],
}
_PROMETHEUS_RULE = _resource(
    _closed(
        {
            "groups": {
                "type": "array",
                "items": _closed(
                    {
                        "name": _STR,
                        "interval": _DURATION,
                        "limit": _INT,
                        "partial_response_strategy": _STR,
                        "rules": {"type": "array", "items": _RULE},
                    },
                    ("name", "rules"),
                ),
            }
        },
        ("groups",),
    )
)

CRD_SCHEMAS: dict[tuple[str, str], dict[str, Any]] = {
    ("kafka.strimzi.io/v1beta2", "Kafka"): _KAFKA,
    ("kafka.strimzi.io/v1beta2", "KafkaNodePool"): _KAFKA_NODE_POOL,
    ("kafka.strimzi.io/v1beta2", "KafkaTopic"): _KAFKA_TOPIC,
    ("kafka.strimzi.io/v1beta2", "KafkaUser"): _KAFKA_USER,
    ("keda.sh/v1alpha1", "ScaledObject"): _SCALED_OBJECT,
    ("keda.sh/v1alpha1", "TriggerAuthentication"): _TRIGGER_AUTH,
    ("monitoring.coreos.com/v1", "PodMonitor"): _POD_MONITOR,
    ("monitoring.coreos.com/v1", "PrometheusRule"): _PROMETHEUS_RULE,
}
