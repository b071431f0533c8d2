//! Failures that must end a run at once, within a bound, with the exit code that tells the
//! truth, and without writing anything a misconfiguration should not write: a staging table
//! that cannot be written, a killed staging session, a token endpoint that never answers, a
//! read-only database, a role without rights, a foreign `orders`, a wrong API_BASE_URL or
//! ACCOUNT_ID, and the command line's own edges (EPIPE, RUST_LOG, JSON errors).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails loudly by design

mod support;

use std::collections::HashSet;
use std::time::{Duration, Instant};
use support::fake_douyin::{Faults, ORDER_QUERY_PATH, TOKEN_PATH};
use support::pg::{quote_ident, ThrowawayCluster};
use support::setup::{assert_exact, now, World, ACCOUNT, DAY, MARCH_1};
use support::{Output, SIGTERM};

/// How long a run that must end "at once" may take, however slow the machine.
const BOUND: Duration = Duration::from_secs(60);

#[track_caller]
fn run_within(cmd: support::Cmd, bound: Duration) -> Output {
    let command = cmd.describe();
    let started = Instant::now();
    let out = cmd
        .spawn()
        .wait_timeout(bound)
        .unwrap_or_else(|| panic!("hung: still running after {bound:?}: {command}"));
    assert!(started.elapsed() < bound);
    out
}

/// No table of the job exists: nothing was migrated, no run recorded.
#[track_caller]
fn nothing_created(w: &World) {
    let tables: Vec<String> =
        w.db.client()
            .query(
                "SELECT tablename::text FROM pg_tables WHERE schemaname = 'public'
                    AND tablename IN ('douyin_order_sync_migrations', 'sync_runs', 'sync_checkpoints')",
                &[],
            )
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
    assert!(tables.is_empty(), "created {tables:?}");
}

/// Order queries the fake answered, and how many of them asked a page already asked before.
fn queries(w: &World) -> (usize, usize) {
    let mut seen = HashSet::new();
    let mut repeated = 0;
    let mut total = 0;
    for r in w.fake.requests() {
        if r.path == ORDER_QUERY_PATH {
            total += 1;
            let key = format!("{:?}", r.params);
            if !seen.insert(key) {
                repeated += 1;
            }
        }
    }
    (total, repeated)
}

