"""deploy/kubernetes agrees with Kubernetes, KEDA and the code.

The kustomization is rendered here in Python (the few kustomize features it uses: resources,
labels, namespace, images, replicas, JSON 6902 patches), so no kustomize binary is needed; the core
kinds are validated against the Kubernetes 1.30 OpenAPI schemas (``kubernetes-validate``, strict:
unknown fields fail), KEDA's kinds against the CRD schema shipped in deploy/kubernetes/crds/.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import kubernetes_validate
import pytest
import yaml
from redis import Redis
from rq import Queue

from b24notify.cli import build_parser
from b24notify.settings import Settings
from b24notify.workers.deadline import job_timeout

ROOT = Path(__file__).resolve().parent.parent
KUBE = ROOT / "deploy" / "kubernetes"
K8S_VERSION = "1.30.0"
CLUSTER_SCOPED = {"Namespace", "CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding"}

Doc = dict[str, Any]


# -- a small kustomize ---------------------------------------------------------------------------


def _load_all(path: Path) -> list[Doc]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]


def _json_pointer(doc: Any, pointer: str) -> tuple[Any, str | int]:
    parts = [p.replace("~1", "/").replace("~0", "~") for p in pointer.lstrip("/").split("/")]
    for part in parts[:-1]:
        doc = doc[int(part)] if isinstance(doc, list) else doc[part]
    last = parts[-1]
    return doc, (int(last) if isinstance(doc, list) and last != "-" else last)


def _apply_json6902(doc: Doc, ops: list[Doc]) -> None:
    for op in ops:
        parent, key = _json_pointer(doc, op["path"])
        if op["op"] == "replace":
            _ = parent[key]  # replace needs the target to exist, as in kustomize
            parent[key] = op["value"]
        elif op["op"] == "add":
            if isinstance(parent, list):
                parent.insert(len(parent) if key == "-" else int(key), op["value"])
            else:
                parent[key] = op["value"]
        elif op["op"] == "remove":
            del parent[key]
        else:
            raise AssertionError(f"patch op {op['op']!r} is not supported by this test's renderer")


def render(directory: Path) -> list[Doc]:
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text(encoding="utf-8"))
    known = {"apiVersion", "kind", "resources", "labels", "namespace", "images", "replicas", "patches"}
    assert set(kustomization) <= known, f"{directory}: kustomize fields this test does not render: " \
                                        f"{set(kustomization) - known}"
    docs: list[Doc] = []
    for resource in kustomization.get("resources", []):
        path = (directory / resource).resolve()
        docs += render(path) if path.is_dir() else _load_all(path)
    for label in kustomization.get("labels", []):
        assert not label.get("includeSelectors") and not label.get("includeTemplates")
        for doc in docs:
            doc.setdefault("metadata", {}).setdefault("labels", {}).update(label["pairs"])
    for patch in kustomization.get("patches", []):
        ops = yaml.safe_load((directory / patch["path"]).read_text(encoding="utf-8"))
        targets = [d for d in docs if d["kind"] == patch["target"]["kind"]
                   and d["metadata"]["name"] == patch["target"]["name"]]
        assert len(targets) == 1, f"patch {patch['path']} matches {len(targets)} resources"
        _apply_json6902(targets[0], ops)
    for replicas in kustomization.get("replicas", []):
        targets = [d for d in docs if d["metadata"]["name"] == replicas["name"] and "replicas" in d.get("spec", {})]
        assert targets, f"replicas: nothing named {replicas['name']}"
        for doc in targets:
            doc["spec"]["replicas"] = replicas["count"]
    for image in kustomization.get("images", []):
        for container in _containers(docs):
            name, _, _ = container["image"].partition(":")
            if name == image["name"]:
                container["image"] = f"{image.get('newName', name)}:{image['newTag']}"
    if "namespace" in kustomization:
        for doc in docs:
            if doc["kind"] not in CLUSTER_SCOPED:
                doc["metadata"]["namespace"] = kustomization["namespace"]
    return docs


def _containers(docs: list[Doc]) -> list[Doc]:
    return [c for d in docs if d["kind"] == "Deployment" for c in d["spec"]["template"]["spec"]["containers"]]


def one(docs: list[Doc], kind: str, name: str) -> Doc:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def container(docs: list[Doc], deployment: str) -> Doc:
    containers = one(docs, "Deployment", deployment)["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


@pytest.fixture(scope="module", params=["base", "overlays/example"])
def docs(request: pytest.FixtureRequest) -> list[Doc]:
    return render(KUBE / request.param)


@pytest.fixture(scope="module")
def overlay() -> list[Doc]:
    return render(KUBE / "overlays" / "example")


# -- schemas -------------------------------------------------------------------------------------


def test_core_kinds_are_valid_kubernetes_objects(docs):
    core = [d for d in docs if not d["apiVersion"].startswith("keda.sh/")]
    assert {d["kind"] for d in core} >= {"Deployment", "Service", "Ingress", "PodDisruptionBudget", "ConfigMap",
                                         "Secret"}
    for doc in core:
        try:
            kubernetes_validate.validate(copy.deepcopy(doc), K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            raise AssertionError(f"{doc['kind']}/{doc['metadata']['name']}: {exc.message} at "
                                 f"{'/'.join(map(str, exc.path))}") from exc


def _crd_schemas() -> dict[tuple[str, str], Doc]:
    schemas = {}
    for crd in _load_all(KUBE / "crds" / "keda.yaml"):
        for version in crd["spec"]["versions"]:
            key = (f"{crd['spec']['group']}/{version['name']}", crd["spec"]["names"]["kind"])
            schemas[key] = version["schema"]["openAPIV3Schema"]
    return schemas


def test_keda_objects_are_valid_against_the_shipped_crd_schema(docs):
    schemas = _crd_schemas()
    keda = [d for d in docs if d["apiVersion"].startswith("keda.sh/")]
    assert {d["kind"] for d in keda} == {"ScaledObject", "TriggerAuthentication"}
    for doc in keda:
        schema = schemas[(doc["apiVersion"], doc["kind"])]
        jsonschema.validate(doc, schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)


def test_the_crd_schema_refuses_what_keda_would():
    """The shipped subset is not so loose that anything passes."""
    schema = _crd_schemas()[("keda.sh/v1alpha1", "ScaledObject")]
    good = one(render(KUBE / "base"), "ScaledObject", "b24notify-worker")
    wrong = []
    for change in ({"minReplicaCount": "1"}, {"triggers": []}, {"scaleTargetRef": {}}, {"maxReplicas": 3}):
        bad = copy.deepcopy(good)
        bad["spec"].update(change)
        wrong.append(bad)
    unquoted = copy.deepcopy(good)
    unquoted["spec"]["triggers"][0]["metadata"]["listLength"] = 5  # metadata is a map of strings
    wrong.append(unquoted)
    for bad in wrong:
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, schema)


# -- invariants ----------------------------------------------------------------------------------


def _env(docs: list[Doc]) -> dict[str, str]:
    """The environment of the b24notify pods: every key of the ConfigMaps and Secrets they load."""
    values: dict[str, str] = {}
    for c in _containers(docs):
        for source in c.get("envFrom", []):
            ref = source.get("configMapRef") or source["secretRef"]
            kind = "ConfigMap" if "configMapRef" in source else "Secret"
            doc = one(docs, kind, ref["name"])
            values.update(doc.get("data") or {})
            values.update(doc.get("stringData") or {})
        for var in c.get("env", []):
            values[var["name"]] = var.get("value", "")
    return values


def test_every_variable_given_to_the_pods_is_a_documented_setting(docs):
    fields = {name.upper() for name in Settings.model_fields}
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    env = _env(docs)
    assert {"REDIS_URL", "B24_WEBHOOK_URL", "B24_APPLICATION_TOKEN", "SMTP_URL", "B24_CLIENT_SECRET",
            "B24NOTIFY_CONSOLE_PASSWORD_HASH", "B24NOTIFY_QUEUE", "B24NOTIFY_LEASE_SECONDS"} <= set(env)
    for name in env:
        assert name in fields, f"{name} is no field of Settings: b24notify would ignore it"
        assert f"`{name}`" in readme, f"{name} is not in the README's configuration table"


def test_secrets_stay_out_of_the_configmap(docs):
    secret_fields = {name.upper() for name, f in Settings.model_fields.items() if "SecretStr" in str(f.annotation)}
    secret_fields |= {"REDIS_URL", "B24NOTIFY_CONSOLE_PASSWORD_HASH"}
    for doc in docs:
        if doc["kind"] == "ConfigMap":
            assert not set(doc["data"]) & secret_fields, f"secrets in ConfigMap {doc['metadata']['name']}"


def test_commands_and_probes_are_real(docs, make_settings):
    from b24notify.service.app import create_app

    web, worker = container(docs, "b24notify-web"), container(docs, "b24notify-worker")
    for command in (web["command"], worker["command"], worker["livenessProbe"]["exec"]["command"]):
        assert command[0] == "b24notify"
        build_parser().parse_args(command[1:])  # SystemExit on an unknown command or option
    assert worker["command"] == ["b24notify", "worker"]
    assert worker["livenessProbe"]["exec"]["command"] == ["b24notify", "worker-alive"]
    assert "readinessProbe" not in worker
    # Liveness on /healthz only: /readyz is 503 during a failover or while a portal is paused,
    # which a restart does not fix. Readiness on Redis only: one paused portal must not take every
    # web pod out of the Service (tests/test_readyz.py).
    assert web["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert web["readinessProbe"]["httpGet"]["path"] == "/readyz?only=redis"
    # The pods' own settings (Redis, key prefix and queue: the test's) load, and the app serves the paths.
    test_owned = ("REDIS_URL", "B24NOTIFY_KEY_PREFIX", "B24NOTIFY_QUEUE")
    own = {k.lower(): v for k, v in _env(docs).items() if k not in test_owned}
    served = {route.path for route in create_app(make_settings(**own)).routes}
    assert {"/healthz", "/readyz", "/webhooks/bitrix24"} <= served
    port = int(web["command"][web["command"].index("--port") + 1])
    assert [p["containerPort"] for p in web["ports"]] == [port]


def test_worker_grace_period_covers_the_prestop_and_the_longest_job(docs):
    pod = one(docs, "Deployment", "b24notify-worker")["spec"]["template"]["spec"]
    worker = pod["containers"][0]
    lease = float(_env(docs).get("B24NOTIFY_LEASE_SECONDS", Settings.model_fields["b24notify_lease_seconds"].default))
    pre_stop = worker["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep", "the preStop must send no signal: a second SIGTERM is RQ's cold shutdown"
    assert pod["terminationGracePeriodSeconds"] >= int(pre_stop[1]) + job_timeout(lease) + 10
    assert job_timeout(120) == 96


def test_the_scaled_object_watches_the_workers_queue(docs):
    scaled = one(docs, "ScaledObject", "b24notify-worker")["spec"]
    one(docs, "Deployment", scaled["scaleTargetRef"]["name"])
    assert scaled.get("scaleTargetRef", {}).get("kind", "Deployment") == "Deployment"
    assert scaled["minReplicaCount"] >= 1, "the dispatcher runs in the workers: at least one must run"
    assert scaled["maxReplicaCount"] >= scaled["minReplicaCount"]
    assert scaled["cooldownPeriod"] > 0
    [trigger] = scaled["triggers"]
    env = _env(docs)
    queue_name = env.get("B24NOTIFY_QUEUE", Settings.model_fields["b24notify_queue"].default)
    assert trigger["metadata"]["listName"] == Queue(queue_name, connection=Redis()).key == f"rq:queue:{queue_name}"
    assert int(trigger["metadata"]["listLength"]) >= 1
    # KEDA reads the same Redis as the workers: the sentinels, master name and database of REDIS_URL.
    assert trigger["type"] == "redis-sentinel"
    url = urlsplit(env["REDIS_URL"])
    assert url.scheme == "redis+sentinel"
    match = re.fullmatch(r"/([^/]+)/(\d+)", url.path)
    assert match, url.path
    sentinels = url.netloc.rpartition("@")[2]
    assert trigger["metadata"]["addresses"] == sentinels
    assert trigger["metadata"]["sentinelMaster"] == match[1]
    assert trigger["metadata"]["databaseIndex"] == match[2]
    auth = one(docs, "TriggerAuthentication", trigger["authenticationRef"]["name"])
    for ref in auth["spec"]["secretTargetRef"]:
        assert ref["key"] in one(docs, "Secret", ref["name"])["stringData"]


def test_selectors_match_their_pods(docs):
    pods = {d["metadata"]["name"]: d["spec"]["template"]["metadata"]["labels"]
            for d in docs if d["kind"] == "Deployment"}
    for d in docs:
        if d["kind"] == "Deployment":
            assert d["spec"]["selector"]["matchLabels"].items() <= pods[d["metadata"]["name"]].items()
    for kind, selector in [(d["kind"], d["spec"]["selector"].get("matchLabels", d["spec"]["selector"]))
                           for d in docs if d["kind"] in ("Service", "PodDisruptionBudget")]:
        matched = [name for name, labels in pods.items() if selector.items() <= labels.items()]
        assert len(matched) == 1, f"{kind} selector {selector} matches {matched}"
    service = one(docs, "Service", "b24notify-web")
    named_ports = {p["name"] for p in container(docs, "b24notify-web")["ports"]}
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= named_ports


def test_the_ingress_routes_the_webhook_over_tls_to_the_service(docs):
    ingress = one(docs, "Ingress", "b24notify-web")["spec"]
    [tls] = ingress["tls"]
    [rule] = ingress["rules"]
    assert rule["host"] in tls["hosts"] and tls["secretName"]
    paths = {p["path"]: p for p in rule["http"]["paths"]}
    assert any("/webhooks/bitrix24".startswith(p) for p in paths)
    assert not any("/metrics".startswith(p) for p in paths), "/metrics stays inside the cluster"
    service = one(docs, "Service", "b24notify-web")
    for path in paths.values():
        backend = path["backend"]["service"]
        assert backend["name"] == service["metadata"]["name"]
        assert backend["port"]["name"] in {p["name"] for p in service["spec"]["ports"]}


def test_both_components_have_resources_and_a_disruption_budget(docs):
    budgets = [d for d in docs if d["kind"] == "PodDisruptionBudget"]
    for name in ("b24notify-web", "b24notify-worker"):
        resources = container(docs, name)["resources"]
        assert resources["requests"]["cpu"] and resources["requests"]["memory"] and resources["limits"]["memory"]
        labels = one(docs, "Deployment", name)["spec"]["template"]["metadata"]["labels"]
        assert any(b["spec"]["selector"]["matchLabels"].items() <= labels.items() for b in budgets), name


def test_the_example_overlay_sets_namespace_image_host_and_replicas(overlay):
    assert one(overlay, "Namespace", "b24notify")
    for doc in overlay:
        if doc["kind"] not in CLUSTER_SCOPED:
            assert doc["metadata"]["namespace"] == "b24notify", doc["metadata"]["name"]
    assert {c["image"] for c in _containers(overlay)} == {"registry.example.com/b24notify:0.1.0"}
    ingress = one(overlay, "Ingress", "b24notify-web")["spec"]
    assert ingress["rules"][0]["host"] == ingress["tls"][0]["hosts"][0] == "notify.acme.example"
    assert one(overlay, "Deployment", "b24notify-web")["spec"]["replicas"] == 3
    assert one(overlay, "ScaledObject", "b24notify-worker")["spec"]["maxReplicaCount"] == 4
