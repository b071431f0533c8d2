//! `DB_URL`, read as the Python tool read it: SQLAlchemy's `make_url()`, then the connection
//! settings the postgres crate needs, and a masked copy for messages.
//!
//! [`make_url`] is a port of SQLAlchemy 2's `_parse_url` (its one regular expression, then
//! `unquote` on user, password and database and `parse_qsl` on the query), so a raw `/`, `?`,
//! `:` or `#` in a password means what it meant to SQLAlchemy, percent-encoding is decoded, and
//! `?sslmode=…` after such a password is still seen. `tests/config_reference.rs` checks it
//! against SQLAlchemy itself over a corpus of URLs. One deliberate difference: SQLAlchemy ends
//! the password at its first `@`, making `u:p@ss@host` the host `ss@host` (which can never
//! connect and which would print part of the password); we take the last `@` before the query's
//! `?` instead (so an `@` in a database name must be written `%40`).
//!
//! [`database`] turns the parts into a [`Database`]: it requires a host and a user (no libpq
//! defaults: a job must not quietly try a local socket as root), knows libpq's `sslmode` names,
//! and renders the URL with `***` for the password from the parts, never by editing the text,
//! so no spelling of a password can slip through into a message.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How TLS to PostgreSQL is negotiated, from `sslmode` in DB_URL (libpq's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

/// Where PostgreSQL is.
#[derive(Clone)]
pub struct Database {
    config: postgres::Config,
    masked: String,
    tls: TlsMode,
    root_cert: Option<PathBuf>,
    password: Option<String>,
}

impl Database {
    /// Connection settings (their Debug output redacts the password).
    pub fn pg_config(&self) -> &postgres::Config {
        &self.config
    }
    /// DB_URL with its password replaced by `***`, for messages.
    pub fn masked_url(&self) -> &str {
        &self.masked
    }
    pub fn tls(&self) -> TlsMode {
        self.tls
    }
    pub fn root_cert(&self) -> Option<&Path> {
        self.root_cert.as_deref()
    }
    /// The password, for the logger to keep out of every line (`logging::hide`).
    pub fn password(&self) -> Option<&str> {
        self.password.as_deref()
    }
}

impl fmt::Debug for Database {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Database({})", self.masked)
    }
}

/// What `sqlalchemy.engine.make_url` finds in a URL.
#[derive(Clone, PartialEq, Eq)]
pub struct UrlParts {
    pub drivername: String,
    pub username: Option<String>,
    password: Option<String>,
    pub host: Option<String>,
    pub port: Option<i64>,
    pub database: Option<String>,
    /// Each key once, in first-seen order, with all its values.
    pub query: Vec<(String, Vec<String>)>,
}

impl UrlParts {
    pub fn password(&self) -> Option<&str> {
        self.password.as_deref()
    }

    /// The URL with `***` for the password (also in a `password=` parameter).
    pub fn masked(&self) -> String {
        let mut s = format!("{}://", self.drivername);
        if let Some(user) = &self.username {
            s.push_str(user);
            if self.password.is_some() {
                s.push_str(":***");
            }
            s.push('@');
        }
        match &self.host {
            Some(h) if h.contains(':') => s.push_str(&format!("[{h}]")),
            Some(h) => s.push_str(h),
            None => {}
        }
        if let Some(port) = self.port {
            s.push_str(&format!(":{port}"));
        }
        if let Some(db) = &self.database {
            s.push('/');
            s.push_str(db);
        }
        let pairs: Vec<String> = self
            .query
            .iter()
            .flat_map(|(k, vs)| {
                vs.iter().map(move |v| match k.as_str() {
                    // Values that cannot be secret; any other could be a misplaced password.
                    "sslmode" | "sslrootcert" | "host" | "hostaddr" | "port" | "user"
                    | "dbname" | "application_name" | "connect_timeout" | "client_encoding"
                    | "keepalives" | "keepalives_idle" | "tcp_user_timeout" => {
                        format!("{k}={v}")
                    }
                    _ if plain(k) => format!("{k}=***"),
                    _ => "***".to_string(),
                })
            })
            .collect();
        if !pairs.is_empty() {
            s.push('?');
            s.push_str(&pairs.join("&"));
        }
        s
    }
}

