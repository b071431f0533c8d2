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
//! The very first run on a database starts before migration 0005 has created the table: it
//! fetches its token while the migrations run and stores it once they are done.

use crate::config::{Config, Secret};
use crate::douyin::{FreshToken, TokenKeeper, TOKEN_RENEW_MARGIN_SECS};
use crate::error::Error;
use crate::stop::Stop;
use crate::store::SideConnection;
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};

/// The token store of one app and API base.
pub struct TokenCache {
    side: Arc<SideConnection>,
    app_id: String,
    api_base: String,
    credential: String,
    stop: Stop,
    /// `check` reads a stored token but never writes one.
    read_only: bool,
    /// Until the migrations are known to be applied (the first run on a database): the signal
    /// that they are. `None` once the table is there.
    migrated: Mutex<Option<Receiver<()>>>,
}

impl TokenCache {
    /// A cache on `side`. `migrated`, when given, says when the migrations have been applied
    /// (the table may not exist before).
    pub fn new(
        config: &Config,
        side: Arc<SideConnection>,
        stop: &Stop,
        migrated: Option<Receiver<()>>,
    ) -> TokenCache {
        TokenCache {
            side,
            app_id: config.app_id().to_string(),
            api_base: config.api_base().to_string(),
            credential: crate::crypto::secret_fingerprint(config.app_secret().expose()),
            stop: stop.clone(),
            read_only: false,
            migrated: Mutex::new(migrated),
        }
    }

    /// A cache that uses a stored token but stores none (`check` writes nothing).
    pub fn read_only(config: &Config, side: Arc<SideConnection>, stop: &Stop) -> TokenCache {
        TokenCache {
            read_only: true,
            ..TokenCache::new(config, side, stop, None)
        }
    }

    /// Whether the token table can be used now: it exists, or the migrations that create it
    /// have been applied (waiting for them when `wait`). False when they failed (the run ends
    /// with that error anyway).
    fn table_ready(&self, wait: bool) -> bool {
        let mut migrated = self.migrated.lock().unwrap_or_else(|p| p.into_inner());
        let Some(signal) = migrated.as_ref() else {
            return true;
        };
        if self.side.with(|s| s.has_token_table()).unwrap_or(false) {
            *migrated = None;
            return true;
        }
        if !wait {
            return false;
        }
        let applied = signal.recv().is_ok();
        if applied {
            *migrated = None;
        }
        applied
    }
}

impl TokenKeeper for TokenCache {
    fn obtain(
        &self,
        refused: Option<&Secret>,
        fetch: &dyn Fn() -> Result<FreshToken, Error>,
    ) -> Result<(Secret, i64), Error> {
        if !self.table_ready(false) {
            // The first run on this database: fetch now, in parallel with the migrations, and
            // store the token once they have created the table.
            let fresh = fetch()?;
            if !self.read_only && self.table_ready(true) {
                let stored = self.side.with(|s| {
                    s.with_token_lock(&self.stop, |tx| {
                        tx.write(
                            &self.app_id,
                            &self.api_base,
                            &self.credential,
                            &fresh.token,
                            fresh.lifetime_secs,
                        )
                    })
                });
                if let Err(e) = stored {
                    log::warn!("the client token could not be stored for the next run: {e}");
                }
            }
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
