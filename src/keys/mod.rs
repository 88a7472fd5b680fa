//! The gateway's own API keys for apps.
//!
//! A key is shown once, when it is created; the keys file stores only its
//! HMAC-SHA256 under a server-side secret, with a name, the routes it may
//! use, an optional expiry and rate limits. A presented key is looked up by
//! its HMAC and compared in constant time. There is no fallback identity:
//! a missing, unknown, expired or revoked key is refused.

mod budget;
mod store;
mod window;

use crate::clock::unix_now;
use std::collections::{BTreeSet, HashMap};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use hmac::{KeyInit, Mac};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use window::{Full, TokenWindow};

pub use budget::Budget;
pub use store::{load_file, save_file, KeyFileError};

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// One key as stored: never the secret itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyRecord {
    pub name: String,
    /// Hex HMAC-SHA256 of the key under the server secret.
    pub hmac: String,
    /// Routes the key may use; `["*"]` for all.
    pub routes: Vec<String>,
    /// Unix seconds.
    pub created: u64,
    pub expires: Option<u64>,
    /// Requests per minute.
    pub rpm: Option<u32>,
    /// Prompt + completion tokens per minute: reserved at admission (prompt
    /// estimate + the most output the request may ask for), settled with
    /// the vendor's reported usage.
    pub tpm: Option<u32>,
    #[serde(default)]
    pub revoked: bool,
}

/// A new key: the record to store and the secret to show once.
pub fn create(
    secret: &[u8],
    name: &str,
    routes: Vec<String>,
    expires: Option<u64>,
    rpm: Option<u32>,
    tpm: Option<u32>,
) -> (KeyRecord, String) {
    let key = new_secret();
    let record = KeyRecord {
        name: name.to_string(),
        hmac: hex::encode(mac(secret, &key)),
        routes,
        created: unix_now(),
        expires,
        rpm,
        tpm,
        revoked: false,
    };
    (record, key)
}

/// `sy-` and 43 random base62 characters (~256 bits).
fn new_secret() -> String {
    use rand::distr::{Alphanumeric, SampleString};
    format!("sy-{}", Alphanumeric.sample_string(&mut rand::rng(), 43))
}

fn mac(secret: &[u8], key: &str) -> [u8; 32] {
    let mut m =
        <HmacSha256 as KeyInit>::new_from_slice(secret).expect("HMAC takes keys of any length");
    m.update(key.as_bytes());
    m.finalize().into_bytes().into()
}

/// A key that passed authentication.
#[derive(Debug)]
pub struct AppKey {
    pub name: String,
    routes: Option<BTreeSet<String>>,
    rpm: Option<DefaultDirectRateLimiter>,
    tpm: Option<TokenWindow>,
    /// Requests of this key being served now (responses still streaming
    /// included).
    in_flight: AtomicUsize,
    /// The record's requests per minute, for the fleet's budget.
    rpm_limit: Option<u32>,
    /// Fleet mode: this key's share of the fleet-wide request limit,
    /// leased by the fleet's background task; once it holds a lease it
    /// replaces the local per-minute limiter.
    fleet_rpm: std::sync::OnceLock<Budget>,
}

/// Why a key may not do what it asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    /// The route is outside the key's scope.
    Scope,
    /// Over a limit; retry after this long.
    RateLimited {
        what: &'static str,
        retry_after: Duration,
    },
}

impl AppKey {
    /// Whether the key's scope includes `route`.
    pub fn may_use(&self, route: &str) -> bool {
        self.routes.as_ref().is_none_or(|r| r.contains(route))
    }

    /// Counts one request against the requests-per-minute limit. Checked
    /// as soon as the headers named the key, before the body is read, so a
    /// key over its limit cannot hold a connection slot with a slow body.
    pub fn admit_request(&self) -> Result<(), Denied> {
        if let Some(b) = self.fleet_rpm.get().filter(|b| b.active()) {
            return b.admit().map_err(|retry_after| Denied::RateLimited {
                what: "requests per minute",
                retry_after,
            });
        }
        if let Some(l) = &self.rpm {
            l.check().map_err(|n| Denied::RateLimited {
                what: "requests per minute",
                retry_after: n.wait_time_from(DefaultClock::default().now()),
            })?;
        }
        Ok(())
    }

