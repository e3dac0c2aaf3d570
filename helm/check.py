#!/usr/bin/env python3
"""Validates the lbaas Helm chart (helm/lbaas) with real Helm and the Kubernetes JSON schemas.

    python3 helm/check.py            # from anywhere; exit 0 when everything passes
    python3 helm/check.py CHART_DIR  # another copy of the chart (e.g. to try a change)

What it does, for each values scenario below (the defaults, one enabling everything optional
with existing Secrets, one with chart-made Secrets, a minimal one):
  1. `helm lint --strict` through Helm's own engine (the PyPI package helm-python-sdk, module
     helm_python, which bundles Helm's Go SDK: no helm binary needed);
  2. renders the chart for the oldest Kubernetes the chart admits (Chart.yaml's kubeVersion) and
     the newest one kubernetes-validate ships, and validates every manifest against that
     version's Kubernetes JSON schemas in strict mode (unknown fields fail) with kubernetes-validate;
     the ServiceMonitor (a Prometheus Operator CRD, not in the core schemas) is validated against a
     structural schema of the fields the chart uses, built on the core ObjectMeta/LabelSelector;
  3. cross-checks what schemas cannot see: duplicate YAML keys, names, selectors that match their
     pods, probes and Service targetPorts that name real container ports, gRPC probes on the
     gRPC port or, under TLS, on the plaintext health port LBAAS_HEALTH_LISTEN binds (the
     kubelet's gRPC probe cannot speak TLS), Secret/ConfigMap references (and their keys) that
     resolve, file paths in LBAAS_* variables that a mounted volume provides, hooks that use only
     hook or pre-existing Secrets, the generated sealing key (64 hex digits), token file and JWT
     public keys, every LBAAS_* variable being one the service's own flags read (from
     services/*/src/{config,main}.rs), and the variables each scenario must (not) set.
  4. checks that every value is documented with a "# --" comment in values.yaml and has a row in
     README.md's values table (values.schema.json, which Helm applies to every render, refuses
     unknown keys).
Then it renders values that must be refused (with and without the values schema) and checks
that each fails with its message.

Exit codes: 0 passed; 1 a check failed (each failure is printed); 2 bad arguments; 3 a
dependency is missing (pip install helm-python-sdk kubernetes-validate).
"""

from __future__ import annotations

import base64
import binascii
import collections
import json
import re
import shutil
import sys
import tempfile
from pathlib import Path

EXIT_FAILED = 1
EXIT_MISSING = 3

try:
    import helm_python
    import jsonschema
    import kubernetes_validate
    import kubernetes_validate.utils as kv_utils
    import yaml
    from referencing import Registry, Resource
except ImportError as missing:  # pragma: no cover - depends on the machine
    print(f"MISSING DEPENDENCY: {missing}. Install: pip install helm-python-sdk kubernetes-validate")
    sys.exit(EXIT_MISSING)

HERE = Path(__file__).resolve().parent
CHART = HERE / "lbaas"
REPO = HERE.parent
RELEASE = "lbaas"
NAMESPACE = "lbaas-system"

# LBAAS_* variables the chart may set although no flag reads them yet (none now).
PLANNED_ENV: set[str] = set()
# Variables that are not flags but are read by the services (RUST_LOG) or only feed $(VAR)
# expansion inside the manifests.
NON_FLAG_ENV = {"RUST_LOG", "POD_IP", "NODE_NAME"}

# What each long-running service must be told, and the variable holding its listen address.
REQUIRED_ENV = {
    "api": ["LBAAS_API_LISTEN", "LBAAS_API_DATABASE_URL", "LBAAS_SCHEDULER_URL",
            "LBAAS_TOKEN_FILE", "LBAAS_SECRET_KEY_FILE"],
    "scheduler": ["LBAAS_SCHEDULER_LISTEN", "LBAAS_SCHEDULER_DATABASE_URL"],
    "agent": ["LBAAS_AGENT_LISTEN", "LBAAS_AGENT_ID", "LBAAS_SCHEDULER_URL",
              "LBAAS_AGENT_ADVERTISE_URL", "LBAAS_AGENT_STATE_DIR"],
}
LISTEN_ENV = {"api": "LBAAS_API_LISTEN", "scheduler": "LBAAS_SCHEDULER_LISTEN",
              "agent": "LBAAS_AGENT_LISTEN"}

PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
PEM_KEY = "-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----\n"
# Real public keys (Ed25519 and ECDSA P-256), concatenated as auth.jwt.publicKeys takes them.
JWT_KEYS = """-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEAK5/Hs/2Kzr9iLdgGLhDItLjndRzyqvZ76HuoHrqnXJQ=
-----END PUBLIC KEY-----
-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEfEw6n1soV8wHHJ833gm6xbFG6OMk
hVSzLO6cJcm7T1rOMKT7GcSKuK3gfD4v5MXbpNWnBJvmGikmmA3szasiHQ==
-----END PUBLIC KEY-----
"""
# Variables whose value is a file the container must see through a volume mount.
FILE_ENV = {"LBAAS_TLS_CA", "LBAAS_TLS_CERT", "LBAAS_TLS_KEY", "LBAAS_JWT_KEYS"}