/// Arms every new `douyin_stage_*` table (an event trigger) with a row trigger running `body`
/// before each write.
fn staging_trigger(body: &str) -> String {
    format!(
        r#"
    CREATE FUNCTION staging_write() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        {body}
    END $$;
    CREATE FUNCTION arm_staging() RETURNS event_trigger LANGUAGE plpgsql AS $$
    DECLARE r record;
    BEGIN
        FOR r IN SELECT * FROM pg_event_trigger_ddl_commands()
                  WHERE command_tag = 'CREATE TABLE' AND object_identity LIKE '%douyin_stage_%'
        LOOP
            EXECUTE format('CREATE TRIGGER staging_write BEFORE INSERT OR UPDATE ON %s
                            FOR EACH ROW EXECUTE FUNCTION staging_write()', r.object_identity);
        END LOOP;
    END $$;
    CREATE EVENT TRIGGER arm_staging ON ddl_command_end WHEN TAG IN ('CREATE TABLE')
        EXECUTE FUNCTION arm_staging();
"#
    )
}

/// Every write to a staging table fails as a full disk does.
const DISK_FULL: &str = r#"RAISE EXCEPTION 'could not extend file "base/1/2": No space left on device'
            USING ERRCODE = '53100';"#;

#[test]
fn a_staging_table_that_cannot_be_written_ends_the_run_with_75_at_once_without_fetching_again() {
    let w = World::new("disk_full");
    w.seed_days(MARCH_1, 3, 150);
    w.db.client()
        .batch_execute(&staging_trigger(DISK_FULL))
        .unwrap();
    let out = run_within(
        w.range_cmd("2024-03-01", "2024-03-03")
            .env("PAGE_SIZE", "25")
            .env("RETRY_MAX_TRIES", "8"),
        BOUND,
    );
    out.expect_code(75);
    let error = out
        .log()
        .lines()
        .find(|l| l.contains("ERROR"))
        .unwrap_or_else(|| panic!("no error logged\n{}", out.report()));
    assert!(
        error.contains("No space left on device") && error.contains("53100"),
        "{}",
        out.report()
    );
    assert!(
        !out.log().contains("lost a database connection"),
        "a full disk was retried as a lost connection\n{}",
        out.report()
    );
    // 3 days of 6 pages: each page asked at most once, no day fetched again.
    let (total, repeated) = queries(&w);
    eprintln!("disk full: {total} order queries, {repeated} repeated");
    assert_eq!(repeated, 0, "{}", out.report());
    assert!(total <= 18, "{total} order queries");
    assert_eq!(w.count("SELECT count(*) FROM orders"), 0);
    let (code, message): (Option<i32>, Option<String>) = {
        let row =
            w.db.client()
                .query_one(
                    "SELECT exit_code, error FROM sync_runs ORDER BY id DESC LIMIT 1",
                    &[],
                )
                .unwrap();
        (row.get(0), row.get(1))
    };
    assert_eq!(code, Some(75));
    assert!(message.unwrap_or_default().contains("53100"));
}

#[test]
fn a_statement_timeout_while_staging_ends_the_run_with_75_at_once_without_fetching_again() {
    let w = World::new("statement_timeout");
    w.seed_days(MARCH_1, 2, 50);
    // Every staged row ends as a statement timeout does (SQLSTATE 57014). The job sets its own
    // statement_timeout on each session (src/store.rs, sized for a day's upsert), overriding a
    // database default, so the trigger raises the timeout's error itself.
    w.db.client()
        .batch_execute(&staging_trigger(
            "RAISE EXCEPTION 'canceling statement due to statement timeout' USING ERRCODE = '57014';",
        ))
        .unwrap();
    let out = run_within(w.range_cmd("2024-03-01", "2024-03-02"), BOUND);
    out.expect_code(75);
    assert!(out.log().contains("57014"), "{}", out.report());
    assert!(
        !out.log().contains("lost a database connection"),
        "{}",
        out.report()
    );
    let (total, repeated) = queries(&w);
    eprintln!("statement timeout: {total} order queries, {repeated} repeated");
    assert_eq!(repeated, 0, "{}", out.report());
}

#[test]
fn an_order_postgresql_refuses_to_stage_never_hangs_the_run() {
    let w = World::new("nul_in_order");
    let mut served = w.seed_days(MARCH_1, 1, 20);
    // PostgreSQL's text refuses U+0000: the staging COPY fails.
    let mut bad = order("1000000000000000777", MARCH_1 + 3600);
    bad["sku_name"] = serde_json::Value::String("bad\u{0}name".into());
    w.fake.add_orders([bad]);
    let out = run_within(w.range_cmd("2024-03-01", "2024-03-01"), BOUND);
    eprintln!("an order with U+0000: {}", out.status());
    // Either the record is refused with the day (70, named) or, once a quarantine exists, set
    // aside while the day commits (0): never a hang.
    match out.code {
        Some(70) => assert!(out.log().contains("ERROR"), "{}", out.report()),
        Some(0) => {
            served.retain(|o| o.json["order_id"] != "1000000000000000777");
            assert_eq!(w.table().len(), served.len());
        }
        _ => panic!("expected 70 or 0\n{}", out.report()),
    }
}

#[test]
fn too_many_connections_for_the_role_ends_with_75_at_once_without_fetching_again() {
    let w = World::new("conn_limit");
    w.seed_days(MARCH_1, 2, 40);
    // A role that owns the database (so it may do everything) but may hold one connection:
    // the run's own works, the staging connection is refused with 53300.
    let role = format!("dos_one_conn_{}", std::process::id());
    let mut admin = w.db.client();
    admin
        .batch_execute(&format!(
            "DROP ROLE IF EXISTS {r}; CREATE ROLE {r} LOGIN CONNECTION LIMIT 1;
             ALTER DATABASE {db} OWNER TO {r};",
            r = quote_ident(&role),
            db = quote_ident(w.db.name()),
        ))
        .unwrap();
    let url = w.db.url().replacen("postgres@", &format!("{role}@"), 1);
    assert_ne!(
        url,
        w.db.url(),
        "TEST_DATABASE_URL must name the user postgres"
    );
    let out = run_within(
        w.range_cmd("2024-03-01", "2024-03-02")
            .env("DB_URL", &url)
            .env("RETRY_MAX_TRIES", "8"),
        BOUND,
    );
    out.expect_code(75);
    assert!(out.log().contains("53300"), "{}", out.report());
    assert!(
        !out.log().contains("lost a database connection"),
        "{}",
        out.report()
    );
    let (total, repeated) = queries(&w);
    eprintln!("too many connections: {total} order queries, {repeated} repeated");
    assert_eq!(repeated, 0, "{}", out.report());
    admin
        .batch_execute(&format!(
            "ALTER DATABASE {db} OWNER TO postgres; DROP OWNED BY {r}; DROP ROLE {r};",
            r = quote_ident(&role),
            db = quote_ident(w.db.name()),
        ))
        .unwrap();
}

#[test]
fn killing_the_staging_session_mid_run_never_hangs_the_run() {
    for attempt in 0..4 {
        let w = World::new(&format!("kill_stager_{attempt}"));
        let served = w.seed_days(MARCH_1, 4, 100);
        w.fake.set_faults(Faults {
            latency: Duration::from_millis(40),
            ..Faults::default()
        });
        let cmd = w
            .range_cmd("2024-03-01", "2024-03-04")
            .env("PAGE_SIZE", "10")
            .env("MAX_QPS", "40");
        let command = cmd.describe();
        let child = cmd.spawn();
        // Kill the staging session at a different moment each time.
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut killed: i64 = 0;
        while killed == 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100 + 150 * attempt));
            killed = w.terminate_sessions("douyin-order-sync stage");
        }
        let out = child.wait_timeout(BOUND).unwrap_or_else(|| {
            panic!("attempt {attempt}: hung after its staging session was killed: {command}")
        });
        assert!(
            killed > 0,
            "attempt {attempt}: no staging session found\n{}",
            out.report()
        );
        match out.code {
            Some(0) => assert_exact(&w, &served),
            Some(75) => {
                // Whatever is committed is whole days; the rerun completes it.
                w.range_cmd("2024-03-01", "2024-03-04")
                    .run()
                    .expect_success();
                assert_exact(&w, &served);
            }
            _ => panic!("attempt {attempt}: expected 0 or 75\n{}", out.report()),
        }
        eprintln!("attempt {attempt}: {}", out.status());
    }
}