    /// Fleet mode: this key's fleet-wide request budget (windows of
    /// `period`), made on first use; `None` for a key without a limit.
    pub fn fleet_budget(
        &self,
        period: Duration,
        low: &Arc<tokio::sync::Notify>,
    ) -> Option<&Budget> {
        let rpm = self.rpm_limit.filter(|n| *n > 0)?;
        Some(
            self.fleet_rpm
                .get_or_init(|| Budget::new(rpm, period, low.clone())),
        )
    }

    /// Takes one of the key's `cap` concurrent-request slots for as long as
    /// the returned guard lives, so one key cannot hold every slot of the
    /// gateway.
    pub fn enter(self: &Arc<Self>, cap: usize) -> Result<InFlight, Denied> {
        if self.in_flight.fetch_add(1, Ordering::AcqRel) >= cap {
            self.in_flight.fetch_sub(1, Ordering::AcqRel);
            return Err(Denied::RateLimited {
                what: "concurrent requests",
                retry_after: Duration::from_secs(1),
            });
        }
        Ok(InFlight(self.clone()))
    }

    /// Reserves the tokens a request may use: about `prompt` tokens in and
    /// at most `max_output` out. `None` when the key has no token limit.
    /// The reservation must be settled with the vendor's usage; one that is
    /// never settled keeps what it reserved.
    pub fn reserve(
        self: &Arc<Self>,
        prompt: u64,
        max_output: u64,
    ) -> Result<Option<Reservation>, Denied> {
        let Some(window) = &self.tpm else {
            return Ok(None);
        };
        let second = window.now();
        match window.reserve(second, prompt, prompt.saturating_add(max_output)) {
            Ok(reserved) => Ok(Some(Reservation {
                key: self.clone(),
                second,
                reserved,
            })),
            Err(Full::RetryAfter(retry_after)) => Err(Denied::RateLimited {
                what: "tokens per minute",
                retry_after,
            }),
            Err(Full::Never) => Err(Denied::RateLimited {
                what: "tokens per minute (this request alone exceeds the limit)",
                retry_after: Duration::from_secs(60),
            }),
        }
    }
}

/// One of a key's concurrent-request slots; given back on drop.
#[derive(Debug)]
pub struct InFlight(Arc<AppKey>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Tokens reserved for one request, until the vendor says what it used.
#[derive(Debug)]
pub struct Reservation {
    key: Arc<AppKey>,
    second: u64,
    reserved: u64,
}

impl Reservation {
    /// Charges what the request really used (prompt and output, as the
    /// vendor reported): the unused part goes back, an excess is charged.
    pub fn settle(self, used: u64) {
        if let Some(window) = &self.key.tpm {
            window.settle(window.now(), self.second, self.reserved, used);
        }
    }
}

/// The keys of one snapshot, by HMAC.
#[derive(Debug)]
pub struct KeyStore {
    secret: Vec<u8>,
    by_mac: HashMap<[u8; 32], (KeyRecord, Arc<AppKey>)>,
}

/// Why a key was refused at the door.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    Unknown,
    Expired,
    Revoked,
}

impl KeyStore {
    /// Builds the store; keys whose record did not change keep their rate
    /// limiters from `previous`, so a reload does not reset limits.
    pub fn build(
        secret: Vec<u8>,
        records: Vec<KeyRecord>,
        previous: Option<&KeyStore>,
    ) -> KeyStore {
        let mut by_mac = HashMap::with_capacity(records.len());
        for r in records {
            let Some(digest) = hex::decode(&r.hmac)
                .ok()
                .and_then(|d| <[u8; 32]>::try_from(d).ok())
            else {
                continue;
            };
            let reused = previous
                .and_then(|p| p.by_mac.get(&digest))
                .filter(|(old, _)| old == &r)
                .map(|(_, k)| k.clone());
            let key = reused.unwrap_or_else(|| {
                Arc::new(AppKey {
                    name: r.name.clone(),
                    routes: (!r.routes.iter().any(|x| x == "*"))
                        .then(|| r.routes.iter().cloned().collect()),
                    rpm: r
                        .rpm
                        .and_then(NonZeroU32::new)
                        .map(|n| RateLimiter::direct(Quota::per_minute(n))),
                    tpm: r.tpm.filter(|n| *n > 0).map(TokenWindow::new),
                    in_flight: AtomicUsize::new(0),
                    rpm_limit: r.rpm,
                    fleet_rpm: std::sync::OnceLock::new(),
                })
            });
            by_mac.insert(digest, (r, key));
        }
        KeyStore { secret, by_mac }
    }

    /// Every record and its live key.
    pub fn keys(&self) -> impl Iterator<Item = (&KeyRecord, &Arc<AppKey>)> {
        self.by_mac.values().map(|(r, k)| (r, k))
    }

