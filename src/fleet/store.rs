//! The fleet's layout in Redis, and every command the fleet sends. Nothing
//! here touches the live state: `link` decides what to do with the answers.
//!
//! Keys, under the fleet's `name`:
//! - `{name}:epoch` — the change counter (INCR); missing means an empty
//!   Redis (new fleet, or restarted without persistence).
//! - `{name}:changes` — append-only stream of changes, one entry per epoch.
//! - `{name}:suspensions` — hash target → suspension JSON: the current state.
//! - `{name}:faults` — hash target → chaos fault JSON (`fault`, `until`
//!   unix s); `{name}:quarantines` — hash app key → abuse quarantine JSON:
//!   the current state of the other two kinds of ops change.
//! - `{name}:changed_at` — hash → unix ms of its last change (the conflict
//!   rule's clock): field `target` for a suspension, `fault:target` for a
//!   fault, `quarantine:key` for a quarantine.
//! - `{name}:acks` — stream of (replica, applied epoch), so waiters block
//!   on a read instead of polling.
//! - `{name}:replica:{id}` — hash with the replica's heartbeat; expires
//!   after the heartbeat TTL. `{name}:replicas` — sorted set of ids.
//! - `{name}:ejected` — hash target → unix ms its shared outlier ejection
//!   ends; `{name}:health` — stream of shared ejections and recoveries
//!   (no epoch, no acks: they are observations, not ops changes);
//!   `{name}:probe:{target}` — the probe lease (`SET NX PX`), one holder
//!   fleet-wide.

use std::collections::HashMap;
use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::streams::{StreamRangeReply, StreamReadReply};
use serde::{Deserialize, Serialize};

/// Stream entries kept (approximately): enough for any replica that is
/// merely slow; a replica further behind re-syncs from the state hash.
const STREAM_LEN: u64 = 10_000;

/// One change in one atomic step: check the conflict clock, bump the epoch,
/// update the state hash, append to the stream. Returns the epoch, or 0
/// when a newer change to the same target is already there.
const WRITE: &str = r"
local last = tonumber(redis.call('HGET', KEYS[4], ARGV[9]) or '0')
if ARGV[7] == '1' and last > tonumber(ARGV[6]) then return 0 end
local e = redis.call('INCR', KEYS[1])
if ARGV[10] == 'set' then
  redis.call('HSET', KEYS[3], ARGV[1], ARGV[3])
else
  redis.call('HDEL', KEYS[3], ARGV[1])
end
redis.call('HSET', KEYS[4], ARGV[9], ARGV[6])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[8], '*', 'epoch', e, 'target', ARGV[1],
  'op', ARGV[2], ARGV[11], ARGV[3], 'actor', ARGV[4], 'origin', ARGV[5], 'time_ms', ARGV[6])
return e
";

/// Shares one outlier ejection, unless it would take out more than the
/// cap of one of the target's routes. ARGV: target, until_ms, now_ms,
/// why, origin, stream length, then per route: cap, n, n sibling names.
/// Returns 1 when shared, 0 when over a cap.
const EJECT: &str = r"
local i = 7
while i <= #ARGV do
  local cap = tonumber(ARGV[i])
  local n = tonumber(ARGV[i + 1])
  local out = 1
  for j = i + 2, i + 1 + n do
    if ARGV[j] ~= ARGV[1] then
      local u = tonumber(redis.call('HGET', KEYS[1], ARGV[j]) or '0')
      if u > tonumber(ARGV[3]) then out = out + 1 end
    end
  end
  if out > cap then return 0 end
  i = i + 2 + n
end
local prev = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
if tonumber(ARGV[2]) > prev then redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) end
redis.call('DEL', KEYS[3])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[6], '*', 'op', 'eject', 'target', ARGV[1],
  'until_ms', ARGV[2], 'why', ARGV[4], 'origin', ARGV[5])
return 1
";

/// A shared outlier ejection or recovery, read back from `{name}:health`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthEntry {
    pub target: String,
    /// Unix ms the ejection ends; `None`: recovered.
    pub until_ms: Option<u64>,
    pub why: String,
    pub origin: String,
}

/// A chaos fault as a fleet change carries it: the same expiry on every
/// replica.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaultState {
    pub fault: crate::provider::fault::Fault,
    /// Unix seconds.
    pub until: u64,
}

