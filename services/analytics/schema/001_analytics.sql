-- The analytics service's derived state. Every row here is folded from events other services
-- published (never read from their tables), written in the transaction of the events' inbox
-- rows, so a redelivered event changes nothing and a restarted worker is exact.

-- A live room: what the room stream said, and its counters (domain RoomCounters as JSON).
CREATE TABLE rooms (
    merchant_id   text        NOT NULL,
    room_id       text        NOT NULL,
    host_id       text        NOT NULL DEFAULT '',
    title         text        NOT NULL DEFAULT '',
    scheduled_at  timestamptz,
    started_at    timestamptz,
    ended_at      timestamptz,
    counters      jsonb       NOT NULL DEFAULT '{}'::jsonb,
    events        bigint      NOT NULL DEFAULT 0,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (merchant_id, room_id)
);
CREATE INDEX rooms_host ON rooms (merchant_id, host_id, started_at);

-- Concurrency as +1/-1 per second of joins and leaves: the concurrency at t is the sum of
-- the deltas up to t, whatever order the visits' events were processed in.
CREATE TABLE presence_deltas (
    merchant_id text        NOT NULL,
    room_id     text        NOT NULL,
    at          timestamptz NOT NULL,
    delta       integer     NOT NULL,
    PRIMARY KEY (merchant_id, room_id, at)
);

CREATE TABLE visits (
    merchant_id     text        NOT NULL,
    room_id         text        NOT NULL,
    visit_id        text        NOT NULL,
    viewer_id       text        NOT NULL,
    channel         text        NOT NULL DEFAULT '',
    entry           text        NOT NULL DEFAULT '',
    share_code      text        NOT NULL DEFAULT '',
    joined_at       timestamptz,
    left_at         timestamptz,
    watched_seconds bigint      NOT NULL DEFAULT 0,
    PRIMARY KEY (merchant_id, room_id, visit_id)
);
CREATE INDEX visits_viewer ON visits (merchant_id, viewer_id);

-- Each viewer once a room (unique viewers; streams watched).
CREATE TABLE room_viewers (
    merchant_id text NOT NULL,
    room_id     text NOT NULL,
    viewer_id   text NOT NULL,
    PRIMARY KEY (merchant_id, room_id, viewer_id)
);

CREATE TABLE pins (
    merchant_id text        NOT NULL,
    room_id     text        NOT NULL,
    sku_id      text        NOT NULL,
    pinned_at   timestamptz NOT NULL,
    unpinned_at timestamptz,
    PRIMARY KEY (merchant_id, room_id, pinned_at, sku_id)
);

-- Timeline markers: pin, flash_sale, coupon_drop, draw; one per (kind, ref).
CREATE TABLE markers (
    merchant_id text        NOT NULL,
    room_id     text        NOT NULL,
    kind        text        NOT NULL,
    ref         text        NOT NULL,
    at          timestamptz NOT NULL,
    label       text        NOT NULL,
    PRIMARY KEY (merchant_id, room_id, kind, ref)
);

CREATE TABLE subscribers (
    merchant_id text NOT NULL,
    room_id     text NOT NULL,
    viewer_id   text NOT NULL,
    PRIMARY KEY (merchant_id, room_id, viewer_id)
);

CREATE TABLE orders (
    merchant_id    text        NOT NULL,
    order_id       text        NOT NULL,
    room_id        text        NOT NULL,
    buyer_id       text        NOT NULL,
    channel        text        NOT NULL,
    share_code     text        NOT NULL,
    lines          jsonb       NOT NULL,
    total_minor    bigint      NOT NULL,
    placed_at      timestamptz NOT NULL,
    paid_at        timestamptz,
    paid_minor     bigint      NOT NULL DEFAULT 0,
    cancelled_at   timestamptz,
    refunded_minor bigint      NOT NULL DEFAULT 0,
    refunds        integer     NOT NULL DEFAULT 0,
    PRIMARY KEY (merchant_id, order_id)
);
CREATE INDEX orders_room ON orders (merchant_id, room_id);
CREATE INDEX orders_buyer ON orders (merchant_id, buyer_id);

-- Referral's attributions: who brought a viewer, who brought an order, who invited whom.
CREATE TABLE view_attributions (
    merchant_id text        NOT NULL,
    room_id     text        NOT NULL,
    viewer_id   text        NOT NULL,
    sharer_id   text        NOT NULL,
    joined_at   timestamptz NOT NULL,
    PRIMARY KEY (merchant_id, room_id, viewer_id, sharer_id)
);
CREATE TABLE order_attributions (
    merchant_id text NOT NULL,
    order_id    text NOT NULL,
    room_id     text NOT NULL,
    sharer_id   text NOT NULL,
    PRIMARY KEY (merchant_id, order_id)
);
CREATE TABLE inviters (
    merchant_id text NOT NULL,
    invitee_id  text NOT NULL,
    inviter_id  text NOT NULL,
    PRIMARY KEY (merchant_id, invitee_id)
);

-- Categories as referral's programme maps them (orders carry none); the latest version wins.
CREATE TABLE sku_categories (
    merchant_id text   NOT NULL,
    sku_id      text   NOT NULL,
    category    text   NOT NULL,
    version     bigint NOT NULL,
    PRIMARY KEY (merchant_id, sku_id)
);

-- Stock: the SKU's unallocated units (latest SKU-stream version wins) and each flash sale's.
CREATE TABLE skus (
    merchant_id text   NOT NULL,
    sku_id      text   NOT NULL,
    on_hand     bigint NOT NULL,
    version     bigint NOT NULL,
    PRIMARY KEY (merchant_id, sku_id)
);
CREATE TABLE sales (
    merchant_id text    NOT NULL,
    sale_id     text    NOT NULL,
    sku_id      text    NOT NULL DEFAULT '',
    room_id     text    NOT NULL DEFAULT '',
    allocated   bigint  NOT NULL DEFAULT 0,
    reserved    bigint  NOT NULL DEFAULT 0,
    released    bigint  NOT NULL DEFAULT 0,
    ended       boolean NOT NULL DEFAULT false,
    PRIMARY KEY (merchant_id, sale_id)
);

-- Events the processor could not apply (a bug or a contract breach), kept for inspection.
CREATE TABLE rejected_events (
    event_id    uuid        PRIMARY KEY,
    event_type  text        NOT NULL,
    reason      text        NOT NULL,
    envelope    bytea       NOT NULL,
    rejected_at timestamptz NOT NULL DEFAULT now()
);
