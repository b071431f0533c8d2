//! The orders stream: what differs about orders, as a [`DaySource`] of the shared pipeline
//! (`sync`). Orders do not fit the cursor-paged [`Stream`](super::Stream) shape of the other
//! streams, so they describe themselves to the pipeline directly: a day is cut into time slices
//! paged by page number, fetched in parallel; rows are COPied into a staging table while the
//! day is still being fetched (a busy day holds tens of thousands of orders); phones are
//! decrypted on the way; and a complete day moves from staging into `orders`,
//! `order_certificates` and the checkpoint in one transaction ([`Store::commit_day`]).
//!
//! Completeness: a day is first asked whole. When `data.page.total` says a slice holds more than
//! the API will page to (`page_num × page_size ≤ 10000`), the slice is cut in two by time and each
//! half asked again, recursively. Only a single second that holds more than that is paged by the
//! `search_after` cursor (one page after the other, sent as the SDK's JSON array), guarded
//! against a cursor that stops advancing. A slice is complete when the distinct records
//! received (by `order_id` as received) equal its `total` and every page reported the same
//! total; otherwise (rows shifted between pages, the total moved) it is fetched again. A slice
//! that comes back the same way [`STABLE_ANSWERS`] times with at least `total` records, some of
//! them repeated (Douyin lists an order twice), is accepted with a warning: fetching it again
//! would not change it.
//!
//! Phones: a legacy `phone_encrypt` is decrypted locally in the fetcher; platform `Enc.`
//! ciphertexts are batched across pages ([`DECRYPT_BATCH`] a call: the endpoint has a daily
//! quota) into decrypt jobs of their day, and their results staged after the day's rows.
//!
//! Quarantine: a record that cannot be stored as it is (see `order`) does not stop its day. It is
//! kept with its day and written to `rejected_records` in the day's transaction, with a warning
//! naming its id and the reason once the day is committed.

use crate::config::{Config, TimeField};
use crate::crypto::{is_platform_cipher, PhoneCipher};
use crate::douyin::{Douyin, OrderQuery, DECRYPT_BATCH};
use crate::error::Error;
use crate::order::{extract, OrderRow, Rejected};
use crate::phones::PhoneBook;
use crate::stop::Stop;
use crate::store::{DayWrite, Stage, Store};
use crate::sync::{self, CommitFn, DaySource, Lane, Plan, Stats};
use crate::window::{self, Span};
use std::collections::{HashMap, HashSet};
use std::ops::Range;
use std::sync::Arc;
use std::time::Instant;

/// How often a slice may be fetched again because it came back inconsistent.
const MAX_SLICE_ATTEMPTS: u32 = 6;
/// Identical answers after which a slice whose count check fails because records are repeated is
/// accepted as it is.
const STABLE_ANSWERS: u32 = 3;
/// Rows COPied into a day's staging table at once (one COPY per page would cost a round trip
/// each).
const STAGE_BATCH: usize = 1000;
/// Rows held in memory across all days before the fullest buffer is flushed: bounds memory
/// whatever the size of a day (a row is ~2 KB).
const MAX_BUFFERED: usize = 3000;
/// The API refuses `page_num × page_size` above this.
const PAGE_LIMIT: u64 = 10_000;

/// Sync the orders of one account's plan on `store` (the run's connection, which holds the
/// account's lock).
pub fn sync_days(
    config: &Config,
    douyin: &Arc<Douyin>,
    phones: &Arc<PhoneBook>,
    store: &mut Store,
    plan: &Plan,
    stop: &Stop,
    stats: &mut Stats,
) -> Result<(), Error> {
    let fetch = Arc::new(FetchContext {
        douyin: Arc::clone(douyin),
        phones: Arc::clone(phones),
        cipher: PhoneCipher::new(config.app_secret().expose()).ok(),
        account_id: plan.key.account_id.clone(),
        time_field: config.time_field(),
        page_size: config.page_size(),
        order_status: config.order_status(),
        get_secret_number: config.get_secret_number(),
        stop: stop.clone(),
    });
    let page_size = u64::from(config.page_size());
    let source = Orders {
        account_id: plan.key.account_id.clone(),
        accounts: config.accounts().len(),
        page_size,
        slice_limit: (PAGE_LIMIT / page_size) * page_size,
        buffered: 0,
    };
    sync::run(config, source, fetch, store, plan, stop, stats)
}

