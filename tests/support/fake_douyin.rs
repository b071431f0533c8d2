//! A fake Douyin Open Platform (抖音来客) server for the tests, the offline demo and the benchmark.
//!
//! It implements, over real HTTP/1.1 on `127.0.0.1:<ephemeral port>`, the three endpoints described
//! in `shared/douyin-api.md`:
//!
//! * `POST /oauth/client_token/` (§1): client credentials, tokens `clt.fake…`, the two newest valid;
//! * `GET /goodlife/v1/trade/order/query/` (§2): offset paging over a time window, `page_num ×
//!   page_size ≤ 10000`, optional search-after `cursor`, all the documented error shapes;
//! * `POST /goodlife/v1/open/common_biz/crypto/decrypt/batch/` (§4): both known response shapes.
//!
//! plus seeded fault injection (latency, busy codes, HTTP 502, cut bodies, QPS limit, token expiry,
//! forced codes) and a deterministic order generator (`generate_day`) whose orders exercise a real
//! client (legacy AES `phone_encrypt`, platform `Enc.` ciphertexts, numeric strings, odd names…).
//!
//! Orders belong to the account named by their top-level `account_id` field (or
//! `merchant_info.account_id`); an order with neither is served to every authorised account.
//!
//! This file is self-contained (std + serde_json + aes + cbc + base64) so that it can be used both
//! as `tests/support/fake_douyin.rs` and, through `#[path]`, from the examples.

// Each test binary and example uses only part of this module: unused items are expected there.
#![allow(dead_code)]

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aes::cipher::{block_padding::Pkcs7, BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use base64::Engine as _;
use serde_json::{json, Map, Value};

/// The refund and settlement-ledger endpoints (§8, §9).
#[path = "fake_ledger.rs"]
pub mod ledger;

/// Default app id of [`FakeConfig::default`].
/// How much later than its start in the client a paced request may arrive here on a loaded
/// machine (see [`FakeDouyin::busiest_paced_second`]).
pub const ARRIVAL_JITTER_MS: u64 = 50;

pub const DEFAULT_APP_ID: &str = "tt_demo_app";
/// Default app secret of [`FakeConfig::default`] (also the first §4 test-vector secret).
pub const DEFAULT_APP_SECRET: &str = "0123456789abcdef0123456789abcdef";
/// Default (and only) authorised account of [`FakeConfig::default`].
pub const DEFAULT_ACCOUNT_ID: &str = "7000000000000000001";

/// Path of the token endpoint (§1).
pub const TOKEN_PATH: &str = "/oauth/client_token/";
/// Path of the order query endpoint (§2).
pub const ORDER_QUERY_PATH: &str = "/goodlife/v1/trade/order/query/";
/// Path of the batch decryption endpoint (§4).
pub const DECRYPT_PATH: &str = "/goodlife/v1/open/common_biz/crypto/decrypt/batch/";

/// Path of the verification records endpoint (§7).
pub const VERIFY_PATH: &str = "/goodlife/v1/fulfilment/certificate/verify_record/query/";
/// Largest `size` the verification records endpoint accepts (§7).
pub const MAX_VERIFY_SIZE: u64 = 20;

/// Codes `busy_rate` picks from (system busy / internal error, §3).
pub const BUSY_CODES: [i64; 5] = [2100004, 2119002, 5000001, 28001005, 28001006];

/// Token lifetime announced in `expires_in` (§1).
pub const TOKEN_LIFETIME_SECS: i64 = 7200;
/// Maximum `page_num × page_size` accepted without a cursor (§2).
pub const MAX_OFFSET_ROWS: u64 = 10_000;
/// Maximum number of ciphertexts per decrypt call (§4).
pub const MAX_DECRYPT_BATCH: usize = 50;

const POLL: Duration = Duration::from_millis(200);
const IDLE_LIMIT: Duration = Duration::from_secs(30);
const MAX_HEAD: usize = 64 * 1024;
const MAX_BODY: usize = 16 * 1024 * 1024;

/// Which of the two decrypt response shapes of §4 the server answers with.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DecryptShape {
    /// Response `data.results[]` with `cipher_text`, `plain_text`, `is_success`, `error_msg`.
    #[default]
    A,
    /// Response `data.decrypted_data_list[]` with `encrypted_data`, `decrypted_data`
    /// (ciphertexts that cannot be decrypted are omitted).
    B,
}

/// Where an error code is put in an order-query / decrypt error response.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ErrorPlacement {
    /// `data.error_code` = code, `extra.error_code` = 0.
    Data,
    /// `data` = `{}`, `extra.error_code` = code.
    Extra,
    /// Both carry the code.
    #[default]
    Both,
}

/// Injected faults. Rates are probabilities in 0..=1 drawn from the seeded RNG.
#[derive(Clone, Debug, Default)]
pub struct Faults {
    /// Sleep before answering every order query / decrypt call.
    pub latency: Duration,
    /// Probability of a busy/internal code (one of [`BUSY_CODES`]).
    pub busy_rate: f64,
    /// Probability of an HTTP 502 with a small HTML body.
    pub http_502_rate: f64,
    /// Probability that the status line + headers (full Content-Length) are sent, then only the
    /// first half of the body, then the connection is closed.
    pub cut_body_rate: f64,
    /// More order queries than this arriving within the last 1000 ms → 2119003.
    pub qps_limit: Option<usize>,
    /// After this many answered order queries with one token, that token is expired: 28001008
    /// (alternating with 2190008) until a new token is used.
    pub expire_token_after: Option<usize>,
    /// Order queries whose start-time parameter lies in `[a, b)` always get 2119002.
    pub always_fail_window: Option<(i64, i64)>,
    /// Every order query (with a valid token) answers this code.
    pub query_error: Option<i64>,
    /// Every token call answers this code.
    pub token_error: Option<i64>,
    /// Token calls are read and never answered: the connection stays open, silent, until the
    /// fault is lifted or the server stops (a hung gateway).
    pub silent_token: bool,
    /// Per-account forced code (order queries and decrypt calls).
    pub account_errors: Vec<(String, i64)>,
    /// Where the error code is put.
    pub error_in: ErrorPlacement,
    /// Token responses carry `error_code` / `expires_in` as numeric strings.
    pub numeric_strings: bool,
    /// More verification queries than this arriving within the last 1000 ms → 2119003 (the
    /// endpoint's own limit, counted apart from order queries).
    pub verify_qps_limit: Option<usize>,
    /// Every verification query (with a valid token) answers this code.
    pub verify_error: Option<i64>,
    /// Verification answers leave out `data.total`.
    pub verify_without_total: bool,
    /// Verification answers repeat the first page forever (a cursor that does not advance).
    pub verify_stuck_cursor: bool,
    /// Order queries carrying a search-after `cursor` answer with that same cursor as
    /// `data.search_after.CursorValue` (a cursor that does not advance).
    pub orders_stuck_cursor: bool,
    /// The first this many verification answers say a `data.total` one larger than the
    /// window holds (a record that moved away while paging).
    pub verify_total_skew: usize,
    /// Requests to these paths answer HTTP 404, as a gateway that does not route them would
    /// (one endpoint unreachable while the others answer).
    pub not_found_paths: Vec<String>,
}

/// Server configuration.
#[derive(Clone, Debug)]
pub struct FakeConfig {
    pub app_id: String,
    pub app_secret: String,
    /// Other accounts get 2119005.
    pub authorised_accounts: Vec<String>,
    /// Whether `*_end_time` is inclusive (the real API's answer is unknown: tests run both).
    pub end_inclusive: bool,
    pub decrypt_shape: DecryptShape,
    pub faults: Faults,
    /// Seed of the fault RNG.
    pub seed: u64,
}

impl Default for FakeConfig {
    fn default() -> Self {
        FakeConfig {
            app_id: DEFAULT_APP_ID.to_string(),
            app_secret: DEFAULT_APP_SECRET.to_string(),
            authorised_accounts: vec![DEFAULT_ACCOUNT_ID.to_string()],
            end_inclusive: true,
            decrypt_shape: DecryptShape::A,
            faults: Faults::default(),
            seed: 1,
        }
    }
}

/// One request as received by the server.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    /// Arrival time (request fully read), in ms since the server started.
    pub at_ms: u64,
    pub method: String,
    /// Path without the query string.
    pub path: String,
    /// Query string, percent-decoded (the last value wins for a repeated key).
    pub params: BTreeMap<String, String>,
    /// Value of the `access-token` header.
    pub access_token: Option<String>,
    pub body: String,
    /// "ok", "busy 2119002", "http 502", "cut", "rate 2119003", "expired 28001008",
    /// "invalid token 2190002", "error 2119005", "param 2100005", "token error 10013",
    /// "not found", "bad request", "silent" while a silent token call is held, or "pending" while
    /// being answered.
    pub outcome: String,
}

/// What an order query asked for (given to the hook).
#[derive(Clone, Debug)]
pub struct QueryInfo {
    pub account_id: String,
    pub page_num: u64,
    pub page_size: u64,
    /// Start of the time filter (the field is given by `by_update_time`).
    pub start: Option<i64>,
    /// End of the time filter.
    pub end: Option<i64>,
    /// True when filtering/sorting on `update_order_time`, false for `create_order_time`
    /// (also when there is no time filter).
    pub by_update_time: bool,
    /// `order_status` filter.
    pub order_status: Option<i64>,
    /// Search-after cursor `(time, order_id)`, when the request carried a non-empty `cursor`.
    pub cursor: Option<(i64, String)>,
}

/// Hook called for each order query that passed all checks, just before its page is computed,
/// with mutable access to the stored orders. It must not call methods of the [`FakeDouyin`]
/// (the store is locked while it runs).
pub type QueryHook = Box<dyn FnMut(&QueryInfo, &mut Vec<Value>) + Send>;

/// Called for each order query that passed all checks: `Some(body)` is sent verbatim as the whole
/// answer (any text: invalid JSON, `orders` of any shape); `None` answers from the stored orders.
pub type RawPage = Box<dyn FnMut(&QueryInfo) -> Option<String> + Send>;

/// The running fake server. Dropping it stops it.
pub struct FakeDouyin {
    shared: Arc<Shared>,
    addr: SocketAddr,
    accept_thread: Option<JoinHandle<()>>,
}

struct Shared {
    app_id: String,
    app_secret: String,
    authorised: Vec<String>,
    end_inclusive: bool,
    shape: DecryptShape,
    seed: u64,
    port: u16,
    started: Instant,
    stop: AtomicBool,
    connections: AtomicUsize,
    logid_counter: AtomicU64,
    ctl: Mutex<Ctl>,
    store: Mutex<Store>,
    hook: Mutex<Option<QueryHook>>,
    ledger: ledger::Ledger,
    raw_page: Mutex<Option<RawPage>>,
}

