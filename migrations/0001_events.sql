-- The event log and its inline current-state projection (DESIGN.md, "The event").
-- position is assigned by the appender under an advisory lock, never by a sequence:
-- dense and commit-ordered (invariant 2).

CREATE TABLE events (
    position         bigint      PRIMARY KEY,
    stream           text        COLLATE "C" NOT NULL,
    stream_version   integer     NOT NULL,
    type             text        NOT NULL,
    uid              text        NOT NULL,
    actor            text        NOT NULL,
    verb             text        NOT NULL,
    request_id       text        NOT NULL,
    idempotency_key  text,
    trace_id         text        NOT NULL,
    causation        bigint,
    occurred_at      timestamptz NOT NULL,
    payload          bytea       NOT NULL,
    prev_hash        bytea       NOT NULL,
    hash             bytea       NOT NULL,
    CONSTRAINT events_position_positive CHECK (position > 0)
);

-- History of one stream, and "the object at position P": within a stream,
-- stream_version and position grow together, so one index serves both orders.
CREATE UNIQUE INDEX events_stream_version ON events (stream, stream_version);
CREATE INDEX events_idempotency_key ON events (idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX events_occurred_at ON events USING brin (occurred_at);

-- Current state: one row per live object, updated in the appending transaction.
-- The object itself is the payload of the event at resource_version; keeping
-- only the pointer here keeps every append small. Streams are named
-- group/resource/namespace/name and compared bytewise (COLLATE "C"), so a list
-- of one resource, or of one namespace of it, is a range scan of the primary
-- key, in the order etcd would list the same keys.
CREATE TABLE objects (
    stream            text    COLLATE "C" PRIMARY KEY,
    uid               text    NOT NULL,
    resource_version  bigint  NOT NULL,
    stream_version    integer NOT NULL
);