#[test]
fn sigterm_while_the_token_endpoint_never_answers_exits_143_within_10_s() {
    let w = World::new("silent_token");
    w.fake.set_faults(Faults {
        silent_token: true,
        ..Faults::default()
    });
    let child = w.cmd().env("HTTP_TIMEOUT_SECS", "600").spawn();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !w.fake.requests().iter().any(|r| r.path == TOKEN_PATH) {
        assert!(Instant::now() < deadline, "no token call");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));
    let sent = Instant::now();
    child.signal(SIGTERM);
    let out = child
        .wait_timeout(Duration::from_secs(10))
        .expect("SIGTERM was not honoured within 10 s");
    out.expect_code(143);
    eprintln!("silent token: stopped {:?} after SIGTERM", sent.elapsed());
    nothing_created(&w);
}

#[test]
fn a_read_only_database_is_a_configuration_error_for_the_run_and_for_check() {
    let w = World::new("read_only");
    w.seed_days(MARCH_1, 1, 5);
    w.db.client()
        .batch_execute(&format!(
            "ALTER DATABASE {} SET default_transaction_read_only = on",
            quote_ident(w.db.name())
        ))
        .unwrap();
    for check in [false, true] {
        let mut cmd = w.range_cmd("2024-03-01", "2024-03-01");
        if check {
            cmd = cmd.arg("check");
        }
        let out = run_within(cmd, BOUND);
        out.expect_code(78);
        assert!(
            out.log().contains("read-only") && out.log().contains("default_transaction_read_only"),
            "{}",
            out.report()
        );
        assert!(!out.stdout.contains("check: ok"), "{}", out.report());
    }
    assert!(w.fake.requests().is_empty(), "asked Douyin before refusing");
}

