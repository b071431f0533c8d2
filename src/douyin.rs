//! Talking to the Douyin Open Platform: the client token, the order query and the batch
//! decryption, each paced, retried and classified.
//!
//! Every answer is sorted into one of a few classes (ok, retry, slow down, refresh the token,
//! refused, our bug, quota) by one table, [`classify`], taken from §3 of the API notes. The retry
//! loop ([`Douyin::call`]) is the only place that waits between tries, so the backoff, the QPS
//! budget and the token refresh behave the same for every endpoint. Response models are lenient:
//! numbers may be strings, optional fields may be missing, orders are kept as the raw JSON text
//! they arrived as. This module knows nothing of SQL.

use crate::config::{Config, RetryPolicy, Secret, TimeField};
use crate::error::{ApiRefusal, Error};
use crate::pacer::Pacer;
use crate::stop::Stop;
use crate::window::Span;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;
use std::collections::HashMap;
use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The largest body we read; a page of 100 orders is well under a megabyte.
const MAX_BODY_BYTES: u64 = 32 * 1024 * 1024;
/// How many new tokens one call may need before its refusals mean the credentials are bad (a
/// token normally lives 2 hours; more than one expiry within a call means another tool keeps
/// fetching tokens for the same app, or the token is refused outright).
const MAX_TOKEN_REFRESHES: u32 = 3;
/// The batch decrypt endpoint takes at most this many ciphertexts a call.
pub const DECRYPT_BATCH: usize = 50;
/// A client token's lifetime when the answer does not say (§1: 7200 s).
const DEFAULT_TOKEN_LIFETIME_SECS: i64 = 7200;
/// A token with less validity left than this is replaced before it is used: a run (normally
/// well under a minute, every 15 minutes) then never starts on a token that dies under it, and a
/// kept token is still reused for 1 h 45 min of its 2 h, i.e. about 14 token calls a day instead
/// of 96. A token that dies early anyway (another service of the app fetched two newer ones) is
/// replaced when Douyin says so.
pub const TOKEN_RENEW_MARGIN_SECS: i64 = 15 * 60;

/// A token just fetched from the token endpoint.
pub struct FreshToken {
    pub token: Secret,
    /// `expires_in` minus the time the call took: how long it is valid from now, at least.
    pub lifetime_secs: i64,
}

/// Keeps the client token between runs (src/token_cache.rs keeps it in PostgreSQL).
pub trait TokenKeeper: Send + Sync {
    /// The token to use and its seconds of validity left: a kept one that is still valid for
    /// more than [`TOKEN_RENEW_MARGIN_SECS`] (never `refused`, the one Douyin just called
    /// expired), else the one `fetch` brings, which is then kept.
    fn obtain(
        &self,
        refused: Option<&Secret>,
        fetch: &dyn Fn() -> Result<FreshToken, Error>,
    ) -> Result<(Secret, i64), Error>;
}

/// What a batch decryption got.
#[derive(Debug, Default)]
pub struct Decrypted {
    /// Ciphertext → plaintext, for each ciphertext the endpoint decrypted.
    pub plain: HashMap<String, String>,
    /// The app's decrypt quota is used up (2190001 / 28003017): set on the call that was told
    /// so and on every later call of the run, which sends nothing.
    pub quota: Option<ApiRefusal>,
}

/// What the job does with an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Busy, internal error, 5xx, timeout, cut or non-JSON body: back off and retry.
    Retry,
    /// "Too frequent": slow the whole job down, back off longer, retry.
    RateLimited,
    /// The token is invalid or expired: fetch a new one once and repeat.
    TokenExpired,
    /// The app's quota is used up: stop, try later.
    Quota,
    /// Credentials or permission refused: stop (77).
    Refused,
    /// Invalid parameter: a bug on our side (70).
    Rejected,
    /// The token endpoint answers 404, or the HTTP client cannot use the URL: API_BASE_URL is
    /// not the platform's address (78).
    WrongAddress,
}

/// The §3 table. Codes nobody documents are retried: a transient answer we do not know is more
/// likely than a permanent one, and the retries are bounded.
pub fn classify(code: i64) -> Class {
    match code {
        2190002 | 2190008 | 28001008 => Class::TokenExpired,
        2119003 | 28003018 | 10020 => Class::RateLimited,
        2100004 | 2119002 | 5000001 | 28001005 | 28001006 | 2100001 => Class::Retry,
        2190001 | 28003017 => Class::Quota,
        2100005 | 2119001 | 28001007 => Class::Rejected,
        2190004 | 28001014 | 28001018 | 2119005 | 2100007 | 2119013 | 10002 | 10003 | 10013 => {
            Class::Refused
        }
        _ => Class::Retry,
    }
}

/// One failed try.
#[derive(Debug, Clone)]
pub enum CallError {
    /// HTTP 200 with an error code in the body.
    Api(ApiRefusal),
    /// An HTTP status other than 2xx.
    Http { status: u16, logid: Option<String> },
    /// Connect failure, timeout, reset, a body cut short.
    Transport(String),
    /// A body that is not the JSON we expect.
    Malformed {
        detail: String,
        logid: Option<String>,
    },
    /// A URL the HTTP client refuses before sending anything, or a token endpoint that is not
    /// there (HTTP 404: the token call is the run's first, so it is the probe of API_BASE_URL;
    /// a 404 later in a run is retried like any other status).
    BadUrl(String),
}

impl CallError {
    /// The Douyin logid of the failed answer, when there is one.
    pub fn logid(&self) -> Option<&str> {
        match self {
            CallError::Api(r) => r.logid.as_deref(),
            CallError::Http { logid, .. } | CallError::Malformed { logid, .. } => logid.as_deref(),
            CallError::Transport(_) | CallError::BadUrl(_) => None,
        }
    }

