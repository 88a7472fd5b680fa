//! Shared app keys (contract §7): in fleet mode the key records (HMAC
//! digests, scopes, limits, expiry, revocation) also live in Redis, in
//! `{name}:keys` (hash name → record JSON). `switchyard keys … --fleet`
//! writes there directly and appends a `keys` entry to `{name}:health`;
//! each replica's follower reads it in its blocking read and reloads the
//! records into the key overlay (`Live::fleet_keys`), which the data plane
//! consults before the keys file. A revocation therefore reaches every
//! replica within one blocking read (well under a second), with no Redis
//! call on the request path.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::ConnectionManager;

use super::{Fleet, COMMAND_TIMEOUT};
use crate::keys::{KeyRecord, KeyStore};

/// Why a fleet keys command failed.
#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),
    #[error("a key named `{0}` exists in the fleet; revoke it first or pick another name")]
    Exists(String),
    #[error("no active key named `{0}` in the fleet or the keys file")]
    Unknown(String),
    #[error("key record of `{0}` in redis is not valid JSON: {1}")]
    Malformed(String, String),
}

/// The fleet's keys in Redis, for the CLI.
pub struct FleetKeys {
    con: ConnectionManager,
    hash: String,
    stream: String,
}

/// Bounds one command, so the CLI never hangs on a frozen Redis.
async fn bounded<T>(
    f: impl std::future::Future<Output = redis::RedisResult<T>>,
) -> Result<T, KeysError> {
    match tokio::time::timeout(COMMAND_TIMEOUT * 4, f).await {
        Ok(r) => Ok(r?),
        Err(_) => Err(KeysError::Timeout(COMMAND_TIMEOUT * 4)),
    }
}

impl FleetKeys {
    /// Connects to `url` for the fleet called `name`.
    pub async fn connect(url: &str, name: &str) -> Result<FleetKeys, KeysError> {
        let client = redis::Client::open(url)?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(COMMAND_TIMEOUT * 4))
            .set_response_timeout(Some(COMMAND_TIMEOUT * 4))
            .set_number_of_retries(1);
        let con = bounded(ConnectionManager::new_with_config(client, config)).await?;
        Ok(FleetKeys {
            con,
            hash: format!("{name}:keys"),
            stream: format!("{name}:health"),
        })
    }

    /// Every record in the fleet, by name.
    pub async fn list(&self) -> Result<Vec<KeyRecord>, KeysError> {
        read(&mut self.con.clone(), &self.hash).await
    }

    /// Adds a new key; refused when an active key has the same name.
    pub async fn create(&self, record: &KeyRecord) -> Result<(), KeysError> {
        let existing = self.list().await?;
        if existing.iter().any(|r| r.name == record.name && !r.revoked) {
            return Err(KeysError::Exists(record.name.clone()));
        }
        self.put(record).await
    }

    /// Revokes `name` fleet-wide. A key only in the keys file (`file`) is
    /// copied to the fleet as revoked, so the file cannot bring it back.
    pub async fn revoke(&self, name: &str, file: &[KeyRecord]) -> Result<KeyRecord, KeysError> {
        let existing = self.list().await?;
        let mut record = existing
            .into_iter()
            .find(|r| r.name == name && !r.revoked)
            .or_else(|| file.iter().find(|r| r.name == name && !r.revoked).cloned())
            .ok_or_else(|| KeysError::Unknown(name.to_string()))?;
        record.revoked = true;
        self.put(&record).await?;
        Ok(record)
    }

    /// Writes one record and tells every replica, in one transaction.
    async fn put(&self, record: &KeyRecord) -> Result<(), KeysError> {
        let json = serde_json::to_string(record).unwrap_or_default();
        let mut con = self.con.clone();
        bounded(
            redis::pipe()
                .atomic()
                .cmd("HSET")
                .arg(&self.hash)
                .arg(&record.name)
                .arg(json)
                .ignore()
                .cmd("XADD")
                .arg(&self.stream)
                .arg("MAXLEN")
                .arg("~")
                .arg(10_000)
                .arg("*")
                .arg("op")
                .arg("keys")
                .arg("target")
                .arg(&record.name)
                .ignore()
                .query_async::<()>(&mut con),
        )
        .await
    }
}

async fn read(con: &mut ConnectionManager, hash: &str) -> Result<Vec<KeyRecord>, KeysError> {
    let all: std::collections::BTreeMap<String, String> =
        bounded(redis::cmd("HGETALL").arg(hash).query_async(con)).await?;
    all.into_iter()
        .map(|(name, json)| {
            serde_json::from_str(&json).map_err(|e| KeysError::Malformed(name, e.to_string()))
        })
        .collect()
}

/// Reloads the fleet's key records into this replica's overlay. Runs on
/// the follower (sync, and each `keys` entry), never on a request; keeps
/// the limiters of unchanged keys.
pub(super) async fn reload(fleet: &Fleet) {
    let snap = fleet.live.load();
    if snap.config.auth.mode != crate::config::AuthMode::Keys {
        return;
    }
    let Some(secret) = fleet
        .live
        .env_var(&snap.config.auth.secret_env)
        .filter(|s| !s.is_empty())
    else {
        return;
    };
    let records = match read(&mut fleet.cmd.clone(), &format!("{}:keys", fleet.name)).await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "fleet keys not reloaded");
            return;
        }
    };
    let previous = fleet.live.fleet_keys.load_full();
    let store = KeyStore::build(secret.into_bytes(), records, previous.as_deref());
    fleet.live.fleet_keys.store(Some(Arc::new(store)));
}