struct Ctl {
    faults: Faults,
    rng: XorShift,
    /// Valid tokens, oldest first, at most two.
    tokens: VecDeque<TokenState>,
    tokens_issued: u64,
    token_calls: usize,
    token_call_times: VecDeque<u64>,
    query_times: VecDeque<u64>,
    verify_times: VecDeque<u64>,
    requests: Vec<RecordedRequest>,
    ciphers: HashMap<String, String>,
    expired_toggle: bool,
    /// Ciphertexts received by the decrypt endpoint (what its daily quota counts).
    decrypt_ciphertexts: u64,
    /// Ciphertexts the app's decrypt quota still allows (`None`: unlimited); a call with more
    /// than that answers 2190001 (quota used up).
    decrypt_quota: Option<u64>,
}

struct TokenState {
    token: String,
    answered: usize,
}

#[derive(Default)]
struct Store {
    /// Verification records (§7), by `verify_id`.
    verifications: BTreeMap<String, Value>,
    /// (verify_time, verify_id), sorted; dropped when records are added.
    verify_index: Option<Vec<(i64, String)>>,
    orders: Vec<StoredOrder>,
    by_id: HashMap<String, usize>,
    /// Sorted indexes per queried account, dropped on every mutation and rebuilt lazily.
    indexes: HashMap<String, AccountIndex>,
}

/// An order kept as its compact JSON text (a `serde_json::Value` costs several times more memory
/// than its text, which matters with 100,000 orders), with the fields queries look at.
struct StoredOrder {
    json: String,
    id: String,
    account: Option<String>,
    create: i64,
    update: i64,
    status: i64,
    open_id: Option<String>,
}

impl StoredOrder {
    fn new(order: &Value) -> StoredOrder {
        StoredOrder {
            json: compact_json(order),
            id: id_key(order).into_owned(),
            account: order_account(order).map(str::to_string),
            create: int_field(order, "create_order_time"),
            update: int_field(order, "update_order_time"),
            status: int_field(order, "order_status"),
            open_id: order
                .get("open_id")
                .and_then(Value::as_str)
                .map(str::to_string),
        }
    }

    /// An entry served as `text` verbatim, filed under `key` and `time` (see
    /// [`FakeDouyin::add_verbatim`]).
    fn verbatim(key: &str, time: i64, text: &str) -> StoredOrder {
        StoredOrder {
            json: text.to_string(),
            id: key.to_string(),
            account: None,
            create: time,
            update: time,
            status: 0,
            open_id: None,
        }
    }

    fn value(&self) -> Value {
        serde_json::from_str(&self.json).unwrap_or(Value::Null)
    }
}

struct AccountIndex {
    /// (update_order_time, position in `orders`) sorted by (time, order_id).
    by_update: Vec<(i64, usize)>,
    /// (create_order_time, position in `orders`) sorted by (time, order_id).
    by_create: Vec<(i64, usize)>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl FakeDouyin {
    /// Binds `127.0.0.1:0` and starts serving.
    pub fn start(config: FakeConfig) -> FakeDouyin {
        let listener = match TcpListener::bind("127.0.0.1:0") {
            Ok(l) => l,
            Err(e) => panic!("fake douyin: cannot bind 127.0.0.1:0: {e}"),
        };
        let addr = match listener.local_addr() {
            Ok(a) => a,
            Err(e) => panic!("fake douyin: no local address: {e}"),
        };
        let shared = Arc::new(Shared {
            app_id: config.app_id,
            app_secret: config.app_secret,
            authorised: config.authorised_accounts,
            end_inclusive: config.end_inclusive,
            shape: config.decrypt_shape,
            seed: config.seed,
            port: addr.port(),
            started: Instant::now(),
            stop: AtomicBool::new(false),
            connections: AtomicUsize::new(0),
            logid_counter: AtomicU64::new(0),
            ctl: Mutex::new(Ctl {
                faults: config.faults,
                rng: XorShift::new(config.seed),
                tokens: VecDeque::new(),
                tokens_issued: 0,
                token_calls: 0,
                token_call_times: VecDeque::new(),
                query_times: VecDeque::new(),
                verify_times: VecDeque::new(),
                requests: Vec::new(),
                ciphers: HashMap::new(),
                decrypt_ciphertexts: 0,
                decrypt_quota: None,
                expired_toggle: false,
            }),
            store: Mutex::new(Store::default()),
            hook: Mutex::new(None),
            ledger: ledger::Ledger::default(),
            raw_page: Mutex::new(None),
        });
        let accept_shared = Arc::clone(&shared);
        let accept_thread = thread::Builder::new()
            .name("fake-douyin-accept".to_string())
            .spawn(move || accept_loop(&accept_shared, &listener));
        let accept_thread = match accept_thread {
            Ok(h) => h,
            Err(e) => panic!("fake douyin: cannot spawn the accept thread: {e}"),
        };
        FakeDouyin {
            shared,
            addr,
            accept_thread: Some(accept_thread),
        }
    }

    /// `"http://127.0.0.1:PORT"` (no trailing slash).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn app_id(&self) -> &str {
        &self.shared.app_id
    }

    pub fn app_secret(&self) -> &str {
        &self.shared.app_secret
    }

    /// Adds orders; an order whose `order_id` is already stored replaces it.
    pub fn add_orders(&self, orders: impl IntoIterator<Item = Value>) {
        // Serialise outside the lock.
        self.add_stored(orders.into_iter().map(|o| StoredOrder::new(&o)).collect());
    }

    fn add_stored(&self, stored: Vec<StoredOrder>) {
        let mut store = lock(&self.shared.store);
        for order in stored {
            if let Some(&i) = store.by_id.get(&order.id) {
                store.orders[i] = order;
            } else {
                let i = store.orders.len();
                store.by_id.insert(order.id.clone(), i);
                store.orders.push(order);
            }
        }
        store.indexes.clear();
    }

    /// Adds an entry served verbatim: `text` goes into `data.orders` exactly as given (any text:
    /// invalid JSON, not an object, a repeated key, `\u0000`…), for every account, with `time` as
    /// both its create and update time, counted in `total` like any order. `key` files it (sort
    /// order, the `order_id` filter, replacement by the same key) instead of an `order_id` read
    /// from the text: two keys serve the same text twice. A query hook sees such an entry as
    /// `null` (and stores it back as `null`).
    pub fn add_verbatim(&self, key: &str, time: i64, text: &str) {
        self.add_stored(vec![StoredOrder::verbatim(key, time, text)]);
    }

    /// Sets or clears the raw page (see [`RawPage`]).
    pub fn set_raw_page(&self, page: Option<RawPage>) {
        *lock(&self.shared.raw_page) = page;
    }

    /// Applies `f` to the stored order `order_id`; false when there is no such order.
    pub fn update_order(&self, order_id: &str, f: impl FnOnce(&mut Value)) -> bool {
        let mut store = lock(&self.shared.store);
        let Some(&i) = store.by_id.get(order_id) else {
            return false;
        };
        let mut value = store.orders[i].value();
        f(&mut value);
        store.orders[i] = StoredOrder::new(&value);
        if store.orders[i].id != order_id {
            store.by_id.remove(order_id);
            let new_id = store.orders[i].id.clone();
            store.by_id.insert(new_id, i);
        }
        store.indexes.clear();
        true
    }

    /// All stored orders, as served (insertion order). Parses every order: costly with 100,000.
    pub fn orders(&self) -> Vec<Value> {
        lock(&self.shared.store)
            .orders
            .iter()
            .map(StoredOrder::value)
            .collect()
    }

    /// One stored order, as served.
    pub fn order(&self, order_id: &str) -> Option<Value> {
        let store = lock(&self.shared.store);
        store.by_id.get(order_id).map(|&i| store.orders[i].value())
    }

    /// Number of stored orders.
    pub fn order_count(&self) -> usize {
        lock(&self.shared.store).orders.len()
    }

    /// Replaces the faults; takes effect for the next request.
    pub fn set_faults(&self, faults: Faults) {
        lock(&self.shared.ctl).faults = faults;
    }

    pub fn faults(&self) -> Faults {
        lock(&self.shared.ctl).faults.clone()
    }

