"""Server-side defaulting: the values Kubernetes fills in when an object is written.

The API server calls `apply_defaults` on every create and update (after
decoding, before validation), as kube-apiserver runs the defaulters of
pkg/apis/*/v1/defaults.go and the generated +default markers. Defaults only
fill what is unset; a set value is never changed. Create-only work of the
kinds' REST strategies (a Namespace's "kubernetes" finalizer, a Pod's initial
status and QoS class, a Job's generated selector) is in `prepare_for_create`,
and `generation_relevant` says whether an update bumps metadata.generation.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from typing import Any

from . import quantity
from .meta import BUILTIN_GROUPS

DEFAULT_TERMINATION_GRACE_PERIOD = 30
DEFAULT_FILE_MODE = 0o644  # 420: configMap, secret, projected and downwardAPI volumes
DEFAULT_TOKEN_EXPIRATION = 3600
DEFAULT_CLIENT_IP_TIMEOUT = 10800

Obj = dict[str, Any]


def _m(parent: Obj, key: str) -> Obj:
    """parent[key] as a dict, created when missing or null."""
    value = parent.get(key)
    if not isinstance(value, dict):
        value = parent[key] = {}
    return value


def _set(parent: Obj, key: str, value: Any) -> None:
    """Fill parent[key] when it is absent or null (a pointer field left nil)."""
    if parent.get(key) is None:
        parent[key] = value


def _fill(parent: Obj, key: str, value: Any) -> None:
    """Fill parent[key] when it is absent, null or "" (a string field left empty)."""
    if parent.get(key) in (None, ""):
        parent[key] = value


def _items(value: Any) -> list[Obj]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


# --- pod spec ---------------------------------------------------------------------------------------

def image_tag(image: str) -> str:
    """The tag ParseImageName gives: "latest" when the reference has neither tag nor digest."""
    name, _, digest = image.partition("@")
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        return last.rsplit(":", 1)[1]
    return "" if digest else "latest"


def _http_get(action: Any) -> None:
    if isinstance(action, dict):
        _fill(action, "path", "/")
        _fill(action, "scheme", "HTTP")


def _handler(handler: Any) -> None:
    if isinstance(handler, dict):
        _http_get(handler.get("httpGet"))
        grpc = handler.get("grpc")
        if isinstance(grpc, dict):
            _set(grpc, "service", "")


def _probe(probe: Any) -> None:
    if not isinstance(probe, dict):
        return
    _handler(probe)
    _set(probe, "timeoutSeconds", 1)
    _set(probe, "periodSeconds", 10)
    _set(probe, "successThreshold", 1)
    _set(probe, "failureThreshold", 3)


def _field_ref(holder: Any) -> None:
    """SetDefaults_ObjectFieldSelector: fieldRef.apiVersion "v1"."""
    if isinstance(holder, dict) and isinstance(holder.get("fieldRef"), dict):
        _fill(holder["fieldRef"], "apiVersion", "v1")
    if isinstance(holder, dict) and isinstance(holder.get("resourceFieldRef"), dict):
        # A zero Quantity is serialized as "0": what clients see for an unset divisor.
        _set(holder["resourceFieldRef"], "divisor", "0")


def _container(c: Obj) -> None:
    if c.get("imagePullPolicy") in (None, ""):
        c["imagePullPolicy"] = "Always" if image_tag(c.get("image") or "") == "latest" else "IfNotPresent"
    _fill(c, "terminationMessagePath", "/dev/termination-log")
    _fill(c, "terminationMessagePolicy", "File")
    _set(c, "resources", {})  # a struct, never omitted on the wire
    for port in _items(c.get("ports")):
        _fill(port, "protocol", "TCP")
    for env in _items(c.get("env")):
        _field_ref(env.get("valueFrom"))
    for name in ("livenessProbe", "readinessProbe", "startupProbe"):
        _probe(c.get(name))
    lifecycle = c.get("lifecycle")
    if isinstance(lifecycle, dict):
        _handler(lifecycle.get("postStart"))
        _handler(lifecycle.get("preStop"))


def _volume(v: Obj) -> None:
    sources = [k for k in v if k != "name" and v[k] is not None]
    if not sources:
        v["emptyDir"] = {}
    for key in ("configMap", "secret", "downwardAPI", "projected"):
        if isinstance(v.get(key), dict):
            _set(v[key], "defaultMode", DEFAULT_FILE_MODE)
    if isinstance(v.get("hostPath"), dict):
        _set(v["hostPath"], "type", "")
    if isinstance(v.get("downwardAPI"), dict):
        for item in _items(v["downwardAPI"].get("items")):
            _field_ref(item)
    if isinstance(v.get("projected"), dict):
        for source in _items(v["projected"].get("sources")):
            token = source.get("serviceAccountToken")
            if isinstance(token, dict):
                _set(token, "expirationSeconds", DEFAULT_TOKEN_EXPIRATION)
            if isinstance(source.get("downwardAPI"), dict):
                for item in _items(source["downwardAPI"].get("items")):
                    _field_ref(item)
    ephemeral = v.get("ephemeral")
    if isinstance(ephemeral, dict) and isinstance(ephemeral.get("volumeClaimTemplate"), dict):
        spec = ephemeral["volumeClaimTemplate"].get("spec")
        if isinstance(spec, dict):
            _fill(spec, "volumeMode", "Filesystem")


def _all_containers(spec: Obj) -> list[Obj]:
    return [*_items(spec.get("initContainers")), *_items(spec.get("containers")),
            *_items(spec.get("ephemeralContainers"))]


def _host_network_ports(spec: Obj) -> None:
    """With hostNetwork, a container port's hostPort defaults to the port itself."""
    for c in [*_items(spec.get("initContainers")), *_items(spec.get("containers"))]:
        for port in _items(c.get("ports")):
            if not port.get("hostPort"):
                port["hostPort"] = port.get("containerPort")