# Every optional feature on, with pre-existing Secrets instead of chart-made ones.
EVERYTHING = {
    "fullnameOverride": "lbaas-prod",
    "commonLabels": {"team": "network"},
    "image": {"repository": "registry.example.com/lbaas", "digest": "sha256:" + "a" * 64},
    "imagePullSecrets": [{"name": "regcred"}],
    "serviceAccount": {"create": False, "name": "lbaas-runtime"},
    "logging": {"json": True, "filter": "info,lbaas_api=debug"},
    "otlp": {"endpoint": "http://otel-collector.observability:4317"},
    "database": {
        "existingSecret": "lbaas-db",
        "existingSecretKeys": {"api": "api-url", "scheduler": "scheduler-url"},
    },
    "auth": {"existingSecret": "lbaas-auth", "existingSecretKey": "tokens.txt",
             "jwt": {"enabled": True, "issuer": "https://id.example.com", "audience": "lbaas-prod",
                     "existingSecret": "lbaas-jwt", "existingSecretKey": "keys.pem"}},
    "secretKey": {"existingSecret": "lbaas-sealing", "existingSecretKey": "key"},
    "mtls": {"enabled": True, "secretName": "lbaas-mtls"},
    "migration": {
        "serviceAccountName": "lbaas-migrator",
        "podAnnotations": {"sidecar.istio.io/inject": "false"},
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}],
        "affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 1, "preference": {"matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["control"]}]}}]}},
    },
    "api": {
        "replicas": 3,
        "extraEnv": [{"name": "LBAAS_QUOTA_POOLS", "value": "50"}],
        "service": {
            "type": "LoadBalancer",
            "annotations": {"service.beta.kubernetes.io/aws-load-balancer-type": "nlb"},
            "loadBalancerSourceRanges": ["203.0.113.0/24"],
            "externalTrafficPolicy": "Local",
        },
        "pdb": {"maxUnavailable": 1},
        "podAntiAffinity": "hard",
        "podAnnotations": {"example.com/owner": "network"},
        "podLabels": {"tier": "control"},
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "control",
                         "effect": "NoSchedule"}],
        "topologySpreadConstraints": [{
            "maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
            "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": {"matchLabels": {"app.kubernetes.io/component": "api"}}}],
        "priorityClassName": "high-priority",
    },
    "scheduler": {
        "replicas": 3,
        "placementStrategy": "network*10+load",
        "affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{
            "topologyKey": "topology.kubernetes.io/zone",
            "labelSelector": {"matchLabels": {"app.kubernetes.io/component": "scheduler"}}}]}},
        "service": {"annotations": {"example.com/internal": "true"}},
        "pdb": {"minAvailable": 2},
        "priorityClassName": "high-priority",
    },
    "agent": {
        "hostNetwork": True,
        "idFrom": "sanitizedNodeName",
        "driver": "native",
        "stopDataPlaneOnExit": True,
        "stateDir": {"type": "hostPath", "hostPath": "/var/lib/lbaas-agent"},
        "nodeSelector": {"lbaas.io/agent": "true"},
        "tolerations": [{"key": "lbaas.io/dedicated", "operator": "Exists"}],
        "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [
                {"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]}]}]}}},
        "priorityClassName": "system-node-critical",
        "extraEnv": [{"name": "LBAAS_AGENT_CAPACITY", "value": "200"}],
    },
    "networkPolicy": {
        "api": {"from": [{"ipBlock": {"cidr": "10.0.0.0/8"}},
                         {"namespaceSelector": {"matchLabels": {"tenant": "true"}}}]},
        "scheduler": {"extraFrom": [{"podSelector": {"matchLabels": {"app": "lbctl"}}}]},
        "agent": {"dataPlaneFrom": [{"ipBlock": {"cidr": "0.0.0.0/0"}}]},
        "nodeCidrs": ["10.0.0.0/16"],
        "postgresql": {"to": [{"ipBlock": {"cidr": "10.1.0.0/24"}}], "ports": [5432, 6432]},
        "extraEgress": [{"to": [{"namespaceSelector": {"matchLabels": {
            "kubernetes.io/metadata.name": "observability"}}}],
            "ports": [{"port": 4317, "protocol": "TCP"}]}],
        "metricsFrom": [{"namespaceSelector": {"matchLabels": {
            "kubernetes.io/metadata.name": "monitoring"}}}],
    },
    "metrics": {"enabled": True, "port": 9090,
                "serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}}},
}

# Chart-made Secrets from inline values, a privileged agent, metrics without a ServiceMonitor.
INLINE = {
    "image": {"tag": "0.1.0-rc1", "pullPolicy": "Always"},
    "database": {"apiUrl": "postgresql://api:pw@db.example.com:5432/api?sslmode=require",
                 "schedulerUrl": "postgres://sched:pw@db.example.com:5432/sched"},
    "auth": {"tokens": [
        {"token": "tenant-a-token", "project": "tenant-a", "role": "member"},
        {"token": "tenant-b-reader", "project": "tenant-b", "role": "reader"},
        {"token": "ops-admin-token", "project": "ops", "role": "admin"},
        {"token": "default-role-token", "project": "tenant-c"},
    ], "allowProjectHeader": True, "schedulerRequiresAdminToken": False,
        "jwt": {"enabled": True, "publicKeys": JWT_KEYS}},
    "secretKey": {"value": "0123456789abcdef" * 4, "keepOnUninstall": False},
    "mtls": {"enabled": True, "ca": PEM, "cert": PEM, "key": PEM_KEY},
    "agent": {"privileged": True, "capabilities": [], "stateDir": {"sizeLimit": "1Gi"},
              "port": 65535, "healthPort": 65534},
    "api": {"service": {"type": "NodePort", "externalTrafficPolicy": "Cluster"},
            "podAntiAffinity": "", "healthPort": 9201},
    "metrics": {"enabled": True, "port": 9100, "serviceMonitor": {"enabled": False}},
}

# The least: no agents, no policies, no migration hook, no PDBs, one replica each.
MINIMAL = {
    "serviceAccount": {"create": False},
    "agent": {"enabled": False},
    "networkPolicy": {"enabled": False},
    "migration": {"enabled": False},
    "api": {"replicas": 1, "pdb": {"enabled": False}},
    "scheduler": {"replicas": 1, "pdb": {"enabled": False}},
    "logging": {"json": False},
}

# name -> (values, the Secrets and ServiceAccounts that must already exist in the namespace)
SCENARIOS = {
    "defaults": ({}, set()),
    "everything": (EVERYTHING, {"Secret/lbaas-db", "Secret/lbaas-auth", "Secret/lbaas-sealing",
                                "Secret/lbaas-mtls", "Secret/lbaas-jwt", "Secret/regcred",
                                "ServiceAccount/lbaas-runtime", "ServiceAccount/lbaas-migrator"}),
    "inline-secrets": (INLINE, set()),
    "minimal": (MINIMAL, set()),
}

# What each scenario must (True) or must not (False) give each service, so that a template that
# drops a feature fails here rather than passing quietly.
HEALTH_AND_JWT = {"LBAAS_HEALTH_LISTEN": True, "LBAAS_JWT_KEYS": True, "LBAAS_JWT_ISSUER": True,
                  "LBAAS_JWT_AUDIENCE": True}
NEITHER = {"LBAAS_HEALTH_LISTEN": False, "LBAAS_JWT_KEYS": False, "LBAAS_JWT_ISSUER": False,
           "LBAAS_JWT_AUDIENCE": False}
EXPECTED_ENV: dict[str, dict[str, dict[str, bool]]] = {
    "defaults": {"api": NEITHER, "scheduler": {**NEITHER, "LBAAS_SCHEDULER_TOKEN_FILE": True},
                 "agent": NEITHER},
    "everything": {"api": HEALTH_AND_JWT,
                   "scheduler": {**HEALTH_AND_JWT, "LBAAS_SCHEDULER_TOKEN_FILE": True},
                   "agent": {"LBAAS_HEALTH_LISTEN": True, "LBAAS_JWT_KEYS": False}},
    # schedulerRequiresAdminToken off: the scheduler gets neither the token file nor the JWT keys.
    "inline-secrets": {"api": HEALTH_AND_JWT,
                       "scheduler": {"LBAAS_HEALTH_LISTEN": True, "LBAAS_SCHEDULER_TOKEN_FILE": False,
                                     "LBAAS_JWT_KEYS": False, "LBAAS_JWT_ISSUER": False},
                       "agent": {"LBAAS_HEALTH_LISTEN": True, "LBAAS_JWT_KEYS": False}},
    "minimal": {"api": NEITHER, "scheduler": NEITHER},
}

# Values the chart must refuse: (values, what Helm says with values.schema.json, what the
# templates' own guards say without it, as with `helm install --skip-schema-validation`).
MUST_FAIL = [
    ({"secretKey": {"value": "not-hex"}}, "/secretKey/value", "64 hex digits"),
    ({"agent": {"hostNetwork": True}}, "networkPolicy.nodeCidrs", "networkPolicy.nodeCidrs"),
    ({"mtls": {"enabled": True}}, "mtls.secretName", "mtls.secretName"),
    ({"database": {"apiUrl": "sqlite://data/api.db"}}, "postgres:// URL", "postgres:// URL"),
    ({"auth": {"tokens": [{"token": "t", "project": "p", "role": "root"}]}}, "/auth/tokens/0/role",
     "reader, member or admin"),
    ({"auth": {"tokens": [{"token": "has space", "project": "p"}]}}, "/auth/tokens/0/token",
     "no whitespace"),
    ({"agent": {"driver": "nginx"}}, "/agent/driver", "agent.driver"),
    ({"agent": {"idFrom": "podName"}}, "/agent/idFrom", "agent.idFrom"),
    ({"agent": {"stateDir": {"type": "pvc"}}}, "/agent/stateDir/type", "agent.stateDir.type"),
    ({"metrics": {"enabled": True, "port": 9001}}, "metrics.port", "metrics.port"),
    ({"scheduler": {"agentTimeoutMs": 500}}, "agentTimeoutMs", "agentTimeoutMs"),
    ({"api": {"podAntiAffinity": "always"}}, "/api/podAntiAffinity", "podAntiAffinity"),
    ({"api": {"port": 70000}}, "/api/port", "between 1 and 65535"),
    ({"api": {"replica": 3}}, "additional properties 'replica'", None),
    ({"auth": {"jwt": {"enabled": True}}}, "auth.jwt.publicKeys", "auth.jwt.publicKeys"),
    ({"auth": {"jwt": {"enabled": True, "publicKeys": "not a key"}}}, "PEM public keys",
     "PEM public keys"),
    ({"auth": {"jwt": {"enabled": True, "publicKeys": JWT_KEYS + PEM_KEY}}}, "private key",
     "private key"),
    ({"auth": {"jwt": {"enabled": True, "publicKeys": PEM}}}, "public keys only", "public keys only"),
    ({"auth": {"jwt": {"enabled": True, "publicKeys": JWT_KEYS, "audience": ""}}},
     "/auth/jwt/audience", "auth.jwt.audience"),
    ({"auth": {"jwt": {"enabled": True, "keys": JWT_KEYS}}}, "additional properties 'keys'", None),
    ({"mtls": {"enabled": True, "secretName": "tls"}, "api": {"healthPort": 9001}},
     "api.healthPort", "api.healthPort"),
    ({"mtls": {"enabled": True, "secretName": "tls"}, "metrics": {"enabled": True},
      "agent": {"healthPort": 9090}}, "agent.healthPort", "agent.healthPort"),
    ({"scheduler": {"healthPort": 0}}, "/scheduler/healthPort", "between 1 and 65535"),
    ({"agent": {"capacity": 0}}, "/agent/capacity", None),
]

DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
WORKLOAD_KINDS = {"Deployment", "DaemonSet", "StatefulSet", "Job"}


class Failures:
    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, where: str, message: str) -> None:
        self.items.append(f"{where}: {message}")
        print(f"  FAIL {where}: {message}")