    /// Every request, in arrival order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.shared.ctl).requests.clone()
    }

    /// Forgets the recorded requests (e.g. between benchmark phases).
    pub fn clear_requests(&self) {
        lock(&self.shared.ctl).requests.clear();
    }

    /// Number of calls to the token endpoint (successful or not).
    pub fn token_calls(&self) -> usize {
        lock(&self.shared.ctl).token_calls
    }

    /// Ciphertexts received by the decrypt endpoint so far (what the app's daily quota counts),
    /// in well-formed requests with a valid token.
    pub fn decrypt_ciphertexts(&self) -> u64 {
        lock(&self.shared.ctl).decrypt_ciphertexts
    }

    /// Sets how many more ciphertexts the app's decrypt quota allows (`None`: unlimited). A call
    /// asking more answers 2190001 and decrypts nothing.
    pub fn set_decrypt_quota(&self, left: Option<u64>) {
        lock(&self.shared.ctl).decrypt_quota = left;
    }

    /// Tokens the token endpoint has issued (successful token calls).
    pub fn tokens_issued(&self) -> u64 {
        lock(&self.shared.ctl).tokens_issued
    }

    /// Makes every token issued so far invalid, as Douyin does once two newer ones exist: the
    /// next request with one of them answers 2190002.
    pub fn invalidate_tokens(&self) {
        lock(&self.shared.ctl).tokens.clear();
    }

    /// Milliseconds since the server started: the clock of [`RecordedRequest::at_ms`].
    pub fn now_ms(&self) -> u64 {
        self.shared.now_ms()
    }

    /// Number of TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// Maximum number of requests (all endpoints) whose arrival times fall in any sliding
    /// 1-second window `[t, t + 1000 ms)`.
    pub fn busiest_second(&self) -> usize {
        self.busiest_window(None, 1000)
    }

    /// Maximum number of requests (all endpoints, or those to `path`) whose arrival times fall
    /// in any sliding window `[t, t + window_ms)`.
    pub fn busiest_window(&self, path: Option<&str>, window_ms: u64) -> usize {
        let mut times: Vec<u64> = lock(&self.shared.ctl)
            .requests
            .iter()
            .filter(|r| path.is_none_or(|p| r.path == p))
            .map(|r| r.at_ms)
            .collect();
        times.sort_unstable();
        let mut best = 0;
        let mut j = 0;
        for i in 0..times.len() {
            while j < times.len() && times[j] < times[i] + window_ms {
                j += 1;
            }
            best = best.max(j - i);
        }
        best
    }

    /// The busiest second as a pacing test may assert it: the window is shortened by
    /// [`ARRIVAL_JITTER_MS`], what a request's arrival here may lag its start in the client on
    /// a loaded 2-core machine (the pacer spaces *starts*; this server sees arrivals after the
    /// client's thread, the TCP handshake and this server's accept thread all got the CPU). A
    /// pacer one request over its budget is still caught: its requests are at most
    /// 1000/(budget+1) ms apart, so budget+1 of them fit in 950 ms for any budget under 20.
    pub fn busiest_paced_second(&self, path: Option<&str>) -> usize {
        self.busiest_window(path, 1000 - ARRIVAL_JITTER_MS)
    }

    /// Makes the decrypt endpoint decrypt `cipher` (an `Enc.…` ciphertext) to `plain`.
    pub fn register_platform_cipher(&self, cipher: &str, plain: &str) {
        lock(&self.shared.ctl)
            .ciphers
            .insert(cipher.to_string(), plain.to_string());
    }

    /// Sets or clears the query hook (see [`QueryHook`]); the indexes are rebuilt after each call.
    pub fn set_hook(&self, hook: Option<QueryHook>) {
        *lock(&self.shared.hook) = hook;
    }

    /// Issues a token as the token endpoint would (without an HTTP call; not counted in
    /// `token_calls`). Older tokens beyond the two newest become invalid.
    pub fn issue_token(&self) -> String {
        issue_token(&self.shared, &mut lock(&self.shared.ctl))
    }

    /// The currently valid tokens, oldest first.
    pub fn valid_tokens(&self) -> Vec<String> {
        lock(&self.shared.ctl)
            .tokens
            .iter()
            .map(|t| t.token.clone())
            .collect()
    }

    /// Adds verification records (§7); a record whose `verify_id` is stored replaces it. The
    /// `cursor` of a record is its `verify_id` (as in the published sample): ids of equal length
    /// page in order.
    pub fn add_verifications(&self, records: impl IntoIterator<Item = Value>) {
        let mut store = lock(&self.shared.store);
        for r in records {
            let id = r
                .get("verify_id")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            store.verifications.insert(id, r);
        }
        store.verify_index = None;
    }

    /// Revokes a verification as Douyin does later: `status` 2, `cancel_time`, `can_cancel`
    /// false; `verify_time` unchanged. False when there is no such record.
    pub fn revoke_verification(&self, verify_id: &str, cancel_time: i64) -> bool {
        let mut store = lock(&self.shared.store);
        let Some(r) = store.verifications.get_mut(verify_id) else {
            return false;
        };
        r["status"] = json!(2);
        r["cancel_time"] = json!(cancel_time);
        r["can_cancel"] = json!(false);
        true
    }

    /// Every stored verification record, as served.
    pub fn verifications(&self) -> Vec<Value> {
        lock(&self.shared.store)
            .verifications
            .values()
            .cloned()
            .collect()
    }

    /// Maximum number of requests to `path` arriving in any sliding second.
    pub fn busiest_second_of(&self, path: &str) -> usize {
        self.busiest_window(Some(path), 1000)
    }

    /// Generates a day of orders (see [`generate_day`]) with this server's app secret, registers
    /// every platform cipher, adds the orders and returns them.
    pub fn seed_day(
        &self,
        account_id: &str,
        day_start: i64,
        count: usize,
        seed: u64,
    ) -> Vec<GeneratedOrder> {
        let generated = generate_day(&self.shared.app_secret, account_id, day_start, count, seed);
        self.add_generated(&generated);
        generated
    }

    /// Same orders as [`seed_day`](Self::seed_day), generated and added in chunks, returning only
    /// `(order_id, expected_phone)` per order: for big data sets (100,000 orders held as
    /// `serde_json::Value`s take about 1 GB; stored in the server they take about 150 MB).
    pub fn seed_day_compact(
        &self,
        account_id: &str,
        day_start: i64,
        count: usize,
        seed: u64,
    ) -> Vec<(String, Option<String>)> {
        let secret = self.shared.app_secret.clone();
        let mut generator = DayGenerator::new(&secret, account_id, day_start, seed);
        let mut out = Vec::with_capacity(count);
        let mut i = 0;
        while i < count {
            let n = (count - i).min(1000);
            let chunk: Vec<GeneratedOrder> = (i..i + n).map(|k| generator.order(k)).collect();
            self.add_generated(&chunk);
            out.extend(chunk.into_iter().map(|g| (g.order_id(), g.expected_phone)));
            i += n;
        }
        out
    }

    fn add_generated(&self, generated: &[GeneratedOrder]) {
        {
            let mut ctl = lock(&self.shared.ctl);
            for g in generated {
                if let Some((cipher, plain)) = &g.platform_cipher {
                    ctl.ciphers.insert(cipher.clone(), plain.clone());
                }
            }
        }
        self.add_stored(
            generated
                .iter()
                .map(|g| StoredOrder::new(&g.json))
                .collect(),
        );
    }
}

