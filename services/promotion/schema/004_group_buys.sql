-- Group-buy offers and groups (streams group-offer:<merchant>:<id>, group:<merchant>:<id>),
-- written with their events; every writer of a group locks its row first.
CREATE TABLE group_offers (
    merchant_id       text        NOT NULL,
    offer_id          text        NOT NULL,
    sku_id            text        NOT NULL,
    group_price_minor bigint      NOT NULL,
    currency          text        NOT NULL,
    required_members  integer     NOT NULL,
    duration_seconds  integer     NOT NULL,
    starts_at         timestamptz NOT NULL,
    ends_at           timestamptz NOT NULL,
    PRIMARY KEY (merchant_id, offer_id)
);

CREATE TABLE group_buys (
    merchant_id      text        NOT NULL,
    group_id         text        NOT NULL,
    offer_id         text        NOT NULL,
    sku_id           text        NOT NULL,
    leader_id        text        NOT NULL,
    required_members integer     NOT NULL,
    deadline         timestamptz NOT NULL,
    state            text        NOT NULL CHECK (state IN ('open', 'completed', 'failed')),
    version          bigint      NOT NULL,
    PRIMARY KEY (merchant_id, group_id)
);

CREATE TABLE group_members (
    merchant_id text    NOT NULL,
    group_id    text    NOT NULL,
    position    integer NOT NULL,
    member_id   text    NOT NULL,
    order_id    text,
    paid        boolean NOT NULL DEFAULT false,
    left_group  boolean NOT NULL DEFAULT false,
    PRIMARY KEY (merchant_id, group_id, position)
);