# ---------------------------------------------------------------------------------------------
# YAML: a loader that refuses duplicate keys (PyYAML keeps the last one silently; the API server
# rejects or warns).


class StrictLoader(yaml.SafeLoader):
    pass


def _construct_mapping(loader: StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return yaml.SafeLoader.construct_mapping(loader, node, deep)


StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


# ---------------------------------------------------------------------------------------------
# Helm


KUBE_VERSION_OPTION: list[bool] = []  # [whether helm_render takes kube_version], found once


def render(chart: "helm_python.Chart", values: dict, kube_version: str) -> dict[str, str]:
    """Renders like `helm template --kube-version`: helm_python's render through the C API with
    its kube_version option (Chart.render does not expose it), or, if this helm_python does not
    take it, Chart.render with Helm's default Kubernetes version (said once)."""
    opts = {"name": RELEASE, "namespace": NAMESPACE, "is_install": True,
            "kube_version": f"v{kube_version}"}
    if not KUBE_VERSION_OPTION:
        try:
            from helm_python import _native

            _native.call_string("helm_render", chart._raw(), None, json.dumps(opts))
            KUBE_VERSION_OPTION.append(True)
        except (ImportError, AttributeError, helm_python.HelmInvalidArgError) as e:
            print(f"note: rendering with Helm's default Kubernetes version ({e})")
            KUBE_VERSION_OPTION.append(False)
        except helm_python.HelmError:
            KUBE_VERSION_OPTION.append(True)  # the option was taken; the defaults failed
    if KUBE_VERSION_OPTION[0]:
        from helm_python import _native

        return json.loads(_native.call_string(
            "helm_render", chart._raw(), json.dumps(values), json.dumps(opts)))
    return chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)