impl Drop for FakeDouyin {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Unblock accept(); if even that fails, leave the thread behind rather than hang.
        let woken = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1)).is_ok();
        if let Some(handle) = self.accept_thread.take() {
            if woken {
                let _ = handle.join();
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Connection handling

fn accept_loop(shared: &Arc<Shared>, listener: &TcpListener) {
    for stream in listener.incoming() {
        if shared.stop.load(Ordering::SeqCst) {
            break;
        }
        let Ok(stream) = stream else {
            thread::sleep(Duration::from_millis(5));
            continue;
        };
        shared.connections.fetch_add(1, Ordering::SeqCst);
        let conn_shared = Arc::clone(shared);
        let _ = thread::Builder::new()
            .name("fake-douyin-conn".to_string())
            .spawn(move || serve_connection(&conn_shared, stream));
    }
}

struct Request {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    close: bool,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    pos: usize,
}

impl Conn {
    /// Reads more bytes; false on EOF, error, server stop or idle timeout.
    fn fill(&mut self, shared: &Shared) -> bool {
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        } else if self.pos > 64 * 1024 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        let since = Instant::now();
        let mut chunk = [0u8; 16 * 1024];
        loop {
            if shared.stop.load(Ordering::SeqCst) {
                return false;
            }
            match self.stream.read(&mut chunk) {
                Ok(0) => return false,
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    return true;
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    if since.elapsed() > IDLE_LIMIT {
                        return false;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
    }

    fn read_line(&mut self, shared: &Shared) -> Option<String> {
        let mut scanned = 0;
        loop {
            let avail = &self.buf[self.pos..];
            if let Some(p) = avail[scanned..].iter().position(|&b| b == b'\n') {
                let end = scanned + p;
                let mut line = &avail[..end];
                if line.last() == Some(&b'\r') {
                    line = &line[..line.len() - 1];
                }
                let s = String::from_utf8_lossy(line).into_owned();
                self.pos += end + 1;
                return Some(s);
            }
            scanned = avail.len();
            if scanned > MAX_HEAD {
                return None;
            }
            if !self.fill(shared) {
                return None;
            }
        }
    }

    fn read_exact_n(&mut self, shared: &Shared, n: usize) -> Option<Vec<u8>> {
        while self.buf.len() - self.pos < n {
            if !self.fill(shared) {
                return None;
            }
        }
        let v = self.buf[self.pos..self.pos + n].to_vec();
        self.pos += n;
        Some(v)
    }

    /// None: connection over. Some(Err): malformed request (answer 400 and close).
    fn read_request(&mut self, shared: &Shared) -> Option<Result<Request, String>> {
        let line = loop {
            let l = self.read_line(shared)?;
            if !l.trim().is_empty() {
                break l;
            }
        };
        let mut parts = line.split_whitespace();
        let (Some(method), Some(target), Some(version)) =
            (parts.next(), parts.next(), parts.next())
        else {
            return Some(Err(format!("bad request line {line:?}")));
        };
        let (method, target, version) =
            (method.to_string(), target.to_string(), version.to_string());
        let mut headers = Vec::new();
        loop {
            let l = self.read_line(shared)?;
            if l.is_empty() {
                break;
            }
            if headers.len() > 200 {
                return Some(Err("too many headers".to_string()));
            }
            let Some((name, value)) = l.split_once(':') else {
                return Some(Err(format!("bad header line {l:?}")));
            };
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
        let get = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.to_ascii_lowercase())
        };
        let connection = get("connection").unwrap_or_default();
        let close = if version.eq_ignore_ascii_case("HTTP/1.0") {
            !connection.contains("keep-alive")
        } else {
            connection.contains("close")
        };
        let chunked = get("transfer-encoding").is_some_and(|v| v.contains("chunked"));
        let mut body = Vec::new();
        if chunked {
            loop {
                let size_line = self.read_line(shared)?;
                let size_hex = size_line.split(';').next().unwrap_or("").trim();
                let Ok(size) = usize::from_str_radix(size_hex, 16) else {
                    return Some(Err(format!("bad chunk size {size_line:?}")));
                };
                if size == 0 {
                    // Trailers, up to the empty line.
                    while !self.read_line(shared)?.is_empty() {}
                    break;
                }
                if body.len() + size > MAX_BODY {
                    return Some(Err("body too large".to_string()));
                }
                body.extend(self.read_exact_n(shared, size)?);
                self.read_line(shared)?;
            }
        } else if let Some(len) = get("content-length") {
            let Ok(len) = len.trim().parse::<usize>() else {
                return Some(Err(format!("bad Content-Length {len:?}")));
            };
            if len > MAX_BODY {
                return Some(Err("body too large".to_string()));
            }
            body = self.read_exact_n(shared, len)?;
        }
        Some(Ok(Request {
            method,
            target,
            headers,
            body,
            close,
        }))
    }
}

struct Reply {
    status: u16,
    content_type: &'static str,
    body: String,
    cut: bool,
}

impl Reply {
    fn json(body: String) -> Reply {
        Reply {
            status: 200,
            content_type: "application/json; charset=utf-8",
            body,
            cut: false,
        }
    }
}

fn serve_connection(shared: &Shared, stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    if stream.set_read_timeout(Some(POLL)).is_err() {
        return;
    }
    let _ = stream.set_write_timeout(Some(Duration::from_secs(30)));
    let mut conn = Conn {
        stream,
        buf: Vec::with_capacity(8192),
        pos: 0,
    };
    while let Some(request) = conn.read_request(shared) {
        let (reply, keep) = match request {
            Ok(req) => {
                let reply = handle(shared, &req);
                (reply, !req.close)
            }
            Err(msg) => {
                let reply = Reply {
                    status: 400,
                    content_type: "application/json; charset=utf-8",
                    body: json!({"message": "bad request", "detail": msg}).to_string(),
                    cut: false,
                };
                (reply, false)
            }
        };
        let keep = keep && !reply.cut && !shared.stop.load(Ordering::SeqCst);
        if write_reply(&mut conn.stream, &reply, keep).is_err() {
            break;
        }
        if !keep {
            let _ = conn.stream.shutdown(Shutdown::Both);
            break;
        }
    }
}

fn write_reply(stream: &mut TcpStream, reply: &Reply, keep: bool) -> io::Result<()> {
    let reason = match reply.status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        502 => "Bad Gateway",
        _ => "Unknown",
    };
    let head = format!(
        "HTTP/1.1 {} {}\r\nServer: fake-douyin\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: {}\r\n\r\n",
        reply.status,
        reason,
        reply.content_type,
        reply.body.len(),
        if keep { "keep-alive" } else { "close" },
    );
    let body = reply.body.as_bytes();
    let body = if reply.cut {
        &body[..body.len() / 2]
    } else {
        body
    };
    let mut out = Vec::with_capacity(head.len() + body.len());
    out.extend_from_slice(head.as_bytes());
    out.extend_from_slice(body);
    stream.write_all(&out)?;
    stream.flush()
}

// ---------------------------------------------------------------------------------------------
// Dispatch

/// Where a request stands after being recorded.
struct Arrival {
    index: usize,
    /// For order queries: whether the QPS limit was exceeded at arrival.
    over_qps: bool,
    faults: Faults,
}

impl Shared {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn record(&self, req: &Request, path: &str, params: &BTreeMap<String, String>) -> Arrival {
        let mut ctl = lock(&self.ctl);
        let at_ms = self.now_ms();
        let index = ctl.requests.len();
        ctl.requests.push(RecordedRequest {
            at_ms,
            method: req.method.clone(),
            path: path.to_string(),
            params: params.clone(),
            access_token: req.header("access-token").map(str::to_string),
            body: String::from_utf8_lossy(&req.body).into_owned(),
            outcome: "pending".to_string(),
        });
        let mut over_qps = false;
        if path == ORDER_QUERY_PATH && req.method == "GET" {
            ctl.query_times.push_back(at_ms);
            while ctl.query_times.front().is_some_and(|&t| t + 1000 <= at_ms) {
                ctl.query_times.pop_front();
            }
            if let Some(limit) = ctl.faults.qps_limit {
                over_qps = ctl.query_times.len() > limit;
            }
        }
        if path == VERIFY_PATH && req.method == "GET" {
            ctl.verify_times.push_back(at_ms);
            while ctl.verify_times.front().is_some_and(|&t| t + 1000 <= at_ms) {
                ctl.verify_times.pop_front();
            }
            if let Some(limit) = ctl.faults.verify_qps_limit {
                over_qps = ctl.verify_times.len() > limit;
            }
        }
        Arrival {
            index,
            over_qps,
            faults: ctl.faults.clone(),
        }
    }

    fn set_outcome(&self, index: usize, outcome: String) {
        if let Some(r) = lock(&self.ctl).requests.get_mut(index) {
            r.outcome = outcome;
        }
    }

    fn logid(&self) -> String {
        let n = self.logid_counter.fetch_add(1, Ordering::SeqCst);
        let secs = unix_now() + 8 * 3600;
        let (y, m, d) = civil_from_days(secs.div_euclid(86400));
        let tod = secs.rem_euclid(86400);
        format!(
            "{y:04}{m:02}{d:02}{:02}{:02}{:02}{:06X}{:014X}",
            tod / 3600,
            tod % 3600 / 60,
            tod % 60,
            u32::from(self.port),
            n
        )
    }

    /// The error body of the order query / decrypt endpoints.
    fn error_body(&self, placement: ErrorPlacement, code: i64) -> String {
        let desc = describe(code);
        let data = match placement {
            ErrorPlacement::Extra => json!({}),
            _ => json!({"error_code": code, "description": desc}),
        };
        let (extra_code, extra_desc) = match placement {
            ErrorPlacement::Data => (0, ""),
            _ => (code, desc),
        };
        json!({
            "data": data,
            "extra": {
                "error_code": extra_code,
                "description": extra_desc,
                "sub_error_code": 0,
                "sub_description": "",
                "logid": self.logid(),
                "now": unix_now(),
            }
        })
        .to_string()
    }

    fn extra_ok(&self) -> Value {
        json!({
            "error_code": 0,
            "description": "",
            "sub_error_code": 0,
            "sub_description": "",
            "logid": self.logid(),
            "now": unix_now(),
        })
    }
}

fn describe(code: i64) -> &'static str {
    match code {
        2190002 => "access_token无效 (access token is invalid)",
        2190008 => "access_token已过期 (access token expired)",
        28001008 => "access_token过期,请刷新或重新授权 (access token expired)",
        2119003 | 28003018 => "请求太过频繁,请稍后再试 (too many requests)",
        2100004 => "系统繁忙,请稍后再试 (system busy)",
        2119002 => "服务内部错误,请重试 (internal error, please retry)",
        5000001 => "系统错误 (system error)",
        28001005 => "服务暂不可用,请稍后重试 (service unavailable)",
        28001006 => "服务内部错误 (internal service error)",
        2100001 => "内部错误 (internal error)",
        2190001 | 28003017 => "应用调用次数超限 (quota exceeded)",
        2100005 | 2119001 | 28001007 => "参数不合法 (invalid parameter)",
        2190004 | 28001014 | 28001018 => "应用未获得该能力 (no permission for this capability)",
        2119005 => "商家未授权该应用 (the merchant has not authorised the app)",
        2100007 => "IP不在白名单内 (IP not whitelisted)",
        2119013 => "无权限操作 (no permission)",
        10002 => "参数错误 (bad parameter)",
        10003 => "client_key不存在 (client_key does not exist)",
        10013 => "client_key或client_secret错误 (client_key or client_secret is wrong)",
        10020 => "请求太频繁 (token requested too often)",
        _ => "未知错误 (unknown error)",
    }
}

fn outcome_for(code: i64) -> String {
    let kind = match code {
        2190002 => "invalid token",
        2190008 | 28001008 => "expired",
        2119003 | 28003018 => "rate",
        2100004 | 2119002 | 5000001 | 28001005 | 28001006 | 2100001 => "busy",
        2100005 | 2119001 | 28001007 => "param",
        _ => "error",
    };
    format!("{kind} {code}")
}

fn handle(shared: &Shared, req: &Request) -> Reply {
    let (path, query) = match req.target.split_once('?') {
        Some((p, q)) => (p, q),
        None => (req.target.as_str(), ""),
    };
    let pairs = parse_query(query);
    let params: BTreeMap<String, String> = pairs.iter().cloned().collect();
    let arrival = shared.record(req, path, &params);
    let (reply, outcome) = match (req.method.as_str(), path) {
        (_, p) if arrival.faults.not_found_paths.iter().any(|n| n == p) => not_found(req, path),
        ("POST", TOKEN_PATH) if arrival.faults.silent_token => {
            shared.set_outcome(arrival.index, "silent".to_string());
            while lock(&shared.ctl).faults.silent_token && !shared.stop.load(Ordering::SeqCst) {
                thread::sleep(POLL);
            }
            handle_token(shared, req)
        }
        ("POST", TOKEN_PATH) => handle_token(shared, req),
        ("GET", ORDER_QUERY_PATH) => handle_query(shared, req, &pairs, &params, &arrival),
        ("POST", DECRYPT_PATH) => handle_decrypt(shared, req, &arrival),
        ("GET", VERIFY_PATH) => handle_verifications(shared, req, &params, &arrival),
        ("GET", ledger::REFUNDS_PATH | ledger::LEDGER_PATH) => {
            ledger::handle(shared, req, path, &params, &arrival)
        }
        _ => not_found(req, path),
    };
    let outcome = if reply.cut {
        "cut".to_string()
    } else {
        outcome
    };
    shared.set_outcome(arrival.index, outcome);
    reply
}

fn not_found(req: &Request, path: &str) -> (Reply, String) {
    let body = json!({
        "message": "not found",
        "method": req.method,
        "path": path,
    });
    let reply = Reply {
        status: 404,
        content_type: "application/json; charset=utf-8",
        body: body.to_string(),
        cut: false,
    };
    (reply, "not found".to_string())
}

// ---------------------------------------------------------------------------------------------
// Token endpoint (§1)

fn issue_token(shared: &Shared, ctl: &mut Ctl) -> String {
    ctl.tokens_issued += 1;
    let n = ctl.tokens_issued;
    let mut h = mix64(shared.seed ^ mix64(n) ^ (u64::from(shared.port) << 32));
    let mut token = format!("clt.fake{n}");
    for _ in 0..3 {
        h = mix64(h.wrapping_add(0x9E37_79B9_7F4A_7C15));
        let _ = write!(token, "{h:016x}");
    }
    ctl.tokens.push_back(TokenState {
        token: token.clone(),
        answered: 0,
    });
    while ctl.tokens.len() > 2 {
        ctl.tokens.pop_front();
    }
    token
}

fn handle_token(shared: &Shared, req: &Request) -> (Reply, String) {
    let mut ctl = lock(&shared.ctl);
    ctl.token_calls += 1;
    let now = shared.now_ms();
    ctl.token_call_times.push_back(now);
    while ctl
        .token_call_times
        .front()
        .is_some_and(|&t| t + 300_000 <= now)
    {
        ctl.token_call_times.pop_front();
    }
    let strings = ctl.faults.numeric_strings;
    let num = |n: i64| {
        if strings {
            json!(n.to_string())
        } else {
            json!(n)
        }
    };
    let error = |code: i64| {
        let body = json!({
            "data": {"description": describe(code), "error_code": num(code)},
            "message": "error",
        });
        (Reply::json(body.to_string()), format!("token error {code}"))
    };
    if let Some(code) = ctl.faults.token_error {
        return error(code);
    }
    if ctl.token_call_times.len() > 500 {
        return error(10020);
    }
    let fields = parse_body_fields(&req.body);
    let field = |k: &str| fields.get(k).map(String::as_str);
    if field("grant_type") != Some("client_credential") {
        return error(10002);
    }
    let (Some(key), Some(secret)) = (field("client_key"), field("client_secret")) else {
        return error(10002);
    };
    if key != shared.app_id {
        return error(10003);
    }
    if secret != shared.app_secret {
        return error(10013);
    }
    let token = issue_token(shared, &mut ctl);
    let body = json!({
        "data": {
            "access_token": token,
            "description": "",
            "error_code": num(0),
            "expires_in": num(TOKEN_LIFETIME_SECS),
        },
        "message": "success",
    });
    (Reply::json(body.to_string()), "ok".to_string())
}

/// Fields of a JSON object body (string values; numbers are stringified) or of a form body.
fn parse_body_fields(body: &[u8]) -> HashMap<String, String> {
    let text = String::from_utf8_lossy(body);
    let trimmed = text.trim();
    if trimmed.starts_with('{') {
        let Ok(Value::Object(map)) = serde_json::from_str::<Value>(trimmed) else {
            return HashMap::new();
        };
        map.into_iter()
            .filter_map(|(k, v)| match v {
                Value::String(s) => Some((k, s)),
                Value::Number(n) => Some((k, n.to_string())),
                _ => None,
            })
            .collect()
    } else {
        parse_query(trimmed).into_iter().collect()
    }
}

// ---------------------------------------------------------------------------------------------
// Shared checks of the order query and decrypt endpoints

enum Gate {
    Pass { cut: bool, token: String },
    Stop(Reply, String),
}

/// Latency, then 502 / cut / busy, then (query only) always-fail window and QPS limit, then the
/// token. `start_param` is the start-time parameter of an order query (None for decrypt).
fn gate(
    shared: &Shared,
    req: &Request,
    arrival: &Arrival,
    is_query: bool,
    start_param: Option<i64>,
) -> Gate {
    let f = &arrival.faults;
    if !f.latency.is_zero() {
        thread::sleep(f.latency);
    }
    let mut ctl = lock(&shared.ctl);
    if f.http_502_rate > 0.0 && ctl.rng.chance(f.http_502_rate) {
        let reply = Reply {
            status: 502,
            content_type: "text/html",
            body: "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>Tengine</center>\r\n</body>\r\n</html>\r\n".to_string(),
            cut: false,
        };
        return Gate::Stop(reply, "http 502".to_string());
    }
    let cut = f.cut_body_rate > 0.0 && ctl.rng.chance(f.cut_body_rate);
    let fail = |code: i64| {
        let mut reply = Reply::json(shared.error_body(f.error_in, code));
        reply.cut = cut;
        Gate::Stop(reply, outcome_for(code))
    };
    if f.busy_rate > 0.0 && ctl.rng.chance(f.busy_rate) {
        let code = BUSY_CODES[ctl.rng.below(BUSY_CODES.len() as u64) as usize];
        return fail(code);
    }
    if is_query {
        if let (Some((a, b)), Some(start)) = (f.always_fail_window, start_param) {
            if a <= start && start < b {
                return fail(2119002);
            }
        }
        if arrival.over_qps {
            return fail(2119003);
        }
    }
    let Some(token) = req.header("access-token") else {
        return fail(2190002);
    };
    let Some(state) = ctl.tokens.iter().find(|t| t.token == token) else {
        return fail(2190002);
    };
    if f.expire_token_after.is_some_and(|n| state.answered >= n) {
        ctl.expired_toggle = !ctl.expired_toggle;
        return fail(if ctl.expired_toggle {
            28001008
        } else {
            2190008
        });
    }
    Gate::Pass {
        cut,
        token: token.to_string(),
    }
}

/// Forced per-account codes, then authorisation.
fn account_check(shared: &Shared, faults: &Faults, account: &str) -> Option<i64> {
    if let Some((_, code)) = faults.account_errors.iter().find(|(a, _)| a == account) {
        return Some(*code);
    }
    if !shared.authorised.iter().any(|a| a == account) {
        return Some(2119005);
    }
    None
}

// ---------------------------------------------------------------------------------------------
// Verification records endpoint (§7)

/// `GET …/verify_record/query/?account_id&cursor&size&start_time&end_time`: the records whose
/// `verify_time` is in the window (end inclusive as `end_inclusive` says), in cursor order,
/// after `cursor` (`0` = from the start), at most `size` (1–20, else 2100005); `data.total` is
/// the window's count. Shares the faults of `gate` (latency, 502, cut, busy, token expiry) and
/// has its own QPS limit (`verify_qps_limit`).
fn handle_verifications(
    shared: &Shared,
    req: &Request,
    params: &BTreeMap<String, String>,
    arrival: &Arrival,
) -> (Reply, String) {
    let faults = &arrival.faults;
    let (cut, token) = match gate(shared, req, arrival, false, None) {
        Gate::Pass { cut, token } => (cut, token),
        Gate::Stop(reply, outcome) => return (reply, outcome),
    };
    let fail = |code: i64| {
        let mut reply = Reply::json(shared.error_body(faults.error_in, code));
        reply.cut = cut;
        (reply, outcome_for(code))
    };
    if arrival.over_qps {
        return fail(2119003);
    }
    if let Some(code) = faults.verify_error {
        return fail(code);
    }
    let Some(account) = params.get("account_id") else {
        return fail(2100005);
    };
    if let Some(code) = account_check(shared, faults, account) {
        return fail(code);
    }
    let int = |k: &str| params.get(k).and_then(|v| v.trim().parse::<i64>().ok());
    let (Some(size), Some(cursor)) = (int("size"), params.get("cursor")) else {
        return fail(2100005);
    };
    if size < 1 || size as u64 > MAX_VERIFY_SIZE {
        return fail(2100005);
    }
    let start = int("start_time").unwrap_or(i64::MIN);
    let end = int("end_time").unwrap_or(i64::MAX);
    let body = {
        let mut store = lock(&shared.store);
        if store.verify_index.is_none() {
            let mut index: Vec<(i64, String)> = store
                .verifications
                .iter()
                .map(|(id, r)| (int_field(r, "verify_time"), id.clone()))
                .collect();
            index.sort();
            store.verify_index = Some(index);
        }
        let store = &*store;
        let index = store.verify_index.as_deref().unwrap_or_default();
        let lo = index.partition_point(|(t, _)| *t < start);
        let hi = index.partition_point(|(t, _)| *t < end || (shared.end_inclusive && *t == end));
        let mut in_window: Vec<&Value> = index[lo..hi.max(lo)]
            .iter()
            .filter_map(|(_, id)| store.verifications.get(id))
            .filter(|r| {
                r.get("sku")
                    .and_then(|s| s.get("account_id"))
                    .and_then(Value::as_str)
                    .is_none_or(|a| a == account)
            })
            .collect();
        let cursor_of = |r: &Value| -> (usize, String) {
            let c = r.get("cursor").and_then(Value::as_str).unwrap_or_default();
            (c.len(), c.to_string())
        };
        in_window.sort_by_key(|r| cursor_of(r));
        let total = in_window.len();
        let after: Vec<&Value> = if faults.verify_stuck_cursor || cursor == "0" {
            in_window.clone()
        } else {
            in_window
                .iter()
                .copied()
                .filter(|r| cursor_of(r) > (cursor.len(), cursor.clone()))
                .collect()
        };
        let page: Vec<Value> = after.into_iter().take(size as usize).cloned().collect();
        let mut data = json!({"records": page, "error_code": 0, "description": ""});
        let answered = lock(&shared.ctl)
            .requests
            .iter()
            .filter(|r| r.path == VERIFY_PATH && r.outcome == "ok")
            .count();
        let skew = usize::from(answered < faults.verify_total_skew);
        if !faults.verify_without_total {
            data["total"] = json!(total + skew);
        }
        json!({"data": data, "extra": shared.extra_ok()}).to_string()
    };
    {
        let mut ctl = lock(&shared.ctl);
        if let Some(t) = ctl.tokens.iter_mut().find(|t| t.token == token) {
            t.answered += 1;
        }
    }
    let mut reply = Reply::json(body);
    reply.cut = cut;
    (reply, "ok".to_string())
}

/// Verification records of one account: `n` a day for `days` days from `first_day` (a local
/// midnight), verify times spread over each day, amounts and ids from `seed`. Some records have
/// `order_id`, `code` and `verify_poi_id`, some not; some numbers are strings (lenient parsing).
pub fn generate_verifications(
    account_id: &str,
    first_day: i64,
    days: usize,
    per_day: usize,
    seed: u64,
) -> Vec<Value> {
    let mut rng = XorShift::new(seed ^ 0x5645_5249_4659);
    let mut out = Vec::with_capacity(days * per_day);
    for d in 0..days {
        for i in 0..per_day {
            let n = (d * per_day + i) as u64;
            // 19 digits, increasing with n: the cursor order is the insertion order.
            let id = format!(
                "{}",
                7_200_000_000_000_000_000u64 + seed % 1000 * 1_000_000_000 + n
            );
            // Never at 00:00:00: that second is asked by two days (the end bound is inclusive or not).
            let verify_time =
                first_day + d as i64 * 86_400 + 30 + (i as i64 * 86_000) / per_day.max(1) as i64;
            let original = 1000 + rng.below(50_000) as i64;
            let pay = original - rng.below(original as u64 / 2) as i64;
            let mut r = json!({
                "cursor": id,
                "verify_id": id,
                "certificate_id": format!("{}", 7_100_000_000_000_000_000u64 + mix64(n ^ seed) % 1_000_000_000_000_000),
                "verify_time": verify_time,
                "can_cancel": true,
                "verify_type": 1 + rng.below(3) as i64,
                "status": 1,
                "cancel_time": 0,
                "amount": {
                    "original_amount": original,
                    "pay_amount": if i % 3 == 0 { json!(pay.to_string()) } else { json!(pay) },
                    "merchant_ticket_amount": rng.below(500) as i64,
                    "list_market_amount": original,
                },
                "sku": {
                    "sku_id": format!("17605430444{:05}", rng.below(20)),
                    "title": format!("套餐 {}", rng.below(20)),
                    "account_id": account_id,
                    "market_price": original,
                    "sold_start_time": first_day - 86_400 * 30,
                    "third_sku_id": "",
                },
                "unknown_field": {"kept": i},
            });
            if i % 4 != 3 {
                r["code"] = json!(format!(
                    "{:012}",
                    mix64(n.wrapping_add(seed)) % 1_000_000_000_000
                ));
                r["verify_poi_id"] = json!(format!("66{:04}", rng.below(5)));
            }
            if i % 2 == 0 {
                r["order_id"] = json!(format!("10779403053{:08}", n));
            }
            if i % 5 == 4 {
                r["verify_time"] = json!(verify_time.to_string());
            }
            out.push(r);
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Order query endpoint (§2)

struct QueryPlan {
    info: QueryInfo,
    open_id: Option<String>,
    order_id: Option<String>,
}

fn parse_plan(
    pairs: &[(String, String)],
    params: &BTreeMap<String, String>,
) -> Result<QueryPlan, String> {
    let int = |k: &str| -> Result<Option<i64>, String> {
        match params.get(k) {
            None => Ok(None),
            Some(v) => v
                .trim()
                .parse::<i64>()
                .map(Some)
                .map_err(|_| format!("{k} is not an integer: {v:?}")),
        }
    };
    let account_id = params
        .get("account_id")
        .filter(|a| !a.trim().is_empty())
        .ok_or("account_id is required")?
        .clone();
    let page_num = int("page_num")?.ok_or("page_num is required")?;
    let page_size = int("page_size")?.ok_or("page_size is required")?;
    if page_num < 1 {
        return Err(format!("page_num must be >= 1, got {page_num}"));
    }
    if !(1..=100).contains(&page_size) {
        return Err(format!("page_size must be in 1..=100, got {page_size}"));
    }
    let (page_num, page_size) = (page_num as u64, page_size as u64);
    let (us, ue) = (
        int("update_order_start_time")?,
        int("update_order_end_time")?,
    );
    let (cs, ce) = (
        int("create_order_start_time")?,
        int("create_order_end_time")?,
    );
    let by_update_time = us.is_some() || ue.is_some();
    let (start, end) = if by_update_time { (us, ue) } else { (cs, ce) };
    let order_status = int("order_status")?;
    let cursor = parse_cursor(pairs)?;
    if cursor.is_none() && page_num.saturating_mul(page_size) > MAX_OFFSET_ROWS {
        return Err(format!(
            "page_num * page_size must be <= {MAX_OFFSET_ROWS}, got {page_num} * {page_size}"
        ));
    }
    if let Some(g) = params.get("get_secret_number") {
        if !matches!(g.as_str(), "true" | "false" | "1" | "0") {
            return Err(format!("get_secret_number is not a bool: {g:?}"));
        }
    }
    Ok(QueryPlan {
        info: QueryInfo {
            account_id,
            page_num,
            page_size,
            start,
            end,
            by_update_time,
            order_status,
            cursor,
        },
        open_id: params.get("open_id").filter(|s| !s.is_empty()).cloned(),
        order_id: params.get("order_id").filter(|s| !s.is_empty()).cloned(),
    })
}

/// `cursor` as repeated parameters, a JSON array or a comma-joined list; "" / "0" mean none.
fn parse_cursor(pairs: &[(String, String)]) -> Result<Option<(i64, String)>, String> {
    let values: Vec<&str> = pairs
        .iter()
        .filter(|(k, _)| k == "cursor" || k == "cursor[]")
        .map(|(_, v)| v.trim())
        .collect();
    let parts: Vec<String> = match values.as_slice() {
        [] => return Ok(None),
        [one] if one.is_empty() || *one == "0" || *one == "[]" => return Ok(None),
        [one] if one.starts_with('[') => match serde_json::from_str::<Value>(one) {
            Ok(Value::Array(items)) => items
                .iter()
                .map(|v| match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect(),
            _ => return Err(format!("cursor is not a JSON array: {one:?}")),
        },
        [one] => one.split(',').map(|s| s.trim().to_string()).collect(),
        many => many.iter().map(|s| s.to_string()).collect(),
    };
    match parts.as_slice() {
        [t, id] => match t.parse::<i64>() {
            Ok(t) => Ok(Some((t, id.clone()))),
            Err(_) => Err(format!("cursor time is not an integer: {t:?}")),
        },
        _ => Err(format!("cursor must have 2 values, got {}", parts.len())),
    }
}

fn handle_query(
    shared: &Shared,
    req: &Request,
    pairs: &[(String, String)],
    params: &BTreeMap<String, String>,
    arrival: &Arrival,
) -> (Reply, String) {
    let faults = &arrival.faults;
    let plan = parse_plan(pairs, params);
    let start_param = plan.as_ref().ok().and_then(|p| p.info.start);
    let (cut, token) = match gate(shared, req, arrival, true, start_param) {
        Gate::Pass { cut, token } => (cut, token),
        Gate::Stop(reply, outcome) => return (reply, outcome),
    };
    let fail = |code: i64| {
        let mut reply = Reply::json(shared.error_body(faults.error_in, code));
        reply.cut = cut;
        (reply, outcome_for(code))
    };
    if let Some(code) = faults.query_error {
        return fail(code);
    }
    if let Some(account) = params.get("account_id") {
        if let Some(code) = account_check(shared, faults, account) {
            return fail(code);
        }
    }
    let plan = match plan {
        Ok(p) => p,
        Err(_) => return fail(2100005),
    };
    let raw = lock(&shared.raw_page)
        .as_mut()
        .and_then(|page| page(&plan.info));
    let body = if let Some(raw) = raw {
        raw
    } else {
        let mut hook = lock(&shared.hook);
        let mut store = lock(&shared.store);
        if let Some(h) = hook.as_mut() {
            let mut values: Vec<Value> = store.orders.iter().map(StoredOrder::value).collect();
            h(&plan.info, &mut values);
            store.replace_all(&values);
        }
        drop(hook);
        let body = store.answer(shared, &plan);
        match &plan.info.cursor {
            Some((t, id)) if faults.orders_stuck_cursor => stuck_cursor(&body, *t, id),
            _ => body,
        }
    };
    {
        let mut ctl = lock(&shared.ctl);
        if let Some(t) = ctl.tokens.iter_mut().find(|t| t.token == token) {
            t.answered += 1;
        }
    }
    let mut reply = Reply::json(body);
    reply.cut = cut;
    (reply, "ok".to_string())
}

impl Store {
    /// After the hook: the orders are whatever it left (a later duplicate id wins the look-up).
    fn replace_all(&mut self, values: &[Value]) {
        self.orders = values.iter().map(StoredOrder::new).collect();
        self.by_id = self
            .orders
            .iter()
            .enumerate()
            .map(|(i, o)| (o.id.clone(), i))
            .collect();
        self.indexes.clear();
    }

    fn answer(&mut self, shared: &Shared, plan: &QueryPlan) -> String {
        let info = &plan.info;
        let Store {
            orders, indexes, ..
        } = self;
        let index = indexes
            .entry(info.account_id.clone())
            .or_insert_with(|| build_index(orders, &info.account_id));
        let entries = if info.by_update_time {
            &index.by_update
        } else {
            &index.by_create
        };
        let lo = info
            .start
            .map_or(0, |s| entries.partition_point(|e| e.0 < s));
        let hi = info.end.map_or(entries.len(), |e| {
            if shared.end_inclusive {
                entries.partition_point(|x| x.0 <= e)
            } else {
                entries.partition_point(|x| x.0 < e)
            }
        });
        let window = if lo < hi {
            &entries[lo..hi]
        } else {
            &entries[0..0]
        };
        let filtered: Cow<'_, [(i64, usize)]> =
            if info.order_status.is_some() || plan.open_id.is_some() || plan.order_id.is_some() {
                let keep = |&&(_, i): &&(i64, usize)| {
                    let o = &orders[i];
                    info.order_status.is_none_or(|s| o.status == s)
                        && plan
                            .open_id
                            .as_deref()
                            .is_none_or(|x| o.open_id.as_deref() == Some(x))
                        && plan.order_id.as_deref().is_none_or(|x| o.id == x)
                };
                Cow::Owned(window.iter().filter(keep).copied().collect())
            } else {
                Cow::Borrowed(window)
            };
        let total = filtered.len();
        let offset = match &info.cursor {
            Some((ct, cid)) => filtered
                .partition_point(|&(t, i)| (t, orders[i].id.as_str()) <= (*ct, cid.as_str())),
            None => usize::try_from((info.page_num - 1) * info.page_size).unwrap_or(usize::MAX),
        };
        let from = offset.min(total);
        let to = offset
            .saturating_add(usize::try_from(info.page_size).unwrap_or(usize::MAX))
            .min(total);
        let page = &filtered[from..to];

        let mut body = String::with_capacity(512 + page.len() * 2048);
        body.push_str("{\"data\":{\"orders\":[");
        let mut all_cursors = Vec::with_capacity(page.len());
        for (n, &(t, i)) in page.iter().enumerate() {
            if n > 0 {
                body.push(',');
            }
            body.push_str(&orders[i].json);
            all_cursors.push(json!([t.to_string(), orders[i].id]));
        }
        let cursor_value = all_cursors.last().cloned().unwrap_or_else(|| json!([]));
        let _ = write!(
            body,
            "],\"page\":{},\"search_after\":{},\"error_code\":0,\"description\":\"\"}},\"extra\":{}}}",
            json!({"page_num": info.page_num, "page_size": info.page_size, "total": total}),
            json!({"CursorValue": cursor_value, "Size": info.page_size, "AllCursorValue": all_cursors}),
            shared.extra_ok(),
        );
        body
    }
}

/// `body` with `data.search_after.CursorValue` set to the request's own cursor.
fn stuck_cursor(body: &str, time: i64, id: &str) -> String {
    let mut v: Value = match serde_json::from_str(body) {
        Ok(v) => v,
        Err(_) => return body.to_string(),
    };
    v["data"]["search_after"]["CursorValue"] = json!([time.to_string(), id]);
    v.to_string()
}

fn build_index(orders: &[StoredOrder], account: &str) -> AccountIndex {
    let mut by_update = Vec::new();
    let mut by_create = Vec::new();
    for (i, o) in orders.iter().enumerate() {
        if o.account.as_deref().is_none_or(|a| a == account) {
            by_update.push((o.update, i));
            by_create.push((o.create, i));
        }
    }
    let cmp = |a: &(i64, usize), b: &(i64, usize)| {
        a.0.cmp(&b.0)
            .then_with(|| orders[a.1].id.cmp(&orders[b.1].id))
            .then(a.1.cmp(&b.1))
    };
    by_update.sort_unstable_by(cmp);
    by_create.sort_unstable_by(cmp);
    AccountIndex {
        by_update,
        by_create,
    }
}

/// `order_id` as a string (numbers are stringified).
fn id_key(order: &Value) -> Cow<'_, str> {
    match order.get("order_id") {
        Some(Value::String(s)) => Cow::Borrowed(s.as_str()),
        Some(Value::Null) | None => Cow::Borrowed(""),
        Some(other) => Cow::Owned(other.to_string()),
    }
}

/// The account an order belongs to: top-level `account_id`, else `merchant_info.account_id`.
fn order_account(order: &Value) -> Option<&str> {
    order.get("account_id").and_then(Value::as_str).or_else(|| {
        order
            .get("merchant_info")
            .and_then(|m| m.get("account_id"))
            .and_then(Value::as_str)
    })
}

/// An integer field that may be a number or a numeric string; 0 when absent or odd.
fn int_field(v: &Value, key: &str) -> i64 {
    match v.get(key) {
        Some(Value::Number(n)) => n
            .as_i64()
            .or_else(|| n.as_f64().map(|f| f as i64))
            .unwrap_or(0),
        Some(Value::String(s)) => s.trim().parse().unwrap_or(0),
        _ => 0,
    }
}

// ---------------------------------------------------------------------------------------------
// Decrypt endpoint (§4)

fn handle_decrypt(shared: &Shared, req: &Request, arrival: &Arrival) -> (Reply, String) {
    let faults = &arrival.faults;
    let cut = match gate(shared, req, arrival, false, None) {
        Gate::Pass { cut, .. } => cut,
        Gate::Stop(reply, outcome) => return (reply, outcome),
    };
    let fail = |code: i64| {
        let mut reply = Reply::json(shared.error_body(faults.error_in, code));
        reply.cut = cut;
        (reply, outcome_for(code))
    };
    let body: Value = match serde_json::from_slice(&req.body) {
        Ok(v @ Value::Object(_)) => v,
        _ => return fail(2100005),
    };
    let header_account = req.header("rpc-transit-life-account").map(str::trim);
    let body_account = body.get("account_id").and_then(|a| match a {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    });
    let account = match (header_account, body_account) {
        (Some(h), Some(b)) if h == b => b,
        (Some(h), None) if !h.is_empty() => h.to_string(),
        // Missing header, or header and body disagree.
        _ => return fail(2100005),
    };
    if let Some(code) = account_check(shared, faults, &account) {
        return fail(code);
    }
    let list = |key: &str| -> Option<Option<Vec<String>>> {
        let v = body.get(key)?;
        let Value::Array(items) = v else {
            return Some(None);
        };
        Some(
            items
                .iter()
                .map(|i| i.as_str().map(str::to_string))
                .collect(),
        )
    };
    let ciphers = match (list("cipher_texts"), list("encrypted_data_list")) {
        (Some(Some(a)), Some(Some(b))) if a == b => a,
        (Some(Some(a)), None) | (None, Some(Some(a))) => a,
        _ => return fail(2100005),
    };
    if ciphers.is_empty() || ciphers.len() > MAX_DECRYPT_BATCH {
        return fail(2100005);
    }
    let known = {
        let mut ctl = lock(&shared.ctl);
        ctl.decrypt_ciphertexts += ciphers.len() as u64;
        match ctl.decrypt_quota {
            Some(left) if left < ciphers.len() as u64 => return fail(2190001),
            Some(left) => ctl.decrypt_quota = Some(left - ciphers.len() as u64),
            None => {}
        }
        ctl.ciphers.clone_subset(&ciphers)
    };
    let data = match shared.shape {
        DecryptShape::A => {
            let results: Vec<Value> = ciphers
                .iter()
                .map(|c| match known.get(c) {
                    Some(p) => json!({"cipher_text": c, "plain_text": p, "is_success": true, "error_msg": ""}),
                    None => json!({"cipher_text": c, "plain_text": "", "is_success": false, "error_msg": "decrypt failed: invalid cipher text"}),
                })
                .collect();
            json!({"results": results, "error_code": 0, "description": ""})
        }
        DecryptShape::B => {
            let list: Vec<Value> = ciphers
                .iter()
                .filter_map(|c| {
                    known
                        .get(c)
                        .map(|p| json!({"encrypted_data": c, "decrypted_data": p}))
                })
                .collect();
            json!({"decrypted_data_list": list, "error_code": 0, "description": ""})
        }
    };
    let body = json!({"data": data, "extra": shared.extra_ok()}).to_string();
    let mut reply = Reply::json(body);
    reply.cut = cut;
    (reply, "ok".to_string())
}

trait CloneSubset {
    fn clone_subset(&self, keys: &[String]) -> HashMap<String, String>;
}

impl CloneSubset for HashMap<String, String> {
    fn clone_subset(&self, keys: &[String]) -> HashMap<String, String> {
        keys.iter()
            .filter_map(|k| self.get(k).map(|v| (k.clone(), v.clone())))
            .collect()
    }
}

// ---------------------------------------------------------------------------------------------
// Small helpers

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// (year, month, day) of a day count since 1970-01-01 (proleptic Gregorian).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Days since 1970-01-01 of a (proleptic Gregorian) date.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `YYYY-MM-DD` of the Asia/Shanghai date of epoch seconds `t`.
pub fn local_date(t: i64) -> String {
    let (y, m, d) = civil_from_days((t + 8 * 3600).div_euclid(86_400));
    format!("{y:04}-{m:02}-{d:02}")
}

/// Epoch seconds of 00:00:00 UTC+8 (Asia/Shanghai) on the given date.
pub fn local_midnight(year: i32, month: u32, day: u32) -> i64 {
    days_from_civil(i64::from(year), month, day) * 86400 - 8 * 3600
}

/// Compact JSON text of `v`, like `v.to_string()` but several times faster in debug builds
/// (serde_json's generic serializer is slow unoptimised, and 100,000 orders go through here).
pub fn compact_json(v: &Value) -> String {
    let mut out = String::with_capacity(1024);
    write_json(&mut out, v);
    out
}

fn write_json(out: &mut String, v: &Value) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => {
            // std's integer formatting is optimised even in debug builds.
            let _ = match (n.as_i64(), n.as_u64()) {
                (Some(i), _) => write!(out, "{i}"),
                (None, Some(u)) => write!(out, "{u}"),
                _ => write!(out, "{n}"),
            };
        }
        Value::String(s) => write_json_string(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json(out, item);
            }
            out.push(']');
        }
        Value::Object(map) => {
            out.push('{');
            for (i, (k, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json_string(out, k);
                out.push(':');
                write_json(out, item);
            }
            out.push('}');
        }
    }
}

fn write_json_string(out: &mut String, s: &str) {
    out.push('"');
    let bytes = s.as_bytes();
    let mut run_start = 0;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        i += 1;
        if b >= 0x20 && b != b'"' && b != b'\\' {
            continue;
        }
        let escape = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            _ => "",
        };
        out.push_str(&s[run_start..i - 1]);
        if escape.is_empty() {
            let _ = write!(out, "\\u{b:04x}");
        } else {
            out.push_str(escape);
        }
        run_start = i;
    }
    out.push_str(&s[run_start..]);
    out.push('"');
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Percent-decoding with `+` as a space.
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' if i + 2 < b.len() => match (hex_val(b[i + 1]), hex_val(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h * 16 + l);
                    i += 3;
                }
                _ => {
                    out.push(b'%');
                    i += 1;
                }
            },
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse_query(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (percent_decode(k), percent_decode(v)),
            None => (percent_decode(p), String::new()),
        })
        .collect()
}

