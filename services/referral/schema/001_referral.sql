-- The referral service's state, each table written in the same transaction as the events
-- it follows from (or as the consumer's inbox row), so that a redelivered event, a retried
-- request or a crash never leaves them apart.

CREATE TABLE share_codes (
    merchant_id text NOT NULL,
    code        text NOT NULL,
    sharer_id   text NOT NULL,
    target_kind text NOT NULL,
    target_id   text NOT NULL,
    created_at  timestamptz NOT NULL,
    PRIMARY KEY (merchant_id, code)
);
CREATE INDEX share_codes_sharer ON share_codes (merchant_id, sharer_id, created_at DESC);
CREATE INDEX share_codes_target ON share_codes (merchant_id, sharer_id, target_kind, target_id);

-- Rooms as the room service announced them (title and start time for invitation cards).
CREATE TABLE rooms (
    merchant_id text NOT NULL,
    room_id     text NOT NULL,
    title       text NOT NULL,
    host_id     text NOT NULL,
    starts_at   timestamptz NOT NULL,
    PRIMARY KEY (merchant_id, room_id)
);

-- Every device a user was seen on (ViewerJoined.device_id), for the shared-device check.
CREATE TABLE devices (
    merchant_id text NOT NULL,
    user_id     text NOT NULL,
    device_id   text NOT NULL,
    PRIMARY KEY (merchant_id, user_id, device_id)
);
CREATE INDEX devices_by_device ON devices (merchant_id, device_id);

-- Views that came through a sharer's code: the touches attribution chooses from.
CREATE TABLE touches (
    merchant_id text NOT NULL,
    viewer_id   text NOT NULL,
    sharer_id   text NOT NULL,
    code        text NOT NULL,
    room_id     text NOT NULL,
    device_id   text NOT NULL DEFAULT '',
    at          timestamptz NOT NULL
);
CREATE INDEX touches_viewer ON touches (merchant_id, viewer_id, at DESC);

-- A user's inviter: the first sharer they came through. Never replaced.
CREATE TABLE invitations (
    merchant_id text NOT NULL,
    invitee_id  text NOT NULL,
    inviter_id  text NOT NULL,
    code        text NOT NULL,
    bound_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (merchant_id, invitee_id),
    CHECK (invitee_id <> inviter_id)
);
CREATE INDEX invitations_inviter ON invitations (merchant_id, inviter_id);

CREATE TABLE programmes (
    merchant_id text PRIMARY KEY,
    body        jsonb NOT NULL,
    version     bigint NOT NULL
);

-- One row an attributed order: the order's referral stream as state (its events are the
-- record). An order is attributed once: the primary key and the stream's version 1 both
-- refuse a second attribution.
CREATE TABLE referred_orders (
    merchant_id    text NOT NULL,
    order_id       text NOT NULL,
    buyer_id       text NOT NULL,
    sharer_id      text NOT NULL,
    code           text NOT NULL,
    room_id        text NOT NULL,
    source         text NOT NULL,
    total_minor    bigint NOT NULL,
    currency       text NOT NULL,
    level_two_id   text NOT NULL,
    flagged        boolean NOT NULL,
    flag_reason    text NOT NULL,
    lines          jsonb NOT NULL,
    stage          text NOT NULL,
    accruals       jsonb NOT NULL DEFAULT '[]'::jsonb,
    refunded_minor bigint NOT NULL DEFAULT 0,
    review         text NOT NULL DEFAULT '',
    release_due    boolean NOT NULL DEFAULT false,
    paid_at        timestamptz,
    version        bigint NOT NULL,
    placed_at      timestamptz NOT NULL,
    PRIMARY KEY (merchant_id, order_id)
);
CREATE INDEX referred_orders_sharer ON referred_orders (merchant_id, sharer_id, placed_at DESC);
CREATE INDEX referred_orders_review ON referred_orders (merchant_id, review) WHERE review = 'waiting';

-- Commission accrued per beneficiary per UTC day, locked while an accrual checks the daily cap.
CREATE TABLE commission_days (
    merchant_id   text NOT NULL,
    user_id       text NOT NULL,
    day           date NOT NULL,
    accrued_minor bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (merchant_id, user_id, day)
);

CREATE TABLE first_purchases (
    merchant_id text NOT NULL,
    buyer_id    text NOT NULL,
    order_id    text NOT NULL,
    PRIMARY KEY (merchant_id, buyer_id)
);