def pod_spec(spec: Obj) -> None:
    """SetDefaults_PodSpec and what it reaches (containers, probes, volumes): Pods and pod templates."""
    _fill(spec, "dnsPolicy", "ClusterFirst")
    _fill(spec, "restartPolicy", "Always")
    _set(spec, "securityContext", {})
    _set(spec, "terminationGracePeriodSeconds", DEFAULT_TERMINATION_GRACE_PERIOD)
    _fill(spec, "schedulerName", "default-scheduler")
    for c in _all_containers(spec):
        _container(c)
    for v in _items(spec.get("volumes")):
        _volume(v)


def _pod_template(template: Any) -> None:
    if isinstance(template, dict):
        pod_spec(_m(template, "spec"))


def _pod(obj: Obj) -> None:
    spec = _m(obj, "spec")
    pod_spec(spec)
    # Pod-only (not templates): requests default to limits, service links on, hostNetwork ports.
    for c in [*_items(spec.get("containers")), *_items(spec.get("initContainers"))]:
        resources = _m(c, "resources")
        limits = resources.get("limits")
        if isinstance(limits, dict) and limits:
            requests = _m(resources, "requests")
            for key, value in limits.items():
                requests.setdefault(key, value)
    _set(spec, "enableServiceLinks", True)
    if spec.get("hostNetwork") is True:
        _host_network_ports(spec)
    # The Priority admission plugin: no class means priority 0, preempting lower priorities.
    _set(spec, "preemptionPolicy", "PreemptLowerPriority")
    if not spec.get("priorityClassName"):
        _set(spec, "priority", 0)


# --- workloads --------------------------------------------------------------------------------------

def _deployment(obj: Obj) -> None:
    spec = _m(obj, "spec")
    _set(spec, "replicas", 1)
    strategy = _m(spec, "strategy")
    _fill(strategy, "type", "RollingUpdate")
    if strategy["type"] == "RollingUpdate":
        rolling = _m(strategy, "rollingUpdate")
        _set(rolling, "maxUnavailable", "25%")
        _set(rolling, "maxSurge", "25%")
    _set(spec, "revisionHistoryLimit", 10)
    _set(spec, "progressDeadlineSeconds", 600)
    _pod_template(spec.get("template"))


def _replica_set(obj: Obj) -> None:
    spec = _m(obj, "spec")
    _set(spec, "replicas", 1)
    _pod_template(spec.get("template"))


def _replication_controller(obj: Obj) -> None:
    spec = _m(obj, "spec")
    template = spec.get("template")
    template_labels = (template.get("metadata") or {}).get("labels") if isinstance(template, dict) else None
    if template_labels:
        # v1 only: the selector and the object's labels default to the template's labels.
        if not spec.get("selector"):
            spec["selector"] = dict(template_labels)
        metadata = _m(obj, "metadata")
        if not metadata.get("labels"):
            metadata["labels"] = dict(template_labels)
    _set(spec, "replicas", 1)
    _pod_template(template)