/// What an ops change does to its target (a gateway target, or an app key
/// for the quarantines).
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    Suspend(crate::health::Suspension),
    Resume,
    Fault(FaultState),
    ClearFault,
    Quarantine(crate::abuse::live::Quarantine),
    Unquarantine,
}

impl Op {
    /// The stream's `op` field.
    fn name(&self) -> &'static str {
        match self {
            Op::Suspend(_) => "suspend",
            Op::Resume => "resume",
            Op::Fault(_) => "fault",
            Op::ClearFault => "clear_fault",
            Op::Quarantine(_) => "quarantine",
            Op::Unquarantine => "unquarantine",
        }
    }

    /// The value the state hash keeps, or `None` when the change removes it.
    fn value(&self) -> Option<String> {
        let json = match self {
            Op::Suspend(s) => serde_json::to_string(s),
            Op::Fault(f) => serde_json::to_string(f),
            Op::Quarantine(q) => serde_json::to_string(q),
            Op::Resume | Op::ClearFault | Op::Unquarantine => return None,
        };
        Some(json.unwrap_or_default())
    }
}

/// A change as written to the stream.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// The target, or the app key of a quarantine.
    pub target: String,
    pub op: Op,
    pub actor: String,
    pub origin: String,
    /// When the operator made it (unix ms): the conflict rule's clock.
    pub time_ms: u64,
}

/// A change read back from the stream.
#[derive(Debug, Clone)]
pub struct Entry {
    pub epoch: u64,
    pub change: Change,
}

/// What a replica publishes about itself.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Replica {
    pub id: String,
    pub data: String,
    pub admin: String,
    pub version: String,
    pub routes_hash: String,
    pub epoch: u64,
    pub heartbeat_ms: u64,
}

/// The state read in one MULTI/EXEC: where the streams end and what is
/// suspended as of `epoch`.
pub struct State {
    pub epoch: u64,
    pub changes_id: String,
    pub acks_id: String,
    pub health_id: String,
    pub suspensions: HashMap<String, String>,
    /// Chaos faults: target → `FaultState` JSON.
    pub faults: HashMap<String, String>,
    /// Abuse quarantines: app key → quarantine JSON.
    pub quarantines: HashMap<String, String>,
    /// Shared ejections: target → unix ms they end.
    pub ejected: HashMap<String, u64>,
}

/// The replies of the state read, in order.
type StateReply = (
    Option<u64>,
    StreamRangeReply,
    StreamRangeReply,
    HashMap<String, String>,
    StreamRangeReply,
    HashMap<String, u64>,
    HashMap<String, String>,
    HashMap<String, String>,
);

/// Key names of one fleet.
pub struct Store {
    epoch: String,
    pub changes: String,
    suspensions: String,
    faults: String,
    quarantines: String,
    changed_at: String,
    pub acks: String,
    replicas: String,
    prefix: String,
    script: redis::Script,
    ejected: String,
    pub health: String,
    name: String,
    eject: redis::Script,
}

impl Store {
    pub fn new(name: &str) -> Store {
        Store {
            epoch: format!("{name}:epoch"),
            changes: format!("{name}:changes"),
            suspensions: format!("{name}:suspensions"),
            faults: format!("{name}:faults"),
            quarantines: format!("{name}:quarantines"),
            changed_at: format!("{name}:changed_at"),
            acks: format!("{name}:acks"),
            replicas: format!("{name}:replicas"),
            prefix: format!("{name}:replica:"),
            script: redis::Script::new(WRITE),
            ejected: format!("{name}:ejected"),
            health: format!("{name}:health"),
            name: name.to_string(),
            eject: redis::Script::new(EJECT),
        }
    }

    fn lease_key(&self, target: &str) -> String {
        format!("{}:probe:{target}", self.name)
    }

    /// Shares an ejection of `target` until `until_ms`; `Ok(false)` when
    /// one of `routes` (cap, targets) would be over its cap.
    #[allow(clippy::too_many_arguments)]
    pub async fn eject(
        &self,
        con: &mut ConnectionManager,
        target: &str,
        until_ms: u64,
        why: &str,
        origin: &str,
        routes: &[(usize, Vec<String>)],
    ) -> redis::RedisResult<bool> {
        let mut call = self.eject.key(&self.ejected);
        call.key(&self.health)
            .key(self.lease_key(target))
            .arg(target)
            .arg(until_ms)
            .arg(super::unix_ms())
            .arg(why)
            .arg(origin)
            .arg(STREAM_LEN);
        for (cap, names) in routes {
            call.arg(*cap).arg(names.len());
            for n in names {
                call.arg(n);
            }
        }
        let shared: i64 = call.invoke_async(con).await?;
        Ok(shared == 1)
    }

