-- One round trip per group commit: the appender plans a batch in Python on the
-- state it believes current, and this function, under the append lock, checks
-- that belief and writes. Each statement of a VOLATILE plpgsql function takes
-- a fresh snapshot, so everything read after the lock is the latest committed
-- state. When the belief is wrong (another process appended, an object the
-- appender did not know exists, an idempotency key was used before), it
-- writes nothing and returns false; the appender then reads the state and
-- plans again.

CREATE FUNCTION eventplane_append(
    lock_key bigint,
    expected_head bigint,
    check_streams text[], check_uids text[], check_rvs bigint[], check_versions integer[],
    idempotency_keys text[],
    ev_position bigint[], ev_stream text[], ev_stream_version integer[], ev_type text[], ev_uid text[],
    ev_actor text[], ev_verb text[], ev_request_id text[], ev_idempotency_key text[], ev_trace_id text[],
    ev_causation bigint[], ev_occurred_at_us bigint[], ev_payload bytea[], ev_prev_hash bytea[], ev_hash bytea[],
    obj_streams text[], obj_uids text[], obj_rvs bigint[], obj_versions integer[],
    gone_streams text[],
    notify_channel text
) RETURNS boolean
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(lock_key);

    IF coalesce((SELECT position FROM events ORDER BY position DESC LIMIT 1), 0) <> expected_head THEN
        RETURN false;
    END IF;

    IF EXISTS (
        SELECT 1
        FROM unnest(check_streams, check_uids, check_rvs, check_versions) AS c(stream, uid, rv, version)
        LEFT JOIN LATERAL (SELECT o.uid, o.resource_version, o.stream_version FROM objects o
                           WHERE o.stream = c.stream LIMIT 1) AS o ON true
        WHERE o.uid IS DISTINCT FROM c.uid
           OR coalesce(o.resource_version, 0) <> c.rv
           OR coalesce(o.stream_version, (SELECT e.stream_version FROM events e WHERE e.stream = c.stream
                                          ORDER BY e.stream_version DESC LIMIT 1), 0) <> c.version
    ) THEN
        RETURN false;
    END IF;

    IF cardinality(idempotency_keys) > 0 AND EXISTS (
        SELECT 1 FROM unnest(idempotency_keys) AS k(key)
        WHERE EXISTS (SELECT 1 FROM events e WHERE e.idempotency_key = k.key)
    ) THEN
        RETURN false;
    END IF;

    INSERT INTO events (position, stream, stream_version, type, uid, actor, verb, request_id, idempotency_key,
                        trace_id, causation, occurred_at, payload, prev_hash, hash)
    SELECT p, s, sv, t, u, a, v, r, i, tr, c, timestamptz 'epoch' + us * interval '1 microsecond', pl, ph, h
    FROM unnest(ev_position, ev_stream, ev_stream_version, ev_type, ev_uid, ev_actor, ev_verb, ev_request_id,
                ev_idempotency_key, ev_trace_id, ev_causation, ev_occurred_at_us, ev_payload, ev_prev_hash,
                ev_hash) AS x(p, s, sv, t, u, a, v, r, i, tr, c, us, pl, ph, h);

    INSERT INTO objects (stream, uid, resource_version, stream_version)
    SELECT * FROM unnest(obj_streams, obj_uids, obj_rvs, obj_versions)
    ON CONFLICT (stream) DO UPDATE SET uid = excluded.uid, resource_version = excluded.resource_version,
        stream_version = excluded.stream_version;

    IF cardinality(gone_streams) > 0 THEN
        DELETE FROM objects WHERE stream = any(gone_streams);
    END IF;

    PERFORM pg_notify(notify_channel, ev_position[cardinality(ev_position)]::text);
    RETURN true;
END
$$;
