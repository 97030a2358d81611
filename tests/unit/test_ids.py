"""The API server's random ids: uuid4 strings from batched entropy, distinct across a fork."""
import os
import uuid

from eventplane.api.strategy import new_uid, new_uuid


def test_ids_are_version_4_uuids_and_do_not_repeat():
    ids = [new_uid() for _ in range(2000)]  # several refills of the entropy buffer
    assert len(set(ids)) == len(ids)
    for text in ids[:50]:
        u = uuid.UUID(text)
        assert str(u) == text and u.version == 4 and u.variant == uuid.RFC_4122
    assert new_uuid().version == 4


def test_a_forked_child_does_not_make_its_parents_next_id():
    new_uid()  # the buffer holds entropy the child must not reuse
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.write(write, new_uid().encode())
        os._exit(0)
    os.waitpid(pid, 0)
    child = os.read(read, 100).decode()
    os.close(read)
    os.close(write)
    assert child != new_uid()