    /// The Douyin error code or the HTTP status, for structured logs.
    pub fn code(&self) -> Option<i64> {
        match self {
            CallError::Api(r) => Some(r.code),
            CallError::Http { status, .. } => Some(i64::from(*status)),
            _ => None,
        }
    }

    pub fn class(&self) -> Class {
        match self {
            CallError::Api(r) => classify(r.code),
            CallError::BadUrl(_) => Class::WrongAddress,
            CallError::Http { .. } | CallError::Transport(_) | CallError::Malformed { .. } => {
                Class::Retry
            }
        }
    }
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Api(r) => write!(f, "{r}"),
            CallError::Http { status, logid } => {
                write!(f, "HTTP {status}")?;
                if let Some(l) = logid {
                    write!(f, ", logid {l}")?;
                }
                Ok(())
            }
            CallError::Transport(m) | CallError::BadUrl(m) => write!(f, "{m}"),
            CallError::Malformed { detail, logid } => {
                write!(f, "unreadable answer: {detail}")?;
                if let Some(l) = logid {
                    write!(f, ", logid {l}")?;
                }
                Ok(())
            }
        }
    }
}

/// A number that may arrive as a JSON number or a numeric string.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Num {
    Int(i64),
    Float(f64),
    Text(String),
}

impl Num {
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Num::Int(n) => Some(*n),
            // Whole floats only ("12900.0"); a fraction is not a count of fen or seconds.
            Num::Float(x) if x.fract() == 0.0 && x.abs() < 9.0e15 => Some(*x as i64),
            Num::Float(_) => None,
            Num::Text(s) => {
                let s = s.trim();
                s.parse::<i64>().ok().or_else(|| {
                    s.parse::<f64>()
                        .ok()
                        .filter(|x| x.fract() == 0.0 && x.abs() < 9.0e15)
                        .map(|x| x as i64)
                })
            }
        }
    }
}

#[derive(Debug, Default, Deserialize)]
struct Extra {
    #[serde(default)]
    error_code: Option<Num>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    sub_error_code: Option<Num>,
    #[serde(default)]
    sub_description: Option<String>,
    #[serde(default)]
    logid: Option<String>,
}

/// The logid Douyin support asks for: `extra.logid`, else the `x-tt-logid` header.
fn logid_of(extra: Option<&Extra>, header: Option<String>) -> Option<String> {
    extra.and_then(|e| e.logid.clone()).or(header)
}

/// The error code of an answer, from `data.error_code` or `extra.error_code` (callers have seen
/// both), with the best description available.
fn answer_error(
    call: &'static str,
    data_code: Option<&Num>,
    data_description: Option<&str>,
    extra: Option<&Extra>,
    logid: Option<String>,
) -> Option<ApiRefusal> {
    let code_of = |n: Option<&Num>| n.and_then(Num::as_i64).filter(|c| *c != 0);
    let extra_code = extra.and_then(|e| code_of(e.error_code.as_ref()));
    let code = code_of(data_code).or(extra_code)?;
    let mut description = data_description
        .filter(|d| !d.is_empty())
        .or_else(|| {
            extra
                .and_then(|e| e.description.as_deref())
                .filter(|d| !d.is_empty())
        })
        .unwrap_or("")
        .to_string();
    if let Some(e) = extra {
        let sub = code_of(e.sub_error_code.as_ref());
        let sub_description = e.sub_description.as_deref().filter(|d| !d.is_empty());
        if sub.is_some() || sub_description.is_some() {
            description.push_str(&format!(
                " [sub {}{}]",
                sub.map(|c| c.to_string()).unwrap_or_default(),
                sub_description
                    .map(|d| format!(": {d}"))
                    .unwrap_or_default()
            ));
        }
    }
    Some(ApiRefusal {
        call,
        code,
        description,
        logid,
    })
}

/// One order-query request.
#[derive(Debug, Clone)]
pub struct OrderQuery<'a> {
    pub account_id: &'a str,
    /// Half-open window; sent as start and end (see [`OrderQuery::params`] on the end bound).
    pub span: Span,
    pub time_field: TimeField,
    pub page_num: u32,
    pub page_size: u32,
    pub order_status: Option<i64>,
    pub get_secret_number: bool,
    /// Deep paging past `page_num × page_size ≤ 10000`: the previous answer's
    /// `data.search_after.CursorValue`, sent as the compact JSON array the official SDK sends
    /// (`cursor=["1706164312","1077…"]`, douyin-api.md §2).
    pub cursor: Option<&'a [String]>,
}

impl OrderQuery<'_> {
    /// The query string, only with the parameters that are set (the official SDK sends zeros
    /// for unset fields and gets empty results).
    ///
    /// Whether the API's end bound is inclusive is undocumented. We send `end = span.end` (the
    /// next slice's start): if the bound is exclusive this is exactly the slice, if it is
    /// inclusive the last second is also asked by the next slice, and the upsert makes that
    /// overlap harmless. Either way no second is missed.
    pub fn params(&self) -> Vec<(&'static str, String)> {
        let (start_key, end_key) = match self.time_field {
            TimeField::Update => ("update_order_start_time", "update_order_end_time"),
            TimeField::Create => ("create_order_start_time", "create_order_end_time"),
        };
        let mut params = vec![
            ("account_id", self.account_id.to_string()),
            ("page_num", self.page_num.to_string()),
            ("page_size", self.page_size.to_string()),
            (start_key, self.span.start.to_string()),
            (end_key, self.span.end.to_string()),
        ];
        if let Some(status) = self.order_status {
            params.push(("order_status", status.to_string()));
        }
        if self.get_secret_number {
            params.push(("get_secret_number", "true".to_string()));
        }
        if let Some(cursor) = self.cursor {
            params.push((
                "cursor",
                serde_json::to_string(cursor).unwrap_or_else(|_| "[]".to_string()),
            ));
        }
        params
    }
}

