-- The sandbox payment gateway's tables, in its own schema (SANDBOX_PAY_POSTGRES_SCHEMA).

-- One payment a merchant payment number. ``fingerprint`` is the hash of the creating
-- request: the same number sent again with the same request is the same payment, with any
-- other request it is refused. ``closed`` is never stored: a pending or failed payment is
-- closed from ``expires_at`` on.
CREATE TABLE payments (
    payment_id              text        PRIMARY KEY,
    provider_reference      text        NOT NULL UNIQUE,
    order_id                text        NOT NULL,
    amount_minor            bigint      NOT NULL CHECK (amount_minor > 0),
    currency                text        NOT NULL,
    description             text        NOT NULL,
    expires_at              timestamptz NOT NULL,
    notify_url              text        NOT NULL,
    fingerprint             text        NOT NULL,
    status                  text        NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed')),
    provider_transaction_id text,
    paid_at                 timestamptz,
    refunded_minor          bigint      NOT NULL DEFAULT 0
                                        CHECK (refunded_minor >= 0 AND refunded_minor <= amount_minor),
    created_at              timestamptz NOT NULL,
    CHECK ((status = 'succeeded') = (paid_at IS NOT NULL AND provider_transaction_id IS NOT NULL))
);

CREATE TABLE refunds (
    refund_id          text        PRIMARY KEY,
    provider_refund_id text        NOT NULL UNIQUE,
    payment_id         text        NOT NULL REFERENCES payments (payment_id),
    amount_minor       bigint      NOT NULL CHECK (amount_minor > 0),
    reason             text        NOT NULL,
    fingerprint        text        NOT NULL,
    created_at         timestamptz NOT NULL
);
CREATE INDEX refunds_payment_id ON refunds (payment_id);

-- The notification outbox: one row a delivery. Copies of one notification (the
-- ``duplicates`` knob) share its notification_id and body; rows of one payment are
-- delivered in (due_at, delivery_id) order. ``attempts`` is counted when a delivery is
-- claimed, so an attempt cut short by a crash still counts.
CREATE TABLE notification_deliveries (
    delivery_id     bigserial   PRIMARY KEY,
    notification_id uuid        NOT NULL,
    payment_id      text        NOT NULL REFERENCES payments (payment_id),
    notify_url      text        NOT NULL,
    body            text        NOT NULL,
    due_at          timestamptz NOT NULL,
    attempts        integer     NOT NULL DEFAULT 0,
    last_status     integer,
    last_error      text,
    delivered_at    timestamptz,
    gave_up_at      timestamptz
);
CREATE INDEX notification_deliveries_due ON notification_deliveries (due_at, delivery_id)
    WHERE delivered_at IS NULL AND gave_up_at IS NULL;
CREATE INDEX notification_deliveries_payment ON notification_deliveries (payment_id);
