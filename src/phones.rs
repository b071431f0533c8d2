//! What knowing a phone costs the merchant's app, and what the log says about phones.
//!
//! The batch decrypt endpoint has a daily quota per app equal to the ciphertexts sent (API notes
//! §4, §10), shared with everything else the merchant runs. So a platform ciphertext (`Enc.`)
//! whose phone is already stored for the same order, from the same ciphertext, is not sent again:
//! the fetcher that got the page looks the page's ciphertexts up on the run's side connection
//! (one query per page, by primary key) and only new or changed ones go to the endpoint. When
//! Douyin says the quota is used up, the orders are stored with the phone NULL; at the end of
//! each account's sync a bounded fill pass decrypts stored orders whose `Enc.` phone is still NULL
//! (newest first, [`FILL_LIMIT`] a run), so a later run fills them once the quota is back without
//! fetching any day again. Ciphertexts the endpoint answered without a plaintext are remembered
//! for a day so that neither path spends the quota on them on every run.
//!
//! Warnings about phones are collected here and logged once per run, each kind with a count and
//! a few order ids, instead of one line per order on every re-sync. Phones are never logged.

use crate::douyin::Douyin;
use crate::error::{ApiRefusal, Error};
use crate::order::OrderRow;
use crate::store::SideConnection;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

/// Stored orders with a NULL `Enc.` phone the fill pass decrypts per account and run (10 decrypt
/// calls): bounded so that a large backlog is worked off over several runs and never delays one.
pub const FILL_LIMIT: i64 = 500;
/// Order ids a collapsed warning names.
const SAMPLE_IDS: usize = 3;

/// One kind of phone problem: how many orders, and the first few.
#[derive(Debug, Default)]
struct Problem {
    orders: u64,
    sample: Vec<String>,
}

#[derive(Debug, Default)]
struct Ledger {
    /// `Enc.` phones taken from the table instead of the endpoint.
    reused: u64,
    /// `Enc.` phones the endpoint decrypted (during the sync and by the fill pass).
    decrypted: u64,
    /// Of those, phones filled into orders stored earlier.
    filled: u64,
    /// Why phones stayed NULL: reason → orders.
    problems: BTreeMap<String, Problem>,
    /// The quota answer and the orders stored without their phone because of it.
    quota: Option<(ApiRefusal, Problem)>,
    /// The look-up of stored phones failed (once is enough to say).
    lookup_failed: Option<String>,
}

/// The run's phone decryption beyond the local AES: reuse, the decrypt endpoint, the fill pass,
/// and the collapsed warnings. Shared by the fetchers of every account of the run.
pub struct PhoneBook {
    side: Arc<SideConnection>,
    ledger: Mutex<Ledger>,
}

impl PhoneBook {
    pub fn new(side: Arc<SideConnection>) -> PhoneBook {
        PhoneBook {
            side,
            ledger: Mutex::new(Ledger::default()),
        }
    }

    fn ledger(&self) -> std::sync::MutexGuard<'_, Ledger> {
        // Counters only: a panic elsewhere cannot leave them inconsistent in a way that matters.
        self.ledger.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A phone that stays NULL, for the run's collapsed warning (the order id goes to the debug
    /// log at once).
    pub fn not_decrypted(&self, order_id: &str, reason: &str) {
        log::debug!("order {order_id}: phone not decrypted ({reason})");
        let mut ledger = self.ledger();
        let problem = ledger.problems.entry(reason.to_string()).or_default();
        problem.orders += 1;
        if problem.sample.len() < SAMPLE_IDS {
            problem.sample.push(order_id.to_string());
        }
    }

    /// Fill the phones of `rows` whose `Enc.` ciphertext is stored already with its phone (same
    /// order, same ciphertext). A ciphertext the endpoint refused within a day is dropped from
    /// `phone_encrypt` (what is left to decrypt), so that it is not sent again. A failed
    /// look-up only costs quota: the phones are then decrypted as if new.
    pub fn reuse_stored(&self, rows: &mut [OrderRow]) {
        let pairs: Vec<(String, String)> = rows
            .iter()
            .filter(|r| r.phone.is_none())
            .filter_map(|r| {
                let cipher = r.phone_encrypt.as_deref()?;
                crate::crypto::is_platform_cipher(cipher)
                    .then(|| (r.order_id.clone(), cipher.to_string()))
            })
            .collect();
        if pairs.is_empty() {
            return;
        }
        let known = match self.side.with(|s| s.known_phones(&pairs)) {
            Ok(known) => known,
            Err(e) => {
                let mut ledger = self.ledger();
                if ledger.lookup_failed.is_none() {
                    ledger.lookup_failed = Some(e.to_string());
                }
                return;
            }
        };
        if known.is_empty() {
            return;
        }
        let known: HashMap<String, Option<String>> = known.into_iter().collect();
        let mut reused = 0;
        let mut refused = Vec::new();
        for row in rows.iter_mut() {
            match known.get(&row.order_id) {
                Some(Some(phone)) => {
                    row.phone = Some(phone.clone());
                    reused += 1;
                }
                Some(None) => {
                    row.phone_encrypt = None;
                    refused.push(row.order_id.clone());
                }
                None => {}
            }
        }
        self.ledger().reused += reused;
        for id in refused {
            self.not_decrypted(
                &id,
                "the decrypt endpoint gave no plaintext for it within the last day; not sent again until then",
            );
        }
    }