/// One page of orders as received.
#[derive(Debug)]
pub struct OrderPage {
    /// Each order exactly as received.
    pub orders: Vec<Box<RawValue>>,
    /// `data.page.total`: how many orders the whole query matches, as of this answer.
    pub total: u64,
    /// `data.search_after.CursorValue`: where the next page starts (deep paging), when given.
    pub cursor: Option<Vec<String>>,
    pub logid: Option<String>,
}

#[derive(Deserialize)]
struct QueryAnswer {
    #[serde(default)]
    data: Option<QueryData>,
    #[serde(default)]
    extra: Option<Extra>,
}

#[derive(Deserialize)]
struct QueryData {
    #[serde(default, deserialize_with = "order_list")]
    orders: Option<Vec<Box<RawValue>>>,
    #[serde(default)]
    page: Option<PageInfo>,
    #[serde(default)]
    error_code: Option<Num>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    search_after: Option<SearchAfter>,
}

#[derive(Deserialize)]
struct SearchAfter {
    #[serde(default, rename = "CursorValue")]
    cursor_value: Option<Vec<Value>>,
}

/// `data.orders`: a list of records, each kept as its text whatever it is (`order` judges each
/// one, so that one odd record does not cost the page). Anything else is an error that names its
/// kind only: serde's own message would quote a string, and this one may hold customer data.
fn order_list<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Vec<Box<RawValue>>>, D::Error> {
    struct List;
    impl<'de> serde::de::Visitor<'de> for List {
        type Value = Option<Vec<Box<RawValue>>>;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a list of orders")
        }

        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> Result<Self::Value, A::Error> {
            let mut orders = Vec::with_capacity(seq.size_hint().unwrap_or(0));
            while let Some(order) = seq.next_element::<Box<RawValue>>()? {
                orders.push(order);
            }
            Ok(Some(orders))
        }

        fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<Self::Value, E> {
            Err(E::custom("data.orders is a string, not a list"))
        }

        fn visit_map<A: serde::de::MapAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> {
            Err(serde::de::Error::custom(
                "data.orders is an object, not a list",
            ))
        }
    }
    deserializer.deserialize_any(List)
}

#[derive(Deserialize)]
struct PageInfo {
    #[serde(default)]
    total: Option<Num>,
}

#[derive(Deserialize)]
struct TokenAnswer {
    #[serde(default)]
    data: Option<TokenData>,
    #[serde(default)]
    extra: Option<Extra>,
}

#[derive(Deserialize)]
struct TokenData {
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    error_code: Option<Num>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    expires_in: Option<Num>,
}

#[derive(Deserialize)]
struct DecryptAnswer {
    #[serde(default)]
    data: Option<DecryptData>,
    #[serde(default)]
    extra: Option<Extra>,
}

/// Public callers report two shapes for this answer and no published sample settles it; both are
/// read, whichever is present.
#[derive(Deserialize)]
struct DecryptData {
    #[serde(default)]
    error_code: Option<Num>,
    #[serde(default)]
    description: Option<String>,
    /// Shape (a).
    #[serde(default)]
    results: Option<Vec<DecryptResultA>>,
    /// Shape (b).
    #[serde(default)]
    decrypted_data_list: Option<Vec<DecryptResultB>>,
}

#[derive(Deserialize)]
struct DecryptResultA {
    #[serde(default)]
    cipher_text: Option<String>,
    #[serde(default)]
    plain_text: Option<String>,
    #[serde(default)]
    is_success: Option<bool>,
}

#[derive(Deserialize)]
struct DecryptResultB {
    #[serde(default)]
    encrypted_data: Option<String>,
    #[serde(default)]
    decrypted_data: Option<String>,
}

/// A successful answer of [`Douyin::get`]: the body as received (its `data` is there) and the
/// logid to quote.
#[derive(Debug)]
pub struct Answer {
    pub text: String,
    pub logid: Option<String>,
}

/// What every answer has: the error code (in `data` or `extra`) and the logid.
#[derive(Deserialize)]
struct Envelope {
    #[serde(default)]
    data: Option<EnvelopeData>,
    #[serde(default)]
    extra: Option<Extra>,
}

#[derive(Deserialize)]
struct EnvelopeData {
    #[serde(default)]
    error_code: Option<Num>,
    #[serde(default)]
    description: Option<String>,
}

/// Counters for the summary line.
#[derive(Debug, Default)]
pub struct Counters {
    pub requests: AtomicU64,
    pub retries: AtomicU64,
    pub token_fetches: AtomicU64,
    /// Ciphertexts sent to the batch decrypt endpoint (each try counts: the quota does).
    pub ciphertexts_sent: AtomicU64,
}

/// The token in use.
struct CurrentToken {
    /// Lets concurrent callers that saw the same expired token trigger one refresh.
    generation: u64,
    token: Secret,
    /// When to replace it before it expires.
    renew_at: Instant,
}

/// The Douyin client of one run: one token, one QPS budget, one retry policy for all calls.
pub struct Douyin {
    agent: ureq::Agent,
    base: String,
    app_id: String,
    app_secret: Secret,
    retry: RetryPolicy,
    pacer: Pacer,
    stop: Stop,
    token: Mutex<Option<CurrentToken>>,
    /// Where the token outlives the run, once set.
    keeper: OnceLock<std::sync::Arc<dyn TokenKeeper>>,
    /// The decrypt quota answer, once Douyin gave it: no more decrypt calls this run.
    decrypt_quota: Mutex<Option<ApiRefusal>>,
    counters: Counters,
    rng: AtomicU64,
}