    /// Shares a recovery: the ejection and the probe lease end.
    pub async fn recover(
        &self,
        con: &mut ConnectionManager,
        target: &str,
        origin: &str,
    ) -> redis::RedisResult<()> {
        redis::pipe()
            .atomic()
            .cmd("HDEL")
            .arg(&self.ejected)
            .arg(target)
            .ignore()
            .cmd("DEL")
            .arg(self.lease_key(target))
            .ignore()
            .cmd("XADD")
            .arg(&self.health)
            .arg("MAXLEN")
            .arg("~")
            .arg(STREAM_LEN)
            .arg("*")
            .arg("op")
            .arg("recover")
            .arg("target")
            .arg(target)
            .arg("origin")
            .arg(origin)
            .ignore()
            .query_async(con)
            .await
    }

    /// Takes the probe lease of `target` for `ttl`; true when this replica
    /// holds it now.
    pub async fn lease(
        &self,
        con: &mut ConnectionManager,
        target: &str,
        replica: &str,
        ttl: Duration,
    ) -> redis::RedisResult<bool> {
        let set: Option<String> = redis::cmd("SET")
            .arg(self.lease_key(target))
            .arg(replica)
            .arg("NX")
            .arg("PX")
            .arg(ttl.as_millis() as u64)
            .query_async(con)
            .await?;
        if set.is_some() {
            return Ok(true);
        }
        let holder: Option<String> = redis::cmd("GET")
            .arg(self.lease_key(target))
            .query_async(con)
            .await?;
        Ok(holder.as_deref() == Some(replica))
    }

    /// Writes one change; `Ok(None)` when a newer change to the same target
    /// won (only with `only_if_newer`, used for changes made offline).
    pub async fn write(
        &self,
        con: &mut ConnectionManager,
        c: &Change,
        only_if_newer: bool,
    ) -> redis::RedisResult<Option<u64>> {
        let (hash, clock, field) = match &c.op {
            Op::Suspend(_) | Op::Resume => (&self.suspensions, c.target.clone(), "suspension"),
            Op::Fault(_) | Op::ClearFault => (&self.faults, format!("fault:{}", c.target), "value"),
            Op::Quarantine(_) | Op::Unquarantine => (
                &self.quarantines,
                format!("quarantine:{}", c.target),
                "value",
            ),
        };
        let value = c.op.value();
        let epoch: u64 = self
            .script
            .key(&self.epoch)
            .key(&self.changes)
            .key(hash)
            .key(&self.changed_at)
            .arg(&c.target)
            .arg(c.op.name())
            .arg(value.as_deref().unwrap_or(""))
            .arg(&c.actor)
            .arg(&c.origin)
            .arg(c.time_ms)
            .arg(if only_if_newer { "1" } else { "0" })
            .arg(STREAM_LEN)
            .arg(clock)
            .arg(if value.is_some() { "set" } else { "del" })
            .arg(field)
            .invoke_async(con)
            .await?;
        Ok((epoch > 0).then_some(epoch))
    }

    /// Whether the fleet has any history: false on an empty Redis.
    pub async fn has_epoch(&self, con: &mut ConnectionManager) -> redis::RedisResult<bool> {
        redis::cmd("EXISTS").arg(&self.epoch).query_async(con).await
    }

    /// The epoch, the ends of both streams and the suspensions, atomically.
    pub async fn state(&self, con: &mut ConnectionManager) -> redis::RedisResult<State> {
        let (epoch, changes, acks, suspensions, health, ejected, faults, quarantines): StateReply =
            redis::pipe()
                .atomic()
                .cmd("GET")
                .arg(&self.epoch)
                .cmd("XREVRANGE")
                .arg(&self.changes)
                .arg("+")
                .arg("-")
                .arg("COUNT")
                .arg(1)
                .cmd("XREVRANGE")
                .arg(&self.acks)
                .arg("+")
                .arg("-")
                .arg("COUNT")
                .arg(1)
                .cmd("HGETALL")
                .arg(&self.suspensions)
                .cmd("XREVRANGE")
                .arg(&self.health)
                .arg("+")
                .arg("-")
                .arg("COUNT")
                .arg(1)
                .cmd("HGETALL")
                .arg(&self.ejected)
                .cmd("HGETALL")
                .arg(&self.faults)
                .cmd("HGETALL")
                .arg(&self.quarantines)
                .query_async(con)
                .await?;
        let last = |r: StreamRangeReply| r.ids.into_iter().next().map_or("0-0".into(), |i| i.id);
        Ok(State {
            epoch: epoch.unwrap_or(0),
            changes_id: last(changes),
            acks_id: last(acks),
            health_id: last(health),
            suspensions,
            faults,
            quarantines,
            ejected,
        })
    }

