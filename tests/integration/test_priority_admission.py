"""The Priority admission plugin in the API server, as kubectl and any client meet it: pods get
spec.priority and spec.preemptionPolicy from their PriorityClass (or the globalDefault one) at
create, with Kubernetes' 403s for an unknown class or a priority that disagrees; PriorityClasses
keep to one globalDefault and to the user range; the system classes exist from the start."""
from __future__ import annotations

import json

PODS = "/api/v1/namespaces/default/pods"
CLASSES = "/apis/scheduling.k8s.io/v1/priorityclasses"


def pod(name: str, **spec) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"containers": [{"name": "c", "image": "busybox"}], **spec}}


def priority_class(name: str, value: int, **extra) -> dict:
    return {"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass", "metadata": {"name": name},
            "value": value, **extra}


async def test_pods_take_their_priority_from_their_class(api):
    # The system classes are there from the start, as kube-apiserver makes them.
    out = await api.ok("get", "priorityclasses", "-o", "json")
    values = {i["metadata"]["name"]: (i["value"], i.get("globalDefault", False), i["preemptionPolicy"],
                                      i["description"]) for i in json.loads(out)["items"]}
    assert values == {"system-cluster-critical": (2000000000, False, "PreemptLowerPriority",
                                                  "Used for system critical pods that must run in the cluster, but "
                                                  "can be moved to another node if necessary."),
                      "system-node-critical": (2000001000, False, "PreemptLowerPriority",
                                               "Used for system critical pods that must not be moved from their "
                                               "current node.")}

    # No class and no default class: 0, PreemptLowerPriority.
    code, p, _ = await api.http("POST", PODS, body=pod("plain"))
    assert code == 201, p
    assert (p["spec"]["priority"], p["spec"]["preemptionPolicy"]) == (0, "PreemptLowerPriority")
    assert "priorityClassName" not in p["spec"]

    await api.ok("create", "-f", "-", input=json.dumps(priority_class("batch", 1000, preemptionPolicy="Never")))
    await api.ok("run", "job-pod", "--image=busybox", "--restart=Never",
                 '--overrides={"spec": {"priorityClassName": "batch"}}')
    code, p, _ = await api.http("GET", f"{PODS}/job-pod")
    assert (p["spec"]["priority"], p["spec"]["preemptionPolicy"]) == (1000, "Never")
    code, p, _ = await api.http("POST", PODS, body=pod("critical", priorityClassName="system-node-critical"))
    assert code == 201 and p["spec"]["priority"] == 2000001000

    # An unknown class, as kubectl shows it.
    r = await api.kubectl("create", "-f", "-", input=json.dumps(pod("lost", priorityClassName="nope")))
    assert r.code != 0
    assert 'Error from server (Forbidden): error when creating "STDIN": pods "lost" is forbidden: ' \
           "no PriorityClass with name nope was found" in r.err
    code, err, _ = await api.http("POST", PODS, body={**pod("x", priorityClassName="nope"),
                                                      "metadata": {"generateName": "web-"}})
    assert code == 403 and err["reason"] == "Forbidden"
    assert err["message"] == 'pods "web-" is forbidden: no PriorityClass with name nope was found'

    # A priority in the pod must be the class's.
    code, err, _ = await api.http("POST", PODS, body=pod("liar", priorityClassName="batch", priority=5))
    assert code == 403
    assert err["message"] == ('pods "liar" is forbidden: the integer value of priority (5) must not be provided in '
                              "pod spec; priority admission controller computed 1000 from the given PriorityClass name")
    code, err, _ = await api.http("POST", PODS, body=pod("pushy", priorityClassName="batch",
                                                         preemptionPolicy="PreemptLowerPriority"))
    assert code == 403 and "the string value of PreemptionPolicy (PreemptLowerPriority) must not be provided" \
        in err["message"]
    code, p, _ = await api.http("POST", PODS, body=pod("honest", priorityClassName="batch", priority=1000))
    assert code == 201 and p["spec"]["priority"] == 1000

    # An update that leaves the priority out keeps it (the plugin's update half).
    code, p, _ = await api.http("GET", f"{PODS}/honest")
    del p["spec"]["priority"], p["spec"]["preemptionPolicy"]
    p["metadata"]["labels"] = {"seen": "yes"}
    code, p, _ = await api.http("PUT", f"{PODS}/honest", body=p)
    assert code == 200, p
    assert (p["spec"]["priority"], p["spec"]["preemptionPolicy"]) == (1000, "Never")

    # A globalDefault class: pods without a class get its name and value.
    await api.ok("create", "priorityclass", "normal", "--value=100", "--global-default=true")
    code, p, _ = await api.http("POST", PODS, body=pod("defaulted"))
    assert code == 201
    assert (p["spec"]["priorityClassName"], p["spec"]["priority"]) == ("normal", 100)


async def test_priority_classes_keep_one_default_and_the_user_range(api):
    await api.ok("create", "priorityclass", "first", "--value=10", "--global-default=true")
    r = await api.kubectl("create", "priorityclass", "second", "--value=20", "--global-default=true")
    assert r.code != 0 and 'priorityclasses.scheduling.k8s.io "second" is forbidden: PriorityClass first is ' \
        "already marked as default. Only one default can exist" in r.err
    code, other, _ = await api.http("POST", CLASSES, body=priority_class("other", 5))
    assert code == 201
    code, err, _ = await api.http("PUT", f"{CLASSES}/other", body={**other, "globalDefault": True})
    assert code == 403 and err["details"] == {"name": "other", "group": "scheduling.k8s.io", "kind": "priorityclasses"}
    # The default itself may be updated.
    code, first, _ = await api.http("GET", f"{CLASSES}/first")
    first["metadata"]["labels"] = {"tier": "usual"}
    code, first, _ = await api.http("PUT", f"{CLASSES}/first", body=first)
    assert code == 200 and first["metadata"]["labels"] == {"tier": "usual"}
    # Once it is gone, another may be the default (this server learns of the delete at once).
    await api.ok("delete", "priorityclass", "first")
    code, other, _ = await api.http("PUT", f"{CLASSES}/other", body={**other, "globalDefault": True})
    assert code == 200, other
    code, p, _ = await api.http("POST", PODS, body=pod("after"))
    assert (p["spec"]["priorityClassName"], p["spec"]["priority"]) == ("other", 5)

    # Validation (422): the user range, the reserved prefix, immutable value.
    code, err, _ = await api.http("POST", CLASSES, body=priority_class("huge", 1000000001))
    assert code == 422
    assert err["message"] == ('PriorityClass.scheduling.k8s.io "huge" is invalid: value: Forbidden: maximum allowed '
                              "value of a user defined priority is 1000000000")
    code, err, _ = await api.http("POST", CLASSES, body=priority_class("system-mine", 10))
    assert code == 422 and err["details"]["causes"][0]["field"] == "metadata.name"
    assert "priority class names with 'system-' prefix are reserved for system use only. error: system-mine is " \
           "not a known system priority class" in err["message"]
    code, err, _ = await api.http("POST", CLASSES, body=priority_class("top", 1000000000))
    assert code == 201
    code, err, _ = await api.http("PUT", f"{CLASSES}/other", body={**other, "value": 6})
    assert code == 422 and "value: Forbidden: may not be changed in an update." in err["message"]