/// splitmix64 finaliser.
fn mix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// FNV-1a over length-prefixed parts, then mixed.
fn hash_parts(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for &b in (part.len() as u64).to_le_bytes().iter().chain(part.iter()) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01B3);
        }
    }
    mix64(h)
}

/// xorshift64* (deterministic, no external crate).
#[derive(Clone, Debug)]
pub struct XorShift(u64);

impl XorShift {
    pub fn new(seed: u64) -> XorShift {
        let s = mix64(seed);
        XorShift(if s == 0 { 0x2545_F491_4F6C_DD1D } else { s })
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in 0..n (n > 0; 0 when n == 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }

    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn chance(&mut self, p: f64) -> bool {
        self.next_f64() < p
    }
}

// ---------------------------------------------------------------------------------------------
// Legacy phone encryption (§4)

/// §4 step 1: cut (left first, alternately) or pad with `#` (left first, alternately) to 32 chars.
pub fn normalise_secret(secret: &str) -> String {
    let mut chars: VecDeque<char> = secret.chars().collect();
    let mut left = true;
    while chars.len() > 32 {
        if left {
            chars.pop_front();
        } else {
            chars.pop_back();
        }
        left = !left;
    }
    while chars.len() < 32 {
        if left {
            chars.push_front('#');
        } else {
            chars.push_back('#');
        }
        left = !left;
    }
    chars.into_iter().collect()
}

type Aes256CbcEnc = cbc::Encryptor<aes::Aes256>;
type Aes256CbcDec = cbc::Decryptor<aes::Aes256>;

fn key_iv(app_secret: &str) -> Option<([u8; 32], [u8; 16])> {
    let normalised = normalise_secret(app_secret);
    let bytes = normalised.as_bytes();
    if bytes.len() != 32 {
        return None; // a non-ASCII secret: not a real AppSecret
    }
    let mut key = [0u8; 32];
    key.copy_from_slice(bytes);
    let mut iv = [0u8; 16];
    iv.copy_from_slice(&bytes[16..32]);
    Some((key, iv))
}

/// Legacy `phone_encrypt` of `plain` (AES-256-CBC, key = normalised secret, IV = its right 16
/// characters, PKCS#7, standard base64). None only for a non-ASCII secret.
pub fn legacy_encrypt(app_secret: &str, plain: &str) -> Option<String> {
    let (key, iv) = key_iv(app_secret)?;
    let enc = Aes256CbcEnc::new(&key.into(), &iv.into());
    let ct = enc.encrypt_padded_vec_mut::<Pkcs7>(plain.as_bytes());
    Some(base64::engine::general_purpose::STANDARD.encode(ct))
}

/// Inverse of [`legacy_encrypt`]; None when the text is not a valid ciphertext for this secret.
pub fn legacy_decrypt(app_secret: &str, cipher: &str) -> Option<String> {
    let (key, iv) = key_iv(app_secret)?;
    let ct = base64::engine::general_purpose::STANDARD
        .decode(cipher.trim())
        .ok()?;
    if ct.is_empty() || ct.len() % 16 != 0 {
        return None;
    }
    let dec = Aes256CbcDec::new(&key.into(), &iv.into());
    let pt = dec.decrypt_padded_vec_mut::<Pkcs7>(&ct).ok()?;
    String::from_utf8(pt).ok()
}

// ---------------------------------------------------------------------------------------------
// Order generator

/// A generated order with what a correct client should make of it.
#[derive(Clone, Debug)]
pub struct GeneratedOrder {
    pub json: Value,
    /// The phone a correct client stores (legacy decrypted locally, `Enc.` via the decrypt
    /// endpoint), None when there is nothing decryptable.
    pub expected_phone: Option<String>,
    /// `(cipher, plain)` to register with the decrypt endpoint.
    pub platform_cipher: Option<(String, String)>,
}

impl GeneratedOrder {
    pub fn order_id(&self) -> String {
        id_key(&self.json).into_owned()
    }
}

const SKU_NAMES: [&str; 10] = [
    "【双人】下午茶套餐",
    "单人自助午餐（周末通用）",
    "100元代金券",
    "Deluxe Spa 90 min",
    "儿童乐园畅玩票",
    "火锅4人餐 | 含锅底",
    "洗车·标准套餐",
    "Coffee & Cake set",
    "KTV 欢唱3小时",
    "烤肉双人餐",
];

const ODD_SKU_NAMES: [&str; 6] = [
    "Tab\tSeparated 套餐",
    "第一行\n第二行",
    "C:\\vouchers\\套餐\\",
    "\"Quoted\" 特惠套餐",
    "生日派对 🎉🎂",
    "Mixed \\N \t \"all\"\r\n 😀",
];

const PRICES: [i64; 8] = [100, 990, 1990, 2990, 5800, 12900, 19900, 39900];
const NAMES: [&str; 6] = ["张先生", "李女士", "王**", "Chen", "赵小姐", "刘*"];
const PHONE_PREFIXES: [&str; 10] = [
    "138", "139", "137", "150", "151", "186", "188", "135", "177", "199",
];
const POIS: [(&str, &str); 3] = [
    ("7100000000000000101", "示例门店（国贸店）"),
    ("7100000000000000102", "Demo Store · Sanlitun"),
    ("7100000000000000103", "示例门店（望京店）"),
];

fn pick<'a, T>(rng: &mut XorShift, items: &'a [T]) -> &'a T {
    &items[rng.below(items.len() as u64) as usize]
}