impl fmt::Debug for UrlParts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UrlParts({})", self.masked())
    }
}

/// `sqlalchemy.engine.make_url(raw)`. The error never quotes the URL (it may hold a password).
pub fn make_url(raw: &str) -> Result<UrlParts, String> {
    const EXPECTED: &str = "expected postgresql://user:password@host:5432/dbname";
    let s: Vec<char> = raw.chars().collect();
    // `(?P<name>[\w\+]+)://`
    let name_len = s
        .iter()
        .take_while(|c| c.is_alphanumeric() || **c == '_' || **c == '+')
        .count();
    if name_len == 0 || !s[name_len..].starts_with(&[':', '/', '/']) {
        return Err(format!("is not a URL: {EXPECTED}"));
    }
    let drivername: String = s[..name_len].iter().collect();
    let mut p = name_len + 3;

    // `(?:(?P<username>[^:/]*)(?::(?P<password>[^@]*))?@)?`
    let run = s[p..]
        .iter()
        .take_while(|c| **c != ':' && **c != '/')
        .count();
    let mut username = None;
    let mut password = None;
    if s.get(p + run) == Some(&':') && s[p + run..].contains(&'@') {
        let pw_start = p + run + 1;
        let pw_len = s[pw_start..].iter().take_while(|c| **c != '@').count();
        username = Some(s[p..p + run].iter().collect::<String>());
        password = Some(s[pw_start..pw_start + pw_len].iter().collect::<String>());
        p = pw_start + pw_len + 1;
    } else if let Some(at) = s[p..p + run].iter().rposition(|c| *c == '@') {
        username = Some(s[p..p + at].iter().collect::<String>());
        p += at + 1;
    }

    let mut rest = after_userinfo(&s, p);
    // Our one deliberate difference: SQLAlchemy ends the password at its first `@`, so the rest
    // of a password with a raw `@` lands in the host or the database; take the last `@` instead.
    if let Some(pw) = &mut password {
        if let Some(at) = s[p..rest.query_start].iter().rposition(|c| *c == '@') {
            pw.push('@');
            pw.extend(&s[p..p + at]);
            rest = after_userinfo(&s, p + at + 1);
        }
    }
    let Rest {
        host,
        port_text,
        database,
        query_text,
        ..
    } = rest;
    let mut query: Vec<(String, Vec<String>)> = Vec::new();
    if let Some(text) = query_text {
        for (k, v) in parse_qsl(&text) {
            match query.iter_mut().find(|(key, _)| *key == k) {
                Some((_, values)) => values.push(v),
                None => query.push((k, vec![v])),
            }
        }
    }

    let port = match port_text {
        None => None,
        Some(text) => Some(python_int(&text).ok_or_else(|| {
            "has a port that is not a number (if the password contains '@', write it as %40)"
                .to_string()
        })?),
    };
    Ok(UrlParts {
        drivername,
        username: username.map(|u| unquote(&u)),
        password: password.map(|p| unquote(&p)),
        host,
        port,
        database: database.map(|d| unquote(&d)),
        query,
    })
}

/// A parameter name that is a name (and so not a stray piece of a password).
fn plain(key: &str) -> bool {
    !key.is_empty() && key.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
}

/// What follows the user and password in SQLAlchemy's expression.
struct Rest {
    host: Option<String>,
    port_text: Option<String>,
    database: Option<String>,
    query_text: Option<String>,
    /// Where the query's `?` is (or the end).
    query_start: usize,
}

