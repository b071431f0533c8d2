-- The quarantine: records Douyin sent that cannot be stored as they are (no order_id, a value
-- beyond its column, text PostgreSQL refuses, ...). Written in the same transaction as the day
-- they came with, so that the rest of the day commits; a record seen again updates its row
-- (last_seen); a record stored well-formed later leaves (its row is deleted in the transaction
-- that stores it).
CREATE TABLE IF NOT EXISTS rejected_records (
    stream      text        NOT NULL,
    account_id  text        NOT NULL,
    -- 'id:' || record_id, or 'md5:' || md5(record) for a record without a usable id.
    record_key  text        NOT NULL,
    day         date        NOT NULL,
    record_id   text,
    reason      text        NOT NULL,
    record      text        NOT NULL,
    first_seen  timestamptz NOT NULL DEFAULT now(),
    last_seen   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (stream, account_id, record_key)
);

COMMENT ON TABLE rejected_records IS 'records that could not be stored as received (see README, "Quarantine")';
COMMENT ON COLUMN rejected_records.stream IS 'which API the record came from: orders';
COMMENT ON COLUMN rejected_records.day IS 'the Asia/Shanghai day of the slice it came with (the latest seen)';
COMMENT ON COLUMN rejected_records.record_id IS 'the order_id, when the record has a usable one';
COMMENT ON COLUMN rejected_records.record IS 'the record''s JSON text as received (a NUL stays the escape \u0000)';

ALTER TABLE sync_runs ADD COLUMN IF NOT EXISTS rejected bigint;
COMMENT ON COLUMN sync_runs.rejected IS 'records quarantined in rejected_records by the run';
