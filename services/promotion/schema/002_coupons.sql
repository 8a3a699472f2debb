-- Coupon templates and coupons, written in the same transaction as their events. Redis
-- decides claims; the within_quota CHECK is the last line of defence: whatever Redis said,
-- the store refuses to record more coupons than the quota.
CREATE TABLE coupon_templates (
    merchant_id       text        NOT NULL,
    template_id       text        NOT NULL,
    created           bytea       NOT NULL,  -- the CouponTemplateCreated event's payload
    quota             integer     NOT NULL CHECK (quota > 0),
    per_user_limit    integer     NOT NULL CHECK (per_user_limit > 0),
    claim_starts_at   timestamptz NOT NULL,
    claim_ends_at     timestamptz NOT NULL,
    stopped           boolean     NOT NULL DEFAULT false,
    claimed           integer     NOT NULL DEFAULT 0,
    epoch             bigint      NOT NULL DEFAULT 0,
    version           bigint      NOT NULL,
    PRIMARY KEY (merchant_id, template_id),
    CONSTRAINT within_quota CHECK (claimed <= quota)
);

CREATE TABLE coupons (
    merchant_id  text        NOT NULL,
    coupon_id    text        NOT NULL,
    template_id  text        NOT NULL,
    owner_id     text        NOT NULL,
    state        text        NOT NULL CHECK (state IN ('claimed', 'locked', 'redeemed')),
    order_id     text,
    locked_until timestamptz,
    claimed_at   timestamptz NOT NULL DEFAULT now(),
    version      bigint      NOT NULL,
    PRIMARY KEY (merchant_id, coupon_id)
);
CREATE INDEX coupons_by_order ON coupons (merchant_id, order_id) WHERE order_id IS NOT NULL;
CREATE INDEX coupons_by_owner ON coupons (merchant_id, owner_id);
CREATE INDEX coupons_by_template ON coupons (merchant_id, template_id, owner_id);