def _persistent_volume_claim_template(pvc: Obj) -> None:
    _fill(_m(pvc, "spec"), "volumeMode", "Filesystem")
    _fill(_m(pvc, "status"), "phase", "Pending")


def _stateful_set(obj: Obj) -> None:
    spec = _m(obj, "spec")
    _fill(spec, "podManagementPolicy", "OrderedReady")
    strategy = _m(spec, "updateStrategy")
    if strategy.get("type") in (None, ""):
        strategy["type"] = "RollingUpdate"
        _set(strategy, "rollingUpdate", {})
    if strategy["type"] == "RollingUpdate" and isinstance(strategy.get("rollingUpdate"), dict):
        _set(strategy["rollingUpdate"], "partition", 0)
    retention = _m(spec, "persistentVolumeClaimRetentionPolicy")
    _fill(retention, "whenDeleted", "Retain")
    _fill(retention, "whenScaled", "Retain")
    _set(spec, "replicas", 1)
    _set(spec, "revisionHistoryLimit", 10)
    _pod_template(spec.get("template"))
    for pvc in _items(spec.get("volumeClaimTemplates")):
        _persistent_volume_claim_template(pvc)


def _daemon_set(obj: Obj) -> None:
    spec = _m(obj, "spec")
    strategy = _m(spec, "updateStrategy")
    _fill(strategy, "type", "RollingUpdate")
    if strategy["type"] == "RollingUpdate":
        rolling = _m(strategy, "rollingUpdate")
        _set(rolling, "maxUnavailable", 1)
        _set(rolling, "maxSurge", 0)
    _set(spec, "revisionHistoryLimit", 10)
    _pod_template(spec.get("template"))


def _job(obj: Obj) -> None:
    spec = _m(obj, "spec")
    if spec.get("completions") is None and spec.get("parallelism") is None:
        spec["completions"] = 1
    _set(spec, "parallelism", 1)
    _set(spec, "backoffLimit", 2147483647 if spec.get("backoffLimitPerIndex") is not None else 6)
    template = spec.get("template")
    template_labels = (template.get("metadata") or {}).get("labels") if isinstance(template, dict) else None
    metadata = _m(obj, "metadata")
    if template_labels is not None and not metadata.get("labels"):
        metadata["labels"] = dict(template_labels)
    _set(spec, "completionMode", "NonIndexed")
    _set(spec, "suspend", False)
    policy = spec.get("podFailurePolicy")
    if isinstance(policy, dict):
        for rule in _items(policy.get("rules")):
            for pattern in _items(rule.get("onPodConditions")):
                _fill(pattern, "status", "True")
    _set(spec, "podReplacementPolicy", "Failed" if isinstance(policy, dict) else "TerminatingOrFailed")
    _pod_template(template)


def _cron_job(obj: Obj) -> None:
    spec = _m(obj, "spec")
    _fill(spec, "concurrencyPolicy", "Allow")
    _set(spec, "suspend", False)
    _set(spec, "successfulJobsHistoryLimit", 3)
    _set(spec, "failedJobsHistoryLimit", 1)
    job_template = spec.get("jobTemplate")
    if isinstance(job_template, dict) and isinstance(job_template.get("spec"), dict):
        # Only the pod template: a JobTemplateSpec's JobSpec gets no Job defaults.
        _pod_template(job_template["spec"].get("template"))


def _pod_template_object(obj: Obj) -> None:
    _pod_template(obj.get("template"))


# --- core objects -----------------------------------------------------------------------------------

