-- Read model: stock per SKU, projected from inventory.events by the worker's consumer.
CREATE TABLE stock_levels (
    merchant_id text        NOT NULL,
    sku_id      text        NOT NULL,
    on_hand     bigint      NOT NULL,
    version     bigint      NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (merchant_id, sku_id)
);
