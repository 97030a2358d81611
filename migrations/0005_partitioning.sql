-- Retention (issue 4, part 8): `events` becomes a table partitioned by RANGE (position), so
-- that old ranges can be detached and archived (docs/operations.md, "Retention").
--
-- The existing table, with its rows and indexes, becomes the first partition: a CHECK
-- constraint proves its range, so ATTACH does not scan it again, and its indexes are
-- attached to the parent's equal ones instead of being built anew. Only a UNIQUE index
-- that does not contain `position` cannot exist on a partitioned table; it becomes a plain
-- index (the appender already guarantees stream_version under the append lock:
-- eventplane_append checks every stream's version before it writes).
--
-- Partition k covers positions [lower, lower + size); `event_partitioning.upper` is the
-- first position no partition holds yet. eventplane_append creates the partitions a batch
-- needs under the append lock, so an append never fails for lack of one.

CREATE TABLE event_partitioning (
    singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    size       bigint  NOT NULL CHECK (size > 0),
    upper      bigint  NOT NULL
);

-- Partitions detached for archiving, and the hash of the last event of each: the anchor that
-- lets `verify` check the first kept event's prev_hash.
CREATE TABLE events_detached (
    name           text        PRIMARY KEY,
    from_position  bigint      NOT NULL,
    to_position    bigint      NOT NULL,  -- exclusive
    last_hash      bytea,                 -- null when the partition was empty
    detached_at    timestamptz NOT NULL DEFAULT now()
);

DO $$
DECLARE
    size   constant bigint := 1000000;
    head   bigint := coalesce((SELECT max(position) FROM events), 0);
    upper  bigint := (head / size + 1) * size + 1;
    ix     record;
BEGIN
    ALTER TABLE events RENAME TO events_p1;
    ALTER TABLE events_p1 RENAME CONSTRAINT events_pkey TO events_p1_pkey;
    CREATE TABLE events (LIKE events_p1 INCLUDING DEFAULTS INCLUDING CONSTRAINTS) PARTITION BY RANGE (position);
    ALTER TABLE events ADD CONSTRAINT events_pkey PRIMARY KEY (position);

    FOR ix IN
        SELECT c.relname AS name, i.indisunique AS is_unique, pg_get_indexdef(i.indexrelid) AS def
        FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
        WHERE i.indrelid = 'events_p1'::regclass AND NOT i.indisprimary
    LOOP
        IF ix.is_unique THEN
            EXECUTE format('DROP INDEX %I', ix.name);
        ELSE
            EXECUTE format('ALTER INDEX %I RENAME TO %I', ix.name, ix.name || '_p1');
        END IF;
        -- "CREATE [UNIQUE] INDEX name ON [schema.]events_p1 USING …" → the same on the parent
        EXECUTE regexp_replace(regexp_replace(ix.def, '^CREATE UNIQUE INDEX', 'CREATE INDEX'),
                               ' ON (\S+\.)?events_p1 USING ', ' ON events USING ');
    END LOOP;

    EXECUTE format('ALTER TABLE events_p1 ADD CONSTRAINT events_p1_range CHECK (position >= 1 AND position < %s)',
                   upper);
    EXECUTE format('ALTER TABLE events ATTACH PARTITION events_p1 FOR VALUES FROM (1) TO (%s)', upper);
    ALTER TABLE events_p1 DROP CONSTRAINT events_p1_range;
    INSERT INTO event_partitioning (size, upper) VALUES (size, upper);
END
$$;

-- Create the partitions that positions up to `upto` need; the caller holds the append lock.
CREATE FUNCTION eventplane_ensure_partitions(upto bigint) RETURNS integer
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    p        event_partitioning%ROWTYPE;
    created  integer := 0;
BEGIN
    SELECT * INTO p FROM event_partitioning;
    WHILE p.upper <= upto LOOP
        EXECUTE format('CREATE TABLE %I PARTITION OF events FOR VALUES FROM (%s) TO (%s)',
                       'events_p' || p.upper, p.upper, p.upper + p.size);
        p.upper := p.upper + p.size;
        created := created + 1;
    END LOOP;
    IF created > 0 THEN
        UPDATE event_partitioning SET upper = p.upper;
    END IF;
    RETURN created;
END
$$;

-- The append function keeps its body (0002, and whatever later migrations made of it) under
-- another name; eventplane_append takes the lock, makes sure the batch has its partitions, and
-- calls it (the lock is re-entrant within the transaction).
ALTER FUNCTION eventplane_append(bigint, bigint, text[], text[], bigint[], integer[], text[], bigint[], text[],
    integer[], text[], text[], text[], text[], text[], text[], text[], bigint[], bigint[], bytea[], bytea[], bytea[],
    text[], text[], bigint[], integer[], text[], text) RENAME TO eventplane_append_rows;

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
    IF ev_position[cardinality(ev_position)] >= (SELECT upper FROM event_partitioning) THEN
        PERFORM eventplane_ensure_partitions(ev_position[cardinality(ev_position)]);
    END IF;
    RETURN eventplane_append_rows(lock_key, expected_head, check_streams, check_uids, check_rvs, check_versions,
        idempotency_keys, ev_position, ev_stream, ev_stream_version, ev_type, ev_uid, ev_actor, ev_verb,
        ev_request_id, ev_idempotency_key, ev_trace_id, ev_causation, ev_occurred_at_us, ev_payload, ev_prev_hash,
        ev_hash, obj_streams, obj_uids, obj_rvs, obj_versions, gone_streams, notify_channel);
END
$$;