/// `(?:(?:\[(?P<ipv6host>[^/\?]+)\]|(?P<ipv4host>[^/:\?]+))?(?::(?P<port>[^/\?]*))?)?`
/// `(?:/(?P<database>[^\?]*))?(?:\?(?P<query>.*))?` from `p` on.
fn after_userinfo(s: &[char], mut p: usize) -> Rest {
    let collect = |a: usize, b: usize| s[a..b].iter().collect::<String>();
    let not_path = |c: &char| *c != '/' && *c != '?';
    let mut host = None;
    if s.get(p) == Some(&'[') {
        let run = s[p + 1..].iter().take_while(|c| not_path(c)).count();
        if let Some(close) = s[p + 1..p + 1 + run].iter().rposition(|c| *c == ']') {
            if close > 0 {
                host = Some(collect(p + 1, p + 1 + close));
                p += close + 2;
            }
        }
    }
    if host.is_none() {
        let len = s[p..]
            .iter()
            .take_while(|c| not_path(c) && **c != ':')
            .count();
        if len > 0 {
            host = Some(collect(p, p + len));
            p += len;
        }
    }
    let mut port_text = None;
    if s.get(p) == Some(&':') {
        let len = s[p + 1..].iter().take_while(|c| not_path(c)).count();
        port_text = Some(collect(p + 1, p + 1 + len));
        p += 1 + len;
    }
    let mut database = None;
    if s.get(p) == Some(&'/') {
        let len = s[p + 1..].iter().take_while(|c| **c != '?').count();
        database = Some(collect(p + 1, p + 1 + len));
        p += 1 + len;
    }
    let query_start = p;
    // `.` stops at a line feed.
    let query_text =
        (s.get(p) == Some(&'?')).then(|| s[p + 1..].iter().take_while(|c| **c != '\n').collect());
    Rest {
        host,
        port_text,
        database,
        query_text,
        query_start,
    }
}

/// Python's `int(text)` for ASCII digits: surrounding whitespace, a sign, `_` between digits.
fn python_int(text: &str) -> Option<i64> {
    let t = text.trim_matches(|c: char| c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c));
    let (negative, digits) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let ok = !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit() || b == b'_')
        && !digits.starts_with('_')
        && !digits.ends_with('_')
        && !digits.contains("__");
    if !ok {
        return None;
    }
    let n: i64 = digits.replace('_', "").parse().ok()?;
    Some(if negative { -n } else { n })
}

/// `urllib.parse.parse_qsl(query)`: `&`-separated, blank values dropped, `+` is a space.
fn parse_qsl(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| (unquote(&k.replace('+', " ")), unquote(&v.replace('+', " "))))
        .collect()
}

/// `urllib.parse.unquote`: `%XX` decoded, the bytes read as UTF-8 with U+FFFD for bad ones.
pub fn unquote(s: &str) -> String {
    fn hex(b: Option<&u8>) -> Option<u8> {
        (*b? as char).to_digit(16).map(|d| d as u8)
    }
    let bytes = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut pending: Vec<u8> = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            if let (Some(h), Some(l)) = (hex(bytes.get(i + 1)), hex(bytes.get(i + 2))) {
                pending.push(h * 16 + l);
                i += 3;
                continue;
            }
        }
        if b.is_ascii() {
            pending.push(b);
            i += 1;
        } else {
            // Python decodes each run of ASCII text on its own, around other characters.
            out.push_str(&String::from_utf8_lossy(&pending));
            pending.clear();
            let len = s[i..].chars().next().map_or(1, char::len_utf8);
            out.push_str(&s[i..i + len]);
            i += len;
        }
    }
    out.push_str(&String::from_utf8_lossy(&pending));
    out
}