#[test]
fn a_role_without_the_rights_it_needs_is_a_configuration_error_naming_them() {
    let w = World::new("no_rights");
    w.seed_days(MARCH_1, 1, 5);
    // The tables exist (an administrator ran the job once).
    w.range_cmd("2024-03-01", "2024-03-01")
        .run()
        .expect_success();
    let role = format!("dos_reader_{}", std::process::id());
    w.db.client()
        .batch_execute(&format!(
            "DROP ROLE IF EXISTS {r}; CREATE ROLE {r} LOGIN;",
            r = quote_ident(&role)
        ))
        .unwrap();
    let url = w.db.url().replacen("postgres@", &format!("{role}@"), 1);
    let run_as = |check: bool| {
        let mut cmd = w.range_cmd("2024-03-01", "2024-03-01").env("DB_URL", &url);
        if check {
            cmd = cmd.arg("check");
        }
        run_within(cmd, BOUND)
    };
    // PostgreSQL 15: nobody but the owner may create in schema public.
    for check in [false, true] {
        let out = run_as(check);
        out.expect_code(78);
        assert!(
            out.log().contains("may not create tables in schema public"),
            "{}",
            out.report()
        );
    }
    w.db.client()
        .batch_execute(&format!(
            "GRANT CREATE ON SCHEMA public TO {r}; GRANT SELECT ON orders TO {r};",
            r = quote_ident(&role)
        ))
        .unwrap();
    let runs_before = w.count("SELECT count(*) FROM sync_runs");
    for check in [false, true] {
        let out = run_as(check);
        out.expect_code(78);
        assert!(
            out.log()
                .contains("lacks INSERT on orders, UPDATE on orders, SELECT on sync_checkpoints"),
            "{}",
            out.report()
        );
    }
    assert_eq!(w.count("SELECT count(*) FROM sync_runs"), runs_before);
    w.db.client()
        .batch_execute(&format!(
            "DROP OWNED BY {r}; DROP ROLE {r};",
            r = quote_ident(&role)
        ))
        .unwrap();
}

#[test]
fn sslmode_require_against_a_server_without_tls_is_a_configuration_error() {
    let w = World::new("require_no_tls");
    let cluster = ThrowawayCluster::start().unwrap();
    let url = format!("{}?sslmode=require", cluster.url());
    for check in [false, true] {
        let mut cmd = w.cmd().env("DB_URL", &url);
        if check {
            cmd = cmd.arg("check");
        }
        let out = run_within(cmd, BOUND);
        out.expect_code(78);
        assert!(
            out.log().contains("server does not support TLS"),
            "{}",
            out.report()
        );
    }
}