/// A request for a fetcher: a page of a slice, or (page 0, so that it goes first within its
/// day) a batch of platform ciphertexts to decrypt.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Job {
    page: u32,
    slice: usize,
    attempt: u32,
    span: Span,
    /// (order id, `Enc.` ciphertext) to decrypt; empty for a page request.
    phones: Vec<(String, String)>,
    /// Deep paging of a one-second slice: the previous page's `search_after` cursor.
    cursor: Option<Vec<String>>,
}

pub(crate) enum Outcome {
    Page(PageRows),
    /// (order id, phone if decrypted).
    Phones(Vec<(String, Option<String>)>),
}

pub(crate) struct PageRows {
    rows: Vec<OrderRow>,
    /// Records that cannot be stored as they are (quarantined with their day).
    rejected: Vec<Rejected>,
    total: u64,
    cursor: Option<Vec<String>>,
}

/// What every fetcher needs, shared.
pub(crate) struct FetchContext {
    douyin: Arc<Douyin>,
    /// Stored phones, the decrypt endpoint, and the run's phone warnings.
    phones: Arc<PhoneBook>,
    cipher: Option<PhoneCipher>,
    account_id: String,
    time_field: TimeField,
    page_size: u32,
    order_status: Option<i64>,
    get_secret_number: bool,
    stop: Stop,
}

impl FetchContext {
    fn fetch(&self, job: &Job) -> Result<PageRows, Error> {
        let page = self.douyin.query_orders(&OrderQuery {
            account_id: &self.account_id,
            span: job.span,
            time_field: self.time_field,
            // With a cursor the position is the cursor's; the page number stays 1 so that
            // `page_num × page_size` stays within the API's limit.
            page_num: if job.cursor.is_some() { 1 } else { job.page },
            page_size: self.page_size,
            order_status: self.order_status,
            get_secret_number: self.get_secret_number,
            cursor: job.cursor.as_deref(),
        })?;
        let mut rows = Vec::with_capacity(page.orders.len());
        let mut rejected = Vec::new();
        for raw in page.orders {
            match extract(raw) {
                Ok(row) => rows.push(row),
                Err(r) => rejected.push(r),
            }
        }
        self.decrypt_legacy(&mut rows);
        self.phones.reuse_stored(&mut rows);
        Ok(PageRows {
            rows,
            rejected,
            total: page.total,
            cursor: page.cursor,
        })
    }

    /// Fill `phone` from a legacy `phone_encrypt`, locally. A phone that cannot be decrypted
    /// stays NULL (counted for the run's warning). `Enc.` forms are left for the coordinator,
    /// which batches them across pages (50 a call: the endpoint has a daily quota).
    fn decrypt_legacy(&self, rows: &mut [OrderRow]) {
        for row in rows.iter_mut() {
            let Some(cipher_text) = row.phone_encrypt.as_deref() else {
                continue;
            };
            if is_platform_cipher(cipher_text) {
                continue;
            }
            match self.cipher.as_ref().map(|c| c.decrypt(cipher_text)) {
                Some(Ok(phone)) if storable_phone(&phone) => row.phone = Some(phone),
                Some(Ok(_)) => self
                    .phones
                    .not_decrypted(&row.order_id, "the plaintext is not a phone number"),
                Some(Err(e)) => self.phones.not_decrypted(&row.order_id, &e.to_string()),
                None => self
                    .phones
                    .not_decrypted(&row.order_id, "AppSecret cannot be used as an AES key"),
            }
        }
    }

