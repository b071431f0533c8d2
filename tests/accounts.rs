//! Agencies: several merchant accounts in one run, one token, one QPS budget, a checkpoint and a
//! lock per account, and failures that stay with their account.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails loudly by design

mod support;

use support::fake_douyin::{FakeConfig, Faults, GeneratedOrder};
use support::setup::{assert_stored_exactly, World, DAY, MARCH_1};

const A: &str = "7000000000000000001";
const B: &str = "7000000000000000002";
const C: &str = "7000000000000000003";

fn agency(name: &str, authorised: &[&str]) -> World {
    World::with(
        name,
        FakeConfig {
            authorised_accounts: authorised.iter().map(|a| a.to_string()).collect(),
            ..FakeConfig::default()
        },
    )
}

fn seed(
    w: &World,
    account: &str,
    first_day: i64,
    days: usize,
    per_day: usize,
) -> Vec<GeneratedOrder> {
    (0..days)
        .flat_map(|d| {
            w.fake
                .seed_day(account, first_day + d as i64 * DAY, per_day, 100 + d as u64)
        })
        .collect()
}

fn count_for(w: &World, account: &str) -> i64 {
    w.count(&format!(
        "SELECT count(*) FROM orders WHERE account_id = '{account}'"
    ))
}

#[test]
fn every_accounts_orders_land_with_the_right_account_id_on_a_single_token() {
    let w = agency("three_accounts", &[A, B, C]);
    let served: Vec<(&str, Vec<GeneratedOrder>)> = [(A, 40), (B, 25), (C, 60)]
        .into_iter()
        .map(|(acc, n)| (acc, seed(&w, acc, MARCH_1, 2, n)))
        .collect();
    let out = w
        .range_cmd("2024-03-01", "2024-03-02")
        .env("ACCOUNT_ID", &format!("{A},{B},{C}"))
        .run();
    out.expect_success();
    assert_eq!(
        w.fake.token_calls(),
        1,
        "one client token for the whole run"
    );
    let table = w.table();
    for (account, orders) in &served {
        assert_eq!(count_for(&w, account), orders.len() as i64, "{account}");
        for o in orders {
            let stored = &table[o.json["order_id"].as_str().unwrap()];
            assert_stored_exactly(o, stored);
            assert_eq!(stored.account_id.as_deref(), Some(*account));
        }
    }
    let summary = out.log().lines().find(|l| l.contains("done:")).unwrap();
    for (account, orders) in &served {
        assert!(
            summary.contains(&format!("{account}: {} orders", orders.len())),
            "{summary}"
        );
    }
}

#[test]
fn an_unauthorised_account_among_three_leaves_the_others_complete_and_exits_77_naming_it() {
    let w = agency("unauthorised_account", &[A, C]);
    let a = seed(&w, A, MARCH_1, 2, 30);
    let c = seed(&w, C, MARCH_1, 2, 30);
    let out = w
        .range_cmd("2024-03-01", "2024-03-02")
        .env("ACCOUNT_ID", &format!("{A},{B},{C}"))
        .run();
    out.expect_code(77);
    let failure = out
        .log()
        .lines()
        .find(|l| l.contains(&format!("account {B} failed")))
        .unwrap_or_else(|| panic!("{}", out.report()));
    assert!(failure.contains("2119005"), "{failure}");
    assert_eq!(count_for(&w, A), a.len() as i64);
    assert_eq!(count_for(&w, C), c.len() as i64);
    assert_eq!(count_for(&w, B), 0);
    assert!(
        out.log().contains(&format!("{B}: failed with 77")),
        "{}",
        out.report()
    );
}

#[test]
fn the_run_exits_with_the_most_serious_code_among_the_accounts() {
    let w = agency("most_serious", &[A, C]);
    seed(&w, A, MARCH_1, 1, 10);
    // A keeps answering busy (75 after its retries), B is not authorised (77), C succeeds.
    w.fake.set_faults(Faults {
        account_errors: vec![(A.to_string(), 2119002)],
        ..Faults::default()
    });
    let out = w
        .range_cmd("2024-03-01", "2024-03-01")
        .env("ACCOUNT_ID", &format!("{A},{B},{C}"))
        .env("RETRY_MAX_TRIES", "2")
        .run();
    out.expect_code(77);
    assert!(
        out.log().contains(&format!("{A}: failed with 75")),
        "{}",
        out.report()
    );
}

#[test]
fn a_rerun_resumes_each_account_from_its_own_checkpoint() {
    let w = agency("own_checkpoints", &[A, B]);
    let today = support::setup::local_midnight_now();
    let a = seed(&w, A, today - 2 * DAY, 2, 20);
    let b = seed(&w, B, today - 2 * DAY, 2, 20);
    // First run: B keeps failing, A completes.
    w.fake.set_faults(Faults {
        account_errors: vec![(B.to_string(), 2119002)],
        ..Faults::default()
    });
    let first = w
        .cmd()
        .env("ACCOUNT_ID", &format!("{A},{B}"))
        .env("SYNC_DAYS", "3")
        .env("OVERLAP_SECS", "60")
        .env("RETRY_MAX_TRIES", "2")
        .run();
    first.expect_code(75);
    assert_eq!(count_for(&w, A), a.len() as i64);
    assert_eq!(count_for(&w, B), 0);
    let a_synced_until = w.count(&format!(
        "SELECT extract(epoch FROM synced_until)::bigint FROM sync_checkpoints WHERE account_id = '{A}'"
    ));
    let before = w.fake.requests().len();
    w.fake.set_faults(Faults::default());
    std::thread::sleep(std::time::Duration::from_millis(1100));
    w.cmd()
        .env("ACCOUNT_ID", &format!("{A},{B}"))
        .env("SYNC_DAYS", "3")
        .env("OVERLAP_SECS", "60")
        .run()
        .expect_success();
    let starts = |account: &str| -> Vec<i64> {
        w.fake.requests()[before..]
            .iter()
            .filter(|r| r.params.get("account_id").map(String::as_str) == Some(account))
            .filter_map(|r| {
                r.params
                    .get("update_order_start_time")
                    .map(|s| s.parse().unwrap())
            })
            .collect()
    };
    // A continues from its checkpoint (minus the overlap); B starts SYNC_DAYS back.
    assert!(
        starts(A).iter().all(|s| *s >= a_synced_until - 60),
        "{:?} vs {a_synced_until}",
        starts(A)
    );
    assert!(
        starts(B).iter().any(|s| *s < today - 2 * DAY),
        "{:?}",
        starts(B)
    );
    assert_eq!(count_for(&w, B), b.len() as i64);
}
