-- History and causality (issue 4): an object's history by uid (every incarnation
-- of a name is already served by events_stream_version), and "which events did
-- position P cause" for the why-chain in both directions.
CREATE INDEX events_uid_position ON events (uid, position);
CREATE INDEX events_causation ON events (causation) WHERE causation IS NOT NULL;
-- "The position at time T" (asOf=TIMESTAMP): occurred_at grows with position, and the BRIN
-- index cannot answer "the newest row not after T" without scanning; this one reads one entry.
CREATE INDEX events_occurred_at_position ON events (occurred_at, position);