def lint(values: dict, kube_version: str, where: str, failures: Failures) -> None:
    report = helm_python.lint(CHART, values, strict=True, namespace=NAMESPACE,
                              kube_version=f"v{kube_version}")
    for error in report.get("errors") or []:
        failures.add(where, f"helm lint: {error}")
    for message in report.get("messages") or []:
        severity = message.get("severity", 0)
        text = f"{message.get('path')}: {message.get('error')}"
        if severity >= 2:
            failures.add(where, f"helm lint ({'warning' if severity == 2 else 'error'}): {text}")
        elif "icon is recommended" not in text:
            print(f"  note {where}: helm lint: {text}")


def split_manifests(rendered: dict[str, str], where: str, failures: Failures) -> list[tuple[str, dict]]:
    docs = []
    for template, text in sorted(rendered.items()):
        if template.endswith("NOTES.txt") or not text.strip():
            continue
        try:
            for doc in yaml.load_all(text, Loader=StrictLoader):
                if doc:
                    docs.append((template, doc))
        except yaml.YAMLError as e:
            failures.add(f"{where} {template}", f"invalid YAML: {e}")
    return docs


# ---------------------------------------------------------------------------------------------
# Schemas


def servicemonitor_validator(version: str) -> jsonschema.protocols.Validator:
    """A structural schema of the ServiceMonitor fields the chart uses (monitoring.coreos.com/v1),
    on top of the core ObjectMeta and LabelSelector of the given Kubernetes version."""
    defs = kv_utils.schema_contents(
        f"kubernetes-json-schema/v{version}-local-strict/_definitions.json", version)
    meta = "/api/_definitions.json#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1."
    duration = {"type": "string", "pattern": r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"}
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://kubernetes.io/api/servicemonitor-monitoring-v1.json",
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "additionalProperties": False,
        "properties": {
            "apiVersion": {"const": "monitoring.coreos.com/v1"},
            "kind": {"const": "ServiceMonitor"},
            "metadata": {"$ref": meta + "ObjectMeta"},
            "spec": {
                "type": "object",
                "required": ["selector", "endpoints"],
                "additionalProperties": False,
                "properties": {
                    "jobLabel": {"type": "string"},
                    "namespaceSelector": {
                        "type": "object", "additionalProperties": False,
                        "properties": {"any": {"type": "boolean"},
                                       "matchNames": {"type": "array", "items": {"type": "string"}}},
                    },
                    "selector": {"$ref": meta + "LabelSelector"},
                    "endpoints": {
                        "type": "array", "minItems": 1,
                        "items": {
                            "type": "object", "additionalProperties": False,
                            "properties": {
                                "port": {"type": "string", "minLength": 1},
                                "path": {"type": "string", "pattern": "^/"},
                                "scheme": {"enum": ["http", "https", "HTTP", "HTTPS"]},
                                "interval": duration,
                                "scrapeTimeout": duration,
                                "honorLabels": {"type": "boolean"},
                            },
                        },
                    },
                },
            },
        },
    }
    registry = Registry().with_resource(defs["$id"], Resource.from_contents(defs))
    return jsonschema.Draft202012Validator(schema, registry=registry)


def validate_schema(doc: dict, version: str, where: str, failures: Failures,
                    counts: collections.Counter) -> None:
    kind = doc.get("kind", "?")
    if doc.get("apiVersion") == "monitoring.coreos.com/v1" and kind == "ServiceMonitor":
        errors = sorted(servicemonitor_validator(version).iter_errors(doc), key=lambda e: list(e.path))
        for e in errors:
            failures.add(where, f"ServiceMonitor (structural schema): {'.'.join(map(str, e.path))}: {e.message}")
        counts["ServiceMonitor (structural)"] += 1
        return
    try:
        kubernetes_validate.validate(doc, version, strict=True)
        counts[kind] += 1
    except kubernetes_validate.ValidationError as e:
        path = ".".join(str(p) for p in e.path)
        failures.add(where, f"Kubernetes {e.version} schema (strict): {path}: {e.message}")
    except kv_utils.SchemaNotFoundError as e:
        failures.add(where, e.message)


# ---------------------------------------------------------------------------------------------
# Cross-checks


def flag_env_vars() -> dict[str, set[str]] | None:
    """The LBAAS_* variables each service's flags read, from its sources."""
    sources = {
        "api": ["services/api/src/config.rs", "services/api/src/main.rs"],
        "scheduler": ["services/scheduler/src/config.rs", "services/scheduler/src/main.rs"],
        "agent": ["services/agent/src/config.rs", "services/agent/src/main.rs"],
    }
    # Flags every service shares (TLS, JWT) live in the contracts crate's server kit.
    for files in sources.values():
        files += ["src/server/tls.rs", "src/server/jwt.rs"]
    found: dict[str, set[str]] = {}
    for component, files in sources.items():
        names: set[str] = set()
        for name in files:
            path = REPO / name
            if not path.is_file():
                return None
            names |= set(re.findall(r'env\s*=\s*"(LBAAS_[A-Z0-9_]+)"', path.read_text()))
        found[component] = names
    return found


