//! The database password never reaches the output, whatever it contains: the real binary is run
//! at `RUST_LOG=trace`, with text and JSON logs, over a corpus of passwords (every special
//! character, raw and percent-encoded, non-ASCII), on every path that prints DB_URL or talks to
//! the server: an unreachable host, a wrong password, the right one (`check` connects and says
//! so), a bad sslmode, TLS refused by the server, an unreadable sslrootcert and configuration
//! errors. The server is a throwaway PostgreSQL that asks role `sync` for its password
//! (scram-sha-256), so a password read wrongly from DB_URL cannot connect.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails loudly by design

mod support;

use support::pg::ThrowawayCluster;
use support::{temp_dir, Cmd, Output};

/// Passwords as the server knows them (all at least 4 characters, like any real one).
const PASSWORDS: &[&str] = &[
    "Secr3t/pw",
    "pa?ss?sslmode=disable",
    "pa:ss#frag&x=1",
    "p@ss@w:rd",
    "pa%41ss%zz",
    "!#$%&'()*+,-./:;<=>?@[\\]^_`{|}~",
    "密码ü€pw",
    "pa ss\"\\q",
    "tab\tpw+plus",
];

/// `s` with every byte but ASCII letters and digits percent-encoded.
fn encode_all(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The ways a merchant may write `pw` in DB_URL: raw where SQLAlchemy reads it back (no `%`),
/// and percent-encoded.
fn spellings(pw: &str) -> Vec<String> {
    let mut out = vec![encode_all(pw)];
    if !pw.contains('%') {
        out.push(pw.to_string());
    }
    out
}

/// Every form of `pw` that must not appear: itself, how DB_URL spelled it, and the pieces a
/// raw `@` would split it into.
fn forbidden(pw: &str, spelling: &str) -> Vec<String> {
    let mut out = vec![pw.to_string(), spelling.to_string(), encode_all(pw)];
    out.extend(
        pw.split('@')
            .filter(|p| p.chars().count() >= 4)
            .map(str::to_string),
    );
    out
}

/// Panics unless no form of the password is in stdout or stderr, in JSON lines also after
/// decoding each string. Returns the output for further checks.
#[track_caller]
fn assert_hidden(out: Output, pw: &str, spelling: &str, json: bool) -> Output {
    let forbidden = forbidden(pw, spelling);
    let mut texts = vec![out.stdout.clone(), out.stderr.clone()];
    if json {
        for line in out.stderr.lines() {
            let value: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}\n{}", out.report()));
            for (_, v) in value.as_object().unwrap() {
                if let Some(s) = v.as_str() {
                    texts.push(s.to_string());
                }
            }
        }
    }
    for text in &texts {
        for f in &forbidden {
            assert!(
                !text.contains(f.as_str()),
                "the password ({f:?}) is in the output:\n{}",
                out.report()
            );
        }
    }
    assert!(!out.stderr.is_empty(), "nothing logged:\n{}", out.report());
    out
}

fn base(db_url: &str, json: bool) -> Cmd {
    Cmd::new()
        .env("DB_URL", db_url)
        .env("APPID", "tt_app")
        .env("AppSecret", "0123456789abcdef0123456789abcdef")
        .env("ACCOUNT_ID", "7000000000000000001")
        .env("API_BASE_URL", "http://127.0.0.1:1")
        .env("RETRY_MAX_TRIES", "1")
        .env("RUST_LOG", "trace")
        .env("LOG_FORMAT", if json { "json" } else { "text" })
}

/// A server without TLS whose role `sync` logs in with a password (scram-sha-256) and may
/// create tables in schema public.
fn password_server() -> ThrowawayCluster {
    let dir = temp_dir("hba");
    let hba = dir.join("pg_hba.conf");
    std::fs::write(
        &hba,
        "host all postgres 127.0.0.1/32 trust\n\
         host all all 127.0.0.1/32 scram-sha-256\n\
         local all all trust\n",
    )
    .unwrap();
    // The server runs as `postgres` when we are root: it must be able to read the file.
    let _ = std::process::Command::new("chmod")
        .args(["-R", "a+rX"])
        .arg(&dir)
        .status();
    let cluster = ThrowawayCluster::start_with(&[
        ("hba_file", hba.to_str().unwrap()),
        ("password_encryption", "scram-sha-256"),
    ])
    .unwrap_or_else(|e| panic!("cannot start PostgreSQL with password auth: {e}"));
    let mut admin = postgres::Client::connect(cluster.url(), postgres::NoTls).unwrap();
    // The rights a run needs (`check` refuses a role that may not create its staging tables).
    admin
        .batch_execute("CREATE ROLE sync LOGIN; GRANT CREATE ON SCHEMA public TO sync")
        .unwrap();
    cluster
}

