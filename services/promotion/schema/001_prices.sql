-- The price list and the price promotions, written in the same transaction as the events
-- they follow from (streams price:<merchant>:<sku> and price-promotion:<merchant>:<id>).
CREATE TABLE list_prices (
    merchant_id  text   NOT NULL,
    sku_id       text   NOT NULL,
    amount_minor bigint NOT NULL CHECK (amount_minor > 0),
    currency     text   NOT NULL,
    version      bigint NOT NULL,
    PRIMARY KEY (merchant_id, sku_id)
);

CREATE TABLE price_promotions (
    merchant_id  text    NOT NULL,
    promotion_id text    NOT NULL,
    kind         text    NOT NULL CHECK (kind IN ('room_special', 'store_discount')),
    sku_id       text,
    room_id      text    NOT NULL DEFAULT '',
    amount_minor bigint,
    currency     text,
    percent_bps  integer,
    sku_ids      text[]  NOT NULL DEFAULT '{}',
    starts_at    timestamptz,
    ends_at      timestamptz,
    removed      boolean NOT NULL DEFAULT false,
    version      bigint  NOT NULL,
    PRIMARY KEY (merchant_id, promotion_id)
);
CREATE INDEX price_promotions_live ON price_promotions (merchant_id, kind) WHERE NOT removed;
