from eventplane.objects.events import GENESIS_HASH, Event, StreamId, chain_hash, pack


def make(position=1, prev=GENESIS_HASH, payload=None):
    fields = dict(position=position, stream=StreamId("apps", "deployments", "default", "web"), stream_version=1,
                  type="Created", uid="u-1", actor="alice", verb="create", request_id="r-1",
                  idempotency_key=None, trace_id="t-1", causation=None, occurred_at_us=1_700_000_000_000_000,
                  payload=pack(payload or {"metadata": {"name": "web"}}), prev_hash=prev, hash=b"")
    unsigned = Event(**fields)
    fields["hash"] = chain_hash(prev, unsigned.canonical())
    return Event(**fields)


def test_wire_form_round_trips():
    e = make()
    assert Event.decode(e.encode()) == e


def test_an_event_verifies_its_own_hash_and_detects_a_changed_byte():
    e = make()
    assert e.verifies()
    changed = Event(**{**{f: getattr(e, f) for f in e.__slots__}, "actor": "mallory"})
    assert not changed.verifies()


def test_object_carries_resource_version_equal_to_position():
    assert make(position=42).object()["metadata"]["resourceVersion"] == "42"


def test_stream_key_round_trips_core_and_cluster_scoped():
    for s in [StreamId("", "pods", "default", "p"), StreamId("", "nodes", "", "n1"),
              StreamId("rbac.authorization.k8s.io", "clusterroles", "", "system:admin")]:
        assert StreamId.parse(s.key) == s