    /// Decrypt `Enc.` phones through the batch endpoint. A failure leaves the phones NULL
    /// (counted for the run's warning); only a signal stops the run from here.
    fn decrypt_platform(
        &self,
        phones: &[(String, String)],
    ) -> Result<Vec<(String, Option<String>)>, Error> {
        let decrypted = self
            .phones
            .decrypt(&self.douyin, &self.account_id, phones)?;
        self.stop.check()?;
        Ok(decrypted)
    }
}

/// A decrypted phone the `phone` column (text, btree-indexed) can hold.
pub(crate) fn storable_phone(phone: &str) -> bool {
    !phone.contains('\0') && phone.len() <= crate::order::MAX_KEY_BYTES
}

#[derive(Debug)]
struct SliceState {
    span: Span,
    attempt: u32,
    total: Option<u64>,
    expected_pages: u32,
    received_pages: u32,
    /// Distinct records received in this attempt: `order_id` as received (see [`record_key`]).
    ids: HashSet<RecordKey>,
    /// Records received in this attempt, repeated ones included.
    entries: u64,
    /// The last failed count check, as (total, distinct, entries, fingerprint of the distinct
    /// records), and how many answers in a row failed it exactly so.
    mismatch: Option<(u64, u64, u64, u64)>,
    same_mismatch: u32,
    /// Replaced by its two halves.
    split: bool,
    /// One second with more orders than offset paging reaches: paged by cursor, one page
    /// after the other.
    by_cursor: bool,
    done: bool,
}

impl SliceState {
    fn new(span: Span) -> SliceState {
        SliceState {
            span,
            attempt: 0,
            total: None,
            expected_pages: 0,
            received_pages: 0,
            ids: HashSet::new(),
            entries: 0,
            mismatch: None,
            same_mismatch: 0,
            split: false,
            by_cursor: false,
            done: false,
        }
    }
}

/// A day of orders being fetched.
#[derive(Debug)]
pub(crate) struct DayState {
    slices: Vec<SliceState>,
    open_slices: usize,
    /// `Enc.` phones staged but not yet sent to the decrypt endpoint: (order id, ciphertext).
    pending_phones: Vec<(String, String)>,
    /// Orders whose `Enc.` phone was queued already (a slice fetched twice stages them twice).
    queued_phones: HashSet<String>,
    decrypts_in_flight: usize,
    /// Rows received but not yet COPied into the staging table (COPY in batches).
    buffer: Vec<OrderRow>,
    /// Quarantined records of the day, one per record (a slice fetched twice sends them twice).
    rejected: HashMap<RecordKey, Rejected>,
    /// Once sealed: (who, why) of each quarantined record, for the log once committed.
    rejected_log: Vec<(String, String)>,
    pages: u64,
    refetches: u64,
    started: Instant,
}

/// A record for the completeness count and the quarantine: its `order_id` exactly as received
/// (`"+5"`, `"05"` and `5` are three orders), or its whole text when it has no usable id.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum RecordKey {
    Id(String),
    Text(String),
}

/// The same for the same set of records, whatever their order (orders shifting between pages
/// while a busy merchant updates them give a different set each time: not a stable answer).
fn fingerprint(keys: &HashSet<RecordKey>) -> u64 {
    use std::hash::{Hash, Hasher};
    keys.iter().fold(0u64, |sum, key| {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        key.hash(&mut h);
        sum.wrapping_add(h.finish())
    })
}

fn record_key(rejected: &Rejected) -> RecordKey {
    match &rejected.order_id {
        Some(id) => RecordKey::Id(id.clone()),
        None => RecordKey::Text(rejected.raw.get().to_string()),
    }
}

/// The orders stream of one account, as the pipeline's coordinator sees it.
pub(crate) struct Orders {
    account_id: String,
    /// Accounts in the run: the day line names the account when there are several.
    accounts: usize,
    page_size: u64,
    /// Orders a full page can hold up to the API's paging limit.
    slice_limit: u64,
    /// Rows in all days' buffers.
    buffered: usize,
}

