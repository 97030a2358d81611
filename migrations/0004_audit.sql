-- Audit records (issue 4, part 4): one row per API request and stage, as Kubernetes'
-- audit.k8s.io/v1 Event. Kept apart from the event log: not hashed, not projected,
-- written in batches by eventplane/store/audit.py off the request path.
-- Secrets' data never lands here (eventplane/objects/auditpolicy.py caps them at Metadata).

CREATE TABLE audit_events (
    id               bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    audit_id         uuid        NOT NULL,
    stage            text        NOT NULL,   -- ResponseStarted, ResponseComplete or Panic
    level            text        NOT NULL,   -- Metadata, Request or RequestResponse
    time_received    timestamptz NOT NULL,
    time_completed   timestamptz NOT NULL,
    user_name        text        NOT NULL,
    user_groups      text[]      NOT NULL DEFAULT '{}',
    verb             text        NOT NULL,   -- Kubernetes' verbs; lower-case method for other paths
    api_group        text        NOT NULL DEFAULT '',
    api_version      text        NOT NULL DEFAULT '',
    resource         text        NOT NULL DEFAULT '',
    subresource      text        NOT NULL DEFAULT '',
    namespace        text        NOT NULL DEFAULT '',
    name             text        NOT NULL DEFAULT '',
    request_uri      text        NOT NULL,
    source_ip        text,
    user_agent       text,
    response_code    integer,
    outcome          text        NOT NULL,   -- allowed, denied (401/403) or error
    request_object   jsonb,                  -- level Request and above
    response_object  jsonb,                  -- level RequestResponse
    annotations      jsonb,
    transport        text        NOT NULL    -- rest or nats
);

-- The queries of `epctl audit` / GET /apis/audit.eventplane.io/v1/events, newest first.
CREATE INDEX audit_events_user_time ON audit_events (user_name, time_received);
CREATE INDEX audit_events_verb_time ON audit_events (verb, time_received);
CREATE INDEX audit_events_resource_time ON audit_events (resource, namespace, time_received);
CREATE INDEX audit_events_refused_time ON audit_events (time_received) WHERE outcome <> 'allowed';
CREATE INDEX audit_events_time ON audit_events USING brin (time_received);