def matches(selector: dict, labels: dict) -> bool:
    return all(labels.get(k) == v for k, v in (selector or {}).items())


def pod_spec(doc: dict) -> dict | None:
    if doc.get("kind") in WORKLOAD_KINDS:
        return doc["spec"]["template"]["spec"]
    return None


def is_hook(doc: dict) -> bool:
    return "helm.sh/hook" in ((doc.get("metadata") or {}).get("annotations") or {})


def cross_check(docs: list[tuple[str, dict]], external: set[str], where: str,
                failures: Failures, env_vars: dict[str, set[str]] | None,
                expected_env: dict[str, dict[str, bool]] | None = None) -> None:
    by_kind_name: dict[tuple[str, str], dict] = {}
    for template, doc in docs:
        meta = doc.get("metadata") or {}
        name = meta.get("name", "")
        here = f"{where} {doc.get('kind')}/{name}"
        key = (doc.get("kind"), name)
        if key in by_kind_name:
            failures.add(here, "rendered twice")
        by_kind_name[key] = doc
        if meta.get("namespace") != NAMESPACE:
            failures.add(here, f"namespace {meta.get('namespace')!r}, expected {NAMESPACE!r}")
        if not DNS1123_SUBDOMAIN.match(name) or len(name) > 253:
            failures.add(here, "name is not a DNS-1123 subdomain")
        if doc.get("kind") in {"Service"} and (not DNS1035_LABEL.match(name) or len(name) > 63):
            failures.add(here, "Service name is not a DNS-1035 label (63 characters at most)")
        for k, v in (meta.get("labels") or {}).items():
            if not isinstance(v, str) or len(v) > 63 or not LABEL_VALUE.match(v):
                failures.add(here, f"label {k}={v!r} is not a valid label value")

    secrets = {n: d for (k, n), d in by_kind_name.items() if k == "Secret"}
    configmaps = {n: d for (k, n), d in by_kind_name.items() if k == "ConfigMap"}
    accounts = {n for (k, n) in by_kind_name if k == "ServiceAccount"}
    workloads = [d for d in by_kind_name.values() if d.get("kind") in WORKLOAD_KINDS]

    def pod_labels(w: dict) -> dict:
        return w["spec"]["template"]["metadata"].get("labels") or {}

    # Secret contents.
    for name, secret in secrets.items():
        here = f"{where} Secret/{name}"
        decoded = {}
        for k, v in (secret.get("data") or {}).items():
            try:
                decoded[k] = base64.b64decode(v, validate=True).decode()
            except (binascii.Error, UnicodeDecodeError):
                failures.add(here, f"data.{k} is not base64 of UTF-8 text")
        if "secret-key" in decoded and not re.fullmatch(r"[0-9a-fA-F]{64}", decoded["secret-key"].strip()):
            failures.add(here, "secret-key is not 64 hex digits")
        if "tokens" in decoded:
            lines = [l.split("#")[0].split() for l in decoded["tokens"].splitlines()]
            lines = [l for l in lines if l]
            if not lines:
                failures.add(here, "the token file has no token")
            for fields in lines:
                if len(fields) not in (2, 3) or (len(fields) == 3 and fields[2] not in ("reader", "member", "admin")):
                    failures.add(here, f"token line {' '.join(fields)!r} is not TOKEN PROJECT [ROLE]")
        if "jwt-keys" in decoded:
            blocks = re.findall(r"-----BEGIN ([A-Z0-9 ]+)-----.*?-----END \1-----", decoded["jwt-keys"], re.S)
            if not blocks:
                failures.add(here, "jwt-keys holds no PEM block")
            if any(not b.endswith("PUBLIC KEY") for b in blocks):
                failures.add(here, f"jwt-keys holds other PEM blocks than public keys: {blocks}")
            if decoded["jwt-keys"].count("-----BEGIN") != len(blocks):
                failures.add(here, "jwt-keys holds an unterminated PEM block")
        for k, v in decoded.items():
            if k.endswith("database-url") and not re.match(r"^postgres(ql)?://", v):
                failures.add(here, f"{k} is not a postgres:// URL")

    def check_secret_ref(here: str, name: str, key: str | None, hook: bool) -> None:
        if name in secrets:
            if hook and not is_hook(secrets[name]):
                failures.add(here, f"a hook uses Secret {name}, which is made only after pre-install hooks")
            if key is not None and key not in (secrets[name].get("data") or {}):
                failures.add(here, f"Secret {name} has no key {key!r}")
        elif f"Secret/{name}" not in external:
            failures.add(here, f"refers to Secret {name}, which the chart does not make")

    for w in workloads:
        kind, name = w["kind"], w["metadata"]["name"]
        here = f"{where} {kind}/{name}"
        spec = pod_spec(w)
        hook = is_hook(w)
        if kind != "Job" and not matches(w["spec"]["selector"].get("matchLabels"), pod_labels(w)):
            failures.add(here, "selector does not match the pod template's labels")
        account = spec.get("serviceAccountName")
        if account and account not in accounts and account != "default" and f"ServiceAccount/{account}" not in external:
            failures.add(here, f"ServiceAccount {account} is not made by the chart")
        if hook and account in accounts:
            failures.add(here, f"a hook uses ServiceAccount {account}, which is made only after pre-install hooks")
        for pull in spec.get("imagePullSecrets") or []:
            check_secret_ref(here, pull["name"], None, hook)
        volumes = {v["name"]: v for v in spec.get("volumes") or []}
        for v in volumes.values():
            if "secret" in v:
                for item in v["secret"].get("items") or [{"key": None}]:
                    check_secret_ref(f"{here} volume {v['name']}", v["secret"]["secretName"], item["key"], hook)
            if "configMap" in v and v["configMap"]["name"] not in configmaps:
                failures.add(here, f"volume {v['name']} refers to a ConfigMap the chart does not make")
        for c in (spec.get("initContainers") or []) + spec["containers"]:
            chere = f"{here} container {c['name']}"
            ports = {p["containerPort"]: p for p in c.get("ports") or []}
            port_names = {p.get("name") for p in c.get("ports") or []}
            for probe_name in ("startupProbe", "livenessProbe", "readinessProbe"):
                probe = c.get(probe_name)
                if not probe:
                    if kind != "Job" and probe_name != "startupProbe":
                        failures.add(chere, f"has no {probe_name}")
                    continue
                for handler in ("grpc", "tcpSocket", "httpGet"):
                    if handler in probe:
                        port = probe[handler]["port"]
                        if port not in ports and port not in port_names:
                            failures.add(chere, f"{probe_name} probes port {port}, which the container does not expose")
            for mount in c.get("volumeMounts") or []:
                if mount["name"] not in volumes:
                    failures.add(chere, f"mounts unknown volume {mount['name']}")
            env_names: list[str] = []
            for e in c.get("env") or []:
                env_names.append(e["name"])
                ref = (e.get("valueFrom") or {}).get("secretKeyRef")
                if ref:
                    check_secret_ref(chere, ref["name"], ref["key"], hook)
                ref = (e.get("valueFrom") or {}).get("configMapKeyRef")
                if ref and (ref["name"] not in configmaps or ref["key"] not in configmaps[ref["name"]].get("data", {})):
                    failures.add(chere, f"configMapKeyRef {ref['name']}/{ref['key']} does not resolve")
            values = {e["name"]: e.get("value") for e in c.get("env") or []}
            from_maps: list[str] = []
            for ef in c.get("envFrom") or []:
                if "configMapRef" in ef:
                    cm = ef["configMapRef"]["name"]
                    if cm not in configmaps:
                        failures.add(chere, f"envFrom ConfigMap {cm} is not made by the chart")
                    elif hook:
                        failures.add(chere, f"a hook uses ConfigMap {cm}, made only after pre-install hooks")
                    else:
                        data = configmaps[cm].get("data") or {}
                        from_maps.extend(data.keys())
                        for k, v in data.items():
                            values.setdefault(k, v)
                if "secretRef" in ef:
                    check_secret_ref(chere, ef["secretRef"]["name"], None, hook)
            dupes = [n for n, count in collections.Counter(env_names).items() if count > 1]
            # extraEnv may override a value a ConfigMap gives (env wins over envFrom); the same
            # name twice in env is a mistake.
            if dupes:
                failures.add(chere, f"env sets {', '.join(dupes)} more than once")
            for what, seen in (("number", [p["containerPort"] for p in c.get("ports") or []]),
                               ("name", [p["name"] for p in c.get("ports") or [] if p.get("name")])):
                twice = [str(x) for x, count in collections.Counter(seen).items() if count > 1]
                if twice:
                    failures.add(chere, f"declares container port {what} {', '.join(twice)} more than once")
            # Files the variables name come from a mounted volume that holds them.
            mounts = c.get("volumeMounts") or []
            for var, value in values.items():
                if not (var in FILE_ENV or var.endswith("_FILE")) or not value:
                    continue
                mount = next((m for m in mounts if value.startswith(m["mountPath"].rstrip("/") + "/")), None)
                if mount is None:
                    failures.add(chere, f"{var}={value!r} is in no mounted volume")
                    continue
                volume = volumes.get(mount["name"]) or {}
                items = (volume.get("secret") or volume.get("configMap") or {}).get("items")
                rest = value[len(mount["mountPath"].rstrip("/")) + 1:]
                if items is not None and rest not in {i["path"] for i in items}:
                    failures.add(chere, f"{var}={value!r}: volume {mount['name']} holds no {rest!r}")
            if values.get("LBAAS_JWT_KEYS"):
                for var in ("LBAAS_JWT_ISSUER", "LBAAS_JWT_AUDIENCE"):
                    if var in values and not values[var]:
                        failures.add(chere, f"{var} is empty: every JWT would be refused")
            command = " ".join(c.get("command") or [])
            component = next((s for s in ("api", "scheduler", "agent") if f"lbaas-{s}" in command), None)
            if kind != "Job" and component is not None:
                # The kubelet's gRPC health probe, on the gRPC port; under TLS, which that probe
                # cannot speak, on the plaintext port LBAAS_HEALTH_LISTEN binds (container port
                # "health", serving grpc.health.v1 alone).
                by_name = {p.get("name"): p["containerPort"] for p in c.get("ports") or []}
                health_listen = values.get("LBAAS_HEALTH_LISTEN")
                if health_listen is not None:
                    probe_port, port_name = by_name.get("health"), "health"
                    if probe_port is None:
                        failures.add(chere, "sets LBAAS_HEALTH_LISTEN but declares no 'health' container port")
                    elif health_listen != f"0.0.0.0:{probe_port}":
                        failures.add(chere, f"LBAAS_HEALTH_LISTEN={health_listen!r}, expected 0.0.0.0 on "
                                     f"the health containerPort {probe_port}")
                else:
                    probe_port, port_name = by_name.get("grpc"), "grpc"
                    if values.get("LBAAS_TLS_CERT"):
                        failures.add(chere, "serves TLS without LBAAS_HEALTH_LISTEN: the kubelet's gRPC "
                                     "probes cannot reach its health service")
                    if "health" in by_name:
                        failures.add(chere, "declares a 'health' port nothing listens on (no LBAAS_HEALTH_LISTEN)")
                for probe_name in ("startupProbe", "livenessProbe", "readinessProbe"):
                    probe = c.get(probe_name)
                    if not probe:
                        continue
                    if "grpc" not in probe:
                        failures.add(chere, f"{probe_name} is not a gRPC health probe: {sorted(probe)}")
                    elif probe_port is not None and probe["grpc"]["port"] != probe_port:
                        failures.add(chere, f"{probe_name} probes port {probe['grpc']['port']}, expected the "
                                     f"{port_name} port {probe_port}")
                for var, wanted in ((expected_env or {}).get(component) or {}).items():
                    if bool(values.get(var)) != wanted:
                        failures.add(chere, f"{var} is {'not ' if wanted else ''}set; this scenario "
                                     f"expects it {'set' if wanted else 'unset'}")
            if env_vars is not None:
                command = " ".join(c.get("command") or [])
                component = next((s for s in ("api", "scheduler", "agent") if f"lbaas-{s}" in command), None)
                if component is None:
                    failures.add(chere, f"runs neither lbaas-api, lbaas-scheduler nor lbaas-agent: {command!r}")
                else:
                    if kind != "Job":
                        for var in REQUIRED_ENV[component]:
                            # A shell wrapper may export it (agent.idFrom: sanitizedNodeName).
                            if var not in values and f"export {var}=" not in command:
                                failures.add(chere, f"lbaas-{component} is not given {var}")
                        listen = values.get(LISTEN_ENV[component]) or ""
                        grpc_port = next((p["containerPort"] for p in c.get("ports") or []
                                          if p.get("name") == "grpc"), None)
                        if listen != f"0.0.0.0:{grpc_port}":
                            failures.add(chere, f"{LISTEN_ENV[component]}={listen!r}, expected "
                                         f"0.0.0.0 on the grpc containerPort {grpc_port}")
                    elif "--migrate-only" not in command:
                        failures.add(chere, "a Job container that does not run --migrate-only")
                    for var in set(env_names) | set(from_maps):
                        if var in NON_FLAG_ENV or var in PLANNED_ENV:
                            continue
                        if var not in env_vars[component]:
                            failures.add(chere, f"sets {var}, which no lbaas-{component} flag reads")

    # Services select pods and name their ports.
    for (kind, name), svc in by_kind_name.items():
        if kind != "Service":
            continue
        here = f"{where} Service/{name}"
        selected = [w for w in workloads if w["kind"] != "Job" and matches(svc["spec"].get("selector"), pod_labels(w))]
        if len(selected) != 1:
            failures.add(here, f"selects {len(selected)} workloads, expected 1")
            continue
        container_ports = {p.get("name"): p for c in pod_spec(selected[0])["containers"] for p in c.get("ports") or []}
        container_numbers = {p["containerPort"] for p in container_ports.values()}
        for p in svc["spec"]["ports"]:
            target = p.get("targetPort", p["port"])
            if target not in container_ports and target not in container_numbers:
                failures.add(here, f"port {p.get('name')} targets {target!r}, which the pods do not expose")
            if p.get("name") == "grpc" and p.get("appProtocol") != "grpc":
                failures.add(here, "the grpc port has no appProtocol: grpc")

    # PDBs and NetworkPolicies select the release's pods.
    for (kind, name), doc in by_kind_name.items():
        here = f"{where} {kind}/{name}"
        if kind == "PodDisruptionBudget":
            sel = doc["spec"]["selector"].get("matchLabels")
            if not any(w["kind"] == "Deployment" and matches(sel, pod_labels(w)) for w in workloads):
                failures.add(here, "selects no Deployment's pods")
        if kind == "NetworkPolicy":
            sel = doc["spec"]["podSelector"].get("matchLabels")
            if not any(matches(sel, pod_labels(w)) for w in workloads):
                failures.add(here, "podSelector selects no pods of the release")
            for rule in (doc["spec"].get("ingress") or []) + (doc["spec"].get("egress") or []):
                for peer in (rule.get("from") or []) + (rule.get("to") or []):
                    ps = peer.get("podSelector")
                    if ps and "namespaceSelector" not in peer and (ps.get("matchLabels") or {}).get(
                            "app.kubernetes.io/instance") == RELEASE:
                        if not any(matches(ps.get("matchLabels"), pod_labels(w)) for w in workloads):
                            failures.add(here, f"a peer selects no pods of the release: {ps}")
        if kind == "ServiceMonitor":
            sel = doc["spec"]["selector"].get("matchLabels")
            scraped = [s for (k, _), s in by_kind_name.items() if k == "Service"
                       and matches(sel, s["metadata"].get("labels") or {})
                       and any(p.get("name") == doc["spec"]["endpoints"][0]["port"] for p in s["spec"]["ports"])]
            if not scraped:
                failures.add(here, "selects no Service with a metrics port")