-- The budget is decided here: one conditional UPDATE of the row grants or refuses, and the
-- CHECK refuses an overspend whatever any code says.
CREATE TABLE red_packet_campaigns (
    merchant_id   text NOT NULL,
    campaign_id   text NOT NULL,
    amount_minor  bigint NOT NULL CHECK (amount_minor > 0),
    budget_minor  bigint NOT NULL,
    granted_minor bigint NOT NULL DEFAULT 0,
    granted_count integer NOT NULL DEFAULT 0,
    currency      text NOT NULL,
    starts_at     timestamptz NOT NULL,
    ends_at       timestamptz NOT NULL,
    PRIMARY KEY (merchant_id, campaign_id),
    CONSTRAINT within_budget CHECK (granted_minor >= 0 AND granted_minor <= budget_minor)
);

CREATE TABLE red_packet_grants (
    merchant_id  text NOT NULL,
    order_id     text NOT NULL,
    campaign_id  text NOT NULL,
    inviter_id   text NOT NULL,
    invitee_id   text NOT NULL,
    amount_minor bigint NOT NULL,
    granted_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (merchant_id, order_id)
);

CREATE TABLE withdrawals (
    merchant_id        text NOT NULL,
    withdrawal_id      text NOT NULL,
    user_id            text NOT NULL,
    amount_minor       bigint NOT NULL CHECK (amount_minor > 0),
    currency           text NOT NULL,
    state              text NOT NULL,
    reviewer_id        text NOT NULL DEFAULT '',
    provider_payout_id text NOT NULL DEFAULT '',
    version            bigint NOT NULL,
    requested_at       timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (merchant_id, withdrawal_id)
);
CREATE INDEX withdrawals_user ON withdrawals (merchant_id, user_id, requested_at DESC);
CREATE INDEX withdrawals_state ON withdrawals (merchant_id, state, requested_at);

-- One row a user, locked while a withdrawal checks the available balance.
CREATE TABLE wallets (
    merchant_id text NOT NULL,
    user_id     text NOT NULL,
    PRIMARY KEY (merchant_id, user_id)
);

-- The ledger: double entry, append only. A posting's rows share a transaction id; the
-- deferred constraint trigger refuses to commit a posting whose entries do not sum to 0,
-- and the other trigger refuses every UPDATE and DELETE.
CREATE TABLE ledger_entries (
    entry_id       bigserial PRIMARY KEY,
    merchant_id    text NOT NULL,
    transaction_id text NOT NULL,
    kind           text NOT NULL,
    currency       text NOT NULL,
    owner_kind     text NOT NULL CHECK (owner_kind IN ('user', 'merchant')),
    owner_id       text NOT NULL,
    bucket         text NOT NULL
        CHECK (bucket IN ('pending', 'available', 'withdrawing', 'withdrawn', 'payable')),
    amount_minor   bigint NOT NULL CHECK (amount_minor <> 0),
    reference      text NOT NULL DEFAULT '',
    created_at     timestamptz NOT NULL DEFAULT now(),
    UNIQUE (merchant_id, transaction_id, owner_kind, owner_id, bucket)
);
CREATE INDEX ledger_entries_owner ON ledger_entries (merchant_id, owner_kind, owner_id, entry_id);
CREATE INDEX ledger_entries_transaction ON ledger_entries (merchant_id, transaction_id);

CREATE FUNCTION ledger_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the ledger is append-only' USING ERRCODE = 'restrict_violation';
END $$;

CREATE TRIGGER ledger_append_only BEFORE UPDATE OR DELETE ON ledger_entries
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();

CREATE FUNCTION ledger_check_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    total numeric;
BEGIN
    SELECT sum(amount_minor) INTO total FROM ledger_entries
        WHERE merchant_id = NEW.merchant_id AND transaction_id = NEW.transaction_id;
    IF total <> 0 THEN
        RAISE EXCEPTION 'ledger posting % does not balance (%)', NEW.transaction_id, total
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END $$;

CREATE CONSTRAINT TRIGGER ledger_balanced AFTER INSERT ON ledger_entries
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION ledger_check_balanced();

-- Balances are derived from the ledger, never stored.
CREATE VIEW account_balances AS
SELECT merchant_id, owner_kind, owner_id, bucket, currency, sum(amount_minor) AS balance_minor
FROM ledger_entries
GROUP BY merchant_id, owner_kind, owner_id, bucket, currency;

-- Rendered invitation cards, keyed by what they show (a change of name or room re-renders).
CREATE TABLE invitation_cards (
    merchant_id text NOT NULL,
    room_id     text NOT NULL,
    user_id     text NOT NULL,
    fingerprint text NOT NULL,
    png         bytea NOT NULL,
    rendered_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (merchant_id, room_id, user_id)
);

-- The built-in sandbox payout provider's record: one payout a withdrawal, whatever retries.
CREATE TABLE sandbox_payouts (
    merchant_id   text NOT NULL,
    withdrawal_id text NOT NULL,
    payout_id     text NOT NULL,
    user_id       text NOT NULL,
    amount_minor  bigint NOT NULL,
    currency      text NOT NULL,
    paid_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (merchant_id, withdrawal_id)
);
