//! The client token kept in PostgreSQL between runs, so that a run every 15 minutes does not
//! fetch a token every 15 minutes.
//!
//! Douyin keeps only the two newest client tokens of an app valid (2 hours each), and the
//! merchant's other services use the same app: each token we fetch needlessly pushes one of
//! theirs out. So the token is stored with its expiry (`douyin_client_tokens`, migration 0005,
//! readable by the job's role only), keyed by app id and API base URL, with a fingerprint of the
//! AppSecret it was fetched with; a run reuses it while it is valid for more than
//! [`TOKEN_RENEW_MARGIN_SECS`], and fetches (and stores) a new one only when it is near expiry,
//! the secret changed, or Douyin called it expired. "Read, fetch if needed, store" runs under a
//! transaction-level advisory lock, so two runs starting together fetch at most one token.
//! Expiry is reckoned by the database's clock, which every host running the job shares.
//!
//! The very first run on a database gets its token before migration 0005 has created the table
//! (the token call comes first: it shows that API_BASE_URL is Douyin before anything is
//! written); it stores the token once the migrations are done ([`TokenCache::migrated`]).

use crate::config::{Config, Secret};
use crate::douyin::{FreshToken, TokenKeeper, TOKEN_RENEW_MARGIN_SECS};
use crate::error::Error;
use crate::stop::Stop;
use crate::store::SideConnection;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// The token store of one app and API base.
pub struct TokenCache {
    side: Arc<SideConnection>,
    app_id: String,
    api_base: String,
    credential: String,
    stop: Stop,
    /// `check` reads a stored token but never writes one.
    read_only: bool,
    /// Whether the table is known to exist (checked once).
    table: Mutex<Option<bool>>,
    /// A token fetched before the table existed, to store once it does: (token, lifetime in
    /// seconds when fetched, when).
    pending: Mutex<Option<(Secret, i64, Instant)>>,
}

impl TokenCache {
    /// A cache on `side` (the table may not exist yet: see [`TokenCache::migrated`]).
    pub fn new(config: &Config, side: Arc<SideConnection>, stop: &Stop) -> TokenCache {
        TokenCache {
            side,
            app_id: config.app_id().to_string(),
            api_base: config.api_base().to_string(),
            credential: crate::crypto::secret_fingerprint(config.app_secret().expose()),
            stop: stop.clone(),
            read_only: false,
            table: Mutex::new(None),
            pending: Mutex::new(None),
        }
    }

    /// A cache that uses a stored token but stores none (`check` writes nothing).
    pub fn read_only(config: &Config, side: Arc<SideConnection>, stop: &Stop) -> TokenCache {
        TokenCache {
            read_only: true,
            ..TokenCache::new(config, side, stop)
        }
    }

    /// Whether the token table exists (asked once; false when the database cannot tell).
    fn table_exists(&self) -> bool {
        let mut table = self.table.lock().unwrap_or_else(|p| p.into_inner());
        if table.is_none() {
            *table = Some(self.side.with(|s| s.has_token_table()).unwrap_or(false));
        }
        table.unwrap_or(false)
    }

    /// The migrations are applied: store a token fetched before the table existed.
    pub fn migrated(&self) {
        let pending = self
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        *self.table.lock().unwrap_or_else(|p| p.into_inner()) = None;
        let Some((token, lifetime, fetched)) = pending else {
            return;
        };
        if self.read_only || !self.table_exists() {
            return;
        }
        let left = lifetime - fetched.elapsed().as_secs() as i64 - 1;
        let stored = self.side.with(|s| {
            s.with_token_lock(&self.stop, |tx| {
                tx.write(&self.app_id, &self.api_base, &self.credential, &token, left)
            })
        });
        if let Err(e) = stored {
            log::warn!("the client token could not be stored for the next run: {e}");
        }
    }
}

impl TokenKeeper for TokenCache {
    fn obtain(
        &self,
        refused: Option<&Secret>,
        fetch: &dyn Fn() -> Result<FreshToken, Error>,
    ) -> Result<(Secret, i64), Error> {
        if !self.table_exists() {
            // The first run on this database: keep the token until the migrations have made
            // its table.
            let fresh = fetch()?;
            *self.pending.lock().unwrap_or_else(|p| p.into_inner()) =
                Some((fresh.token.clone(), fresh.lifetime_secs, Instant::now()));
            return Ok((fresh.token, fresh.lifetime_secs));
        }
        // The fetch's own result is carried out of the transaction separately: a refusal
        // (bad credentials) is not a database error, and a token fetched before a database
        // error is still good for this run.
        let mut fetched: Option<Result<(Secret, i64), Error>> = None;
        let result = self.side.with(|s| {
            s.with_token_lock(&self.stop, |tx| {
                if let Some(stored) = tx.read(&self.app_id, &self.api_base)? {
                    let usable = stored.credential == self.credential
                        && stored.remaining_secs > TOKEN_RENEW_MARGIN_SECS
                        && refused.is_none_or(|r| r.expose() != stored.token.expose());
                    if usable {
                        log::debug!(
                            "using the stored client token, valid for {} s",
                            stored.remaining_secs
                        );
                        return Ok(Some((stored.token, stored.remaining_secs)));
                    }
                }
                let fresh = fetch();
                let fresh = match fresh {
                    Ok(fresh) => fresh,
                    Err(e) => {
                        fetched = Some(Err(e));
                        return Ok(None);
                    }
                };
                fetched = Some(Ok((fresh.token.clone(), fresh.lifetime_secs)));
                if !self.read_only {
                    tx.write(
                        &self.app_id,
                        &self.api_base,
                        &self.credential,
                        &fresh.token,
                        fresh.lifetime_secs,
                    )?;
                }
                Ok(None)
            })
        });
        match (result, fetched) {
            (Ok(Some(stored)), _) => Ok(stored),
            (_, Some(Err(e))) => Err(e),
            (Ok(None), Some(Ok(fresh))) => Ok(fresh),
            (Err(e @ Error::Interrupted(_)), _) => Err(e),
            (Err(e), Some(Ok(fresh))) => {
                log::warn!("the client token could not be stored for the next run: {e}");
                Ok(fresh)
            }
            (Err(e), None) => {
                // The database is the run's business (it fails there if it is down); the token
                // is still needed: fetch one without storing it.
                log::warn!("the stored client token could not be read ({e}); fetching one");
                let fresh = fetch()?;
                Ok((fresh.token, fresh.lifetime_secs))
            }
            (Ok(None), None) => Err(Error::Bug("no client token and no error".into())),
        }
    }
}
