-- Refunds (stream `refunds`, douyin-api.md §8) and the settlement ledger (stream `settlements`,
-- §9), and the view that puts an order's money side by side: paid, used, refunded, settled.
-- Amounts are yuan (the API gives fen; converted exactly); epoch fields that are 0 are NULL.

-- One row per after-sale (refund) order, upserted by after_sale_id.
CREATE TABLE IF NOT EXISTS refunds (
    after_sale_id       text PRIMARY KEY,
    order_id            text,
    account_id          text NOT NULL,
    status              integer,
    refund_type         integer,
    create_time         timestamptz,
    update_time         timestamptz,
    audit_time          timestamptz,
    complete_time       timestamptz,
    refund_amount       numeric(12, 2),
    total_refund_amount numeric(12, 2),
    real_refund_amount  numeric(12, 2),
    reject_reason       text,
    raw_data            jsonb NOT NULL,
    sync_time           timestamptz NOT NULL DEFAULT now()
);

COMMENT ON COLUMN refunds.account_id IS 'merchant_account_id as text (the API sends a number), else the account queried';
COMMENT ON COLUMN refunds.status IS '10 审核中, 20 已审核, 25 已拒绝, 40 取消退款, 50 退款成功, 59 退款失败';
COMMENT ON COLUMN refunds.refund_amount IS 'yuan';
COMMENT ON COLUMN refunds.raw_data IS 'the after-sale order exactly as Douyin sent it';

CREATE INDEX IF NOT EXISTS ix_refunds_order_id ON refunds (order_id);
CREATE INDEX IF NOT EXISTS ix_refunds_complete_time ON refunds (complete_time);
CREATE INDEX IF NOT EXISTS ix_refunds_account_id ON refunds (account_id);

-- One row per ledger record. A bill date of an account is replaced as a whole on every read
-- (a record the platform no longer answers is removed), so the table mirrors the ledger.
CREATE TABLE IF NOT EXISTS settlements (
    ledger_id              text PRIMARY KEY,
    account_id             text NOT NULL,
    bill_date              date NOT NULL,
    order_id               text,
    item_order_id          text,
    certificate_id         text,
    code                   text,
    sku_id                 text,
    poi_id                 text,
    ledger_time            timestamptz,
    status                 integer,
    original_amount        numeric(12, 2),
    pay_amount             numeric(12, 2),
    coupon_pay_amount      numeric(12, 2),
    merchant_ticket_amount numeric(12, 2),
    goods_amount           numeric(12, 2),
    raw_data               jsonb NOT NULL,
    sync_time              timestamptz NOT NULL DEFAULT now()
);

COMMENT ON COLUMN settlements.account_id IS 'the account whose ledger was read (the unit a bill date is replaced in)';
COMMENT ON COLUMN settlements.goods_amount IS 'yuan: amount.goods, what the merchant is settled for the coupon';
COMMENT ON COLUMN settlements.raw_data IS 'the ledger record exactly as Douyin sent it (order_attrribute spelled as received)';

CREATE INDEX IF NOT EXISTS ix_settlements_account_bill_date ON settlements (account_id, bill_date);
CREATE INDEX IF NOT EXISTS ix_settlements_order_id ON settlements (order_id);
CREATE INDEX IF NOT EXISTS ix_settlements_certificate_id ON settlements (certificate_id);
CREATE INDEX IF NOT EXISTS ix_settlements_code ON settlements (code);

-- One row per order. A coupon is the unit of use and settlement:
--   coupons           the order's coupons (order_certificates rows)
--   coupons_used      distinct coupons with a verification that stands (not revoked: status is
--                     not 2 and no cancel_time), found by the verification's order_id or by the
--                     certificate_id of one of the order's coupons
--   coupons_refunded  coupons in item_status 301 (已退款)
--   refunded_amount   refund_amount of the order's completed refunds (status 50)
--   settled_amount    goods_amount of the order's ledger records
--   unsettled_used    used coupons with no ledger record (matched by certificate_id, or by code)
--   unsettled_since   the earliest verify_time among those
CREATE OR REPLACE VIEW order_reconciliation AS
SELECT o.order_id,
       o.account_id,
       o.pay_time,
       o.pay_amount,
       coalesce(c.coupons, 0)              AS coupons,
       coalesce(u.coupons_used, 0)         AS coupons_used,
       coalesce(c.coupons_refunded, 0)     AS coupons_refunded,
       coalesce(r.refunded_amount, 0.00)   AS refunded_amount,
       coalesce(s.settled_amount, 0.00)    AS settled_amount,
       coalesce(u.unsettled_used, 0)       AS unsettled_used,
       u.unsettled_since
  FROM orders o
  LEFT JOIN LATERAL (
        SELECT count(*)                                     AS coupons,
               count(*) FILTER (WHERE oc.item_status = 301) AS coupons_refunded
          FROM order_certificates oc
         WHERE oc.order_id = o.order_id
       ) c ON true
  LEFT JOIN LATERAL (
        SELECT sum(rf.refund_amount) AS refunded_amount
          FROM refunds rf
         WHERE rf.order_id = o.order_id AND rf.status = 50
       ) r ON true
  LEFT JOIN LATERAL (
        SELECT sum(st.goods_amount) AS settled_amount
          FROM settlements st
         WHERE st.order_id = o.order_id
       ) s ON true
  LEFT JOIN LATERAL (
        SELECT count(*) AS coupons_used,
               count(*) FILTER (WHERE NOT used.settled) AS unsettled_used,
               min(used.verify_time) FILTER (WHERE NOT used.settled) AS unsettled_since
          FROM (
                SELECT coupon.coupon,
                       min(coupon.verify_time) AS verify_time,
                       bool_or(EXISTS (
                           SELECT 1 FROM settlements st
                            WHERE st.certificate_id = coupon.certificate_id
                               OR st.code = coupon.code)) AS settled
                  FROM (
                        SELECT coalesce(v.certificate_id, 'verify:' || v.verify_id) AS coupon,
                               v.certificate_id, v.code, v.verify_time
                          FROM verifications v
                         WHERE v.order_id = o.order_id
                           AND v.cancel_time IS NULL AND v.status IS DISTINCT FROM 2
                        UNION ALL
                        SELECT v.certificate_id, v.certificate_id, v.code, v.verify_time
                          FROM order_certificates oc
                          JOIN verifications v ON v.certificate_id = oc.certificate_id
                         WHERE oc.order_id = o.order_id
                           AND v.cancel_time IS NULL AND v.status IS DISTINCT FROM 2
                       ) coupon
                 GROUP BY coupon.coupon
               ) used
       ) u ON true;

COMMENT ON VIEW order_reconciliation IS
    'one row per order: paid, coupons, used (verifications that stand), refunded (status 50), settled (ledger goods_amount), used but unsettled';
