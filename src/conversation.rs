//! The turns the gateway answered through the Responses API, so that a
//! later turn's `previous_response_id` can be rebuilt into the whole
//! conversation and sent to whichever target serves it — even one that
//! never saw the earlier turns.
//!
//! Behind [`TurnStore`] so a shared store (fleet mode) can replace the
//! in-memory one; the in-memory store is bounded by a TTL and a byte cap,
//! evicting the oldest turns first. Its lock is held for a map operation
//! only, never across an await, and only by requests.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use serde_json::Value;
use tokio::time::Instant;

use crate::dialect::responses::Conversation;

/// One stored turn.
#[derive(Debug, Clone, PartialEq)]
pub struct Turn {
    /// The response object as the app received it, for `GET`.
    pub response: Value,
    /// The whole conversation up to and including this turn's answer.
    pub conversation: Conversation,
}

impl Turn {
    fn approx_bytes(&self) -> usize {
        // The response object holds the answer once more; its text is
        // bounded by the conversation's, so twice that is a fair estimate.
        2 * self.conversation.approx_bytes() + 512
    }
}

/// Where turns are kept. Lookups are async so that a networked store fits;
/// `put` is called as an answer ends (inside the response stream) and must
/// not wait: a networked store writes in the background.
pub trait TurnStore: Send + Sync {
    fn get<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Option<Arc<Turn>>>;
    fn put(&self, id: String, turn: Turn);
    /// Whether a turn was removed.
    fn delete<'a>(&'a self, id: &'a str) -> BoxFuture<'a, bool>;
}

/// The single-gateway store: a map with insertion order for eviction.
#[derive(Debug)]
pub struct MemoryStore {
    ttl: Duration,
    max_bytes: usize,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    turns: HashMap<String, Entry>,
    /// Ids oldest first, with the generation they were stored under (a
    /// re-stored id leaves a stale entry behind, skipped on eviction).
    order: VecDeque<(String, u64)>,
    bytes: usize,
    next_gen: u64,
}

#[derive(Debug)]
struct Entry {
    turn: Arc<Turn>,
    bytes: usize,
    expires: Instant,
    generation: u64,
}

impl MemoryStore {
    pub fn new(ttl: Duration, max_bytes: usize) -> MemoryStore {
        MemoryStore {
            ttl,
            max_bytes,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// Bytes held now (approximate), for tests and the store's cap.
    pub fn bytes(&self) -> usize {
        self.lock().bytes
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves a consistent map (every
        // operation is a few map calls), so poisoning is ignored.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn get_now(&self, id: &str) -> Option<Arc<Turn>> {
        let mut inner = self.lock();
        let now = Instant::now();
        match inner.turns.get(id) {
            Some(e) if e.expires > now => Some(e.turn.clone()),
            Some(_) => {
                inner.remove(id);
                None
            }
            None => None,
        }
    }

    fn put_now(&self, id: String, turn: Turn) {
        let bytes = turn.approx_bytes();
        if bytes > self.max_bytes {
            return;
        }
        let now = Instant::now();
        let mut inner = self.lock();
        inner.remove(&id);
        let generation = inner.next_gen;
        inner.next_gen += 1;
        inner.order.push_back((id.clone(), generation));
        inner.bytes += bytes;
        inner.turns.insert(
            id,
            Entry {
                turn: Arc::new(turn),
                bytes,
                expires: now + self.ttl,
                generation,
            },
        );
        while let Some((oldest, generation)) = inner.order.front().cloned() {
            let live = inner
                .turns
                .get(&oldest)
                .filter(|e| e.generation == generation);
            match live {
                None => {
                    inner.order.pop_front();
                }
                Some(e) if inner.bytes > self.max_bytes || e.expires <= now => {
                    inner.order.pop_front();
                    inner.remove(&oldest);
                }
                Some(_) => break,
            }
        }
    }
}

impl Inner {
    fn remove(&mut self, id: &str) -> bool {
        match self.turns.remove(id) {
            Some(e) => {
                self.bytes -= e.bytes;
                true
            }
            None => false,
        }
    }
}

impl TurnStore for MemoryStore {
    fn get<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Option<Arc<Turn>>> {
        Box::pin(std::future::ready(self.get_now(id)))
    }

    fn put(&self, id: String, turn: Turn) {
        self.put_now(id, turn);
    }

    fn delete<'a>(&'a self, id: &'a str) -> BoxFuture<'a, bool> {
        let removed = self.lock().remove(id);
        Box::pin(std::future::ready(removed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Message, Part, Role};

    fn turn(text: &str) -> Turn {
        Turn {
            response: serde_json::json!({"id": text}),
            conversation: Conversation {
                system: Vec::new(),
                messages: vec![Message {
                    role: Role::User,
                    content: vec![Part::Text(text.to_string())],
                }],
            },
        }
    }

    #[tokio::test(start_paused = true)]
    async fn turns_expire_after_the_ttl() {
        let store = MemoryStore::new(Duration::from_secs(60), 1 << 20);
        store.put("a".into(), turn("a"));
        tokio::time::advance(Duration::from_secs(59)).await;
        assert!(store.get("a").await.is_some());
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(store.get("a").await.is_none());
        assert_eq!(store.bytes(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn the_byte_cap_evicts_the_oldest_first() {
        let one = turn(&"x".repeat(1000)).approx_bytes();
        let store = MemoryStore::new(Duration::from_secs(60), 2 * one + one / 2);
        for id in ["a", "b", "c"] {
            store.put(id.into(), turn(&"x".repeat(1000)));
        }
        assert!(store.get("a").await.is_none());
        assert!(store.get("b").await.is_some());
        assert!(store.get("c").await.is_some());
        assert!(store.bytes() <= 2 * one + one / 2);
    }

    #[tokio::test(start_paused = true)]
    async fn re_storing_and_deleting_keep_the_count_right() {
        let store = MemoryStore::new(Duration::from_secs(60), 1 << 20);
        store.put("a".into(), turn("a"));
        store.put("a".into(), turn("a"));
        assert_eq!(store.bytes(), turn("a").approx_bytes());
        assert!(store.delete("a").await);
        assert!(!store.delete("a").await);
        assert_eq!(store.bytes(), 0);
        let zero = MemoryStore::new(Duration::from_secs(60), 0);
        zero.put("a".into(), turn("a"));
        assert!(zero.get("a").await.is_none());
    }
}