def _service(obj: Obj) -> None:
    spec = _m(obj, "spec")
    _fill(spec, "sessionAffinity", "None")
    if spec["sessionAffinity"] == "None":
        spec.pop("sessionAffinityConfig", None)
    elif spec["sessionAffinity"] == "ClientIP":
        config = spec.get("sessionAffinityConfig")
        timeout = ((config or {}).get("clientIP") or {}).get("timeoutSeconds") if isinstance(config, dict) else None
        if timeout is None:
            spec["sessionAffinityConfig"] = {"clientIP": {"timeoutSeconds": DEFAULT_CLIENT_IP_TIMEOUT}}
    _fill(spec, "type", "ClusterIP")
    kind = spec["type"]
    for port in _items(spec.get("ports")):
        _fill(port, "protocol", "TCP")
        if port.get("targetPort") in (None, 0, ""):
            port["targetPort"] = port.get("port")
    externally_accessible = kind in ("LoadBalancer", "NodePort") or (kind == "ClusterIP"
                                                                     and bool(spec.get("externalIPs")))
    if externally_accessible:
        _fill(spec, "externalTrafficPolicy", "Cluster")
    if kind in ("ClusterIP", "NodePort", "LoadBalancer"):
        _set(spec, "internalTrafficPolicy", "Cluster")
    if kind == "LoadBalancer":
        _set(spec, "allocateLoadBalancerNodePorts", True)
    if kind != "ExternalName":
        # The registry's IP family defaults on a single-stack IPv4 cluster; a headless service
        # without a selector asks for every family the cluster has.
        headless_selectorless = spec.get("clusterIP") == "None" and not spec.get("selector")
        _set(spec, "ipFamilyPolicy", "RequireDualStack" if headless_selectorless else "SingleStack")
        if not spec.get("ipFamilies"):
            spec["ipFamilies"] = ["IPv4"]


def _namespace(obj: Obj) -> None:
    # Always set, from the name: NamespaceDefaultLabelName cannot be changed by users.
    name = (obj.get("metadata") or {}).get("name")
    if name:
        _m(_m(obj, "metadata"), "labels")["kubernetes.io/metadata.name"] = name
    _fill(_m(obj, "status"), "phase", "Active")


def _secret(obj: Obj) -> None:
    _fill(obj, "type", "Opaque")


def _persistent_volume(obj: Obj) -> None:
    spec = _m(obj, "spec")
    _fill(spec, "persistentVolumeReclaimPolicy", "Retain")
    _fill(spec, "volumeMode", "Filesystem")
    if isinstance(spec.get("hostPath"), dict):
        _set(spec["hostPath"], "type", "")
    _fill(_m(obj, "status"), "phase", "Pending")


def _persistent_volume_claim(obj: Obj) -> None:
    _persistent_volume_claim_template(obj)


def _endpoints(obj: Obj) -> None:
    for subset in _items(obj.get("subsets")):
        for port in _items(subset.get("ports")):
            _fill(port, "protocol", "TCP")


def _node(obj: Obj) -> None:
    status = obj.get("status")
    if isinstance(status, dict) and status.get("allocatable") is None and isinstance(status.get("capacity"), dict):
        status["allocatable"] = dict(status["capacity"])


def _limit_range(obj: Obj) -> None:
    for item in _items(_m(obj, "spec").get("limits")):
        if item.get("type") != "Container":
            continue
        default, request = _m(item, "default"), _m(item, "defaultRequest")
        for key, value in (item.get("max") or {}).items():
            default.setdefault(key, value)
        for key, value in default.items():
            request.setdefault(key, value)
        for key, value in (item.get("min") or {}).items():
            request.setdefault(key, value)


def _priority_class(obj: Obj) -> None:
    _set(obj, "preemptionPolicy", "PreemptLowerPriority")


def _binding(obj: Obj) -> None:
    _fill(_m(obj, "roleRef"), "apiGroup", "rbac.authorization.k8s.io")
    for subject in _items(obj.get("subjects")):
        if subject.get("apiGroup") in (None, "") and subject.get("kind") in ("User", "Group"):
            subject["apiGroup"] = "rbac.authorization.k8s.io"
        elif subject.get("kind") == "ServiceAccount":
            _set(subject, "apiGroup", "")


def _network_policy(obj: Obj) -> None:
    spec = _m(obj, "spec")
    for direction, peers in (("ingress", "from"), ("egress", "to")):
        for rule in _items(spec.get(direction)):
            for port in _items(rule.get("ports")):
                _fill(port, "protocol", "TCP")
    if not spec.get("policyTypes"):
        spec["policyTypes"] = ["Ingress"] + (["Egress"] if spec.get("egress") else [])
    _set(spec, "podSelector", {})


