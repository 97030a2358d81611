"""The scheduling queue: priority order, backoff, and moves only on events that could help."""
import pytest

from reconcilers.scheduler.queue import ANY, MAX_BACKOFF, QueuedPod, SchedulingQueue


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def pod(name, priority=0):
    return {"metadata": {"name": name, "namespace": "default"}, "spec": {"priority": priority}}


def queue():
    clock = Clock()
    return SchedulingQueue(clock=clock), clock


def add(q, clock, *names_priorities):
    for name, priority in names_priorities:
        q.add(f"default/{name}", pod(name, priority))
        clock.now += 1


def keys(popped):
    return [qp.key.split("/")[1] for qp in popped]


def test_active_is_ordered_by_priority_then_age():
    q, clock = queue()
    add(q, clock, ("old-low", 0), ("high", 100), ("new-low", 0), ("mid", 50), ("high-2", 100))
    assert keys(q.pop_many(10)) == ["high", "high-2", "mid", "old-low", "new-low"]
    assert q.active_count == 0 and len(q.in_flight) == 5


def test_a_priority_change_resorts_a_waiting_pod():
    q, clock = queue()
    add(q, clock, ("a", 0), ("b", 0))
    q.update("default/b", pod("b", 10))
    assert keys(q.pop_many(10)) == ["b", "a"]


@pytest.mark.parametrize("attempts, backoff", [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (5, 10.0), (9, MAX_BACKOFF)])
def test_backoff_doubles_from_one_second_to_ten(attempts, backoff):
    assert QueuedPod("k", {}, 0, 0.0, attempts=attempts).backoff() == backoff


def test_an_unschedulable_pod_waits_for_an_event_that_could_help_it():
    q, clock = queue()
    add(q, clock, ("p", 0))
    [qp] = q.pop_many(1)
    q.failed(qp, {"NodeResourcesFit"})
    assert q.where("default/p") == "unschedulable"
    clock.now += 60                      # time alone moves nothing: no periodic flush
    assert q.flush_backoff() == 0 and q.pop_many(1) == []
    assert q.move({"TaintToleration"}) == 0    # a taint change cannot help a pod short of cpu
    assert q.where("default/p") == "unschedulable"
    assert q.move({"NodeResourcesFit"}) == 1
    assert keys(q.pop_many(1)) == ["p"]


def test_a_pod_moved_during_its_backoff_waits_out_the_backoff():
    q, clock = queue()
    add(q, clock, ("p", 0))
    [qp] = q.pop_many(1)
    q.failed(qp, {"NodeResourcesFit"})
    clock.now += 0.5
    q.move({ANY})                        # a node was added, half a second after the failure
    assert q.where("default/p") == "backoff" and q.pop_many(1) == []
    clock.now += 0.6
    assert q.flush_backoff() == 1
    assert keys(q.pop_many(1)) == ["p"]


def test_an_event_while_in_flight_sends_a_failure_to_backoff_not_to_unschedulable():
    q, clock = queue()
    add(q, clock, ("p", 0))
    [qp] = q.pop_many(1)
    q.move({"NodeResourcesFit"})         # a pod was deleted while this one was being decided
    q.failed(qp, {"NodeResourcesFit"})
    assert q.where("default/p") == "backoff"


def test_an_irrelevant_event_while_in_flight_does_not_save_it():
    q, clock = queue()
    add(q, clock, ("p", 0))
    [qp] = q.pop_many(1)
    q.move({"TaintToleration"})
    q.failed(qp, {"NodeResourcesFit"})
    assert q.where("default/p") == "unschedulable"


def test_a_binding_failure_only_backs_off():
    q, clock = queue()
    add(q, clock, ("p", 0))
    [qp] = q.pop_many(1)
    q.failed(qp, backoff_only=True)
    assert q.where("default/p") == "backoff"


def test_a_changed_spec_moves_an_unschedulable_pod():
    q, clock = queue()
    add(q, clock, ("p", 0))
    [qp] = q.pop_many(1)
    q.failed(qp, {"NodeAffinity"})
    q.update("default/p", pod("p", 0))                       # same spec: stays
    assert q.where("default/p") == "unschedulable"
    clock.now += 5
    changed = pod("p", 0)
    changed["spec"]["nodeSelector"] = {"disk": "ssd"}
    q.update("default/p", changed)
    assert q.where("default/p") == "active"


def test_deleted_pods_leave_every_place_and_done_forgets():
    q, clock = queue()
    add(q, clock, ("a", 0), ("b", 0), ("c", 0))
    a, b = q.pop_many(2)
    q.failed(b)
    q.delete("default/b")
    q.delete("default/c")
    q.done("default/a")
    assert len(q) == 0 and q.pop_many(5) == [] and q.where("default/b") is None
    q.failed(a)                           # late news about a forgotten pod changes nothing
    assert len(q) == 0


async def test_the_backoff_timer_wakes_a_waiting_loop():
    q = SchedulingQueue()
    q.add("default/p", pod("p"))
    [qp] = q.pop_many(1)
    qp.attempts = 0
    q.failed(qp, backoff_only=True)      # 1 s backoff
    import asyncio
    await asyncio.wait_for(q.wait(), 3)
    assert keys(q.pop_many(1)) == ["p"]


def test_an_update_with_the_same_spec_re_sorts_by_the_new_priority():
    """The loop calls update() when a PriorityClass changes: the pod's priority is read again."""
    prios = {"a": 0, "b": 0}
    q = SchedulingQueue(clock=Clock(), priority_of=lambda p: prios[p["metadata"]["name"]])
    q.add("default/a", pod("a"))
    q.add("default/b", pod("b"))
    prios["b"] = 100
    q.update("default/b", pod("b"))
    assert keys(q.pop_many(2)) == ["b", "a"]
