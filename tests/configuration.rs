//! Configuration as the real binary reads it: `.env` files that worked with the Python tool,
//! required variables, DB_URL without a host, and the warning about values that kept the quotes
//! or the comment of a `.env` line (what `kubectl create secret --from-env-file` leaves).

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails loudly by design

mod support;

use support::{temp_dir, Cmd};

const SECRET: &str = "0123456789abcdef0123456789abcdef";

/// The log's ERROR lines.
fn errors(log: &str) -> Vec<&str> {
    log.lines().filter(|l| l.contains("ERROR")).collect()
}

#[test]
fn every_missing_required_variable_is_named_in_one_error_line() {
    let out = Cmd::new().env("APPID", "tt_app").run();
    out.expect_code(78);
    let errors = errors(out.log());
    assert_eq!(errors.len(), 1, "{}", out.report());
    assert!(
        errors[0].contains("DB_URL, AppSecret and ACCOUNT_ID are not set"),
        "{}",
        out.report()
    );
}

#[test]
fn a_db_url_without_host_exits_78_in_one_line() {
    let out = Cmd::new()
        .env("DB_URL", "postgres://")
        .env("APPID", "tt_app")
        .env("AppSecret", SECRET)
        .env("ACCOUNT_ID", "7000000000000000001")
        .run();
    out.expect_code(78);
    let errors = errors(out.log());
    assert_eq!(errors.len(), 1, "{}", out.report());
    assert!(
        errors[0].contains("DB_URL (postgres://) names no host"),
        "{}",
        out.report()
    );
}

#[test]
fn check_warns_about_values_that_kept_their_quotes_or_comment() {
    // What `kubectl create secret generic --from-env-file=.env` puts in the environment.
    let out = Cmd::new()
        .env("DB_URL", "postgresql://sync:pw@127.0.0.1:1/douyin")
        .env("APPID", "tt_app # the app")
        .env("AppSecret", &format!("\"{SECRET}\""))
        .env("ACCOUNT_ID", "7000000000000000001")
        .arg("check")
        .run();
    out.expect_code(75); // nobody listens on port 1
    for name in ["APPID has a ' #' comment", "AppSecret has quotes around it"] {
        assert!(
            out.stdout.contains(&format!("warning: {name}")),
            "{name}: {}",
            out.report()
        );
        assert!(out.log().contains(name), "{name}: {}", out.report());
    }
    assert!(!out.stdout.contains(SECRET) && !out.log().contains(SECRET));
}

#[test]
fn dotenv_files_that_worked_with_the_python_tool_configure_the_job() {
    let dir = temp_dir("dotenv");
    // A BOM (Notepad), CRLF, `export`, a tab before a comment, `KEY= # comment`, a quoted secret
    // followed by a comment with quotes, and a DB_URL composed with ${…}.
    std::fs::write(
        dir.join(".env"),
        format!(
            "\u{feff}# merchant settings\r\n\
             export DB_HOST=127.0.0.1\r\n\
             DB_URL=postgresql://sync:${{DB_PASS:-pw}}@${{DB_HOST}}:1/douyin?sslmode=disable\r\n\
             APPID=tt_app\r\n\
             AppSecret=\"{SECRET}\" # the \"secret\"\r\n\
             ACCOUNT_ID=7000000000000000001\r\n\
             MAX_QPS=10\t# note\r\n\
             ORDER_STATUS= # all of them\r\n\
             BROKEN=\"never closed\r\n"
        ),
    )
    .unwrap();
    let out = Cmd::new().current_dir(&dir).arg("check").run();
    // Configuration fine, then nobody listens on port 1: 75, with the host expanded.
    out.expect_code(75);
    assert!(out.stdout.contains("configuration: ok"), "{}", out.report());
    assert!(
        out.log().contains("sync:***@127.0.0.1:1/douyin"),
        "{}",
        out.report()
    );
    assert!(
        out.log().contains(".env line 9 could not be parsed"),
        "{}",
        out.report()
    );
    assert!(!out.log().contains(SECRET) && !out.stdout.contains(SECRET));
    assert!(
        !out.stdout.contains("warning: AppSecret"),
        "{}",
        out.report()
    );
}

#[test]
fn the_environment_wins_over_dotenv_also_inside_its_interpolations() {
    let dir = temp_dir("dotenv");
    std::fs::write(
        dir.join(".env"),
        format!(
            "DB_HOST=db.example.invalid\nDB_URL=postgresql://sync:pw@${{DB_HOST}}:1/douyin\n\
             APPID=tt_app\nAppSecret={SECRET}\nACCOUNT_ID=7000000000000000001\n"
        ),
    )
    .unwrap();
    let out = Cmd::new()
        .current_dir(&dir)
        .env("DB_HOST", "127.0.0.1")
        .run();
    out.expect_code(75);
    assert!(
        out.log().contains("sync:***@127.0.0.1:1/douyin"),
        "{}",
        out.report()
    );
}

#[test]
fn a_dotenv_file_that_is_not_utf8_exits_78_naming_it() {
    // python-dotenv raised UnicodeDecodeError here: the Python tool crashed.
    let dir = temp_dir("dotenv");
    std::fs::write(dir.join(".env"), b"APPID=caf\xe9\n").unwrap();
    let out = Cmd::new().current_dir(&dir).run();
    out.expect_code(78);
    let errors = errors(out.log());
    assert_eq!(errors.len(), 1, "{}", out.report());
    assert!(errors[0].contains("cannot read .env"), "{}", out.report());
}

#[test]
fn an_unexpanded_variable_as_host_is_78_not_a_retry_forever() {
    // The environment is not interpolated (as for the Python tool): what a Secret made with
    // `kubectl create secret --from-env-file` holds for a composed DB_URL.
    let out = Cmd::new()
        .env("DB_URL", "postgresql://sync:pw@${DB_HOST}:5432/douyin")
        .env("APPID", "tt_app")
        .env("AppSecret", SECRET)
        .env("ACCOUNT_ID", "7000000000000000001")
        .run();
    out.expect_code(78);
    assert!(
        out.log()
            .contains("has the host \"${DB_HOST}\", which is not a host name"),
        "{}",
        out.report()
    );
}

#[test]
fn a_dropped_dotenv_line_is_named_before_the_missing_variable_it_caused() {
    let dir = temp_dir("dotenv");
    std::fs::write(
        dir.join(".env"),
        "DB_URL=postgresql://sync:pw@127.0.0.1:1/douyin\nAPPID=tt_app\nAppSecret=\"never closed\nACCOUNT_ID=7000000000000000001\n",
    )
    .unwrap();
    let out = Cmd::new().current_dir(&dir).run();
    out.expect_code(78);
    assert!(
        out.log().contains(".env line 3 could not be parsed"),
        "{}",
        out.report()
    );
    assert!(
        out.log().contains("AppSecret is not set"),
        "{}",
        out.report()
    );
}
