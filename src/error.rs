//! The one error type of a run, and the exit code each error means.
//!
//! Every failure ends in one of these variants, so a scheduler can tell from the exit code alone
//! whether to retry later (75), page a human about credentials (77) or configuration (78), or file
//! a bug (70). The mapping lives here and nowhere else; `--help` and the README list the same table.

use std::fmt;

/// Exit codes, after BSD `sysexits.h` where one fits.
pub mod code {
    /// The run finished.
    pub const OK: i32 = 0;
    /// The command line is wrong.
    pub const USAGE: i32 = 64;
    /// A bug on our side (an invalid-parameter answer, a broken invariant).
    pub const SOFTWARE: i32 = 70;
    /// Temporary: Douyin or PostgreSQL unavailable, another run holds the lock. Retry later.
    pub const TEMPFAIL: i32 = 75;
    /// Douyin refused the credentials or a permission.
    pub const NOPERM: i32 = 77;
    /// A missing or invalid setting.
    pub const CONFIG: i32 = 78;
    /// Stopped by SIGINT (128 + 2).
    pub const SIGINT: i32 = 130;
    /// Stopped by SIGTERM (128 + 15).
    pub const SIGTERM: i32 = 143;
}

/// The exit codes and their meanings. argh needs `--help`'s copy as literals (`cli.rs`); a test
/// there checks that `--help` prints exactly these lines.
pub const EXIT_CODE_TABLE: &[(i32, &str)] = &[
    (code::OK, "done: every day of the window is committed, or a task_monitor STOP held the run"),
    (code::USAGE, "bad command line"),
    (code::SOFTWARE, "a bug on our side (e.g. Douyin answered 'invalid parameter')"),
    (
        code::TEMPFAIL,
        "temporary: Douyin or PostgreSQL unavailable, retries exhausted, or another run holds the lock",
    ),
    (code::NOPERM, "Douyin refused the credentials or a permission"),
    (code::CONFIG, "bad configuration: a missing or invalid variable"),
    (code::SIGINT, "stopped by SIGINT (the day in flight rolled back)"),
    (code::SIGTERM, "stopped by SIGTERM (the day in flight rolled back)"),
];

/// Which signal stopped the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Int,
    Term,
}

/// An answer from Douyin that carried an error code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiRefusal {
    /// Which call: "token", "order query", "decrypt".
    pub call: &'static str,
    pub code: i64,
    pub description: String,
    pub logid: Option<String>,
}

impl fmt::Display for ApiRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} answered error {}", self.call, self.code)?;
        if !self.description.is_empty() {
            write!(f, " ({})", self.description)?;
        }
        if let Some(logid) = &self.logid {
            write!(f, ", logid {logid}")?;
        }
        Ok(())
    }
}

#[derive(Debug)]
pub enum Error {
    /// The command line could not be parsed.
    Usage(String),
    /// A setting is missing or invalid. `message` already names the variable.
    Config(String),
    /// Douyin refused credentials or a permission.
    Refused(ApiRefusal),
    /// Douyin answered "invalid parameter": our request was wrong.
    Rejected(ApiRefusal),
    /// Douyin kept failing (busy, 5xx, timeouts, cut bodies) or its quota is used up.
    Unavailable(String),
    /// PostgreSQL could not be reached or the connection went away (retried within the run: the
    /// connection is made again and the uncommitted days are fetched again).
    Database(String),
    /// PostgreSQL answered but refused a statement for a reason that may pass (disk full, a
    /// statement timeout, too many connections, a lock not available): temporary, but not
    /// retried within the run, which would only fetch every uncommitted day again.
    DatabaseFailed(String),
    /// Another run holds the lock of this account.
    Locked(String),
    /// A broken invariant on our side.
    Bug(String),
    /// A signal asked the run to stop.
    Interrupted(Signal),
}