impl DaySource for Orders {
    type Job = Job;
    type Answer = Outcome;
    type Fetch = FetchContext;
    type Day = DayState;
    const THREAD: &'static str = "fetch";
    const STAGES: bool = true;

    fn fetch(fetch: &FetchContext, job: &Job) -> Result<Outcome, Error> {
        if job.phones.is_empty() {
            fetch.fetch(job).map(Outcome::Page)
        } else {
            fetch.decrypt_platform(&job.phones).map(Outcome::Phones)
        }
    }

    fn shape(&self, config: &Config, _days: usize) -> (usize, usize) {
        let workers = config.concurrency().max(1);
        (workers, workers.clamp(2, 16))
    }

    fn begin(
        &mut self,
        lane: &mut Lane<'_, DayState>,
        d: usize,
        jobs: &mut Vec<Job>,
    ) -> Result<DayState, Error> {
        let span = lane.plan.days[d].span;
        let stage = Stage::new(&self.account_id, d);
        lane.stage(Box::new(move |store: &mut Store| store.stage_begin(&stage)))?;
        jobs.push(Job {
            page: 1,
            slice: 0,
            attempt: 0,
            span,
            phones: Vec::new(),
            cursor: None,
        });
        Ok(DayState {
            slices: vec![SliceState::new(span)],
            open_slices: 1,
            pending_phones: Vec::new(),
            queued_phones: HashSet::new(),
            decrypts_in_flight: 0,
            buffer: Vec::new(),
            rejected: HashMap::new(),
            rejected_log: Vec::new(),
            pages: 0,
            refetches: 0,
            started: Instant::now(),
        })
    }

    fn answer(
        &mut self,
        lane: &mut Lane<'_, DayState>,
        d: usize,
        job: Job,
        answer: Outcome,
        jobs: &mut Vec<Job>,
    ) -> Result<Result<(), Error>, Error> {
        match answer {
            Outcome::Page(page) => self.page(lane, d, job, page, jobs),
            Outcome::Phones(phones) => self.phones_decrypted(lane, d, &phones),
        }
        .map(Ok)
    }

    fn complete(&self, day: &DayState) -> bool {
        day.open_slices == 0 && day.pending_phones.is_empty() && day.decrypts_in_flight == 0
    }

    fn seal(&mut self, lane: &mut Lane<'_, DayState>, d: usize) -> Result<CommitFn, Error> {
        self.flush(lane, d)?;
        let mut rejected: Vec<Rejected> = match lane.day(d) {
            Some(state) => state.rejected.drain().map(|(_, r)| r).collect(),
            None => Vec::new(),
        };
        rejected.sort_by(|a, b| a.order_id.cmp(&b.order_id));
        if let Some(state) = lane.day(d) {
            state.rejected_log = sync::quarantine_log(&rejected, Rejected::describe_id);
        }
        let stage = Stage::new(&self.account_id, d);
        let account = self.account_id.clone();
        let date = lane.plan.days[d].date.clone();
        Ok(Box::new(move |store, key, checkpoint, monotonic| {
            store.commit_day(
                &stage,
                &account,
                key,
                checkpoint,
                monotonic,
                (&date, &rejected),
            )
        }))
    }

    fn tally(day: &DayState) -> (u64, u64) {
        (day.pages, day.refetches)
    }

