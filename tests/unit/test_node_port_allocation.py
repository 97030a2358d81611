"""Node ports of NodePort and LoadBalancer Services (eventplane/api/allocation.py), as kube-apiserver
allocates them: from 30000-32767, never one another Service holds, one per port number in a Service
(shared by its TCP and UDP ports), a requested one checked with kube-apiserver's messages."""
from __future__ import annotations

import random

import pytest

from eventplane.api.allocation import allocate_node_ports
from eventplane.objects import errors


def svc(kind, *ports, **spec):
    return {"metadata": {"name": "s"}, "spec": {"type": kind, "ports": [dict(p) for p in ports], **spec}}


OTHERS = [{"spec": {"ports": [{"port": 80, "nodePort": 30080, "protocol": "TCP"}]}},
          {"spec": {"ports": [{"port": 53, "nodePort": 30053, "protocol": "UDP"}]}}]


def test_allocated_in_range_and_free():
    s = svc("NodePort", {"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}, {"port": 80})
    allocate_node_ports(OTHERS, s, random.Random(7), range(30050, 30090))
    udp, tcp, http = (p["nodePort"] for p in s["spec"]["ports"])
    assert udp == tcp                                  # one port number, two protocols: one node port
    assert http != udp
    assert {udp, http} <= set(range(30050, 30090)) - {30053, 30080}


@pytest.mark.parametrize("spec, allocated", [
    (svc("ClusterIP", {"port": 80}), False),
    (svc("LoadBalancer", {"port": 80}), True),
    (svc("LoadBalancer", {"port": 80}, allocateLoadBalancerNodePorts=False), False),
])
def test_which_types_get_node_ports(spec, allocated):
    allocate_node_ports([], spec, random.Random(1))
    assert ("nodePort" in spec["spec"]["ports"][0]) == allocated


@pytest.mark.parametrize("ports, message", [
    ([{"port": 80, "nodePort": 8080}], 'Service "s" is invalid: spec.ports[0].nodePort: Invalid value: 8080: '
                                       "provided port is not in the valid range. The range of valid ports is "
                                       "30000-32767"),
    ([{"port": 81, "nodePort": 30080}], 'Service "s" is invalid: spec.ports[0].nodePort: Invalid value: 30080: '
                                        "provided port is already allocated"),
    ([{"port": 81, "nodePort": 30053, "protocol": "TCP"}], "provided port is already allocated"),
    ([{"name": "a", "port": 81, "nodePort": 31000}, {"name": "b", "port": 82, "nodePort": 31000}],
     'spec.ports[1].nodePort: Invalid value: 31000: provided port is already allocated'),
])
def test_requested_node_ports_are_checked(ports, message):
    with pytest.raises(errors.InvalidError) as e:
        allocate_node_ports(OTHERS, svc("NodePort", *ports), random.Random(1))
    assert message in str(e.value)


def test_a_requested_node_port_is_kept():
    s = svc("NodePort", {"port": 80, "nodePort": 31234})
    allocate_node_ports(OTHERS, s, random.Random(1))
    assert s["spec"]["ports"][0]["nodePort"] == 31234