_DEFAULTERS: dict[tuple[str, str], Callable[[Obj], None]] = {
    ("", "Pod"): _pod,
    ("", "PodTemplate"): _pod_template_object,
    ("", "ReplicationController"): _replication_controller,
    ("", "Service"): _service,
    ("", "Namespace"): _namespace,
    ("", "Secret"): _secret,
    ("", "PersistentVolume"): _persistent_volume,
    ("", "PersistentVolumeClaim"): _persistent_volume_claim,
    ("", "Endpoints"): _endpoints,
    ("", "Node"): _node,
    ("", "LimitRange"): _limit_range,
    ("apps", "Deployment"): _deployment,
    ("apps", "ReplicaSet"): _replica_set,
    ("apps", "StatefulSet"): _stateful_set,
    ("apps", "DaemonSet"): _daemon_set,
    ("batch", "Job"): _job,
    ("batch", "CronJob"): _cron_job,
    ("scheduling.k8s.io", "PriorityClass"): _priority_class,
    ("rbac.authorization.k8s.io", "RoleBinding"): _binding,
    ("rbac.authorization.k8s.io", "ClusterRoleBinding"): _binding,
    ("networking.k8s.io", "NetworkPolicy"): _network_policy,
}


def apply_defaults(group: str, version: str, kind: str, obj: dict[str, Any]) -> None:
    """Fill the defaults Kubernetes applies to a `group`/`version` `kind` object, in place.

    Kinds without defaults (ConfigMap, ServiceAccount, Lease, custom resources, ...)
    are left as they are. `version` is accepted for the day two versions differ.
    """
    del version  # every served version of these kinds defaults alike
    defaulter = _DEFAULTERS.get((group, kind))
    if defaulter is not None:
        defaulter(obj)


# --- create-only strategy work ----------------------------------------------------------------------

_QOS_RESOURCES = ("cpu", "memory")


def pod_qos_class(spec: Mapping[str, Any]) -> str:
    """ComputePodQOS: BestEffort, Guaranteed or Burstable, comparing quantities by value.

    Call it on a defaulted spec (requests copied from limits), as the Pod strategy does.
    """
    requests: dict[str, Any] = {}
    limits: dict[str, Any] = {}
    guaranteed = True
    for c in [*_items(spec.get("containers")), *_items(spec.get("initContainers"))]:
        resources = c.get("resources") or {}
        for name, text in (resources.get("requests") or {}).items():
            value = _positive(name, text)
            if value is not None:
                requests[name] = requests.get(name, 0) + value
        found = set()
        for name, text in (resources.get("limits") or {}).items():
            value = _positive(name, text)
            if value is not None:
                found.add(name)
                limits[name] = limits.get(name, 0) + value
        if not found.issuperset(_QOS_RESOURCES):
            guaranteed = False
    if not requests and not limits:
        return "BestEffort"
    if guaranteed and all(limits.get(n) == v for n, v in requests.items()) and len(requests) == len(limits):
        return "Guaranteed"
    return "Burstable"


def _positive(name: str, text: Any) -> Any:
    if name not in _QOS_RESOURCES:
        return None
    try:
        value = quantity.value_of(str(text))
    except ValueError:
        return None
    return value if value > 0 else None


def _rfc3339(now: datetime) -> str:
    return now.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def prepare_for_create(group: str, kind: str, obj: dict[str, Any], *, now: datetime | None = None) -> None:
    """What the kinds' strategies do on create only (PrepareForCreate), in place.

    Run after `apply_defaults` and after metadata.uid is assigned (a Job's selector
    uses it). Namespaces get the "kubernetes" finalizer and phase Active; Pods a
    Pending status with their QoS class (and SchedulingGated when gated);
    PersistentVolumes and claims a Pending phase; Jobs without manualSelector a
    selector on their controller-uid and the matching template labels.
    """
    key = (group, kind)
    if key == ("", "Namespace"):
        finalizers = _m(obj, "spec").setdefault("finalizers", [])
        if "kubernetes" not in finalizers:
            finalizers.append("kubernetes")
        obj["status"] = {"phase": "Active"}
    elif key == ("", "Pod"):
        spec = _m(obj, "spec")
        status: Obj = {"phase": "Pending", "qosClass": pod_qos_class(spec)}
        if spec.get("schedulingGates"):
            status["conditions"] = [{"type": "PodScheduled", "status": "False", "reason": "SchedulingGated",
                                     "message": "Scheduling is blocked due to non-empty scheduling gates"}]
        obj["status"] = status
    elif key == ("", "PersistentVolume"):
        obj["status"] = {"phase": "Pending", "lastPhaseTransitionTime": _rfc3339(now or datetime.now(timezone.utc))}
    elif key == ("", "PersistentVolumeClaim"):
        obj["status"] = {"phase": "Pending"}
    elif key == ("batch", "Job") and _m(obj, "spec").get("manualSelector") is not True:
        _generate_job_selector(obj)