# ---------------------------------------------------------------------------------------------
# Documentation: every value has a "# --" comment in values.yaml and a row in README.md.


def documented_values(text: str) -> tuple[list[str], list[str]]:
    """(paths of the keys documented with a '# --' comment, problems). A key needs its own
    comment unless it is a mapping of documented keys or part of a documented key's default."""
    lines = text.splitlines()
    documented: list[str] = []
    problems: list[str] = []
    stack: list[tuple[int, str, bool]] = []  # (indent, key, documented)
    comment_indent = None
    for n, line in enumerate(lines, 1):
        stripped = line.strip()
        if not stripped:
            comment_indent = None
            continue
        indent = len(line) - len(line.lstrip())
        if stripped.startswith("#"):
            if stripped[1:].strip().startswith("-- "):
                comment_indent = indent
            continue
        m = re.match(r"^([A-Za-z0-9_.]+):(.*)$", stripped)
        if stripped.startswith("- ") or not m:
            comment_indent = None
            continue
        while stack and stack[-1][0] >= indent:
            stack.pop()
        key, rest = m.group(1), m.group(2).strip()
        has_doc = comment_indent == indent
        path = ".".join([k for _, k, _ in stack] + [key])
        following = next((l for l in lines[n:] if l.strip() and not l.strip().startswith("#")), "")
        deeper = len(following) - len(following.lstrip())
        has_children = rest == "" and (deeper > indent or (deeper == indent and following.strip().startswith("- ")))
        if has_doc:
            documented.append(path)
        elif not has_children and not any(d for _, _, d in stack):
            problems.append(f"values.yaml:{n}: {path} has no '# --' comment")
        stack.append((indent, key, has_doc))
        comment_indent = None
    return documented, problems


