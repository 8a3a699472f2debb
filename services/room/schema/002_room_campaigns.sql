-- Flash-sale campaigns that sell in a room (from promotion's CampaignScheduled), with the
-- units reserved so far (from inventory's holds on the sale of the same id): what the room
-- tells its viewers as "stock left".
CREATE TABLE room_campaigns (
    merchant_id text   NOT NULL,
    campaign_id text   NOT NULL,
    room_id     text   NOT NULL,
    sku_id      text   NOT NULL,
    quantity    bigint NOT NULL,
    reserved    bigint NOT NULL DEFAULT 0,
    sold_out    boolean NOT NULL DEFAULT false,
    PRIMARY KEY (merchant_id, campaign_id)
);
