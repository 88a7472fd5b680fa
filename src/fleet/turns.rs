//! Responses API turns shared through Redis, so a chained conversation
//! (`previous_response_id`) continues on whichever replica the load
//! balancer picks, and `GET` / `DELETE /v1/responses/{id}` answer the same
//! everywhere.
//!
//! Redis is the truth, this replica's [`MemoryStore`] the fallback: a turn
//! is written to both (to Redis in the background, so an answer never waits
//! on it); a lookup asks Redis first, under a short deadline, and falls
//! back to the local store when Redis is away or the write has not landed
//! yet. A delete leaves a tombstone in Redis so that a replica which still
//! holds the turn locally does not bring it back.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use redis::aio::ConnectionManager;
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};

use super::COMMAND_TIMEOUT;
use crate::conversation::{MemoryStore, Turn, TurnStore};
use crate::dialect::responses::Conversation;

/// What a deleted turn's key holds until its TTL runs out.
const TOMBSTONE: &str = "deleted";

/// A turn as stored in Redis.
#[derive(Serialize, Deserialize)]
struct Stored {
    response: serde_json::Value,
    conversation: Conversation,
}

/// What Redis said about an id.
enum Remote {
    Turn(Arc<Turn>),
    Deleted,
    /// Not there, or Redis could not answer in time.
    Unknown,
}

/// The fleet's turn store: Redis first, this replica's memory as fallback.
pub struct SharedTurns {
    con: ConnectionManager,
    prefix: String,
    ttl: Duration,
    max_bytes: usize,
    local: MemoryStore,
}

impl SharedTurns {
    /// A store under `{name}:turn:` in the Redis at `url`, with the
    /// `[responses]` TTL and memory cap (a turn larger than the cap is
    /// stored nowhere, as in a single gateway). Connects lazily: Redis may
    /// be down at start.
    pub fn new(
        url: &str,
        name: &str,
        ttl: Duration,
        max_bytes: usize,
    ) -> redis::RedisResult<SharedTurns> {
        let client = redis::Client::open(url)?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(COMMAND_TIMEOUT))
            .set_response_timeout(Some(COMMAND_TIMEOUT))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        Ok(SharedTurns {
            con: ConnectionManager::new_lazy_with_config(client, config)?,
            prefix: format!("{name}:turn:"),
            ttl,
            max_bytes,
            local: MemoryStore::new(ttl, max_bytes),
        })
    }

    fn key(&self, id: &str) -> String {
        format!("{}{id}", self.prefix)
    }

    async fn remote(&self, id: &str) -> Remote {
        let mut con = self.con.clone();
        let read = con.get::<_, Option<String>>(self.key(id));
        match tokio::time::timeout(COMMAND_TIMEOUT, read).await {
            Ok(Ok(Some(text))) if text == TOMBSTONE => Remote::Deleted,
            Ok(Ok(Some(text))) => match serde_json::from_str::<Stored>(&text) {
                Ok(s) => Remote::Turn(Arc::new(Turn {
                    response: s.response,
                    conversation: s.conversation,
                })),
                Err(e) => {
                    tracing::warn!(error = %e, "a shared Responses turn does not decode");
                    Remote::Unknown
                }
            },
            Ok(Ok(None)) => Remote::Unknown,
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "shared turn store: Redis read failed");
                Remote::Unknown
            }
            Err(_) => Remote::Unknown,
        }
    }

    fn ttl_ms(&self) -> u64 {
        u64::try_from(self.ttl.as_millis())
            .unwrap_or(u64::MAX)
            .max(1)
    }
}

impl TurnStore for SharedTurns {
    fn get<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Option<Arc<Turn>>> {
        Box::pin(async move {
            match self.remote(id).await {
                Remote::Turn(t) => Some(t),
                Remote::Deleted => {
                    self.local.delete(id).await;
                    None
                }
                Remote::Unknown => self.local.get(id).await,
            }
        })
    }

    fn put(&self, id: String, turn: Turn) {
        if self.max_bytes == 0 {
            return;
        }
        let stored = Stored {
            response: turn.response.clone(),
            conversation: turn.conversation.clone(),
        };
        self.local.put(id.clone(), turn);
        let Ok(text) = serde_json::to_string(&stored) else {
            return;
        };
        if text.len() > self.max_bytes {
            return;
        }
        let mut con = self.con.clone();
        let (key, ttl) = (self.key(&id), self.ttl_ms());
        tokio::spawn(async move {
            let write = con.pset_ex::<_, _, ()>(key, text, ttl);
            if !matches!(
                tokio::time::timeout(COMMAND_TIMEOUT, write).await,
                Ok(Ok(()))
            ) {
                tracing::debug!("shared turn store: Redis write failed; kept locally");
            }
        });
    }

    fn delete<'a>(&'a self, id: &'a str) -> BoxFuture<'a, bool> {
        Box::pin(async move {
            let was_remote = matches!(self.remote(id).await, Remote::Turn(_));
            let was_local = self.local.delete(id).await;
            if was_remote || was_local {
                let mut con = self.con.clone();
                let write = con.pset_ex::<_, _, ()>(self.key(id), TOMBSTONE, self.ttl_ms());
                if !matches!(
                    tokio::time::timeout(COMMAND_TIMEOUT, write).await,
                    Ok(Ok(()))
                ) {
                    tracing::warn!("shared turn store: could not record a delete in Redis");
                }
            }
            was_remote || was_local
        })
    }
}
