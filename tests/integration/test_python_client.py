"""The official Kubernetes Python client (from PyPI), unchanged, against eventplane."""
from __future__ import annotations

import asyncio
import threading

import pytest
from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException


def _client(api):
    return config.new_client_from_config(config_file=str(api.kubeconfig))


async def in_thread(fn, *args, **kwargs):
    """The client blocks; the server lives in this loop. Run the client in a thread."""
    return await asyncio.to_thread(fn, *args, **kwargs)


async def test_crud_and_patches(api):
    apps = client.AppsV1Api(_client(api))
    core = client.CoreV1Api(_client(api))
    body = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "py"},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "py"}},
                     "template": {"metadata": {"labels": {"app": "py"}},
                                  "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}}
    created = await in_thread(apps.create_namespaced_deployment, "default", body)
    assert created.metadata.name == "py" and created.spec.replicas == 1
    patched = await in_thread(apps.patch_namespaced_deployment, "py", "default", {"spec": {"replicas": 3}})
    assert patched.spec.replicas == 3  # a dict body is sent as a strategic merge patch
    patched = await in_thread(apps.patch_namespaced_deployment, "py", "default",
                              [{"op": "replace", "path": "/spec/replicas", "value": 2}])
    assert patched.spec.replicas == 2  # a list body is sent as a JSON patch
    listed = await in_thread(apps.list_namespaced_deployment, "default")
    assert [d.metadata.name for d in listed.items] == ["py"]
    with pytest.raises(ApiException) as info:
        await in_thread(core.read_namespaced_config_map, "missing", "default")
    assert info.value.status == 404
    await in_thread(apps.delete_namespaced_deployment, "py", "default")
    assert (await in_thread(apps.list_namespaced_deployment, "default")).items == []


async def test_watch_from_a_resource_version(api):
    core = client.CoreV1Api(_client(api))
    cm = await in_thread(core.create_namespaced_config_map, "default",
                         {"metadata": {"name": "a"}, "data": {"x": "1"}})
    rv = cm.metadata.resource_version
    seen: list[tuple[str, str]] = []
    done = threading.Event()

    def consume():
        w = watch.Watch()
        for event in w.stream(core.list_namespaced_config_map, "default", resource_version=rv, timeout_seconds=10):
            seen.append((event["type"], event["object"].metadata.name))
            if len(seen) == 2:
                w.stop()
        done.set()

    consumer = asyncio.to_thread(consume)
    task = asyncio.ensure_future(consumer)
    await asyncio.sleep(0.5)
    await in_thread(core.create_namespaced_config_map, "default", {"metadata": {"name": "b"}})
    await in_thread(core.delete_namespaced_config_map, "a", "default")
    await asyncio.wait_for(task, 20)
    assert seen == [("ADDED", "b"), ("DELETED", "a")]


async def test_crd_round_trip(api):
    from tests.integration.test_api_crd import CRD

    ext = client.ApiextensionsV1Api(_client(api))
    await in_thread(ext.create_custom_resource_definition, CRD)
    custom = client.CustomObjectsApi(_client(api))
    await in_thread(custom.create_namespaced_custom_object, "example.com", "v1", "default", "widgets",
                    {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"},
                     "spec": {"size": 2}})
    got = await in_thread(custom.get_namespaced_custom_object, "example.com", "v1", "default", "widgets", "w")
    assert got["spec"] == {"size": 2}
    listed = await in_thread(custom.list_namespaced_custom_object, "example.com", "v1", "default", "widgets")
    assert [i["metadata"]["name"] for i in listed["items"]] == ["w"]
