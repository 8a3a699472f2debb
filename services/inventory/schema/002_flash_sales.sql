-- Flash sales and their holds, written in the same transaction as the events they follow
-- from (so they are exactly the events' sum at every commit) and read by the hot path,
-- the sweeper, the rebuild of Redis and the reconciliation.

CREATE TABLE flash_sales (
    merchant_id      text        NOT NULL,
    sale_id          text        NOT NULL,
    sku_id           text        NOT NULL,
    allocated        bigint      NOT NULL,
    held             bigint      NOT NULL DEFAULT 0,
    sold             bigint      NOT NULL DEFAULT 0,
    returned         bigint      NOT NULL DEFAULT 0,
    starts_at        timestamptz NOT NULL,
    ends_at          timestamptz NOT NULL,
    per_user_limit   integer     NOT NULL,
    hold_ttl_seconds integer     NOT NULL,
    buckets          integer     NOT NULL,
    ended            boolean     NOT NULL DEFAULT false,
    epoch            bigint      NOT NULL DEFAULT 1,
    sale_version     bigint      NOT NULL,
    soldout_seq      bigint      NOT NULL DEFAULT 0,
    PRIMARY KEY (merchant_id, sale_id),
    -- The last line of defence against overselling: whatever Redis said, the store refuses
    -- to record more units out of a sale than were allocated to it.
    CONSTRAINT no_oversell CHECK (
        held >= 0 AND sold >= 0 AND returned >= 0 AND held + sold + returned <= allocated
    )
);
CREATE INDEX flash_sales_live ON flash_sales (ended, ends_at);

CREATE TABLE flash_holds (
    merchant_id text        NOT NULL,
    hold_id     text        NOT NULL,
    sale_id     text        NOT NULL,
    user_id     text        NOT NULL,
    quantity    integer     NOT NULL CHECK (quantity > 0),
    -- held | confirmed | released | returned (released after the sale closed: to the SKU)
    state       text        NOT NULL,
    expires_at  timestamptz NOT NULL,
    bucket      integer     NOT NULL,
    home_bucket integer     NOT NULL,
    epoch       bigint      NOT NULL,
    PRIMARY KEY (merchant_id, hold_id)
);
CREATE INDEX flash_holds_sale ON flash_holds (merchant_id, sale_id, state);
