//! The live snapshot: table, providers and settings in one `ArcSwap`.
//!
//! A request loads the snapshot once and uses it to the end, so a reload
//! never changes the table under a request in flight. Everything fallible
//! (parse, validate, build clients) happens before the one infallible store.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use sha2::{Digest, Sha256};

use crate::config::{self, AuthMode, Config, ConfigError};
use crate::policy::Table;
use crate::provider::{EnvLookup, Provider, ProviderError};

/// Why a new table could not be built; the old one keeps serving.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Provider(#[from] ProviderError),
    #[error("auth.keys_env: env var {0} is not set")]
    KeysEnv(String),
}

impl LoadError {
    /// Each problem on its own line, for the CLI and the admin API.
    pub fn problems(&self) -> Vec<String> {
        match self {
            LoadError::Config(c) => c.problems(),
            other => vec![other.to_string()],
        }
    }
}

/// How app keys are checked in this snapshot.
#[derive(Debug, Clone)]
pub enum Auth {
    AnyKey,
    /// SHA-256 digests of the accepted keys; the keys themselves are not kept.
    Keys(Vec<[u8; 32]>),
}

impl Auth {
    pub fn accepts(&self, key: &str) -> bool {
        match self {
            Auth::AnyKey => !key.is_empty(),
            Auth::Keys(digests) => {
                let d: [u8; 32] = Sha256::digest(key.as_bytes()).into();
                digests.iter().fold(false, |acc, k| acc | (k == &d))
            }
        }
    }
}

/// Everything a request needs, immutable once built.
#[derive(Debug)]
pub struct Snapshot {
    pub version: u64,
    pub config: Config,
    pub table: Table,
    pub providers: BTreeMap<String, Arc<Provider>>,
    pub auth: Auth,
}

impl Snapshot {
    /// Builds a snapshot, reusing the providers (and their connection pools)
    /// of `previous` whose config did not change.
    pub fn build(
        config: Config,
        version: u64,
        previous: Option<&Snapshot>,
        env: &EnvLookup,
    ) -> Result<Snapshot, LoadError> {
        let mut providers = BTreeMap::new();
        for (name, cfg) in &config.providers {
            let reused = previous
                .and_then(|p| p.providers.get(name))
                .filter(|p| &p.config == cfg)
                .cloned();
            let provider = match reused {
                Some(p) => p,
                None => Arc::new(Provider::build(name, cfg, env)?),
            };
            providers.insert(name.clone(), provider);
        }
        let auth = match config.auth.mode {
            AuthMode::AnyKey => Auth::AnyKey,
            AuthMode::Keys => {
                let var = config.auth.keys_env.clone().unwrap_or_default();
                let list = env(&var).ok_or(LoadError::KeysEnv(var))?;
                Auth::Keys(
                    list.split(',')
                        .map(str::trim)
                        .filter(|k| !k.is_empty())
                        .map(|k| Sha256::digest(k.as_bytes()).into())
                        .collect(),
                )
            }
        };
        Ok(Snapshot {
            version,
            table: Table::compile(&config),
            config,
            providers,
            auth,
        })
    }
}

/// The process-wide live state.
pub struct Live {
    current: ArcSwap<Snapshot>,
    /// Where `reload` reads from; `None` for the embedded demo table.
    path: Option<PathBuf>,
    env: EnvLookup,
    next_version: AtomicU64,
}

impl Live {
    /// Builds the first snapshot; a failure here stops the process.
    pub fn new(config: Config, path: Option<PathBuf>, env: EnvLookup) -> Result<Live, LoadError> {
        let snapshot = Snapshot::build(config, 1, None, &env)?;
        Ok(Live {
            env,
            next_version: AtomicU64::new(snapshot.version + 1),
            current: ArcSwap::from_pointee(snapshot),
            path,
        })
    }

    /// The snapshot to use for one whole request.
    pub fn load(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Re-reads the routes file; on any error nothing changes.
    pub fn reload(&self) -> Result<u64, LoadError> {
        let Some(path) = &self.path else {
            return Ok(self.load().version);
        };
        let config = config::load_file(path)?;
        self.apply(config)
    }

    /// Validates a config already parsed, builds, then swaps atomically.
    pub fn apply(&self, config: Config) -> Result<u64, LoadError> {
        let version = self.next_version.fetch_add(1, Ordering::Relaxed);
        let snapshot = Snapshot::build(config, version, Some(&self.load()), &self.env)?;
        self.current.store(Arc::new(snapshot));
        Ok(version)
    }
}