impl std::fmt::Debug for Douyin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Douyin({})", self.base)
    }
}

impl Douyin {
    pub fn new(config: &Config, stop: Stop) -> Douyin {
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(10))
            .timeout(config.http_timeout())
            .max_idle_connections_per_host(config.concurrency() + 4)
            .user_agent(concat!("douyin-order-sync/", env!("CARGO_PKG_VERSION")))
            .build();
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0x9E37_79B9, |d| d.as_nanos() as u64)
            ^ u64::from(std::process::id()).rotate_left(32);
        Douyin {
            agent,
            base: config.api_base().to_string(),
            app_id: config.app_id().to_string(),
            app_secret: config.app_secret().clone(),
            retry: config.retry(),
            pacer: Pacer::new(config.max_qps()),
            stop,
            token: Mutex::new(None),
            keeper: OnceLock::new(),
            decrypt_quota: Mutex::new(None),
            counters: Counters::default(),
            rng: AtomicU64::new(seed | 1),
        }
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Keep tokens with `keeper` from now on (set once; later calls are ignored).
    pub fn set_token_keeper(&self, keeper: std::sync::Arc<dyn TokenKeeper>) {
        let _ = self.keeper.set(keeper);
    }

    /// Get the run's token now (so that bad credentials fail before any day starts): the kept
    /// one if the keeper has one valid for long enough, else a fresh one.
    pub fn authenticate(&self) -> Result<(), Error> {
        self.token_generation(None).map(|_| ())
    }

    /// The current token; a new one if there is none, if it is due for renewal, or if `stale`
    /// is the generation that was just refused. Holding the lock while getting one makes
    /// concurrent callers wait for the one fetch instead of each fetching their own.
    fn token_generation(&self, stale: Option<u64>) -> Result<(u64, Secret), Error> {
        let mut guard = self.token.lock().unwrap_or_else(|p| p.into_inner());
        match (&*guard, stale) {
            (Some(current), Some(old)) if current.generation != old => {
                return Ok((current.generation, current.token.clone()))
            }
            (Some(current), None) if Instant::now() < current.renew_at => {
                return Ok((current.generation, current.token.clone()))
            }
            _ => {}
        }
        let next = guard.as_ref().map_or(1, |c| c.generation + 1);
        // Only a token Douyin refused is excluded; one merely due may come back from the keeper
        // if another run has meanwhile stored a newer one.
        let refused = stale.and(guard.as_ref().map(|c| c.token.clone()));
        let (token, valid_secs) = match self.keeper.get() {
            Some(keeper) => keeper.obtain(refused.as_ref(), &|| self.fresh_token())?,
            None => {
                let fresh = self.fresh_token()?;
                (fresh.token, fresh.lifetime_secs)
            }
        };
        // Whether stored or fresh, the token is a credential: no log line may carry it.
        crate::logging::hide(token.expose());
        log::debug!("client token #{next}, valid for {valid_secs} s");
        let renew_in = u64::try_from(valid_secs - TOKEN_RENEW_MARGIN_SECS).unwrap_or(0);
        *guard = Some(CurrentToken {
            generation: next,
            token: token.clone(),
            renew_at: Instant::now() + Duration::from_secs(renew_in),
        });
        Ok((next, token))
    }

    /// A new token from the token endpoint, with retries.
    fn fresh_token(&self) -> Result<FreshToken, Error> {
        let asked = Instant::now();
        let (token, expires_in) = self.call_without_token("token", || self.fetch_token())?;
        self.counters.token_fetches.fetch_add(1, Ordering::Relaxed);
        let took = asked.elapsed().as_secs() as i64 + 1;
        Ok(FreshToken {
            token,
            lifetime_secs: (expires_in.unwrap_or(DEFAULT_TOKEN_LIFETIME_SECS) - took).max(0),
        })
    }

    /// One try of `POST /oauth/client_token/`: the token and its `expires_in`, when given.
    fn fetch_token(&self) -> Result<(Secret, Option<i64>), CallError> {
        let url = format!("{}/oauth/client_token/", self.base);
        let body = serde_json::json!({
            "client_key": self.app_id,
            "client_secret": self.app_secret.expose(),
            "grant_type": "client_credential",
        });
        let (text, header_logid) = self
            .send(
                self.agent
                    .post(&url)
                    .set("Content-Type", "application/json"),
                Some(body.to_string()),
            )
            .map_err(|e| match e {
                CallError::Http { status: 404, logid } => CallError::BadUrl(format!(
                    "HTTP 404 at {url}{}",
                    logid.map(|l| format!(", logid {l}")).unwrap_or_default()
                )),
                // The resolver's own "no such host" (glibc, musl): a name that does not exist.
                // A resolver that cannot answer now ("temporary failure") is retried.
                CallError::Transport(m) if host_does_not_exist(&m) => CallError::BadUrl(m),
                other => other,
            })?;
        let answer: TokenAnswer = parse(&text, &header_logid)?;
        let logid = logid_of(answer.extra.as_ref(), header_logid);
        let data = answer.data.ok_or_else(|| CallError::Malformed {
            detail: "token answer without data".into(),
            logid: logid.clone(),
        })?;
        if let Some(refusal) = answer_error(
            "token",
            data.error_code.as_ref(),
            data.description.as_deref(),
            answer.extra.as_ref(),
            logid.clone(),
        ) {
            return Err(CallError::Api(refusal));
        }
        let token =
            data.access_token
                .filter(|t| !t.is_empty())
                .ok_or_else(|| CallError::Malformed {
                    detail: "token answer without access_token".into(),
                    logid,
                })?;
        let expires_in = data
            .expires_in
            .as_ref()
            .and_then(Num::as_i64)
            .filter(|e| *e > 0);
        Ok((Secret::new(token), expires_in))
    }

    /// Ask one page of orders, with retries.
    pub fn query_orders(&self, query: &OrderQuery<'_>) -> Result<OrderPage, Error> {
        self.with_token("order query", |token| self.query_once(token, query))
    }

    fn query_once(&self, token: &Secret, query: &OrderQuery<'_>) -> Result<OrderPage, CallError> {
        let url = format!("{}/goodlife/v1/trade/order/query/", self.base);
        let mut request = self.agent.get(&url).set("access-token", token.expose());
        for (key, value) in query.params() {
            request = request.query(key, &value);
        }
        let (text, header_logid) = self.send(request, None)?;
        let answer: QueryAnswer = parse(&text, &header_logid)?;
        let logid = logid_of(answer.extra.as_ref(), header_logid);
        if let Some(refusal) = answer_error(
            "order query",
            answer.data.as_ref().and_then(|d| d.error_code.as_ref()),
            answer.data.as_ref().and_then(|d| d.description.as_deref()),
            answer.extra.as_ref(),
            logid.clone(),
        ) {
            return Err(CallError::Api(refusal));
        }
        let data = answer.data.ok_or_else(|| CallError::Malformed {
            detail: "order query answer without data".into(),
            logid: logid.clone(),
        })?;
        let total = data
            .page
            .as_ref()
            .and_then(|p| p.total.as_ref())
            .and_then(Num::as_i64)
            .and_then(|t| u64::try_from(t).ok())
            .ok_or_else(|| CallError::Malformed {
                detail: "order query answer without data.page.total".into(),
                logid: logid.clone(),
            })?;
        let cursor = data
            .search_after
            .and_then(|s| s.cursor_value)
            .filter(|c| !c.is_empty())
            .map(|values| {
                values
                    .into_iter()
                    .map(|v| match v {
                        Value::String(s) => s,
                        other => other.to_string(),
                    })
                    .collect()
            });
        Ok(OrderPage {
            orders: data.orders.unwrap_or_default(),
            total,
            cursor,
            logid,
        })
    }

    /// `GET {base}{path}` with `params`, paced by `pacer` (the endpoint's own budget), with the
    /// token, retries and token refresh of every call. Returns the body once it is JSON whose
    /// `data.error_code` / `extra.error_code` say success; the caller reads `data` itself.
    pub fn get(
        &self,
        pacer: &Pacer,
        what: &'static str,
        path: &str,
        params: &[(&'static str, String)],
    ) -> Result<Answer, Error> {
        self.with_token_paced(pacer, what, |token| {
            let url = format!("{}{path}", self.base);
            let mut request = self.agent.get(&url).set("access-token", token.expose());
            for (key, value) in params {
                request = request.query(key, value);
            }
            let (text, header_logid) = self.send(request, None)?;
            let envelope: Envelope = parse(&text, &header_logid)?;
            let logid = logid_of(envelope.extra.as_ref(), header_logid);
            if let Some(refusal) = answer_error(
                what,
                envelope.data.as_ref().and_then(|d| d.error_code.as_ref()),
                envelope
                    .data
                    .as_ref()
                    .and_then(|d| d.description.as_deref()),
                envelope.extra.as_ref(),
                logid.clone(),
            ) {
                return Err(CallError::Api(refusal));
            }
            if envelope.data.is_none() {
                return Err(CallError::Malformed {
                    detail: format!("{what} answer without data"),
                    logid,
                });
            }
            Ok(Answer { text, logid })
        })
    }

    /// Decrypt platform ciphertexts ("Enc." phones) through the batch endpoint, at most 50 a
    /// call. Returns the plaintext of each ciphertext that could be decrypted. Once Douyin has
    /// said the app's decrypt quota is used up, nothing more is sent this run: the answer says
    /// so instead (the orders are stored without the phone, a later run fills it in).
    pub fn decrypt_batch(&self, account_id: &str, ciphers: &[String]) -> Result<Decrypted, Error> {
        let mut decrypted = Decrypted::default();
        for chunk in ciphers.chunks(DECRYPT_BATCH) {
            let known_quota = self
                .decrypt_quota
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            if let Some(refusal) = known_quota {
                decrypted.quota = Some(refusal);
                break;
            }
            let part = self.with_token("decrypt", |token| {
                match self.decrypt_once(token, account_id, chunk) {
                    Err(CallError::Api(r)) if classify(r.code) == Class::Quota => Ok(Err(r)),
                    other => other.map(Ok),
                }
            })?;
            match part {
                Ok(plain) => decrypted.plain.extend(plain),
                Err(refusal) => {
                    *self.decrypt_quota.lock().unwrap_or_else(|p| p.into_inner()) =
                        Some(refusal.clone());
                    decrypted.quota = Some(refusal);
                    break;
                }
            }
        }
        Ok(decrypted)
    }

    fn decrypt_once(
        &self,
        token: &Secret,
        account_id: &str,
        ciphers: &[String],
    ) -> Result<HashMap<String, String>, CallError> {
        let url = format!(
            "{}/goodlife/v1/open/common_biz/crypto/decrypt/batch/",
            self.base
        );
        // The request field's name is undocumented ([?]): both names public callers use are sent
        // with the same list, so whichever the server reads, it finds the ciphertexts.
        let body = serde_json::json!({
            "account_id": account_id,
            "cipher_texts": ciphers,
            "encrypted_data_list": ciphers,
        });
        let request = self
            .agent
            .post(&url)
            .set("Content-Type", "application/json")
            .set("access-token", token.expose())
            .set("Rpc-Transit-Life-Account", account_id);
        self.counters
            .ciphertexts_sent
            .fetch_add(ciphers.len() as u64, Ordering::Relaxed);
        let (text, header_logid) = self.send(request, Some(body.to_string()))?;
        let answer: DecryptAnswer = parse(&text, &header_logid)?;
        let logid = logid_of(answer.extra.as_ref(), header_logid);
        if let Some(refusal) = answer_error(
            "decrypt",
            answer.data.as_ref().and_then(|d| d.error_code.as_ref()),
            answer.data.as_ref().and_then(|d| d.description.as_deref()),
            answer.extra.as_ref(),
            logid,
        ) {
            return Err(CallError::Api(refusal));
        }
        let mut plain = HashMap::new();
        if let Some(data) = answer.data {
            for r in data.results.unwrap_or_default() {
                if let (Some(c), Some(p), true) =
                    (r.cipher_text, r.plain_text, r.is_success != Some(false))
                {
                    if !p.is_empty() {
                        plain.insert(c, p);
                    }
                }
            }
            for r in data.decrypted_data_list.unwrap_or_default() {
                if let (Some(c), Some(p)) = (r.encrypted_data, r.decrypted_data) {
                    if !p.is_empty() {
                        plain.insert(c, p);
                    }
                }
            }
        }
        Ok(plain)
    }

    /// Send a request and read its body (bounded), see [`exchange`].
    ///
    /// The exchange runs on a thread of its own while this one waits in short slices that look
    /// at the stop flag: a server that accepts and never answers holds a signal's exit no longer
    /// than a tick (the thread is left to its HTTP timeout; the process ends before).
    fn send(
        &self,
        request: ureq::Request,
        body: Option<String>,
    ) -> Result<(String, Option<String>), CallError> {
        self.counters.requests.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::sync_channel(1);
        std::thread::Builder::new()
            .name("http".into())
            .spawn(move || {
                let _ = tx.send(exchange(request, body));
            })
            .map_err(|e| CallError::Transport(format!("cannot start an HTTP thread: {e}")))?;
        loop {
            match rx.recv_timeout(crate::stop::TICK) {
                Ok(result) => return result,
                Err(RecvTimeoutError::Timeout) if self.stop.signal().is_some() => {
                    return Err(CallError::Transport(
                        "a signal arrived while waiting for the answer".into(),
                    ))
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(CallError::Transport(
                        "the HTTP exchange ended without an answer".into(),
                    ))
                }
            }
        }
    }

    /// The retry loop for calls that need the token: when Douyin says the token expired, get a
    /// new one and repeat. The refresh is shared: requests in flight that saw the same expired
    /// token wait for one fetch and use its result, so an expiry costs one token call whatever
    /// the concurrency. A call whose token keeps being refused after
    /// [`MAX_TOKEN_REFRESHES`] new tokens stops with 77: the credentials are not accepted.
    fn with_token<T>(
        &self,
        what: &'static str,
        attempt: impl Fn(&Secret) -> Result<T, CallError>,
    ) -> Result<T, Error> {
        self.with_token_paced(&self.pacer, what, attempt)
    }

    /// [`Douyin::with_token`] on another endpoint's budget.
    fn with_token_paced<T>(
        &self,
        pacer: &Pacer,
        what: &'static str,
        attempt: impl Fn(&Secret) -> Result<T, CallError>,
    ) -> Result<T, Error> {
        let mut refreshes = 0;
        loop {
            let (generation, token) = self.token_generation(None)?;
            match self.call_paced(pacer, what, || attempt(&token)) {
                Ok(value) => return Ok(value),
                Err(Stopped::Failed(e)) => return Err(e),
                Err(Stopped::TokenExpired(refusal)) if refreshes >= MAX_TOKEN_REFRESHES => {
                    return Err(Error::Refused(refusal))
                }
                Err(Stopped::TokenExpired(refusal)) => {
                    log::warn!(
                        call = what, code = refusal.code, logid = refusal.logid.as_deref().unwrap_or("");
                        "{what}: the access token is no longer valid ({refusal}); getting a new one"
                    );
                    refreshes += 1;
                    self.token_generation(Some(generation))?;
                }
            }
        }
    }

    /// The token call: no token to refresh, so an expiry answer is a refusal.
    fn call_without_token<T>(
        &self,
        what: &'static str,
        attempt: impl Fn() -> Result<T, CallError>,
    ) -> Result<T, Error> {
        self.call(what, attempt).map_err(|stopped| match stopped {
            Stopped::Failed(e) => e,
            Stopped::TokenExpired(refusal) => Error::Refused(refusal),
        })
    }

    /// The one retry loop: pace, try, classify, back off. Stops on success, on an answer that
    /// retrying cannot change, when the tries run out, or on a signal.
    fn call<T>(
        &self,
        what: &'static str,
        attempt: impl Fn() -> Result<T, CallError>,
    ) -> Result<T, Stopped> {
        self.call_paced(&self.pacer, what, attempt)
    }

    /// [`Douyin::call`] on the budget of `pacer` (each endpoint has its own).
    fn call_paced<T>(
        &self,
        pacer: &Pacer,
        what: &'static str,
        attempt: impl Fn() -> Result<T, CallError>,
    ) -> Result<T, Stopped> {
        let mut tries: u32 = 0;
        loop {
            pacer.acquire(&self.stop)?;
            let error = match attempt() {
                Ok(value) => {
                    pacer.success();
                    return Ok(value);
                }
                Err(e) => e,
            };
            self.stop.check()?;
            tries += 1;
            let class = error.class();
            if class == Class::WrongAddress {
                return Err(Error::config(format!(
                    "API_BASE_URL={:?} is not the Douyin Open Platform's address: {what} answered {error}",
                    self.base
                ))
                .into());
            }
            if let CallError::Api(refusal) = &error {
                match class {
                    Class::TokenExpired => return Err(Stopped::TokenExpired(refusal.clone())),
                    Class::Refused => return Err(Error::Refused(refusal.clone()).into()),
                    Class::Rejected => return Err(Error::Rejected(refusal.clone()).into()),
                    Class::Quota => {
                        return Err(Error::Unavailable(format!(
                            "{what}: the app's quota is used up ({error}); try again later"
                        ))
                        .into())
                    }
                    Class::Retry | Class::RateLimited | Class::WrongAddress => {}
                }
            }
            let rate_limited = class == Class::RateLimited;
            if rate_limited {
                pacer.slow_down();
            }
            if tries >= self.retry.max_tries {
                return Err(Error::Unavailable(format!(
                    "{what}: gave up after {tries} tries, last: {error}"
                ))
                .into());
            }
            let delay = self.backoff(tries, rate_limited);
            self.counters.retries.fetch_add(1, Ordering::Relaxed);
            log::warn!(
                call = what, code = error.code().unwrap_or(0), logid = error.logid().unwrap_or(""),
                retry = u64::from(tries);
                "{}; retry {tries}/{} in {:.1} s",
                match &error {
                    CallError::Api(_) => error.to_string(), // already names the call
                    _ => format!("{what}: {error}"),
                },
                self.retry.max_tries - 1,
                delay.as_secs_f64()
            );
            self.stop.sleep(delay)?;
        }
    }

    /// Exponential backoff with jitter: base × 2^(tries-1), capped, times a factor in
    /// [0.75, 1.0]; rate-limit answers wait twice as long.
    fn backoff(&self, tries: u32, rate_limited: bool) -> Duration {
        backoff_delay(self.retry, tries, rate_limited, self.random_unit())
    }

    /// A number in [0, 1) from a shared xorshift generator (jitter needs no more).
    fn random_unit(&self) -> f64 {
        let mut x = self.rng.load(Ordering::Relaxed);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng.store(x, Ordering::Relaxed);
        (x >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// One HTTP exchange: send, read the body (bounded). Non-2xx statuses, transport failures and
/// cut bodies become `CallError`s. Returns the body and the `x-tt-logid` header if any.
fn exchange(
    request: ureq::Request,
    body: Option<String>,
) -> Result<(String, Option<String>), CallError> {
    let result = match body {
        Some(b) => request.send_string(&b),
        None => request.call(),
    };
    let response = match result {
        Ok(r) => r,
        Err(ureq::Error::Status(status, r)) => {
            return Err(CallError::Http {
                status,
                logid: r.header("x-tt-logid").map(str::to_string),
            })
        }
        Err(ureq::Error::Transport(t))
            if matches!(
                t.kind(),
                ureq::ErrorKind::InvalidUrl | ureq::ErrorKind::UnknownScheme
            ) =>
        {
            return Err(CallError::BadUrl(transport_message(&t)))
        }
        Err(ureq::Error::Transport(t)) => return Err(CallError::Transport(transport_message(&t))),
    };
    let logid = response.header("x-tt-logid").map(str::to_string);
    let mut text = String::new();
    response
        .into_reader()
        .take(MAX_BODY_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|e| CallError::Transport(format!("reading the answer failed: {e}")))?;
    if text.len() as u64 > MAX_BODY_BYTES {
        return Err(CallError::Malformed {
            detail: format!("answer larger than {MAX_BODY_BYTES} bytes"),
            logid,
        });
    }
    Ok((text, logid))
}

/// Whether a transport error says the host name does not exist (NXDOMAIN), as opposed to a
/// resolver that cannot answer now.
fn host_does_not_exist(message: &str) -> bool {
    message.contains("Dns Failed")
        && (message.contains("Name or service not known")
            || message.contains("No address associated with hostname")
            || message.contains("nodename nor servname provided"))
}

/// The wait after the `tries`-th failed try: base × 2^(tries-1), doubled for rate limits,
/// capped, times 0.75 + 0.25 × `unit` (`unit` in [0, 1): the jitter).
pub fn backoff_delay(policy: RetryPolicy, tries: u32, rate_limited: bool, unit: f64) -> Duration {
    let exponent = tries.saturating_sub(1).min(30);
    let mut delay = policy.base.saturating_mul(1u32 << exponent);
    if rate_limited {
        delay = delay.saturating_mul(2);
    }
    delay
        .min(policy.max_delay)
        .mul_f64(0.75 + 0.25 * unit.clamp(0.0, 1.0))
}

/// Why the retry loop stopped without a value.
enum Stopped {
    Failed(Error),
    /// The token was refused as invalid or expired: the caller may refresh it.
    TokenExpired(ApiRefusal),
}

impl From<Error> for Stopped {
    fn from(e: Error) -> Stopped {
        Stopped::Failed(e)
    }
}

fn parse<T: for<'de> Deserialize<'de>>(text: &str, logid: &Option<String>) -> Result<T, CallError> {
    serde_json::from_str(text).map_err(|e| CallError::Malformed {
        detail: format!("not the expected JSON ({e})"),
        logid: logid.clone(),
    })
}

/// A transport error in one line: the URL (its query names the account and the window, never a
/// secret: the token travels in a header), the kind, and the underlying cause.
fn transport_message(t: &ureq::Transport) -> String {
    t.to_string().replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_documented_code_has_its_class() {
        for code in [2190002, 2190008, 28001008] {
            assert_eq!(classify(code), Class::TokenExpired, "{code}");
        }
        for code in [2119003, 28003018, 10020] {
            assert_eq!(classify(code), Class::RateLimited, "{code}");
        }
        for code in [2100004, 2119002, 5000001, 28001005, 28001006, 2100001] {
            assert_eq!(classify(code), Class::Retry, "{code}");
        }
        for code in [2190001, 28003017] {
            assert_eq!(classify(code), Class::Quota, "{code}");
        }
        for code in [2100005, 2119001, 28001007] {
            assert_eq!(classify(code), Class::Rejected, "{code}");
        }
        for code in [
            2190004, 28001014, 28001018, 2119005, 2100007, 2119013, 10002, 10003, 10013,
        ] {
            assert_eq!(classify(code), Class::Refused, "{code}");
        }
    }

    #[test]
    fn the_default_policy_tries_8_times_over_more_than_a_minute() {
        let policy = RetryPolicy {
            max_tries: 8,
            base: Duration::from_millis(1000),
            max_delay: Duration::from_millis(30_000),
        };
        // 7 waits between 8 tries, with the shortest jitter.
        let shortest: Duration = (1..8).map(|t| backoff_delay(policy, t, false, 0.0)).sum();
        let longest: Duration = (1..8).map(|t| backoff_delay(policy, t, false, 1.0)).sum();
        assert!(shortest >= Duration::from_secs(60), "{shortest:?}");
        assert!(longest <= Duration::from_secs(95), "{longest:?}");
        assert_eq!(backoff_delay(policy, 1, true, 1.0), Duration::from_secs(2));
        assert_eq!(
            backoff_delay(policy, 20, false, 1.0),
            Duration::from_secs(30)
        );
    }

    #[test]
    fn numbers_may_arrive_as_strings() {
        let n: Num = serde_json::from_str("\"12900\"").unwrap();
        assert_eq!(n.as_i64(), Some(12900));
        let n: Num = serde_json::from_str("7200").unwrap();
        assert_eq!(n.as_i64(), Some(7200));
        let n: Num = serde_json::from_str("12.5").unwrap();
        assert_eq!(n.as_i64(), None);
        let n: Num = serde_json::from_str("\"x\"").unwrap();
        assert_eq!(n.as_i64(), None);
    }

    #[test]
    fn an_error_code_is_found_in_data_or_in_extra() {
        let in_extra: QueryAnswer = serde_json::from_str(
            r#"{"data":{},"extra":{"error_code":2119005,"description":"未授权","logid":"L9"}}"#,
        )
        .unwrap();
        let r = answer_error(
            "order query",
            None,
            None,
            in_extra.extra.as_ref(),
            Some("L9".into()),
        )
        .unwrap();
        assert_eq!((r.code, r.description.as_str()), (2119005, "未授权"));
        let in_data = answer_error(
            "order query",
            Some(&Num::Text("2100005".into())),
            Some("bad"),
            None,
            None,
        )
        .unwrap();
        assert_eq!(in_data.code, 2100005);
        assert!(
            answer_error("x", Some(&Num::Int(0)), None, Some(&Extra::default()), None).is_none()
        );
    }

    #[test]
    fn only_set_parameters_are_sent() {
        let q = OrderQuery {
            account_id: "7",
            span: Span { start: 10, end: 20 },
            time_field: TimeField::Update,
            page_num: 1,
            page_size: 50,
            order_status: None,
            get_secret_number: false,
            cursor: None,
        };
        let keys: Vec<_> = q.params().into_iter().map(|(k, _)| k).collect();
        assert_eq!(
            keys,
            [
                "account_id",
                "page_num",
                "page_size",
                "update_order_start_time",
                "update_order_end_time"
            ]
        );
        let q = OrderQuery {
            time_field: TimeField::Create,
            order_status: Some(1),
            get_secret_number: true,
            ..q
        };
        let keys: Vec<_> = q.params().into_iter().map(|(k, _)| k).collect();
        assert!(keys.contains(&"create_order_start_time") && keys.contains(&"order_status"));
        assert!(keys.contains(&"get_secret_number"));
    }

    #[test]
    fn orders_of_any_shape_are_kept_as_text_and_a_wrong_list_is_not_quoted() {
        let answer: QueryAnswer = serde_json::from_str(
            r#"{"data":{"orders":[{"order_id":"1"},[1,2],"x",null,{"a":{"a":{"a":1}}}],"page":{"total":5}}}"#,
        )
        .unwrap();
        let orders = answer.data.unwrap().orders.unwrap();
        let orders: Vec<&str> = orders.iter().map(|o| o.get()).collect();
        assert_eq!(
            orders,
            [
                r#"{"order_id":"1"}"#,
                "[1,2]",
                r#""x""#,
                "null",
                r#"{"a":{"a":{"a":1}}}"#
            ]
        );
        for orders in [r#""客户 13800138000""#, r#"{"phone":"13800138000"}"#] {
            let text = format!(r#"{{"data":{{"orders":{orders},"page":{{"total":1}}}}}}"#);
            let error = serde_json::from_str::<QueryAnswer>(&text)
                .err()
                .unwrap()
                .to_string();
            assert!(error.starts_with("data.orders is"), "{error}");
            assert!(!error.contains("13800138000"), "{error}");
        }
        let answer: QueryAnswer =
            serde_json::from_str(r#"{"data":{"orders":null,"page":{"total":0}}}"#).unwrap();
        assert!(answer.data.unwrap().orders.is_none());
    }

    #[test]
    fn both_decrypt_answer_shapes_are_read() {
        let a: DecryptAnswer = serde_json::from_str(
            r#"{"data":{"error_code":0,"results":[{"cipher_text":"Enc.1","plain_text":"138","is_success":true},{"cipher_text":"Enc.2","plain_text":"","is_success":false}]}}"#,
        )
        .unwrap();
        assert_eq!(a.data.unwrap().results.unwrap().len(), 2);
        let b: DecryptAnswer = serde_json::from_str(
            r#"{"data":{"decrypted_data_list":[{"encrypted_data":"Enc.1","decrypted_data":"138"}]}}"#,
        )
        .unwrap();
        assert_eq!(b.data.unwrap().decrypted_data_list.unwrap().len(), 1);
    }
}
