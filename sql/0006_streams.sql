-- Streams: datasets other than orders, each with its own checkpoint rows, and the coupons
-- (order_certificates) of the orders stream. See README, "Streams".

-- A number that may arrive as a JSON number or a numeric string ("301", "301.0"); NULL when it
-- is neither (lenient like the job's own reader: a strange value never fails a day).
CREATE OR REPLACE FUNCTION douyin_sync_int(value jsonb) RETURNS bigint
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE
             WHEN jsonb_typeof(value) = 'number' AND value::text ~ '^-?[0-9]+(\.0*)?$'
               THEN trunc(value::text::numeric)::bigint
             WHEN jsonb_typeof(value) = 'string' AND (value #>> '{}') ~ '^\s*-?[0-9]+(\.0*)?\s*$'
               THEN trunc(trim(value #>> '{}')::numeric)::bigint
           END
$$;

-- The checkpoint key gains the stream; existing rows are the orders stream's.
ALTER TABLE sync_checkpoints ADD COLUMN IF NOT EXISTS stream text NOT NULL DEFAULT 'orders';
ALTER TABLE sync_checkpoints DROP CONSTRAINT IF EXISTS sync_checkpoints_pkey;
ALTER TABLE sync_checkpoints
    ADD CONSTRAINT sync_checkpoints_pkey
    PRIMARY KEY (stream, account_id, time_field, status_filter, mode_key);

-- Run history: which streams a run synced and how many records each committed.
ALTER TABLE sync_runs ADD COLUMN IF NOT EXISTS streams text;
ALTER TABLE sync_runs ADD COLUMN IF NOT EXISTS stream_records jsonb;
COMMENT ON COLUMN sync_runs.stream_records IS 'records committed per stream, e.g. {"orders": 120, "verifications": 300}';

-- Coupons (券): one row per element of an order's certificate[] (part of the orders stream,
-- written in the same transaction as the order, replaced when the order changes).
CREATE TABLE IF NOT EXISTS order_certificates (
    order_id         text          NOT NULL,
    order_item_id    text          NOT NULL,
    account_id       text,
    certificate_id   text,
    item_status      integer,
    item_update_time timestamptz,
    refund_amount    numeric(12, 2),
    refund_time      timestamptz,
    raw_data         jsonb         NOT NULL,
    sync_time        timestamptz   NOT NULL DEFAULT now(),
    PRIMARY KEY (order_id, order_item_id)
);
COMMENT ON COLUMN order_certificates.certificate_id IS 'NULL when Douyin sent ""';
COMMENT ON COLUMN order_certificates.item_status IS '100 待使用, 200 预约中, 201 已预约, 300 退款中, 301 已退款, 400 履约中, 401 已履约 (used)';
COMMENT ON COLUMN order_certificates.refund_amount IS 'yuan (the API gives fen)';
COMMENT ON COLUMN order_certificates.refund_time IS 'NULL when 0 (not refunded)';
COMMENT ON COLUMN order_certificates.raw_data IS 'the certificate[] element exactly as Douyin sent it';
CREATE INDEX IF NOT EXISTS ix_order_certificates_certificate_id ON order_certificates (certificate_id);
CREATE INDEX IF NOT EXISTS ix_order_certificates_account_id ON order_certificates (account_id);

-- The coupons of the orders already stored, so that users upgrading get their history.
INSERT INTO order_certificates (order_id, order_item_id, account_id, certificate_id, item_status,
                                item_update_time, refund_amount, refund_time, raw_data, sync_time)
SELECT DISTINCT ON (o.order_id, coalesce(nullif(c.value ->> 'order_item_id', ''), '#' || c.ordinality))
       o.order_id,
       coalesce(nullif(c.value ->> 'order_item_id', ''), '#' || c.ordinality),
       o.account_id,
       nullif(c.value ->> 'certificate_id', ''),
       douyin_sync_int(c.value -> 'item_status'),
       to_timestamp(nullif(douyin_sync_int(c.value -> 'item_update_time'), 0)),
       douyin_sync_int(c.value -> 'refund_amount') / 100.0,
       to_timestamp(nullif(douyin_sync_int(c.value -> 'refund_time'), 0)),
       c.value,
       o.sync_time
  FROM orders AS o
 CROSS JOIN LATERAL jsonb_array_elements(
           CASE WHEN jsonb_typeof(o.raw_data -> 'certificate') = 'array'
                THEN o.raw_data -> 'certificate' ELSE '[]'::jsonb END
       ) WITH ORDINALITY AS c(value, ordinality)
 ORDER BY 1, 2, c.ordinality DESC
ON CONFLICT (order_id, order_item_id) DO NOTHING;

-- Verification records (验券历史), stream `verifications`: one row per verify_id.
CREATE TABLE IF NOT EXISTS verifications (
    verify_id              text PRIMARY KEY,
    account_id             text,
    certificate_id         text,
    code                   text,
    order_id               text,
    verify_time            timestamptz,
    status                 integer,
    cancel_time            timestamptz,
    verify_type            integer,
    can_cancel             boolean,
    original_amount        numeric(12, 2),
    pay_amount             numeric(12, 2),
    merchant_ticket_amount numeric(12, 2),
    sku_id                 text,
    sku_title              text,
    poi_id                 text,
    raw_data               jsonb       NOT NULL,
    sync_time              timestamptz NOT NULL DEFAULT now()
);
COMMENT ON COLUMN verifications.status IS '1 valid, 2 revoked (撤销核销)';
COMMENT ON COLUMN verifications.cancel_time IS 'when the verification was revoked; NULL when 0';
COMMENT ON COLUMN verifications.original_amount IS 'yuan (the API gives fen)';
COMMENT ON COLUMN verifications.poi_id IS 'verify_poi_id: the shop where the coupon was used';
COMMENT ON COLUMN verifications.raw_data IS 'the record exactly as Douyin sent it';
CREATE INDEX IF NOT EXISTS ix_verifications_verify_time ON verifications (verify_time);
CREATE INDEX IF NOT EXISTS ix_verifications_certificate_id ON verifications (certificate_id);
CREATE INDEX IF NOT EXISTS ix_verifications_order_id ON verifications (order_id);
CREATE INDEX IF NOT EXISTS ix_verifications_account_id ON verifications (account_id);
