from eventplane.objects.summary import summarize


def deploy(replicas=3, image="nginx:1.25", labels=None, rv="1", phase=None):
    obj = {"apiVersion": "apps/v1", "kind": "Deployment",
           "metadata": {"name": "web", "namespace": "default", "resourceVersion": rv, "generation": int(rv),
                        "labels": labels or {"app": "web"}},
           "spec": {"replicas": replicas,
                    "template": {"spec": {"containers": [{"name": "web", "image": image}]}}}}
    if phase:
        obj["status"] = {"phase": phase}
    return obj


def test_created_and_deleted():
    assert summarize(None, deploy(), event_type="Created") == "created"
    assert summarize(deploy(), deploy(), event_type="Deleted") == "deleted"


def test_scalar_change_ignores_bookkeeping():
    assert summarize(deploy(3, rv="1"), deploy(5, rv="2"), event_type="Updated") == "spec.replicas 3→5"


def test_container_image():
    assert summarize(deploy(image="nginx:1.25"), deploy(image="nginx:1.27")) == "image nginx:1.25→1.27"
    assert summarize(deploy(image="nginx:1.25"), deploy(image="httpd:2")) == "image nginx:1.25→httpd:2"


def test_status_and_labels():
    assert summarize(deploy(phase="Pending"), deploy(phase="Running")) == "status.phase Pending→Running"
    assert summarize(deploy(), deploy(labels={"app": "web", "tier": "front"})) == "labels +tier=front"
    assert summarize(deploy(labels={"app": "web", "tier": "front"}), deploy()) == "labels -tier"
    assert summarize(deploy(labels={"app": "a"}), deploy(labels={"app": "b"})) == "labels app=a→b"


def test_added_removed_fields_and_many_changes():
    before, after = deploy(), deploy(replicas=4, image="nginx:2", labels={"x": "1"}, phase="Running")
    after["spec"]["paused"] = True
    text = summarize(before, after)
    assert text.startswith("labels -app +x=1, spec.replicas 3→4, image nginx:1.25→")
    assert text.endswith("more)")
    a = deploy()
    a["spec"]["paused"] = True
    assert summarize(deploy(), a) == "+spec.paused=true"
    assert summarize(a, deploy()) == "-spec.paused"


def test_no_change_and_deleting():
    assert summarize(deploy(rv="1"), deploy(rv="2")) == "no change"
    d = deploy()
    d["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    assert summarize(deploy(), d, event_type="Deleting") == "deletion requested, deletionTimestamp set"