/// The columns of `orders` as (name, type, nullable), to compare before and after.
fn orders_columns(w: &World) -> Vec<(String, String, String)> {
    w.db.client()
        .query(
            "SELECT column_name::text, data_type::text, is_nullable::text
               FROM information_schema.columns WHERE table_name = 'orders' ORDER BY ordinal_position",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect()
}

#[test]
fn an_orders_table_like_the_seeds_but_not_it_is_refused_before_anything_is_written() {
    let seed = |pay_amount: &str, key: &str| {
        format!(
            "CREATE TABLE orders (order_id VARCHAR(64) {key}, order_status VARCHAR(32),
                sku_id VARCHAR(64), sku_name VARCHAR(255), pay_amount {pay_amount}, count INTEGER,
                pay_time TIMESTAMP, create_time TIMESTAMP, update_time TIMESTAMP,
                source_order_id VARCHAR(64), phone VARCHAR(20), raw_data JSONB, sync_time TIMESTAMP);
             INSERT INTO orders (order_id, pay_amount, raw_data) VALUES ('1', '129', '{{}}');"
        )
    };
    let cases = [
        (
            "other_types",
            seed("TEXT", "PRIMARY KEY"),
            "pay_amount is text",
        ),
        (
            "no_key",
            seed("FLOAT", ""),
            "order_id is not its primary key",
        ),
        (
            "ours_but_integer_ids",
            "CREATE TABLE orders (order_id bigint PRIMARY KEY, account_id text,
                order_status integer, sku_id text, sku_name text, pay_amount numeric(12,2),
                count integer, pay_time timestamptz, create_time timestamptz,
                update_time timestamptz, source_order_id text, phone text, raw_data jsonb,
                sync_time timestamptz);"
                .to_string(),
            "order_id is bigint",
        ),
        (
            "a_view",
            "CREATE TABLE things (order_id text PRIMARY KEY);
             CREATE VIEW orders AS SELECT * FROM things;"
                .to_string(),
            "not a plain table",
        ),
    ];
    for (name, schema, says) in cases {
        let w = World::new(&format!("foreign_{name}"));
        w.seed_days(MARCH_1, 1, 5);
        w.db.client().batch_execute(&schema).unwrap();
        let before = orders_columns(&w);
        for check in [true, false] {
            let mut cmd = w.range_cmd("2024-03-01", "2024-03-01");
            if check {
                cmd = cmd.arg("check");
            }
            let out = run_within(cmd, BOUND);
            out.expect_code(78);
            assert!(
                out.log()
                    .contains("neither this tool's nor the Python tool's")
                    && out.log().contains(says),
                "{name}: {says:?} missing\n{}",
                out.report()
            );
        }
        assert_eq!(orders_columns(&w), before, "{name}: orders was altered");
        nothing_created(&w);
    }
}

#[test]
fn a_malformed_api_base_url_is_a_configuration_error_before_anything_is_written() {
    let w = World::new("bad_base_url");
    w.seed_days(MARCH_1, 1, 5);
    let port = w.fake.addr().port();
    for (url, says) in [
        ("http://127.0.0.1:99999".to_string(), "port"),
        ("http://open douyin.com".to_string(), "host"),
        ("http://open_douyin.com".to_string(), "host"),
        (format!("http://127.0.0.1:{port}/wrong/prefix"), "HTTP 404"),
        // RFC 6761: .invalid never resolves.
        (
            "http://no-such-host.invalid".to_string(),
            "no-such-host.invalid",
        ),
    ] {
        let started = Instant::now();
        let out = run_within(
            w.range_cmd("2024-03-01", "2024-03-01")
                .env("API_BASE_URL", &url)
                .env("RETRY_BASE_MS", "1000"),
            BOUND,
        );
        out.expect_code(78);
        assert!(
            out.log().contains("API_BASE_URL") && out.log().contains(says),
            "{url}: {says:?} missing\n{}",
            out.report()
        );
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{url}: {:?}",
            started.elapsed()
        );
        nothing_created(&w);
    }
    // Only the 404 reached the fake: one token call, not retried.
    let requests = w.fake.requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert_eq!(requests[0].path, format!("/wrong/prefix{TOKEN_PATH}"));
}

#[test]
fn an_account_id_that_cannot_be_one_is_a_configuration_error_naming_it() {
    let w = World::new("bad_account");
    for bad in [
        "abc",
        "7000000000000000001'",
        "７０００００００００００００００００１",
    ] {
        let out = run_within(w.cmd().env("ACCOUNT_ID", bad), BOUND);
        out.expect_code(78);
        assert!(
            out.log().contains("ACCOUNT_ID") && out.log().contains("not an account id"),
            "{bad}\n{}",
            out.report()
        );
    }
    assert!(w.fake.requests().is_empty());
    nothing_created(&w);
}

