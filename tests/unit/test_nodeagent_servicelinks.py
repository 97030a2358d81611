"""Service environment variables as the kubelet's envvars package spells them, the Services a pod's
containers get them for, and how they meet the container's own env; the terminal phase of a
deleted pod (kubelet's getPhase with podIsTerminal). No servers."""
from __future__ import annotations

import asyncio
from typing import Any

from nodeagent import status as podstatus
from nodeagent.containers import references, resolve_env
from nodeagent.runtime import ContainerRecord
from nodeagent.servicelinks import env_name, from_services, service_env


def svc(name: str, ns: str, ip: str, *ports: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": ns}, "spec": {"clusterIP": ip, "ports": list(ports)}}


def test_names():
    assert env_name("redis-primary") == "REDIS_PRIMARY"
    assert env_name("a.b-c") == "A_B_C"
    assert env_name("1st") == "_1ST"


def test_variables_in_the_kubelets_order():
    s = svc("redis-primary", "ns", "10.96.0.11", {"name": "redis", "port": 6379},
            {"name": "metrics", "port": 9121, "protocol": "UDP"})
    assert from_services([s]) == [
        ("REDIS_PRIMARY_SERVICE_HOST", "10.96.0.11"),
        ("REDIS_PRIMARY_SERVICE_PORT", "6379"),
        ("REDIS_PRIMARY_SERVICE_PORT_REDIS", "6379"),
        ("REDIS_PRIMARY_SERVICE_PORT_METRICS", "9121"),
        ("REDIS_PRIMARY_PORT", "tcp://10.96.0.11:6379"),
        ("REDIS_PRIMARY_PORT_6379_TCP", "tcp://10.96.0.11:6379"),
        ("REDIS_PRIMARY_PORT_6379_TCP_PROTO", "tcp"),
        ("REDIS_PRIMARY_PORT_6379_TCP_PORT", "6379"),
        ("REDIS_PRIMARY_PORT_6379_TCP_ADDR", "10.96.0.11"),
        ("REDIS_PRIMARY_PORT_9121_UDP", "udp://10.96.0.11:9121"),
        ("REDIS_PRIMARY_PORT_9121_UDP_PROTO", "udp"),
        ("REDIS_PRIMARY_PORT_9121_UDP_PORT", "9121"),
        ("REDIS_PRIMARY_PORT_9121_UDP_ADDR", "10.96.0.11"),
    ]
    assert dict(from_services([svc("v6", "ns", "fd00::1", {"port": 80})]))["V6_PORT"] == "tcp://[fd00::1]:80"


def test_which_services():
    kube = svc("kubernetes", "default", "10.96.0.1", {"name": "https", "port": 443})
    mine = svc("web", "team", "10.96.0.20", {"port": 80})
    other = svc("db", "elsewhere", "10.96.0.21", {"port": 5432})
    headless = svc("hl", "team", "None", {"port": 80})
    external = {"metadata": {"name": "ext", "namespace": "team"}, "spec": {"type": "ExternalName",
                                                                          "externalName": "example.com"}}
    env = service_env([kube, mine, other, headless, external], "team", True)
    assert env["WEB_SERVICE_HOST"] == "10.96.0.20" and env["KUBERNETES_SERVICE_HOST"] == "10.96.0.1"
    assert env["KUBERNETES_SERVICE_PORT_HTTPS"] == "443"
    assert not any(k.startswith(("DB_", "HL_", "EXT_")) for k in env)
    off = service_env([kube, mine], "team", False)
    assert "WEB_SERVICE_HOST" not in off and off["KUBERNETES_SERVICE_HOST"] == "10.96.0.1"
    # A `kubernetes` Service of the pod's own namespace takes the default one's place (links on).
    own = svc("kubernetes", "team", "10.96.0.30", {"port": 8443})
    for order in ([kube, own], [own, kube]):
        assert service_env(order, "team", True)["KUBERNETES_SERVICE_HOST"] == "10.96.0.30"
        assert service_env(order, "team", False)["KUBERNETES_SERVICE_HOST"] == "10.96.0.1"


def test_the_containers_env_wins_and_expands_service_variables():
    services = {"WEB_SERVICE_HOST": "10.96.0.20", "WEB_SERVICE_PORT": "80"}
    c = {"name": "app", "env": [{"name": "URL", "value": "http://$(WEB_SERVICE_HOST):$(WEB_SERVICE_PORT)/"},
                                {"name": "WEB_SERVICE_PORT", "value": "8080"}]}
    pod = {"metadata": {"name": "p", "namespace": "team"}, "spec": {"containers": [c]}}
    env = asyncio.run(resolve_env(pod, c, None, {}, services))   # no ref to resolve: Refs is never used
    assert env == [("URL", "http://10.96.0.20:80/"), ("WEB_SERVICE_PORT", "8080"), ("WEB_SERVICE_HOST", "10.96.0.20")]


def rec(name: str, code: int) -> ContainerRecord:
    return ContainerRecord(id=name * 8, pod_uid="u", pod_namespace="ns", pod_name="p", name=name, role="app",
                           restart_count=0, image="i", state="exited", exit_code=code,
                           started_at="2026-01-01T00:00:00Z", finished_at="2026-01-01T00:00:05Z")


def test_a_deleted_pods_phase_is_terminal_whatever_its_restart_policy():
    pod = {"metadata": {"name": "p", "namespace": "ns"},
           "spec": {"restartPolicy": "Always", "containers": [{"name": "a"}, {"name": "b"}]}}
    obs = podstatus.Observed([rec("a", 0), rec("b", 143)], "10.0.0.1", "2026-01-01T00:00:06Z")
    assert podstatus.pod_status(pod, obs)["phase"] == "Running"          # would be restarted
    final = podstatus.pod_status(pod, obs, terminal=True)
    assert final["phase"] == "Failed"
    assert {c["type"]: (c["status"], c.get("reason")) for c in final["conditions"]}["Ready"] == ("False", "PodFailed")
    ok = podstatus.Observed([rec("a", 0), rec("b", 0)], "10.0.0.1", "2026-01-01T00:00:06Z")
    assert podstatus.pod_status(pod, ok, terminal=True)["phase"] == "Succeeded"
    static = {**pod, "metadata": {**pod["metadata"], "annotations": {"kubernetes.io/config.source": "file"}}}
    assert podstatus.pod_status(static, obs, terminal=True)["phase"] == "Running"   # not for static pods


def test_the_objects_a_first_start_reads_are_named_once_each():
    pod = {"spec": {
        "volumes": [{"name": "a", "configMap": {"name": "cm1"}}, {"name": "b", "secret": {"secretName": "s1"}},
                    {"name": "c", "persistentVolumeClaim": {"claimName": "data"}}, {"name": "d", "emptyDir": {}},
                    {"name": "e", "projected": {"sources": [{"configMap": {"name": "cm2"}}, {"secret": {"name": "s1"}},
                                                            {"downwardAPI": {"items": []}}]}}],
        "initContainers": [{"name": "i", "envFrom": [{"secretRef": {"name": "s2"}}]}],
        "containers": [{"name": "c", "envFrom": [{"configMapRef": {"name": "cm1"}}],
                        "env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "cm3", "key": "k"}}},
                                {"name": "Y", "valueFrom": {"secretKeyRef": {"name": "s3", "key": "k"}}},
                                {"name": "Z", "value": "plain"}]}]}}
    assert references(pod) == [("configmaps", "cm1"), ("secrets", "s1"), ("persistentvolumeclaims", "data"),
                               ("configmaps", "cm2"), ("secrets", "s2"), ("configmaps", "cm3"), ("secrets", "s3")]