/// DB_URL as the connection settings. The error is a problem to append to `DB_URL (masked) `,
/// or, when the URL cannot be parsed, to `DB_URL ` alone (the text is never quoted).
pub fn database(raw: &str) -> Result<Database, (Option<String>, String)> {
    let parts = make_url(raw).map_err(|problem| (None, problem))?;
    let masked = parts.masked();
    let bad = |problem: String| (Some(masked.clone()), problem);
    let driver = parts.drivername.as_str();
    let backend = driver.split('+').next().unwrap_or(driver);
    if !matches!(backend, "postgres" | "postgresql") {
        return Err(bad(
            "must start with postgresql:// (or postgres://, postgresql+psycopg2://)".into(),
        ));
    }
    let mut config = postgres::Config::new();
    let mut tls = TlsMode::Prefer;
    let mut root_cert = None;
    let mut host = parts.host.clone();
    let mut port = parts.port;
    let mut user = parts.username.clone().filter(|u| !u.is_empty());
    let mut dbname = parts.database.clone().filter(|d| !d.is_empty());
    let mut password = parts.password.clone();
    for (key, values) in &parts.query {
        let [value] = values.as_slice() else {
            return Err(bad(format!("gives {key} more than once")));
        };
        match key.as_str() {
            "sslmode" => {
                tls = match value.as_str() {
                    "disable" => TlsMode::Disable,
                    "allow" | "prefer" => TlsMode::Prefer,
                    "require" => TlsMode::Require,
                    "verify-ca" => TlsMode::VerifyCa,
                    "verify-full" => TlsMode::VerifyFull,
                    _ => {
                        return Err(bad(format!(
                            "has sslmode={value}: expected disable, allow, prefer, require, verify-ca or verify-full"
                        )))
                    }
                }
            }
            "sslrootcert" => root_cert = Some(PathBuf::from(value)),
            "host" => host = Some(value.clone()),
            "port" => {
                port = Some(
                    python_int(value)
                        .ok_or_else(|| bad(format!("has port={value}: not a number")))?,
                )
            }
            "user" => user = Some(value.clone()),
            "dbname" => dbname = Some(value.clone()),
            "password" => password = Some(value.clone()),
            "application_name" => {
                config.application_name(value);
            }
            "options" => {
                config.options(value);
            }
            "connect_timeout" => {
                let secs = python_int(value)
                    .filter(|s| *s > 0)
                    .ok_or_else(|| bad(format!("has connect_timeout={value}: not a number of seconds")))?;
                config.connect_timeout(Duration::from_secs(secs as u64));
            }
            "hostaddr" => {
                let addr = value
                    .parse::<std::net::IpAddr>()
                    .map_err(|_| bad(format!("has hostaddr={value}: not an IP address")))?;
                config.hostaddr(addr);
            }
            "keepalives" => {
                config.keepalives(match value.as_str() {
                    "1" => true,
                    "0" => false,
                    _ => return Err(bad(format!("has keepalives={value}: expected 1 or 0"))),
                });
            }
            "keepalives_idle" | "tcp_user_timeout" => {
                let n = python_int(value)
                    .and_then(|n| u64::try_from(n).ok())
                    .ok_or_else(|| bad(format!("has {key}={value}: not a number")))?;
                if key == "keepalives_idle" {
                    config.keepalives_idle(Duration::from_secs(n));
                } else {
                    config.tcp_user_timeout(Duration::from_millis(n));
                }
            }
            "client_encoding" if value.eq_ignore_ascii_case("utf8") || value.eq_ignore_ascii_case("utf-8") => {}
            _ => {
                let which = if plain(key) {
                    format!("the parameter {key}")
                } else {
                    "a parameter".to_string()
                };
                return Err(bad(format!(
                    "has {which} this job does not support (it knows sslmode, sslrootcert, host, hostaddr, port, user, dbname, password, application_name, options, connect_timeout, keepalives, keepalives_idle, tcp_user_timeout, client_encoding=utf8)"
                )));
            }
        }
    }
    let Some(host) = host.filter(|h| !h.is_empty()) else {
        return Err(bad(
            "names no host: expected postgresql://user:password@host:5432/dbname".into(),
        ));
    };
    // A host that cannot be one (`${DB_HOST}` left unexpanded, a stray quote or space) would fail
    // at every connect as "temporary" (75) forever: it is a configuration error now.
    let host_name_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_');
    let ipv6_char = |c: char| {
        c.is_ascii_hexdigit() || matches!(c, ':' | '.' | '%') || c.is_ascii_alphanumeric()
    };
    let plausible = host.starts_with('/')
        || host.chars().all(host_name_char)
        || (host.contains(':') && host.chars().all(ipv6_char));
    if !plausible {
        return Err(bad(format!(
            "has the host {host:?}, which is not a host name or an IP address"
        )));
    }
    let Some(user) = user else {
        return Err(bad(
            "names no user: expected postgresql://user:password@host:5432/dbname".into(),
        ));
    };
    let port = match port {
        None => 5432,
        Some(p) => u16::try_from(p)
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| bad(format!("has port {p}: expected 1 to 65535")))?,
    };
    config.host(&host).port(port).user(&user);
    if let Some(db) = &dbname {
        config.dbname(db);
    }
    let password = password.filter(|p| !p.is_empty());
    if let Some(pw) = &password {
        config.password(pw);
    }
    config.ssl_mode(match tls {
        TlsMode::Disable => postgres::config::SslMode::Disable,
        TlsMode::Prefer => postgres::config::SslMode::Prefer,
        TlsMode::Require | TlsMode::VerifyCa | TlsMode::VerifyFull => {
            postgres::config::SslMode::Require
        }
    });
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(Duration::from_secs(10));
    }
    if config.get_application_name().is_none() {
        config.application_name("douyin-order-sync");
    }
    Ok(Database {
        config,
        masked,
        tls,
        root_cert,
        password,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(raw: &str) -> UrlParts {
        make_url(raw).unwrap()
    }

    #[test]
    fn raw_slash_question_mark_colon_and_hash_stay_in_the_password() {
        let p = parts("postgresql://sync:Se/c?r:e#t@127.0.0.1:1/douyin?sslmode=require");
        assert_eq!(p.password(), Some("Se/c?r:e#t"));
        assert_eq!(p.host.as_deref(), Some("127.0.0.1"));
        assert_eq!(p.port, Some(1));
        assert_eq!(p.database.as_deref(), Some("douyin"));
        assert_eq!(
            p.query,
            vec![("sslmode".to_string(), vec!["require".to_string()])]
        );
        assert_eq!(
            p.masked(),
            "postgresql://sync:***@127.0.0.1:1/douyin?sslmode=require"
        );
    }

    #[test]
    fn percent_encoding_is_decoded_and_a_raw_at_sign_ends_at_the_last_one() {
        assert_eq!(
            parts("postgresql://u:p%40ss%2F@h/d%20b").password(),
            Some("p@ss/")
        );
        let p = parts("postgresql://u:p@ss@host/db");
        assert_eq!(p.password(), Some("p@ss"));
        assert_eq!(p.host.as_deref(), Some("host"));
    }

    #[test]
    fn verify_full_with_a_question_mark_in_the_password_keeps_tls() {
        let db = database(
            "postgresql+psycopg2://u:p?w@db:6543/o?sslmode=verify-full&sslrootcert=%2Fca.pem",
        )
        .unwrap();
        assert_eq!(db.tls(), TlsMode::VerifyFull);
        assert_eq!(db.root_cert(), Some(Path::new("/ca.pem")));
        assert_eq!(db.pg_config().get_dbname(), Some("o"));
        assert_eq!(db.pg_config().get_ports(), &[6543]);
    }

    #[test]
    fn a_host_that_cannot_be_one_is_refused() {
        for url in [
            "postgresql://u:p@${DB_HOST}:5432/db",
            "postgresql://u:p@\"db\"/db",
            "postgresql://u:p@db host/db",
        ] {
            let (_, problem) = database(url).unwrap_err();
            assert!(problem.contains("not a host name"), "{url}: {problem}");
        }
        for url in [
            "postgresql://u:p@db-1.example_x.com/db",
            "postgresql://u:p@[fe80::1%25eth0]/db",
            "postgresql://u:p@[::1]:5/db",
            "postgresql://u:p@/db?host=/var/run/postgresql",
        ] {
            database(url).unwrap_or_else(|e| panic!("{url}: {e:?}"));
        }
    }

    #[test]
    fn a_url_without_host_is_refused_and_an_unparsable_port_is_not_quoted() {
        let (_, problem) = database("postgres://").unwrap_err();
        assert!(problem.contains("names no host"), "{problem}");
        let (masked, problem) = database("postgresql://u:hunter22/db").unwrap_err();
        assert!(
            masked.is_none() && !problem.contains("hunter22"),
            "{problem}"
        );
    }
}
