-- The orders read model, kept in step with the order streams in the same transaction
-- as each append (and rebuildable from the events).
CREATE TABLE orders_view (
    merchant_id text NOT NULL,
    order_id text NOT NULL,
    buyer_id text NOT NULL,
    room_id text NOT NULL,
    status text NOT NULL,
    currency text NOT NULL,
    total_minor bigint NOT NULL,
    refunded_minor bigint NOT NULL DEFAULT 0,
    group_id text NOT NULL DEFAULT '',
    share_code text NOT NULL DEFAULT '',
    placed_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    version integer NOT NULL,
    PRIMARY KEY (order_id)
);
CREATE INDEX orders_view_buyer ON orders_view (merchant_id, buyer_id, placed_at DESC);
CREATE INDEX orders_view_merchant ON orders_view (merchant_id, placed_at DESC);
CREATE INDEX orders_view_room ON orders_view (merchant_id, room_id, placed_at DESC);

-- One checkout per idempotency key: the claim, its lease while the checkout runs, and its
-- outcome (placed, or the refusal it got).
CREATE TABLE idempotency_keys (
    merchant_id text NOT NULL,
    buyer_id text NOT NULL,
    key text NOT NULL,
    fingerprint text NOT NULL,
    order_id text NOT NULL,
    state text NOT NULL DEFAULT 'running',
    lease_until timestamptz NOT NULL,
    failure_status integer,
    failure_error text,
    failure_detail text,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (merchant_id, buyer_id, key)
);