    /// Blocks up to `block` for entries after the three cursors.
    pub async fn read(
        &self,
        con: &mut ConnectionManager,
        changes_id: &str,
        acks_id: &str,
        health_id: &str,
        block: Duration,
    ) -> redis::RedisResult<Option<StreamReadReply>> {
        redis::cmd("XREAD")
            .arg("COUNT")
            .arg(512)
            .arg("BLOCK")
            .arg(block.as_millis() as u64)
            .arg("STREAMS")
            .arg(&self.changes)
            .arg(&self.acks)
            .arg(&self.health)
            .arg(changes_id)
            .arg(acks_id)
            .arg(health_id)
            .query_async(con)
            .await
    }

    /// Records `epoch` as applied by `replica`, in its hash and on the ack
    /// stream.
    pub async fn ack(
        &self,
        con: &mut ConnectionManager,
        replica: &str,
        epoch: u64,
    ) -> redis::RedisResult<()> {
        redis::pipe()
            .cmd("HSET")
            .arg(format!("{}{replica}", self.prefix))
            .arg("epoch")
            .arg(epoch)
            .ignore()
            .cmd("XADD")
            .arg(&self.acks)
            .arg("MAXLEN")
            .arg("~")
            .arg(STREAM_LEN)
            .arg("*")
            .arg("replica")
            .arg(replica)
            .arg("epoch")
            .arg(epoch)
            .ignore()
            .query_async(con)
            .await
    }

    /// Publishes `r` with a TTL: the replica leaves the view when it stops.
    pub async fn heartbeat(
        &self,
        con: &mut ConnectionManager,
        r: &Replica,
        ttl: Duration,
    ) -> redis::RedisResult<()> {
        let key = format!("{}{}", self.prefix, r.id);
        redis::pipe()
            .atomic()
            .cmd("HSET")
            .arg(&key)
            .arg("id")
            .arg(&r.id)
            .arg("data")
            .arg(&r.data)
            .arg("admin")
            .arg(&r.admin)
            .arg("version")
            .arg(&r.version)
            .arg("routes_hash")
            .arg(&r.routes_hash)
            .arg("epoch")
            .arg(r.epoch)
            .arg("heartbeat_ms")
            .arg(r.heartbeat_ms)
            .ignore()
            .cmd("PEXPIRE")
            .arg(&key)
            .arg(ttl.as_millis() as u64)
            .ignore()
            .cmd("ZADD")
            .arg(&self.replicas)
            .arg(r.heartbeat_ms)
            .arg(&r.id)
            .ignore()
            .query_async(con)
            .await
    }

    /// The live replicas (heartbeat key not expired), by id; forgets the
    /// ids of dead ones.
    pub async fn replicas(&self, con: &mut ConnectionManager) -> redis::RedisResult<Vec<Replica>> {
        let ids: Vec<String> = redis::cmd("ZRANGE")
            .arg(&self.replicas)
            .arg(0)
            .arg(-1)
            .query_async(con)
            .await?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for id in &ids {
            pipe.cmd("HGETALL").arg(format!("{}{id}", self.prefix));
        }
        let hashes: Vec<HashMap<String, String>> = pipe.query_async(con).await?;
        let mut live = Vec::new();
        let mut dead = Vec::new();
        for (id, h) in ids.into_iter().zip(hashes) {
            if h.is_empty() {
                dead.push(id);
                continue;
            }
            let field = |k: &str| h.get(k).cloned().unwrap_or_default();
            let number = |k: &str| h.get(k).and_then(|v| v.parse().ok()).unwrap_or(0);
            live.push(Replica {
                id,
                data: field("data"),
                admin: field("admin"),
                version: field("version"),
                routes_hash: field("routes_hash"),
                epoch: number("epoch"),
                heartbeat_ms: number("heartbeat_ms"),
            });
        }
        if !dead.is_empty() {
            let _: redis::RedisResult<()> = redis::cmd("ZREM")
                .arg(&self.replicas)
                .arg(dead)
                .query_async(con)
                .await;
        }
        Ok(live)
    }