impl Error {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Usage(_) => code::USAGE,
            Error::Config(_) => code::CONFIG,
            Error::Refused(_) => code::NOPERM,
            Error::Rejected(_) | Error::Bug(_) => code::SOFTWARE,
            Error::Unavailable(_)
            | Error::Database(_)
            | Error::DatabaseFailed(_)
            | Error::Locked(_) => code::TEMPFAIL,
            Error::Interrupted(Signal::Int) => code::SIGINT,
            Error::Interrupted(Signal::Term) => code::SIGTERM,
        }
    }

    /// How serious an error is when several accounts fail differently: the run exits with the
    /// code of the most serious one (77 over 75, and so on).
    pub fn severity(&self) -> u8 {
        match self {
            Error::Interrupted(_) => 6,
            Error::Usage(_) | Error::Config(_) => 5,
            Error::Refused(_) => 4,
            Error::Rejected(_) | Error::Bug(_) => 3,
            Error::Unavailable(_)
            | Error::Database(_)
            | Error::DatabaseFailed(_)
            | Error::Locked(_) => 2,
        }
    }

    /// The Douyin logid of the answer behind this error, when there is one.
    pub fn logid(&self) -> Option<&str> {
        match self {
            Error::Refused(r) | Error::Rejected(r) => r.logid.as_deref(),
            _ => None,
        }
    }

    pub fn config(message: impl Into<String>) -> Error {
        Error::Config(message.into())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Usage(m) => write!(f, "{m}"),
            Error::Config(m) => write!(f, "configuration: {m}"),
            Error::Refused(r) => write!(f, "Douyin refused: {r}"),
            Error::Rejected(r) => write!(f, "Douyin rejected our request (a bug): {r}"),
            Error::Unavailable(m) => write!(f, "Douyin unavailable: {m}"),
            Error::Database(m) | Error::DatabaseFailed(m) => write!(f, "database: {m}"),
            Error::Locked(m) => write!(f, "{m}"),
            Error::Bug(m) => write!(f, "internal error (a bug): {m}"),
            Error::Interrupted(Signal::Int) => write!(f, "interrupted by SIGINT"),
            Error::Interrupted(Signal::Term) => write!(f, "interrupted by SIGTERM"),
        }
    }
}

impl std::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(code: i64) -> ApiRefusal {
        ApiRefusal {
            call: "order query",
            code,
            description: "x".into(),
            logid: Some("L1".into()),
        }
    }

    #[test]
    fn each_error_maps_to_its_documented_exit_code() {
        assert_eq!(Error::Usage("x".into()).exit_code(), 64);
        assert_eq!(Error::Config("x".into()).exit_code(), 78);
        assert_eq!(Error::Refused(refusal(2119005)).exit_code(), 77);
        assert_eq!(Error::Rejected(refusal(2100005)).exit_code(), 70);
        assert_eq!(Error::Bug("x".into()).exit_code(), 70);
        assert_eq!(Error::Unavailable("x".into()).exit_code(), 75);
        assert_eq!(Error::Database("x".into()).exit_code(), 75);
        assert_eq!(Error::DatabaseFailed("x".into()).exit_code(), 75);
        assert_eq!(Error::Locked("x".into()).exit_code(), 75);
        assert_eq!(Error::Interrupted(Signal::Int).exit_code(), 130);
        assert_eq!(Error::Interrupted(Signal::Term).exit_code(), 143);
    }

    #[test]
    fn every_exit_code_in_the_help_table_is_one_an_error_can_have_or_zero() {
        let produced = [64, 70, 75, 77, 78, 130, 143];
        for (code, _) in EXIT_CODE_TABLE {
            assert!(*code == 0 || produced.contains(code), "{code}");
        }
        assert_eq!(EXIT_CODE_TABLE.len(), produced.len() + 1);
    }

    #[test]
    fn refusal_beats_unavailable_when_accounts_fail_differently() {
        let refused = Error::Refused(refusal(2119005));
        let busy = Error::Unavailable("busy".into());
        assert!(refused.severity() > busy.severity());
    }

    #[test]
    fn a_refusal_message_carries_code_description_and_logid() {
        let text = Error::Refused(refusal(2119005)).to_string();
        assert!(text.contains("2119005") && text.contains("(x)") && text.contains("logid L1"));
        assert_eq!(Error::Refused(refusal(1)).logid(), Some("L1"));
    }
}