fn digits(rng: &mut XorShift, n: usize) -> String {
    (0..n)
        .map(|_| char::from(b'0' + rng.below(10) as u8))
        .collect()
}

/// `count` orders created inside the UTC+8 local day starting at epoch `day_start` (a local
/// midnight), deterministic for (app_secret, account_id, day_start, count, seed). Order ids are
/// 19-digit strings derived from a hash of (account_id, day_start, seed, index): unique within a
/// call, and across days, accounts and seeds up to 64-bit hash collisions. With `count ≥ 2`,
/// order 0 is created at exactly `day_start` and order 1 at `day_start + 86399`.
pub fn generate_day(
    app_secret: &str,
    account_id: &str,
    day_start: i64,
    count: usize,
    seed: u64,
) -> Vec<GeneratedOrder> {
    let mut generator = DayGenerator::new(app_secret, account_id, day_start, seed);
    (0..count).map(|i| generator.order(i)).collect()
}

/// The state of [`generate_day`], so that big days can be streamed in chunks.
struct DayGenerator<'a> {
    app_secret: &'a str,
    account_id: &'a str,
    day_start: i64,
    day_end: i64,
    base: u64,
    rng: XorShift,
    seen: HashSet<u64>,
}

impl<'a> DayGenerator<'a> {
    fn new(app_secret: &'a str, account_id: &'a str, day_start: i64, seed: u64) -> Self {
        let base = hash_parts(&[
            account_id.as_bytes(),
            &day_start.to_le_bytes(),
            &seed.to_le_bytes(),
        ]);
        DayGenerator {
            app_secret,
            account_id,
            day_start,
            day_end: day_start + 86399,
            base,
            rng: XorShift::new(base),
            seen: HashSet::new(),
        }
    }