    fn log_day(
        &self,
        plan: &Plan,
        d: usize,
        state: &DayState,
        write: &DayWrite,
        stats: &Stats,
        left: f64,
    ) {
        let day = &plan.days[d];
        let (n, k) = (plan.days.len(), d + 1);
        let account = if self.accounts > 1 {
            format!(" account {}", self.account_id)
        } else {
            String::new()
        };
        let seconds = state.started.elapsed().as_secs_f64();
        sync::warn_quarantined(
            "orders",
            &day.date,
            &self.account_id,
            &format!("{}{account}", day.date),
            &state.rejected_log,
        );
        log::info!(
            day = day.date.as_str(), account = self.account_id.as_str(), orders = write.orders,
            inserted = write.inserted, updated = write.updated, rejected = write.rejected,
            pages = state.pages, seconds = seconds,
            day_index = k as u64, days = n as u64, orders_so_far = stats.records, eta_seconds = left;
            "{}{account}: {}, {} so far{}",
            day.date,
            sync::day_summary("order", write, state.pages, seconds, k, n),
            sync::count(stats.records, "order"),
            if k < n { format!(", ~{} left", sync::human_duration(left)) } else { String::new() }
        );
    }

    fn before_segment(&mut self, store: &mut Store) -> Result<(), Error> {
        // Tables a killed run (or a lost connection) of this account left behind; we hold the
        // account's lock, so none of them is in use.
        let n = store.drop_stale_stages(&self.account_id)?;
        if n > 0 {
            log::info!("dropped {n} staging table(s) left by an interrupted run");
        }
        Ok(())
    }

    fn reconnected(&mut self, store: &mut Store) -> Result<(), Error> {
        let account = &self.account_id;
        if !store.try_lock(account)? {
            return Err(Error::Locked(format!(
                "another run took the lock of account {account} while the database connection was down"
            )));
        }
        Ok(())
    }

    fn restart(&mut self) {
        self.buffered = 0;
    }

    fn leftover(&mut self, store: &mut Store, days: Range<usize>) {
        // Dropped now if they are free within a second, else by the next run of this account.
        let leftovers: Vec<Stage> = days.map(|d| Stage::new(&self.account_id, d)).collect();
        let _ = store.stage_discard(&leftovers);
    }
}

