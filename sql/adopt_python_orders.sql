-- Adopt the Python tool's (douyin_getorder) orders table in place, before migration 0001.
-- Run by the job inside the migration transaction only when `orders` has the seed's types
-- (pay_amount double precision, naive timestamps). Every typed column is derived again from the
-- row's raw_data, so old and new rows mean the same: pay_amount in yuan (the seed stored fen),
-- times from the epoch fields. Where raw_data lacks a field the row keeps its own value
-- (pay_amount divided by 100, naive times read as UTC, the zone of the seed's Docker image).
-- The seed's other tables (task_monitor) are left alone.

CREATE FUNCTION pg_temp.dos_int(v jsonb) RETURNS bigint LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE
        WHEN jsonb_typeof(v) = 'number' AND v::text ~ '^-?[0-9]+(\.0+)?$'
            THEN (v::text)::numeric::bigint
        WHEN jsonb_typeof(v) = 'string' AND (v #>> '{}') ~ '^\s*-?[0-9]+(\.0+)?\s*$'
            THEN trim(v #>> '{}')::numeric::bigint
    END
$$;

CREATE FUNCTION pg_temp.dos_epoch(v jsonb) RETURNS timestamptz LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN pg_temp.dos_int(v) > 0 THEN to_timestamp(pg_temp.dos_int(v)) END
$$;

ALTER TABLE orders
    ALTER COLUMN order_id TYPE text,
    ALTER COLUMN order_status TYPE integer USING coalesce(
        pg_temp.dos_int(raw_data -> 'order_status'),
        CASE WHEN order_status::text ~ '^\s*-?[0-9]+\s*$' THEN trim(order_status::text)::integer END),
    ALTER COLUMN sku_id TYPE text USING coalesce(
        nullif(raw_data ->> 'sku_id', ''), nullif(raw_data #>> '{products,0,sku_id}', ''), sku_id),
    ALTER COLUMN sku_name TYPE text USING coalesce(
        nullif(raw_data ->> 'sku_name', ''), nullif(raw_data #>> '{products,0,sku_name}', ''), sku_name),
    ALTER COLUMN pay_amount TYPE numeric(12, 2) USING CASE
        WHEN pg_temp.dos_int(raw_data -> 'pay_amount') IS NOT NULL
            THEN pg_temp.dos_int(raw_data -> 'pay_amount') / 100.0
        ELSE round((pay_amount / 100)::numeric, 2) END,
    ALTER COLUMN count TYPE integer USING coalesce(pg_temp.dos_int(raw_data -> 'count'), count),
    ALTER COLUMN pay_time TYPE timestamptz USING CASE
        WHEN pg_temp.dos_int(raw_data -> 'pay_time') IS NOT NULL
            THEN pg_temp.dos_epoch(raw_data -> 'pay_time')
        ELSE pay_time AT TIME ZONE 'UTC' END,
    ALTER COLUMN create_time TYPE timestamptz USING coalesce(
        pg_temp.dos_epoch(raw_data -> 'create_order_time'), create_time AT TIME ZONE 'UTC'),
    ALTER COLUMN update_time TYPE timestamptz USING coalesce(
        pg_temp.dos_epoch(raw_data -> 'update_order_time'), update_time AT TIME ZONE 'UTC'),
    ALTER COLUMN source_order_id TYPE text USING coalesce(
        nullif(raw_data ->> 'source_order_id', ''), source_order_id),
    ALTER COLUMN phone TYPE text,
    ALTER COLUMN sync_time TYPE timestamptz USING sync_time AT TIME ZONE 'UTC',
    ALTER COLUMN sync_time SET DEFAULT now();

-- The merchant account, where raw_data carries it. The field is not documented: merchant_info's
-- account_id is what public samples show; a top-level account_id is accepted too.
ALTER TABLE orders ADD COLUMN IF NOT EXISTS account_id text;
UPDATE orders
   SET account_id = coalesce(nullif(raw_data #>> '{merchant_info,account_id}', ''),
                             nullif(raw_data ->> 'account_id', ''))
 WHERE account_id IS NULL;

DROP FUNCTION pg_temp.dos_epoch(jsonb);
DROP FUNCTION pg_temp.dos_int(jsonb);
