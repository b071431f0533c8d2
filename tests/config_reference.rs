//! Differential tests against the reference implementations themselves: python-dotenv's
//! `load_dotenv()` for `.env` files and SQLAlchemy's `make_url()` for DB_URL, both run from the
//! virtual environment `.ci/run` makes (`.ci/test` names its python in `REFERENCE_PYTHON`).
//!
//! Every case must agree, or be listed below (and in the README) with the reason it differs on
//! purpose. Without `REFERENCE_PYTHON` the tests fail: they never skip.

// A test fails by panicking: unwrap/expect is how it says which step went wrong.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use douyin_order_sync::db_url::make_url;
use douyin_order_sync::dotenv;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

/// The variable that names the python holding python-dotenv and SQLAlchemy.
const REFERENCE_PYTHON: &str = "REFERENCE_PYTHON";

/// Run `script` (in tests/reference) with `input` as JSON on stdin; its JSON answer.
fn reference(script: &str, input: &Value) -> Value {
    let python = std::env::var(REFERENCE_PYTHON).unwrap_or_else(|_| {
        panic!(
            "{REFERENCE_PYTHON} is not set: it must name a python with python-dotenv and SQLAlchemy \
             (`bash .ci/run` makes .ci/venv and `bash .ci/test` sets it to .ci/venv/bin/python)"
        )
    });
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/reference")
        .join(script);
    let mut child = Command::new(&python)
        .arg(&script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {REFERENCE_PYTHON}={python}: {e}"));
    let mut stdin = child.stdin.take().unwrap();
    let text = input.to_string();
    let writer = std::thread::spawn(move || stdin.write_all(text.as_bytes()));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(
        out.status.success(),
        "{python} {} failed ({}):\n{}",
        script.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `.env` cases whose result differs from python-dotenv's on purpose, with the reason (the
/// README lists the same).
const DOTENV_DIFFERENCES: &[(&str, &str)] = &[
    (
        "merchant: a quoted key containing =",
        "load_dotenv() raises ValueError (illegal environment variable name): the Python tool crashed; we read the file",
    ),
    (
        "merchant: a raw NUL in a value",
        "load_dotenv() raises ValueError (embedded null byte): the Python tool crashed; we read the file",
    ),
];

#[test]
fn every_dotenv_corpus_file_loads_as_python_dotenv_loads_it() {
    let corpus: Value = serde_json::from_str(include_str!("data/dotenv_corpus.json")).unwrap();
    let mut cases = corpus["cases"].as_array().unwrap().clone();
    assert!(
        cases.len() >= 100,
        "the corpus has only {} cases",
        cases.len()
    );
    // And the file users start from.
    cases.push(json!({
        "name": "the repository's .env.example",
        "text": include_str!("../.env.example"),
        "env": {},
    }));
    let answer = reference("dotenv_load.py", &Value::Array(cases.clone()));
    let results = answer["results"].as_array().unwrap();
    assert_eq!(results.len(), cases.len());
    let mut disagreements = Vec::new();
    for (case, expected) in cases.iter().zip(results) {
        let name = case["name"].as_str().unwrap();
        let text = case["text"].as_str().unwrap();
        let env: HashMap<String, String> = serde_json::from_value(case["env"].clone()).unwrap();
        let loaded = dotenv::load(text, &env);
        let mut ours: BTreeMap<String, String> = env.clone().into_iter().collect();
        ours.extend(loaded.vars);
        let ours = json!({ "env": ours });
        let theirs = match expected.get("env") {
            Some(e) => {
                json!({ "env": serde_json::from_value::<BTreeMap<String, String>>(e.clone()).unwrap() })
            }
            None => expected.clone(),
        };
        let listed = DOTENV_DIFFERENCES.iter().any(|(n, _)| *n == name);
        // The listed differences are files python-dotenv cannot load at all.
        let expected_difference = listed && theirs.get("error").is_some();
        if (ours != theirs) != expected_difference {
            disagreements.push(format!(
                "{name}\n    file:          {text:?}\n    environment:   {env:?}\n    python-dotenv: {theirs}\n    ours:          {ours}{}",
                if listed { "\n    (listed as a deliberate difference: python-dotenv should have failed)" } else { "" }
            ));
        }
    }
    assert!(
        disagreements.is_empty(),
        "{} of {} cases disagree with python-dotenv {}:\n{}",
        disagreements.len(),
        cases.len(),
        answer["version"],
        disagreements.join("\n")
    );
    eprintln!(
        "{} .env cases agree with python-dotenv {}, {} differ on purpose",
        cases.len() - DOTENV_DIFFERENCES.len(),
        answer["version"],
        DOTENV_DIFFERENCES.len()
    );
}

/// Passwords with every special character, percent-encoded and not, and non-ASCII ones.
pub const PASSWORDS: &[&str] = &[
    "Secr3t/pw",
    "pa?ss",
    "pa:ss",
    "pa#ss",
    "pa%ss",
    "pa%41ss",
    "pa%2Fss%3F",
    "pa%zzss",
    "p a+ss",
    "pa&ss=1",
    "pa[ss]",
    "pa\\ss\"'",
    "pa;ss,$x`",
    "!#$%&'()*+,-./:;<=>?[\\]^_`{|}~",
    "密码ü€",
    "%E5%AF%86%E7%A0%81",
    "%C3%28bad",
    "pa\tss",
    "pa?sslmode=disable",
    "p@ss",
    "p@ss@w:rd?#",
    "p@s/s",
];

/// URLs around each password, and URLs that probe the rest of the grammar.
fn url_corpus() -> Vec<String> {
    let mut urls = Vec::new();
    for pw in PASSWORDS {
        urls.push(format!("postgresql://sync:{pw}@127.0.0.1:5432/douyin"));
        urls.push(format!(
            "postgresql+psycopg2://sync:{pw}@db.internal/douyin?sslmode=require"
        ));
        urls.push(format!(
            "postgres://sync:{pw}@db:6543/douyin?sslmode=verify-full&sslrootcert=/etc/ca.pem"
        ));
        urls.push(format!("postgresql://sync:{pw}@[::1]:5432/douyin"));
    }
    for url in [
        "postgres://",
        "postgresql://",
        "postgresql://localhost",
        "postgresql://localhost/db",
        "postgresql://u@localhost/db",
        "postgresql://u:@localhost/db",
        "postgresql://:pw@localhost/db",
        "postgresql://u:pw@/db",
        "postgresql://u:pw@host:/db",
        "postgresql://u:pw@host:abc/db",
        "postgresql://u:pw@host: 5432/db",
        "postgresql://u:pw@host:5_432/db",
        "postgresql://u:pw@host:-1/db",
        "postgresql://u:pw@host:99999/db",
        "postgresql://u:secret",
        "postgresql://u:secret/db",
        "postgresql://us%40er:pw@host/db",
        "postgresql://a@b:pw@host/db",
        "postgresql://a@b@host/db",
        "postgresql://u:pw@host/d%2Fb%20x",
        "postgresql://u:pw@host/db/extra",
        "postgresql://u:pw@host/db?",
        "postgresql://u:pw@host/db?sslmode=",
        "postgresql://u:pw@host/db?sslmode",
        "postgresql://u:pw@host/db?sslmode=require&sslmode=disable",
        "postgresql://u:pw@host/db?a=1&&b=2&c",
        "postgresql://u:pw@host/db?application_name=my+app%21",
        "postgresql://u:pw@host/db?sslmode=require#frag",
        "postgresql://u:pw@host/db#frag?sslmode=require",
        "postgresql://u:pw@host/db?host=/var/run/postgresql",
        "postgresql://u:pw@host/db\n?sslmode=require",
        "postgresql://u:pw@host/db?sslmode=require\nx=1",
        "postgresql://u:pw@[::1/db",
        "postgresql://u:pw@[]:5/db",
        "postgresql://u:pw@[fe80::1%25eth0]:5432/db",
        "postgresql://u:pw@h%41st/db",
        "postgresql://u:pw@host:5432",
        "postgresql://u:pw@host?sslmode=require",
        "mysql://u:pw@host/db",
        "postgresql+asyncpg://u:pw@host/db",
        "sqlite:///file.db",
        "not a url",
        "postgresql:/u:pw@host/db",
        "://u:pw@host/db",
        "数据库://u:pw@host/db",
        "postgresql://用户:密码@主机/库",
        "postgresql://u:%@host/db",
        "postgresql://u:%4@host/db",
        "postgresql://u:%%41@host/db",
        "postgresql://u:pw@host/db?k%3D=v%26&x=%FF",
    ] {
        urls.push(url.to_string());
    }
    urls
}

/// `url` with a raw `@` in its password written as `%40`, when it has one: the one case where
/// `make_url` differs from SQLAlchemy on purpose. SQLAlchemy ends the password at its first `@`
/// (the rest lands in the host or the database, which can never connect, or the port, which it
/// refuses); we end it at the last `@`, so the URL must mean what SQLAlchemy reads from the
/// encoded spelling.
fn with_at_sign_encoded(url: &str) -> Option<String> {
    let pw = PASSWORDS
        .iter()
        .find(|pw| pw.contains('@') && url.contains(&format!("sync:{pw}@")))?;
    Some(url.replacen(
        &format!("sync:{pw}@"),
        &format!("sync:{}@", pw.replace('@', "%40")),
        1,
    ))
}

fn ours(url: &str) -> Value {
    match make_url(url) {
        Ok(p) => json!({
            "drivername": p.drivername,
            "username": p.username,
            "password": p.password(),
            "host": p.host,
            "port": p.port,
            "database": p.database,
            "query": p.query.iter().cloned().collect::<BTreeMap<_, _>>(),
        }),
        Err(e) => json!({ "error": e }),
    }
}

fn agree(ours: &Value, theirs: &Value) -> bool {
    match (ours.get("error"), theirs.get("error")) {
        (Some(_), Some(_)) => true,
        (None, None) => {
            let mut theirs = theirs.clone();
            theirs["query"] = json!(serde_json::from_value::<BTreeMap<String, Vec<String>>>(
                theirs["query"].clone()
            )
            .unwrap());
            *ours == theirs
        }
        _ => false,
    }
}

#[test]
fn every_db_url_of_the_corpus_parses_as_sqlalchemy_parses_it() {
    let urls = url_corpus();
    assert!(urls.len() >= 100, "only {} URLs", urls.len());
    let encoded: Vec<Option<String>> = urls.iter().map(|u| with_at_sign_encoded(u)).collect();
    let mut asked = urls.clone();
    asked.extend(encoded.iter().flatten().cloned());
    let answer = reference("sqlalchemy_url.py", &json!(asked));
    let results = answer["results"].as_array().unwrap();
    let mut encoded_answers = results[urls.len()..].iter();
    let mut disagreements = Vec::new();
    let mut deliberate = 0;
    for ((url, theirs), encoded) in urls.iter().zip(results).zip(&encoded) {
        let ours = ours(url);
        let (reference_url, theirs) = match encoded {
            Some(e) => {
                deliberate += 1;
                (e, encoded_answers.next().unwrap())
            }
            None => (url, theirs),
        };
        if !agree(&ours, theirs) {
            disagreements.push(format!(
                "{url:?}\n    SQLAlchemy ({reference_url:?}): {theirs}\n    ours: {ours}"
            ));
        }
    }
    assert!(
        disagreements.is_empty(),
        "{} of {} URLs disagree with SQLAlchemy {}:\n{}",
        disagreements.len(),
        urls.len(),
        answer["version"],
        disagreements.join("\n")
    );
    eprintln!(
        "{} URLs agree with SQLAlchemy {} ({deliberate} differ on purpose: a raw '@' in the password)",
        urls.len() - deliberate,
        answer["version"]
    );
}