def _generate_job_selector(obj: Obj) -> None:
    metadata, spec = _m(obj, "metadata"), _m(obj, "spec")
    name, uid = metadata.get("name") or "", metadata.get("uid") or ""
    labels = _m(_m(_m(spec, "template"), "metadata"), "labels")
    for key in ("job-name", "batch.kubernetes.io/job-name"):
        labels.setdefault(key, name)
    for key in ("controller-uid", "batch.kubernetes.io/controller-uid"):
        labels.setdefault(key, uid)
    match_labels = _m(_m(spec, "selector"), "matchLabels")
    match_labels.setdefault("batch.kubernetes.io/controller-uid", uid)
    # Kubernetes defaults a Job's labels from its template again when reading it back,
    # so a Job created without labels shows the generated ones.
    if not metadata.get("labels"):
        metadata["labels"] = dict(labels)


# --- generation -------------------------------------------------------------------------------------

# Kinds whose strategies set metadata.generation to 1 and bump it on spec changes.
_SPEC_GENERATION = {
    ("apps", "Deployment"), ("apps", "ReplicaSet"), ("apps", "StatefulSet"), ("apps", "DaemonSet"),
    ("batch", "Job"), ("batch", "CronJob"), ("", "ReplicationController"), ("policy", "PodDisruptionBudget"),
    ("networking.k8s.io", "Ingress"), ("networking.k8s.io", "IngressClass"), ("networking.k8s.io", "NetworkPolicy"),
    ("apiextensions.k8s.io", "CustomResourceDefinition"),
    ("admissionregistration.k8s.io", "ValidatingAdmissionPolicy"),
    ("admissionregistration.k8s.io", "ValidatingAdmissionPolicyBinding"),
    ("flowcontrol.apiserver.k8s.io", "FlowSchema"), ("flowcontrol.apiserver.k8s.io", "PriorityLevelConfiguration"),
}
_WEBHOOK_GENERATION = {("admissionregistration.k8s.io", "MutatingWebhookConfiguration"),
                       ("admissionregistration.k8s.io", "ValidatingWebhookConfiguration")}


def _is_builtin(group: str) -> bool:
    return group in BUILTIN_GROUPS


def tracks_generation(group: str, kind: str) -> bool:
    """Whether objects of the kind carry metadata.generation (1 on create).

    Built-in kinds without a spec-like body (ConfigMap, Secret, Service, Namespace,
    Node, Pod in 1.32, RBAC, ...) have none; custom resources always do.
    """
    key = (group, kind)
    return key in _SPEC_GENERATION or key in _WEBHOOK_GENERATION or not _is_builtin(group)


def generation_relevant(kind: str, old: Mapping[str, Any], new: Mapping[str, Any], *, group: str | None = None,
                        status_subresource: bool = True) -> bool:
    """Whether an update from `old` to `new` bumps metadata.generation.

    Deployments also count annotation changes (they are copied to ReplicaSets);
    webhook configurations count their webhooks; custom resources count any change
    outside metadata (and outside status when the status subresource is on).
    Kinds that do not track generation never bump. `group` None means the built-in
    kind of that name.
    """
    if group is None:
        group = next((g for g, k in (*_SPEC_GENERATION, *_WEBHOOK_GENERATION) if k == kind), "")
    key = (group, kind)
    if key in _WEBHOOK_GENERATION:
        return old.get("webhooks") != new.get("webhooks")
    if key in _SPEC_GENERATION:
        changed = old.get("spec") != new.get("spec")
        if key == ("apps", "Deployment"):
            changed = changed or ((old.get("metadata") or {}).get("annotations") or {}) != (
                (new.get("metadata") or {}).get("annotations") or {})
        return changed
    if _is_builtin(group):
        return False
    skip = {"metadata", "status"} if status_subresource else {"metadata"}
    return {k: v for k, v in old.items() if k not in skip} != {k: v for k, v in new.items() if k not in skip}