impl Orders {
    /// A page of a slice: the slice's completeness rules, then its rows to the day's buffer.
    fn page(
        &mut self,
        lane: &mut Lane<'_, DayState>,
        day_index: usize,
        job: Job,
        page: PageRows,
        new_jobs: &mut Vec<Job>,
    ) -> Result<(), Error> {
        let page_size = self.page_size;
        let slice_limit = self.slice_limit;
        let date = lane.plan.days[day_index].date.as_str();
        let Some(day) = lane.days.get_mut(day_index).and_then(Option::as_mut) else {
            return Ok(());
        };
        let slice_count = day.slices.len();
        let mut new_slices = Vec::new();
        let Some(slice) = day.slices.get_mut(job.slice) else {
            return Err(Error::Bug(format!("page for unknown slice {}", job.slice)));
        };
        if slice.split || slice.done || slice.attempt != job.attempt {
            return Ok(()); // a page of an abandoned attempt
        }
        day.pages += 1;
        let mut refetch = None;
        match slice.total {
            None if page.total > slice_limit => match slice.span.halves() {
                // More than the API pages to: ask each half of the slice instead.
                Some((a, b)) => {
                    slice.split = true;
                    for half in [a, b] {
                        new_slices.push(SliceState::new(half));
                        new_jobs.push(Job {
                            page: 1,
                            slice: slice_count + new_slices.len() - 1,
                            attempt: 0,
                            span: half,
                            phones: Vec::new(),
                            cursor: None,
                        });
                    }
                    log::debug!(
                        "day {date}: {} orders in {}..{}, split in two",
                        page.total,
                        window::format_local(job.span.start),
                        window::format_local(job.span.end)
                    );
                }
                // One second holds more than offset paging reaches (time-splitting cannot
                // help): page on by cursor, each page asking after the previous one's last.
                None => {
                    log::info!(
                        "day {date}: {} orders within the one second {}: paging it by cursor",
                        page.total,
                        window::format_local(slice.span.start)
                    );
                    slice.total = Some(page.total);
                    slice.by_cursor = true;
                }
            },
            None => {
                slice.total = Some(page.total);
                slice.expected_pages = page.total.div_ceil(page_size).max(1) as u32;
                for p in 2..=slice.expected_pages {
                    new_jobs.push(Job {
                        page: p,
                        ..job.clone()
                    });
                }
            }
            Some(total) if total != page.total => {
                refetch = Some(format!(
                    "the total moved from {total} to {} while paging",
                    page.total
                ));
            }
            Some(_) => {}
        }
        let stage = !slice.split;
        if stage && refetch.is_none() {
            for row in &page.rows {
                slice.ids.insert(RecordKey::Id(row.order_id.clone()));
            }
            for r in &page.rejected {
                slice.ids.insert(record_key(r));
            }
            slice.entries += (page.rows.len() + page.rejected.len()) as u64;
            slice.received_pages += 1;
            if slice.by_cursor && page.rows.len() as u64 >= page_size {
                // A full page: the next one starts after its cursor, unless the cursor did
                // not move (then the slice starts again rather than loop).
                match &page.cursor {
                    Some(next) if job.cursor.as_ref() != Some(next) => new_jobs.push(Job {
                        page: job.page.saturating_add(1),
                        cursor: Some(next.clone()),
                        ..job.clone()
                    }),
                    _ => refetch = Some("the search_after cursor did not advance".to_string()),
                }
            } else if slice.by_cursor || slice.received_pages == slice.expected_pages {
                let total = slice.total.unwrap_or(0);
                let distinct = slice.ids.len() as u64;
                if distinct == total {
                    slice.done = true;
                    day.open_slices -= 1;
                } else {
                    let answer = (total, distinct, slice.entries, fingerprint(&slice.ids));
                    // Repeated records, the same way every time: asking again changes nothing.
                    if slice.entries >= total && slice.mismatch == Some(answer) {
                        slice.same_mismatch += 1;
                    } else {
                        slice.same_mismatch = 1;
                    }
                    slice.mismatch = Some(answer);
                    if slice.entries >= total && slice.same_mismatch >= STABLE_ANSWERS {
                        slice.done = true;
                        day.open_slices -= 1;
                        log::warn!(
                            "day {date}: the slice {}..{} came back the same way {} times ({distinct} distinct orders in {} records, total says {total}): Douyin lists some orders more than once; accepting it",
                            window::format_local(slice.span.start),
                            window::format_local(slice.span.end),
                            slice.same_mismatch,
                            slice.entries
                        );
                    } else {
                        refetch = Some(format!(
                            "{distinct} distinct orders in {} records received, total says {total}",
                            slice.entries
                        ));
                    }
                }
            }
        }
        if let Some(reason) = refetch {
            slice.attempt += 1;
            if slice.attempt >= MAX_SLICE_ATTEMPTS {
                return Err(Error::Unavailable(format!(
                    "day {date}: the slice {}..{} came back inconsistent {} times ({reason})",
                    window::format_local(slice.span.start),
                    window::format_local(slice.span.end),
                    slice.attempt
                )));
            }
            log::warn!(
                "day {date}: {reason}; fetching {}..{} again",
                window::format_local(slice.span.start),
                window::format_local(slice.span.end)
            );
            slice.total = None;
            slice.received_pages = 0;
            slice.ids.clear();
            slice.by_cursor = false;
            slice.entries = 0;
            day.refetches += 1;
            new_jobs.push(Job {
                page: 1,
                attempt: slice.attempt,
                cursor: None,
                ..job.clone()
            });
        }
        if !new_slices.is_empty() {
            day.open_slices += 1; // one slice replaced by two
            day.slices.extend(new_slices);
        }
        // Stage the rows (also those of a page that triggered a refetch: they are real orders,
        // and the latest update_time wins among duplicates).
        if stage {
            for r in page.rejected {
                day.rejected.insert(record_key(&r), r);
            }
        }
        if stage && !page.rows.is_empty() {
            for row in &page.rows {
                // Phones already stored for the same ciphertext came filled from the fetcher.
                if let (Some(cipher), None) = (row.phone_encrypt.as_deref(), &row.phone) {
                    if is_platform_cipher(cipher) && day.queued_phones.insert(row.order_id.clone())
                    {
                        day.pending_phones
                            .push((row.order_id.clone(), cipher.to_string()));
                    }
                }
            }
            self.buffered += page.rows.len();
            day.buffer.extend(page.rows);
        }
        let flush_day = day.buffer.len() >= STAGE_BATCH;
        // Full batches go now; the rest once every slice of the day is in.
        let last = day.open_slices == 0;
        while day.pending_phones.len() >= DECRYPT_BATCH || (last && !day.pending_phones.is_empty())
        {
            let take = day.pending_phones.len().min(DECRYPT_BATCH);
            let phones: Vec<(String, String)> = day.pending_phones.drain(..take).collect();
            day.decrypts_in_flight += 1;
            new_jobs.push(Job {
                page: 0,
                slice: 0,
                attempt: 0,
                span: job.span,
                phones,
                cursor: None,
            });
        }
        if flush_day {
            self.flush(lane, day_index)?;
        }
        // Bound the rows held across all days: flush the fullest buffers.
        while self.buffered > MAX_BUFFERED {
            let open = lane.open.clone();
            let fullest = lane.days[open.clone()]
                .iter()
                .enumerate()
                .filter_map(|(i, d)| d.as_ref().map(|d| (d.buffer.len(), open.start + i)))
                .max();
            match fullest {
                Some((n, d)) if n > 0 => self.flush(lane, d)?,
                _ => break,
            }
        }
        Ok(())
    }