    pub fn authenticate(&self, presented: &str) -> Result<Arc<AppKey>, Refused> {
        let digest = mac(&self.secret, presented);
        let (record, key) = self.by_mac.get(&digest).ok_or(Refused::Unknown)?;
        // The map lookup found it by HMAC; compare in constant time anyway.
        let stored: [u8; 32] = hex::decode(&record.hmac)
            .ok()
            .and_then(|d| d.try_into().ok())
            .ok_or(Refused::Unknown)?;
        if !bool::from(stored.ct_eq(&digest)) {
            return Err(Refused::Unknown);
        }
        if record.revoked {
            return Err(Refused::Revoked);
        }
        if record.expires.is_some_and(|e| e <= unix_now()) {
            return Err(Refused::Expired);
        }
        Ok(key.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(records: Vec<KeyRecord>) -> KeyStore {
        KeyStore::build(b"server-secret".to_vec(), records, None)
    }

    #[test]
    fn a_created_key_authenticates_and_nothing_else_does() {
        let (rec, key) = create(
            b"server-secret",
            "app-a",
            vec!["*".into()],
            None,
            None,
            None,
        );
        assert!(!rec.hmac.contains(&key) && rec.hmac.len() == 64);
        let s = store(vec![rec]);
        assert_eq!(s.authenticate(&key).unwrap().name, "app-a");
        assert_eq!(s.authenticate("sy-guess").unwrap_err(), Refused::Unknown);
        assert_eq!(s.authenticate("").unwrap_err(), Refused::Unknown);
        // The same key under another server secret is unknown.
        let other = KeyStore::build(
            b"other".to_vec(),
            s.by_mac.values().map(|(r, _)| r.clone()).collect(),
            None,
        );
        assert_eq!(other.authenticate(&key).unwrap_err(), Refused::Unknown);
    }

    #[test]
    fn revoked_and_expired_keys_are_refused() {
        let (mut rec, key) = create(b"server-secret", "a", vec!["*".into()], Some(1), None, None);
        assert_eq!(
            store(vec![rec.clone()]).authenticate(&key).unwrap_err(),
            Refused::Expired
        );
        rec.expires = None;
        rec.revoked = true;
        assert_eq!(
            store(vec![rec]).authenticate(&key).unwrap_err(),
            Refused::Revoked
        );
    }

    #[test]
    fn scope_and_rate_limits() {
        let (rec, key) = create(
            b"server-secret",
            "a",
            vec!["gpt".into()],
            None,
            Some(2),
            Some(100),
        );
        let s = store(vec![rec]);
        let k = s.authenticate(&key).unwrap();
        assert!(!k.may_use("claude") && k.may_use("gpt"));
        assert_eq!(k.admit_request(), Ok(()));
        assert_eq!(k.admit_request(), Ok(()));
        assert!(matches!(
            k.admit_request(),
            Err(Denied::RateLimited {
                what: "requests per minute",
                ..
            })
        ));
        assert!(matches!(k.reserve(101, 0), Err(Denied::RateLimited { .. })));
        let r = k.reserve(10, 4096).unwrap().unwrap();
        assert!(matches!(
            k.reserve(1, 0),
            Err(Denied::RateLimited {
                what: "tokens per minute",
                ..
            })
        ));
        r.settle(40);
        let r = k.reserve(10, 50).unwrap().unwrap();
        r.settle(60);
        assert!(k.reserve(1, 0).is_err(), "40 + 60 used: the minute is full");
    }

    #[test]
    fn a_key_holds_at_most_its_share_of_concurrent_requests() {
        let (rec, key) = create(b"server-secret", "a", vec!["*".into()], None, None, None);
        let s = store(vec![rec]);
        let k = s.authenticate(&key).unwrap();
        let a = k.enter(2).unwrap();
        let _b = k.enter(2).unwrap();
        assert!(k.enter(2).is_err());
        drop(a);
        assert!(k.enter(2).is_ok());
    }

    #[test]
    fn limits_survive_a_rebuild_of_an_unchanged_key() {
        let (rec, key) = create(b"s", "a", vec!["*".into()], None, Some(1), None);
        let s1 = KeyStore::build(b"s".to_vec(), vec![rec.clone()], None);
        s1.authenticate(&key).unwrap().admit_request().unwrap();
        let s2 = KeyStore::build(b"s".to_vec(), vec![rec], Some(&s1));
        assert!(s2.authenticate(&key).unwrap().admit_request().is_err());
    }
}