    /// The current epoch (0 on an empty Redis).
    pub async fn epoch(&self, con: &mut ConnectionManager) -> redis::RedisResult<u64> {
        let e: Option<u64> = redis::cmd("GET").arg(&self.epoch).query_async(con).await?;
        Ok(e.unwrap_or(0))
    }
}

/// Reads one stream entry back into a change; `None` if malformed.
pub fn entry(id: &redis::streams::StreamId) -> Option<Entry> {
    let text = |k: &str| id.get::<String>(k);
    let op = match text("op")?.as_str() {
        "suspend" => Op::Suspend(serde_json::from_str(&text("suspension")?).ok()?),
        "resume" => Op::Resume,
        "fault" => Op::Fault(serde_json::from_str(&text("value")?).ok()?),
        "clear_fault" => Op::ClearFault,
        "quarantine" => Op::Quarantine(serde_json::from_str(&text("value")?).ok()?),
        "unquarantine" => Op::Unquarantine,
        _ => return None,
    };
    Some(Entry {
        epoch: text("epoch")?.parse().ok()?,
        change: Change {
            target: text("target")?,
            op,
            actor: text("actor").unwrap_or_default(),
            origin: text("origin").unwrap_or_default(),
            time_ms: text("time_ms").and_then(|t| t.parse().ok()).unwrap_or(0),
        },
    })
}

/// Reads one shared ejection or recovery; `None` if malformed.
pub fn health_entry(id: &redis::streams::StreamId) -> Option<HealthEntry> {
    let text = |k: &str| id.get::<String>(k);
    let until_ms = match text("op")?.as_str() {
        "eject" => Some(text("until_ms")?.parse().ok()?),
        "recover" => None,
        _ => return None,
    };
    Some(HealthEntry {
        target: text("target")?,
        until_ms,
        why: text("why").unwrap_or_default(),
        origin: text("origin").unwrap_or_default(),
    })
}

/// Reads one ack entry: (replica, epoch).
pub fn ack(id: &redis::streams::StreamId) -> Option<(String, u64)> {
    Some((
        id.get::<String>("replica")?,
        id.get::<String>("epoch")?.parse().ok()?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The stream entry the write script appends for `c` at `epoch`.
    fn written(c: &Change, epoch: u64) -> redis::streams::StreamId {
        let field = match c.op {
            Op::Suspend(_) | Op::Resume => "suspension",
            _ => "value",
        };
        let text = |s: &str| redis::Value::BulkString(s.as_bytes().to_vec());
        let map = [
            ("epoch", epoch.to_string()),
            ("target", c.target.clone()),
            ("op", c.op.name().to_string()),
            (field, c.op.value().unwrap_or_default()),
            ("actor", c.actor.clone()),
            ("origin", c.origin.clone()),
            ("time_ms", c.time_ms.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), text(&v)))
        .collect();
        redis::streams::StreamId {
            id: "1-0".into(),
            map,
            ..Default::default()
        }
    }

    #[test]
    fn every_kind_of_change_reads_back_as_written() {
        let quarantine = crate::abuse::live::Quarantine {
            key: "k1".into(),
            action: crate::abuse::live::Action::Throttle,
            rpm: Some(6),
            since: 1_700_000_000,
            flagged_key: "k0".into(),
            kind: "campaign".into(),
            score: 0.75,
            cluster: Some("c1".into()),
            reasons: vec!["same prompts".into()],
        };
        let ops = [
            Op::Suspend(crate::health::Suspension {
                reason: "r".into(),
                actor: "a".into(),
                since: 1,
                until: Some(2),
            }),
            Op::Resume,
            Op::Fault(FaultState {
                fault: crate::provider::fault::Fault::Status {
                    status: 503,
                    rate: 1.0,
                    retry_after_secs: None,
                },
                until: 1_700_000_060,
            }),
            Op::ClearFault,
            Op::Quarantine(quarantine),
            Op::Unquarantine,
        ];
        for (n, op) in ops.into_iter().enumerate() {
            let c = Change {
                target: "claude".into(),
                op,
                actor: "test".into(),
                origin: "r0".into(),
                time_ms: 42,
            };
            let e = entry(&written(&c, n as u64 + 1)).expect("reads back");
            assert_eq!((e.epoch, e.change), (n as u64 + 1, c));
        }
    }
}
