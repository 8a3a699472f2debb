-- Flash-sale campaigns (stream campaign:<merchant>:<campaign_id>), written with their events.
CREATE TABLE campaigns (
    merchant_id       text        NOT NULL,
    campaign_id       text        NOT NULL,
    sku_id            text        NOT NULL,
    room_id           text        NOT NULL,
    flash_price_minor bigint,
    currency          text        NOT NULL,
    quantity          bigint      NOT NULL,
    starts_at         timestamptz NOT NULL,
    ends_at           timestamptz NOT NULL,
    per_user_limit    integer     NOT NULL,
    stock_opens_at    timestamptz NOT NULL,
    hold_ttl_seconds  integer     NOT NULL DEFAULT 0,
    started_at        timestamptz,
    ended             boolean     NOT NULL DEFAULT false,
    version           bigint      NOT NULL,
    PRIMARY KEY (merchant_id, campaign_id)
);
CREATE INDEX campaigns_by_room ON campaigns (merchant_id, room_id, sku_id) WHERE NOT ended;
CREATE INDEX campaigns_by_sku ON campaigns (merchant_id, sku_id) WHERE NOT ended;
