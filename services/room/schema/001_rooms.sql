-- The room service's tables besides the kernel's event store.

CREATE EXTENSION IF NOT EXISTS btree_gist;

-- One row per room: the room's state as of its last event (written in the same transaction
-- as the events, so it is exactly their sum), and the host's booked slot. The exclusion
-- constraint is the race-safe double-booking check: two overlapping slots of one host can
-- never both be scheduled or live, whichever transaction commits first.
CREATE TABLE rooms (
    merchant_id text        NOT NULL,
    room_id     text        NOT NULL,
    host_id     text        NOT NULL,
    state       text        NOT NULL,
    slot        tstzrange   NOT NULL,
    version     bigint      NOT NULL,
    snapshot    jsonb       NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (merchant_id, room_id),
    CONSTRAINT host_not_double_booked EXCLUDE USING gist (
        merchant_id WITH =, host_id WITH =, slot WITH &&
    ) WHERE (state IN ('scheduled', 'live'))
);
CREATE INDEX rooms_live ON rooms (state) WHERE state = 'live';

-- Comments (the CommentPosted events' projection): draws among commenters read it.
CREATE TABLE comments (
    merchant_id text        NOT NULL,
    room_id     text        NOT NULL,
    comment_id  text        NOT NULL,
    viewer_id   text        NOT NULL,
    body        text        NOT NULL,
    folded      text        NOT NULL,
    posted_at   timestamptz NOT NULL,
    deleted     boolean     NOT NULL DEFAULT false,
    PRIMARY KEY (merchant_id, room_id, comment_id)
);
CREATE INDEX comments_by_room ON comments (merchant_id, room_id, posted_at);

-- Lucky draws with everything needed to audit them.
CREATE TABLE draws (
    merchant_id       text        NOT NULL,
    room_id           text        NOT NULL,
    draw_id           text        NOT NULL,
    prize             text        NOT NULL,
    prizes            integer     NOT NULL,
    pool              text        NOT NULL,
    keyword           text        NOT NULL,
    seed              text        NOT NULL,
    candidates_sha256 text        NOT NULL,
    candidates        jsonb       NOT NULL,
    winners           jsonb       NOT NULL,
    held_at           timestamptz NOT NULL,
    PRIMARY KEY (merchant_id, room_id, draw_id)
);

-- Start-stream reminders: who wants one, for a room or for every room of a host.
CREATE TABLE reminder_subscriptions (
    merchant_id text        NOT NULL,
    target      text        NOT NULL CHECK (target IN ('room', 'host')),
    target_id   text        NOT NULL,
    viewer_id   text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (merchant_id, target, target_id, viewer_id)
);

-- One row per reminder owed: the primary key is the "exactly once per subscriber, room
-- and kind" guarantee; delivery marks it sent in the transaction that appends ReminderSent.
CREATE TABLE reminder_deliveries (
    merchant_id     text        NOT NULL,
    room_id         text        NOT NULL,
    viewer_id       text        NOT NULL,
    kind            text        NOT NULL CHECK (kind IN ('lead', 'live')),
    sent_at         timestamptz,
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error      text,
    PRIMARY KEY (merchant_id, room_id, viewer_id, kind)
);
CREATE INDEX reminder_deliveries_due ON reminder_deliveries (next_attempt_at)
    WHERE sent_at IS NULL;