def check_docs(failures: Failures) -> int:
    documented, problems = documented_values((CHART / "values.yaml").read_text())
    for problem in problems:
        failures.add("[docs]", problem)
    readme = CHART / "README.md"
    if not readme.is_file():
        failures.add("[docs]", "README.md is missing")
        return len(documented)
    text = readme.read_text()
    for path in documented:
        if f"| `{path}` |" not in text:
            failures.add("[docs]", f"README.md's values table has no row for `{path}`")
    return len(documented)


# ---------------------------------------------------------------------------------------------


def kube_versions(chart: "helm_python.Chart") -> tuple[str, str]:
    """(oldest, newest): the chart's kubeVersion floor and the newest schema set shipped."""
    shipped = kv_utils.all_versions()
    newest = shipped[-1]
    constraint = chart.metadata.get("kubeVersion") or ""
    m = re.search(r">=?\s*v?(\d+)\.(\d+)", constraint)
    oldest = f"{m.group(1)}.{m.group(2)}.0" if m else shipped[0]
    if oldest not in shipped:
        older = [v for v in shipped if tuple(map(int, v.split(".")[:2])) <= tuple(map(int, oldest.split(".")[:2]))]
        fallback = older[-1] if older else shipped[0]
        print(f"note: no schemas for Kubernetes {oldest}; using {fallback}")
        oldest = fallback
    return oldest, newest