fn set_password(cluster: &ThrowawayCluster, pw: &str) {
    let mut admin = postgres::Client::connect(cluster.url(), postgres::NoTls).unwrap();
    admin
        .batch_execute(&format!(
            "ALTER ROLE sync PASSWORD '{}'",
            pw.replace('\'', "''")
        ))
        .unwrap();
}

#[test]
fn the_password_never_appears_in_any_output_whatever_it_contains() {
    let cluster = password_server();
    let port = cluster.port();
    let mut runs = 0;
    for pw in PASSWORDS {
        set_password(&cluster, pw);
        for spelling in spellings(pw) {
            for json in [false, true] {
                let url = |host: &str, query: &str| {
                    format!("postgresql://sync:{spelling}@{host}/postgres{query}")
                };
                let at = format!("127.0.0.1:{port}");
                let run = |cmd: Cmd| {
                    let out = cmd.run();
                    assert_hidden(out, pw, &spelling, json)
                };

                // The right password: `check` connects (so it was read right), then fails at
                // Douyin.
                let out = run(base(&url(&at, "?sslmode=disable"), json).arg("check"));
                assert!(
                    out.stdout.contains(&format!(
                        "database: connected to postgresql://sync:***@127.0.0.1:{port}/postgres"
                    )),
                    "{pw:?} spelled {spelling:?} did not connect:\n{}",
                    out.report()
                );
                // The same with `sslmode=prefer` (the default): the server has no TLS.
                let out = run(base(&url(&at, ""), json).arg("check"));
                assert!(
                    out.stdout.contains("database: connected"),
                    "{}",
                    out.report()
                );

                // A wrong password: 78, naming the masked URL.
                let wrong = format!("postgresql://sync:{spelling}x@{at}/postgres");
                let out = run(base(&wrong, json));
                out.expect_code(78);
                assert!(out.stderr.contains("sync:***@"), "{}", out.report());

                // Nobody listening: 75.
                run(base(&url("127.0.0.1:1", ""), json)).expect_code(75);

                // TLS required by us, refused by the server: `sslmode` after the password is
                // seen, whatever the password holds (`?` included).
                let out = run(base(&url(&at, "?sslmode=require"), json));
                assert!(matches!(out.code, Some(75 | 78)), "{}", out.report());
                assert!(
                    out.stderr.contains("sslmode=require")
                        && out.stderr.contains("does not support TLS"),
                    "{}",
                    out.report()
                );

                // A bad sslmode, an unreadable sslrootcert, a missing variable, a bad setting.
                run(base(&url(&at, "?sslmode=verify-everything"), json)).expect_code(78);
                let out = run(base(
                    &url(&at, "?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem"),
                    json,
                ));
                out.expect_code(78);
                run(base(&url(&at, ""), json).env("APPID", "")).expect_code(78);
                run(base(&url(&at, ""), json).env("PAGE_SIZE", "0")).expect_code(78);
                // No `@`: SQLAlchemy reads the password as a port.
                let out = run(base(&format!("postgresql://sync:{spelling}"), json));
                out.expect_code(78);
                runs += 10;
            }
        }
    }
    eprintln!("{runs} runs, no password in any output");
}

#[test]
fn a_password_composed_in_dotenv_from_a_quoted_variable_connects() {
    let cluster = password_server();
    let pw = "S3cr#t/p?w'\"x";
    set_password(&cluster, pw);
    let dir = temp_dir("dotenv");
    // CRLF, a BOM, a single-quoted password with an escaped quote and a comment with quotes.
    std::fs::write(
        dir.join(".env"),
        format!(
            "\u{feff}DB_USER=sync\r\nDB_PASS='S3cr#t/p?w\\'\"x' # the \"password\"\r\n\
             DB_URL=postgresql://${{DB_USER}}:${{DB_PASS}}@127.0.0.1:{}/postgres?sslmode=disable\r\n\
             APPID=tt_app\r\nAppSecret=0123456789abcdef0123456789abcdef\r\nACCOUNT_ID=7000000000000000001\r\n\
             API_BASE_URL=http://127.0.0.1:1\r\nRETRY_MAX_TRIES=1\r\n",
            cluster.port()
        ),
    )
    .unwrap();
    let out = Cmd::new()
        .current_dir(&dir)
        .env("RUST_LOG", "trace")
        .arg("check")
        .run();
    let out = assert_hidden(out, pw, pw, false);
    assert!(
        out.stdout
            .contains("database: connected to postgresql://sync:***@127.0.0.1"),
        "{}",
        out.report()
    );
}