    /// COPY a day's buffered rows into its staging table.
    fn flush(&mut self, lane: &mut Lane<'_, DayState>, day_index: usize) -> Result<(), Error> {
        let Some(day) = lane.day(day_index) else {
            return Ok(());
        };
        if day.buffer.is_empty() {
            return Ok(());
        }
        let rows = std::mem::take(&mut day.buffer);
        self.buffered -= rows.len();
        let stage = Stage::new(&self.account_id, day_index);
        lane.stage(Box::new(move |store: &mut Store| {
            store.stage_rows(&stage, &rows)
        }))
    }

    /// Decrypted phones come back: write them into the day's staging table.
    fn phones_decrypted(
        &mut self,
        lane: &mut Lane<'_, DayState>,
        day_index: usize,
        phones: &[(String, Option<String>)],
    ) -> Result<(), Error> {
        let Some(day) = lane.day(day_index) else {
            return Ok(());
        };
        day.decrypts_in_flight = day.decrypts_in_flight.saturating_sub(1);
        let found: Vec<(String, String)> = phones
            .iter()
            .filter_map(|(id, phone)| phone.clone().map(|p| (id.clone(), p)))
            .collect();
        self.flush(lane, day_index)?; // the rows go before their phones
        if !found.is_empty() {
            let stage = Stage::new(&self.account_id, day_index);
            lane.stage(Box::new(move |store: &mut Store| {
                store.stage_phones(&stage, &found)
            }))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_told_apart_by_their_id_as_received_or_their_text() {
        let rejected = |json: &str| match extract(
            serde_json::value::RawValue::from_string(json.to_string()).unwrap(),
        ) {
            Err(r) => r,
            Ok(_) => panic!("accepted {json}"),
        };
        let keys: HashSet<RecordKey> = [
            r#"{"order_id":"+5","pay_amount":0.5}"#,
            r#"{"order_id":"05","pay_amount":0.5}"#,
            r#"{"order_id":5,"pay_amount":0.5}"#,
            r#"{"order_id":"5","pay_amount":1.5}"#,
            r#"{"pay_amount":1}"#,
            r#"{"pay_amount":2}"#,
        ]
        .iter()
        .map(|j| record_key(&rejected(j)))
        .collect();
        assert_eq!(keys.len(), 5, "{keys:?}");
    }
}