    /// Order number `i` of the day (call with i = 0, 1, 2, … in turn).
    fn order(&mut self, i: usize) -> GeneratedOrder {
        let mut h = hash_parts(&[&self.base.to_le_bytes(), &(i as u64).to_le_bytes()]);
        let id_num = loop {
            let candidate = 1_000_000_000_000_000_000 + h % 9_000_000_000_000_000_000;
            if self.seen.insert(candidate) {
                break candidate;
            }
            h = mix64(h);
        };
        let order_id = id_num.to_string();
        let create = match i {
            0 => self.day_start,
            1 => self.day_end,
            _ => self.day_start + self.rng.below(86400) as i64,
        };
        let update = (create + self.rng.below(3601) as i64).min(self.day_end);
        let status = match self.rng.below(100) {
            0..=24 => 1,
            25..=49 => 200,
            50..=74 => 201,
            75..=87 => 100,
            _ => 101,
        };
        let paid = !matches!(status, 100 | 101);
        let pay_time = if paid {
            (create + self.rng.below(120) as i64).min(update)
        } else {
            0
        };
        let count_coupons = 1 + self.rng.below(3) as i64;
        let price = *pick(&mut self.rng, &PRICES);
        let original = price * count_coupons;
        let discount = if self.rng.below(3) == 0 {
            0
        } else {
            self.rng.below((original / 5) as u64 + 1) as i64
        };
        let pay = original - discount;
        let receipt = pay - pay * 6 / 100;
        let sku_id = format!("17{}", digits(&mut self.rng, 17));
        let sku_name = if self.rng.below(12) == 0 {
            pick(&mut self.rng, &ODD_SKU_NAMES).to_string()
        } else {
            pick(&mut self.rng, &SKU_NAMES).to_string()
        };
        let product_id = format!("10{}", digits(&mut self.rng, 17));
        let (poi_id, poi_name) = *pick(&mut self.rng, &POIS);

        // Contacts.
        let phone = format!(
            "{}{}",
            pick(&mut self.rng, &PHONE_PREFIXES),
            digits(&mut self.rng, 8)
        );
        let masked = format!("{}****{}", &phone[..3], &phone[7..]);
        let name = pick(&mut self.rng, &NAMES).to_string();
        let mut expected_phone = None;
        let mut platform_cipher = None;
        let contacts = match self.rng.below(200) {
            0..=4 => json!([]),
            5..=8 => {
                let garbage = if self.rng.below(2) == 0 {
                    "not-base64!".to_string()
                } else {
                    base64::engine::general_purpose::STANDARD.encode([1u8, 2, 3, 4, 5])
                };
                json!([{"name": name, "phone": masked, "phone_encrypt": garbage}])
            }
            9..=18 => json!([{"name": name, "phone": masked}]),
            19..=38 => {
                let mut raw = Vec::with_capacity(32);
                let mut hh = mix64(id_num ^ 0x5EED);
                for _ in 0..4 {
                    hh = mix64(hh);
                    raw.extend_from_slice(&hh.to_le_bytes());
                }
                let cipher = format!(
                    "Enc.{}",
                    base64::engine::general_purpose::STANDARD.encode(&raw)
                );
                expected_phone = Some(phone.clone());
                platform_cipher = Some((cipher.clone(), phone.clone()));
                json!([{"name": name, "phone": masked, "phone_encrypt": cipher}])
            }
            _ => match legacy_encrypt(self.app_secret, &phone) {
                Some(cipher) => {
                    expected_phone = Some(phone.clone());
                    json!([{"name": name, "phone": masked, "phone_encrypt": cipher}])
                }
                None => json!([{"name": name, "phone": masked}]),
            },
        };

        let item_status = match status {
            1 => 401,
            200 | 201 => *pick(&mut self.rng, &[100, 100, 100, 201]),
            _ => 100,
        };
        let certificates: Vec<Value> = (0..count_coupons)
        .map(|k| {
            json!({
                "certificate_id": format!("{}", 7_000_000_000_000_000_000u64 + (mix64(id_num + k as u64) % 1_000_000_000_000_000_000)),
                "order_item_id": format!("{}{}", order_id, k + 1),
                "item_status": item_status,
                "item_update_time": update,
                "refund_amount": 0,
                "refund_time": 0,
            })
        })
        .collect();

        let mut o = Map::new();
        o.insert("order_id".into(), json!(order_id));
        o.insert("account_id".into(), json!(self.account_id));
        o.insert("order_status".into(), json!(status));
        o.insert(
            "order_type".into(),
            json!(*pick(&mut self.rng, &[1, 1, 1, 11, 15])),
        );
        let top_sku = self.rng.below(10) != 0;
        if top_sku {
            o.insert("sku_id".into(), json!(sku_id));
        }
        o.insert("sku_name".into(), json!(sku_name));
        o.insert("count".into(), json!(count_coupons));
        o.insert("original_amount".into(), json!(original));
        let pay_json = if self.rng.below(10) == 0 {
            json!(pay.to_string())
        } else {
            json!(pay)
        };
        o.insert("pay_amount".into(), pay_json);
        o.insert("discount_amount".into(), json!(discount));
        o.insert("receipt_amount".into(), json!(receipt));
        o.insert("create_order_time".into(), json!(create));
        o.insert("pay_time".into(), json!(pay_time));
        o.insert("update_order_time".into(), json!(update));
        if self.rng.below(5) != 0 {
            o.insert(
                "source_order_id".into(),
                json!(format!("SO{}", digits(&mut self.rng, 16))),
            );
        }
        o.insert(
            "open_id".into(),
            json!(format!("_000{}", {
                let mut s = String::new();
                let mut hh = mix64(id_num ^ 0x0FE1D);
                for _ in 0..2 {
                    hh = mix64(hh ^ self.rng.next_u64());
                    let _ = write!(s, "{hh:016x}");
                }
                s
            })),
        );
        o.insert("contacts".into(), contacts);
        o.insert("certificate".into(), json!(certificates));
        o.insert(
            "products".into(),
            json!([{"sku_id": sku_id, "sku_name": sku_name, "product_id": product_id}]),
        );
        o.insert(
            "amount_info".into(),
            json!({
                "original_amount": original,
                "pay_amount": pay,
                "discount_amount": discount,
                "receipt_amount": receipt,
                "merchant_discount_amount": discount / 2,
                "platform_discount_amount": discount - discount / 2,
            }),
        );
        o.insert(
            "poi".into(),
            json!({"poi_id": poi_id, "poi_name": poi_name}),
        );
        // Fields no client knows about: they must be kept as received.
        o.insert(
            "trade_channel_tag".into(),
            json!({"channel": "douyin_app", "scene": 1011}),
        );
        if self.rng.below(2) == 0 {
            o.insert("x_fake_marker".into(), json!([1, "两", null, 2.5]));
        }
        GeneratedOrder {
            json: Value::Object(o),
            expected_phone,
            platform_cipher,
        }
    }
}