def main() -> int:
    global CHART
    if len(sys.argv) > 2 or (len(sys.argv) == 2 and sys.argv[1].startswith("-")):
        print(__doc__)
        return 2
    if len(sys.argv) == 2:
        CHART = Path(sys.argv[1]).resolve()
    failures = Failures()
    print(f"helm-python-sdk {helm_python.__version__} (Helm {helm_python.helm_sdk_version()}), "
          f"kubernetes-validate {kubernetes_validate.__version__}")
    chart = helm_python.Chart.load(CHART)
    meta = chart.metadata
    print(f"chart {meta['name']} {meta['version']} (appVersion {meta.get('appVersion')}, "
          f"kubeVersion {meta.get('kubeVersion')})")
    for field in ("apiVersion", "kubeVersion", "appVersion", "description"):
        if not meta.get(field):
            failures.add("Chart.yaml", f"{field} is missing")
    if meta.get("apiVersion") != "v2":
        failures.add("Chart.yaml", "apiVersion must be v2")
    print(f"docs: {check_docs(failures)} values documented in values.yaml and README.md")
    oldest, newest = kube_versions(chart)
    versions = [oldest] if oldest == newest else [oldest, newest]
    env_vars = flag_env_vars()
    if env_vars is None:
        print("note: services/*/src not found beside the chart: LBAAS_* names are not cross-checked")
    print("note: ServiceMonitor (monitoring.coreos.com/v1) is a CRD outside the core schemas: it is "
          "checked against a structural schema of the fields the chart sets")

    totals: collections.Counter = collections.Counter()
    for scenario, (overrides, external) in SCENARIOS.items():
        print(f"scenario {scenario}:")
        before = len(failures.items)
        lint(overrides, newest, f"[{scenario}]", failures)
        per_kind: collections.Counter = collections.Counter()
        for version in versions:
            where = f"[{scenario} k8s {version}]"
            try:
                rendered = render(chart, overrides, version)
            except helm_python.HelmError as e:
                failures.add(where, f"render failed: {e}")
                continue
            docs = split_manifests(rendered, where, failures)
            for template, doc in docs:
                validate_schema(doc, version, f"{where} {template} {doc.get('kind')}/"
                                f"{(doc.get('metadata') or {}).get('name')}", failures, per_kind)
            cross_check(docs, external, where, failures, env_vars, EXPECTED_ENV.get(scenario))
        kinds = ", ".join(f"{k} {n // len(versions)}" for k, n in sorted(per_kind.items()))
        status = "ok" if len(failures.items) == before else "FAILED"
        print(f"  {status}: {sum(per_kind.values()) // len(versions)} manifests per render, "
              f"validated against Kubernetes {' and '.join(versions)}: {kinds}")
        totals.update(per_kind)

    print("values the chart must refuse:")
    with tempfile.TemporaryDirectory() as tmp:
        schemaless_dir = Path(tmp) / CHART.name
        shutil.copytree(CHART, schemaless_dir)
        (schemaless_dir / "values.schema.json").unlink(missing_ok=True)
        schemaless = helm_python.Chart.load(schemaless_dir)
        checked = 0
        for overrides, with_schema, without_schema in MUST_FAIL:
            for target, expected, label in ((chart, with_schema, "with the values schema"),
                                            (schemaless, without_schema, "without the values schema")):
                if expected is None:
                    continue
                checked += 1
                values = json.dumps(overrides, sort_keys=True)
                try:
                    render(target, overrides, newest)
                    failures.add("[must fail]", f"{values} rendered {label}; expected an error containing {expected!r}")
                except helm_python.HelmError as e:
                    if expected not in str(e):
                        failures.add("[must fail]", f"{values} {label} failed with {str(e).strip()!r}; expected {expected!r}")
    print(f"  {len(MUST_FAIL)} bad values sets, {checked} refusals checked")

    print()
    total = sum(totals.values())
    print(f"summary: {len(SCENARIOS)} scenarios x {len(versions)} Kubernetes versions "
          f"({', '.join(versions)}), {total} manifests validated: "
          + ", ".join(f"{k} {n}" for k, n in sorted(totals.items())))
    if failures.items:
        print(f"FAILED: {len(failures.items)} problem(s):")
        for item in failures.items:
            print(f"  - {item}")
        return EXIT_FAILED
    print("helm chart OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
