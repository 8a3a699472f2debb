-- The kernel's tables, present in every service's database.

-- The event store. (stream_id, version) gives optimistic concurrency; position is the
-- global order, allocated from event_position under its row lock so that it is gap-free
-- and positions become visible in commit order (the relay relies on both).
CREATE TABLE events (
    position        bigint PRIMARY KEY,
    stream_id       text        NOT NULL,
    version         bigint      NOT NULL CHECK (version > 0),
    event_id        uuid        NOT NULL UNIQUE,
    event_type      text        NOT NULL,
    aggregate_type  text        NOT NULL,
    merchant_id     text        NOT NULL,
    occurred_at     timestamptz NOT NULL,
    correlation_id  text        NOT NULL,
    causation_id    text        NOT NULL,
    trace_context   jsonb       NOT NULL DEFAULT '{}'::jsonb,
    payload         bytea       NOT NULL,
    UNIQUE (stream_id, version)
);

CREATE TABLE event_position (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    last      bigint  NOT NULL
);
INSERT INTO event_position (singleton, last) VALUES (true, 0);

-- How far each outbox relay has published.
CREATE TABLE relay_positions (
    relay      text        PRIMARY KEY,
    position   bigint      NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Events a consumer has applied, written in the same transaction as its effects.
CREATE TABLE inbox (
    consumer     text        NOT NULL,
    event_id     uuid        NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, event_id)
);
CREATE INDEX inbox_processed_at ON inbox (processed_at);

-- Durable timers: one row a (kind, key); fired at most once, by whichever replica locks it.
CREATE TABLE timers (
    kind        text        NOT NULL,
    key         text        NOT NULL,
    due_at      timestamptz NOT NULL,
    merchant_id text        NOT NULL,
    payload     jsonb       NOT NULL DEFAULT '{}'::jsonb,
    attempts    integer     NOT NULL DEFAULT 0,
    last_error  text,
    fired_at    timestamptz,
    PRIMARY KEY (kind, key)
);
CREATE INDEX timers_due ON timers (kind, due_at) WHERE fired_at IS NULL;