    /// Decrypt `Enc.` phones through the batch endpoint: (order id, ciphertext) → (order id,
    /// phone if decrypted). A failure leaves the phones NULL and is counted for the run's
    /// warning; only a signal stops the run from here.
    pub fn decrypt(
        &self,
        douyin: &Douyin,
        account_id: &str,
        phones: &[(String, String)],
    ) -> Result<Vec<(String, Option<String>)>, Error> {
        let ciphers: Vec<String> = phones.iter().map(|(_, c)| c.clone()).collect();
        let (plain, quota, failure) = match douyin.decrypt_batch(account_id, &ciphers) {
            Ok(d) => (d.plain, d.quota, None),
            Err(e @ Error::Interrupted(_)) => return Err(e),
            Err(e) => (HashMap::new(), None, Some(e.to_string())),
        };
        let mut out = Vec::with_capacity(phones.len());
        let mut refused = Vec::new();
        let mut decrypted = 0;
        for (order_id, cipher) in phones {
            let phone = plain.get(cipher).cloned();
            if phone
                .as_deref()
                .is_some_and(|p| !crate::streams::orders::storable_phone(p))
            {
                self.not_decrypted(order_id, "the plaintext is not a phone number");
                out.push((order_id.clone(), None));
                continue;
            }
            match (&phone, &quota, &failure) {
                (Some(_), _, _) => decrypted += 1,
                (None, Some(refusal), _) => self.over_quota(order_id, refusal),
                (None, None, Some(e)) => {
                    self.not_decrypted(order_id, &format!("the decrypt call failed: {e}"))
                }
                (None, None, None) => {
                    self.not_decrypted(order_id, "the decrypt endpoint returned no plaintext");
                    refused.push((order_id.clone(), cipher.clone()));
                }
            }
            out.push((order_id.clone(), phone));
        }
        self.ledger().decrypted += decrypted;
        if !refused.is_empty() {
            // Best effort: without the record the ciphertext is only sent again.
            let _ = self.side.with(|s| s.record_refusals(&refused));
        }
        Ok(out)
    }

    fn over_quota(&self, order_id: &str, refusal: &ApiRefusal) {
        log::debug!("order {order_id}: phone not decrypted (decrypt quota used up)");
        let mut ledger = self.ledger();
        let (_, problem) = ledger
            .quota
            .get_or_insert_with(|| (refusal.clone(), Problem::default()));
        problem.orders += 1;
        if problem.sample.len() < SAMPLE_IDS {
            problem.sample.push(order_id.to_string());
        }
    }

    /// Whether Douyin said the decrypt quota is used up during this run.
    pub fn quota_used_up(&self) -> bool {
        self.ledger().quota.is_some()
    }

    /// The fill pass of one account: decrypt stored orders whose `Enc.` phone is still NULL
    /// (at most [`FILL_LIMIT`], newest first) and set their phones. Skipped once the quota is
    /// known to be used up. Returns the phones filled.
    pub fn fill(&self, douyin: &Douyin, account_id: &str) -> Result<u64, Error> {
        if self.quota_used_up() {
            return Ok(0);
        }
        let started = std::time::Instant::now();
        let pending = self
            .side
            .with(|s| s.phones_to_fill(account_id, FILL_LIMIT))?;
        log::debug!(
            "fill pass: {} stored phones to fill, found in {:.1} ms",
            pending.len(),
            started.elapsed().as_secs_f64() * 1000.0
        );
        if pending.is_empty() {
            return Ok(0);
        }
        let decrypted = self.decrypt(douyin, account_id, &pending)?;
        let filled: Vec<(String, String, String)> = pending
            .iter()
            .zip(decrypted)
            .filter_map(|((id, cipher), (_, phone))| Some((id.clone(), cipher.clone(), phone?)))
            .collect();
        let changed = self.side.with(|s| s.fill_phones(&filled))?;
        self.ledger().filled += changed;
        log::info!(
            "account {account_id}: filled {changed} of {} stored phones left NULL by an earlier run",
            pending.len()
        );
        Ok(changed)
    }

    /// The run's phone warnings, one line each, and a line on what decryption cost (debug).
    pub fn report(&self) {
        let ledger = self.ledger();
        let ids = |p: &Problem| {
            let more = if p.orders > p.sample.len() as u64 {
                ", …"
            } else {
                ""
            };
            format!("{}{more}", p.sample.join(", "))
        };
        if let Some((refusal, problem)) = &ledger.quota {
            log::warn!(
                code = refusal.code, logid = refusal.logid.as_deref().unwrap_or("");
                "the app's decrypt quota is used up ({refusal}): {} stored without their phone (orders {}); a later run fills them in once the quota is back",
                crate::sync::count(problem.orders, "order"),
                ids(problem)
            );
        }
        for (reason, problem) in &ledger.problems {
            log::warn!(
                "phone not decrypted for {} ({reason}): orders {}",
                crate::sync::count(problem.orders, "order"),
                ids(problem)
            );
        }
        if let Some(e) = &ledger.lookup_failed {
            log::warn!("stored phones could not be looked up ({e}); their ciphertexts were sent to the decrypt endpoint again");
        }
        if ledger.reused + ledger.decrypted > 0 {
            log::info!(
                reused = ledger.reused, decrypted = ledger.decrypted, filled = ledger.filled;
                "platform phones: {} decrypted by Douyin ({} of them filled into earlier orders), {} reused from the table",
                ledger.decrypted,
                ledger.filled,
                ledger.reused
            );
        }
    }
}
