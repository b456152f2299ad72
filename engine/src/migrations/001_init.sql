-- Accounts: owner_id > 0 users; 0 the outside world (deposits/withdrawals);
-- -1000-i fee account of market i; -2000-i margin pool of contract i.
CREATE TABLE IF NOT EXISTS balances (
    owner_id   bigint NOT NULL,
    asset      text   NOT NULL,
    available  bigint NOT NULL DEFAULT 0,
    held       bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (owner_id, asset),
    CONSTRAINT balances_non_negative CHECK (owner_id = 0 OR owner_id <= -2000 OR (available >= 0 AND held >= 0))
);
-- Double-entry ledger: every reference's entries sum to zero per asset.
CREATE TABLE IF NOT EXISTS ledger (
    id          bigserial PRIMARY KEY,
    ref         text   NOT NULL,
    owner_id    bigint NOT NULL,
    asset       text   NOT NULL,
    d_available bigint NOT NULL,
    d_held      bigint NOT NULL,
    at          timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS users (
    user_id        bigint PRIMARY KEY,
    api_key_sha256 text NOT NULL UNIQUE,
    created_at     timestamptz NOT NULL DEFAULT now()
);
CREATE SEQUENCE IF NOT EXISTS order_id_seq;
CREATE TABLE IF NOT EXISTS orders (
    order_id        bigint PRIMARY KEY,
    market          text   NOT NULL,
    seq             bigint NOT NULL,
    user_id         bigint NOT NULL,
    client_order_id text   NOT NULL,
    side            smallint NOT NULL,
    kind            smallint NOT NULL,
    price_ticks     bigint NOT NULL,
    qty_lots        bigint NOT NULL,
    quote_budget    bigint NOT NULL,
    filled_qty      bigint NOT NULL DEFAULT 0,
    held_minor      bigint NOT NULL DEFAULT 0,
    status          text   NOT NULL,
    reason          text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (user_id, client_order_id)
);
CREATE INDEX IF NOT EXISTS orders_live ON orders (market, seq) WHERE status IN ('pending', 'open');
CREATE TABLE IF NOT EXISTS fills (
    id             bigserial PRIMARY KEY,
    market         text   NOT NULL,
    maker_order_id bigint NOT NULL,
    taker_order_id bigint NOT NULL,
    maker_user_id  bigint NOT NULL,
    taker_user_id  bigint NOT NULL,
    price_ticks    bigint NOT NULL,
    qty_lots       bigint NOT NULL,
    maker_fee      bigint NOT NULL,
    taker_fee      bigint NOT NULL,
    at             timestamptz NOT NULL DEFAULT now()
);
-- Leadership: one row per partition; epoch increments at every takeover.
CREATE TABLE IF NOT EXISTS partitions (
    partition_key  text PRIMARY KEY,
    epoch          bigint NOT NULL,
    leader_node    text NOT NULL,
    leader_addr    text NOT NULL,
    since          timestamptz NOT NULL DEFAULT now(),
    last_commit_at timestamptz
);
CREATE TABLE IF NOT EXISTS node_heartbeats (
    node_id text PRIMARY KEY,
    at      timestamptz NOT NULL
);
CREATE TABLE IF NOT EXISTS wallet_heartbeats (
    shard   int PRIMARY KEY,
    node_id text NOT NULL,
    at      timestamptz NOT NULL
);
CREATE TABLE IF NOT EXISTS deposits (
    deposit_id   text PRIMARY KEY,
    user_id      bigint NOT NULL,
    asset        text   NOT NULL,
    amount_minor bigint NOT NULL,
    at           timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS withdrawals (
    withdrawal_id bigserial PRIMARY KEY,
    user_id       bigint NOT NULL,
    client_id     text   NOT NULL,
    asset         text   NOT NULL,
    amount_minor  bigint NOT NULL,
    status        text   NOT NULL,
    reason        text,
    at            timestamptz NOT NULL DEFAULT now(),
    UNIQUE (user_id, client_id)
);
CREATE TABLE IF NOT EXISTS otc_reference (
    market      text PRIMARY KEY,
    price_ticks bigint NOT NULL,
    at          timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS otc_quotes (
    quote_id    bigserial PRIMARY KEY,
    user_id     bigint NOT NULL,
    client_id   text   NOT NULL,
    market      text   NOT NULL,
    side        smallint NOT NULL,
    qty_lots    bigint NOT NULL,
    price_ticks bigint NOT NULL,
    expires_at  timestamptz NOT NULL,
    status      text   NOT NULL,
    UNIQUE (user_id, client_id)
);
CREATE TABLE IF NOT EXISTS positions (
    user_id            bigint NOT NULL,
    market             text   NOT NULL,
    size_lots          bigint NOT NULL DEFAULT 0,
    entry_cost_minor   bigint NOT NULL DEFAULT 0,
    margin_minor       bigint NOT NULL DEFAULT 0,
    realized_pnl_minor bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, market)
);
