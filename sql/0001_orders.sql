-- The orders table: the Python tool's columns with the meanings its README promises
-- (pay_amount in yuan, times with their zone), plus account_id. One row per order_id.
CREATE TABLE IF NOT EXISTS orders (
    order_id        text PRIMARY KEY,
    account_id      text,
    order_status    integer,
    sku_id          text,
    sku_name        text,
    pay_amount      numeric(12, 2),
    count           integer,
    pay_time        timestamptz,
    create_time     timestamptz,
    update_time     timestamptz,
    source_order_id text,
    phone           text,
    raw_data        jsonb NOT NULL,
    sync_time       timestamptz NOT NULL DEFAULT now()
);

COMMENT ON COLUMN orders.pay_amount IS 'yuan (the API gives fen; converted exactly)';
COMMENT ON COLUMN orders.phone IS 'decrypted contacts[0].phone_encrypt; NULL when absent or undecryptable';
COMMENT ON COLUMN orders.raw_data IS 'the order exactly as Douyin sent it';

-- For the seed README's queries: latest orders, look-up by phone, reports by day.
CREATE INDEX IF NOT EXISTS ix_orders_pay_time ON orders (pay_time DESC);
CREATE INDEX IF NOT EXISTS ix_orders_phone ON orders (phone);
CREATE INDEX IF NOT EXISTS ix_orders_create_time ON orders (create_time);
CREATE INDEX IF NOT EXISTS ix_orders_update_time ON orders (update_time);
CREATE INDEX IF NOT EXISTS ix_orders_order_status ON orders (order_status);
CREATE INDEX IF NOT EXISTS ix_orders_sku_id ON orders (sku_id);
CREATE INDEX IF NOT EXISTS ix_orders_account_id ON orders (account_id);

-- How far each (account, time field, status filter, mode) is synced. Advanced in the same
-- transaction as the day it covers, so it never runs ahead of committed orders.
CREATE TABLE IF NOT EXISTS sync_checkpoints (
    account_id    text        NOT NULL,
    time_field    text        NOT NULL,
    status_filter text        NOT NULL,
    mode_key      text        NOT NULL,
    synced_until  timestamptz NOT NULL,
    range_done    boolean     NOT NULL DEFAULT false,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, time_field, status_filter, mode_key)
);