#[test]
fn a_range_reaching_into_the_future_rereads_the_overlap_before_its_checkpoint() {
    let w = World::new("future_range_overlap");
    let today = support::setup::local_midnight_now();
    let t0 = now();
    // Orders of today so far.
    let early: Vec<serde_json::Value> = (0..5)
        .map(|i| {
            order(
                &format!("10000000000000000{i:02}"),
                (today + 60 * i).min(t0 - 120),
            )
        })
        .collect();
    w.fake.add_orders(early);
    let (start, end) = ((today - DAY).to_string(), (today + 2 * DAY - 1).to_string());
    let range = || w.cmd().env("START_TIME", &start).env("END_TIME", &end);
    range().run().expect_success();
    let checkpoint: i64 =
        w.count("SELECT extract(epoch FROM synced_until)::bigint FROM sync_checkpoints");
    assert!(
        checkpoint >= t0 - 5,
        "checkpoint {checkpoint} is not now ({t0})"
    );
    // Indexed late: updated a minute before the checkpoint, visible only now.
    w.fake
        .add_orders([order("1000000000000000099", checkpoint - 60)]);
    let out = range().run();
    out.expect_success();
    assert_eq!(
        w.count("SELECT count(*) FROM orders WHERE order_id = '1000000000000000099'"),
        1,
        "the late order was missed\n{}",
        out.report()
    );
    assert_eq!(w.count("SELECT count(*) FROM orders"), 6);
}

fn order(id: &str, updated: i64) -> serde_json::Value {
    serde_json::json!({
        "order_id": id,
        "account_id": ACCOUNT,
        "order_status": 1,
        "sku_id": "s1",
        "sku_name": "n",
        "pay_amount": 100,
        "count": 1,
        "pay_time": updated,
        "create_order_time": updated,
        "update_order_time": updated,
    })
}

#[test]
fn check_piped_into_a_reader_that_stops_early_does_not_panic() {
    let w = World::new("check_epipe");
    w.seed_days(MARCH_1, 1, 5);
    let out = run_within(
        w.range_cmd("2024-03-01", "2024-03-01")
            .arg("check")
            .stdout_closed(),
        BOUND,
    );
    out.expect_success();
    assert!(!out.log().contains("panicked"), "{}", out.report());
    let help = run_within(w.cmd().arg("--help").stdout_closed(), BOUND);
    help.expect_success();
}

#[test]
fn an_invalid_rust_log_falls_back_to_info_with_a_warning_and_keeps_the_summary() {
    let w = World::new("bad_rust_log");
    w.seed_days(MARCH_1, 1, 5);
    for spec in ["verbose", "douyin_order_sync=loud"] {
        let out = w
            .range_cmd("2024-03-01", "2024-03-01")
            .env("RUST_LOG", spec)
            .run();
        out.expect_success();
        assert!(
            out.log().contains("RUST_LOG") && out.log().contains("logging at info"),
            "{}",
            out.report()
        );
        assert!(out.log().contains("done: 1 day"), "{}", out.report());
    }
}

#[test]
fn json_logs_carry_command_line_and_configuration_errors_too() {
    let w = World::new("json_cli_errors");
    for (cmd, code) in [
        (w.cmd().arg("--no-such-flag"), 64),
        (w.cmd().env("PAGE_SIZE", "0"), 78),
        (w.cmd().env("ACCOUNT_ID", "abc"), 78),
    ] {
        let out = cmd.env("LOG_FORMAT", "json").run();
        out.expect_code(code);
        let lines: Vec<&str> = out.stderr.lines().collect();
        assert!(!lines.is_empty(), "{}", out.report());
        for line in lines {
            let v: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("not JSON ({e}): {line}\n{}", out.report()));
            assert_eq!(v["level"], "ERROR", "{line}");
            assert_eq!(v["exit_code"], code, "{line}");
        }
    }
}
