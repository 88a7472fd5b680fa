//! Per-key and cross-key state, and the decision.
//!
//! A campaign must do certain things to be worth running: ask for the full
//! reasoning trace (that is what a student model learns from), sweep many
//! capability areas with one templated harness, ask for long answers to
//! short prompts, or grade responses against a rubric (reward-model data),
//! and — to stay under per-key limits — spread over many keys that share a
//! client, a network or a template. Genuine traffic shows some of these
//! (a batch job is templated, a chat app is broad, an agent's system prompt
//! says "think step by step"), rarely several at once. So the score adds
//! up evidence from independent signals and a flag needs at least two.
//!
//! Evidence decays per request (a window of about [`WINDOW`] requests), not
//! per second, so a low-and-slow key accumulates it like a fast one. Memory
//! is bounded: at most `max_keys` key states and `max_groups` groups, the
//! least recently seen evicted first (see [`Settings`]).

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use super::record::Record;
use super::text::{self, area_names};

/// Requests over which rates are averaged (decay factor 1 − 1/WINDOW).
pub const WINDOW: f32 = 32.0;
/// Recent requests whose areas and template frames are kept.
const RING: usize = 16;
/// What keys may share, and the share of a group's keys that must look
/// like a campaign before it counts as a cluster: an SDK's user agent is
/// shared by thousands of honest keys, a client *and* a /24 by few.
const GROUP_KINDS: [(&str, f32); 4] = [
    ("user agent", 0.8),
    ("network", 0.2),
    ("prompt frame", 0.2),
    ("user agent and network", 0.2),
];
/// Suspicious keys remembered per group.
const GROUP_SUSPECTS: usize = 128;

/// Detector thresholds and memory bounds.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Key states kept; the least recently seen are evicted beyond this.
    pub max_keys: usize,
    /// Cross-key groups kept (client, network, template frame).
    pub max_groups: usize,
    /// Score at which a key is flagged.
    pub threshold: f32,
    /// Requests a key must have made before it is flagged on its own.
    pub min_requests: u32,
    /// Requests before a key can be flagged as part of a cluster.
    pub cluster_min_requests: u32,
    /// Suspicious sibling keys that make a group a cluster.
    pub min_siblings: usize,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            max_keys: 100_000,
            max_groups: 100_000,
            threshold: 0.7,
            min_requests: 8,
            cluster_min_requests: 3,
            min_siblings: 3,
        }
    }
}

/// One decision: the key, when, why (contract §9).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Flag {
    pub key: String,
    pub flagged_at: f64,
    pub kind: &'static str,
    pub score: f64,
    pub cluster: Option<String>,
    pub reasons: Vec<String>,
}

#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    areas: u32,
    prefix: u32,
    suffix: u32,
    full: u32,
}

/// Decayed per-request sums.
#[derive(Debug, Clone, Copy, Default)]
struct Sums {
    w: f32,
    reasoning: f32,
    rubric: f32,
    terse: f32,
    agentic: f32,
    long_out: f32,
    out_tokens: f32,
    in_tokens: f32,
}

#[derive(Debug)]
struct KeyState {
    id: u32,
    n: u32,
    first_ts: f64,
    last_ts: f64,
    last_tick: u64,
    sums: Sums,
    /// Requests in about the last ten minutes (time-decayed count).
    recent: f32,
    peak_recent: f32,
    ring: [Slot; RING],
    pos: u8,
    len: u8,
    /// Requests per hour of day (UTC), saturating.
    hours: [u16; 24],
    ips: [u32; 4],
    distinct_ips: u16,
    /// Groups this key belongs to, one per [`GROUP_KINDS`] entry.
    groups: [u64; 4],
    suspicious: bool,
}

#[derive(Debug)]
struct Group {
    label: Box<str>,
    min_share: f32,
    members: u32,
    suspects: Vec<u32>,
    first_onset: f64,
    last_onset: f64,
    last_tick: u64,
}

/// The evidence for one key at one moment, each part in 0..=1.
#[derive(Debug, Clone, Copy, Default)]
struct Evidence {
    n: u32,
    reasoning: f32,
    rubric: f32,
    breadth: u32,
    areas: u32,
    template: f32,
    template_share: f32,
    fills: f32,
    single_turn: f32,
    long_out: f32,
    out_ratio: f32,
    terse: f32,
    machine_rate: bool,
    recent: f32,
    flat: bool,
    active_hours: u32,
    span_min: f64,
}

impl Evidence {
    fn breadth_part(&self) -> f32 {
        ((self.breadth as f32 - 2.0) / 5.0).clamp(0.0, 1.0)
    }

    /// The content score: what the key's own traffic says.
    fn score(&self) -> f32 {
        0.45 * self.reasoning + 0.55 * self.rubric + 0.25 * self.breadth_part() - 0.3 * self.terse
            + 0.15 * self.template
            + 0.1 * self.single_turn
            + 0.15 * self.long_out
            + if self.machine_rate { 0.1 } else { 0.0 }
            + if self.flat { 0.1 } else { 0.0 }
    }

    /// Independent signals that are clearly on.
    fn signals(&self) -> u32 {
        u32::from(self.reasoning >= 0.5)
            + u32::from(self.rubric >= 0.5)
            + u32::from(self.breadth_part() >= 0.6)
            + u32::from(self.template >= 0.5)
            + u32::from(self.long_out >= 0.5)
            + u32::from(self.machine_rate)
            + u32::from(self.flat)
    }

    /// Strong enough on its own content to count as a suspect sibling:
    /// one strong content signal, or several weaker ones in single-turn
    /// traffic (paraphrased harnesses hide the template, not the sweep).
    fn suspect(&self, n: u32) -> bool {
        let score = self.score();
        n >= 3
            && score >= 0.5
            && (self.reasoning >= 0.6
                || self.rubric >= 0.6
                || (self.breadth_part() >= 0.6 && self.template >= 0.5)
                || (score >= 0.6 && self.single_turn >= 0.8 && self.signals() >= 2))
    }

    fn kind(&self) -> &'static str {
        if self.rubric >= 0.5 && self.rubric >= self.reasoning {
            "reward_model_grading"
        } else if self.reasoning >= 0.5 && self.template < 0.5 {
            "reasoning_extraction"
        } else {
            "distillation"
        }
    }

    fn reasons(&self, key: &str) -> Vec<String> {
        let mut r = Vec::new();
        if self.reasoning >= 0.3 {
            r.push(format!(
                "{:.0}% of recent requests ask for the full reasoning (step by step, every intermediate step)",
                100.0 * self.reasoning
            ));
        }
        if self.rubric >= 0.3 {
            r.push(format!(
                "{:.0}% of recent requests are rubric grading prompts (score a response against criteria)",
                100.0 * self.rubric
            ));
        }
        if self.breadth >= 4 {
            r.push(format!(
                "{} capability areas in its last {} requests over {:.0} minutes: {}",
                self.breadth,
                self.n.min(RING as u32),
                self.span_min,
                area_names(self.areas).join(", ")
            ));
        }
        if self.template >= 0.3 {
            r.push(format!(
                "one prompt template with slot variation: {:.0}% of recent prompts share a frame, {:.0}% of them distinct",
                100.0 * self.template_share,
                100.0 * self.fills
            ));
        }
        if self.long_out >= 0.3 {
            r.push(format!(
                "long answers to short prompts: output {:.1}x the input on average",
                self.out_ratio
            ));
        }
        if self.single_turn >= 0.8 {
            r.push("single-turn requests without tools or conversation history".to_string());
        }
        if self.machine_rate {
            r.push(format!(
                "sustained machine-paced volume: about {:.0} requests in the last 10 minutes",
                self.recent
            ));
        }
        if self.flat {
            r.push(format!(
                "flat rate around the clock: active in {} of 24 hours",
                self.active_hours
            ));
        }
        if r.is_empty() {
            r.push(format!("key {key}: combined weak signals"));
        }
        r
    }
}

impl KeyState {
    fn new(id: u32, ts: f64) -> KeyState {
        KeyState {
            id,
            n: 0,
            first_ts: ts,
            last_ts: ts,
            last_tick: 0,
            sums: Sums::default(),
            recent: 0.0,
            peak_recent: 0.0,
            ring: [Slot::default(); RING],
            pos: 0,
            len: 0,
            hours: [0; 24],
            ips: [0; 4],
            distinct_ips: 0,
            groups: [0; 4],
            suspicious: false,
        }
    }

    fn update(&mut self, r: &Record) {
        let decay = 1.0 - 1.0 / WINDOW;
        let s = &mut self.sums;
        for v in [
            &mut s.w,
            &mut s.reasoning,
            &mut s.rubric,
            &mut s.terse,
            &mut s.agentic,
            &mut s.long_out,
            &mut s.out_tokens,
            &mut s.in_tokens,
        ] {
            *v *= decay;
        }
        let agentic = r.tools || r.turns > 0;
        let terse = r.user.terse || r.system.terse;
        let mut reasoning = if r.user.reasoning {
            1.0
        } else if r.system.reasoning {
            0.5
        } else {
            0.0
        };
        if r.tools {
            reasoning *= 0.5;
        }
        if terse {
            reasoning = 0.0;
        } else if r.user.choices {
            // A multiple-choice item is how evaluations ask; harnesses that
            // want a trace ask open questions.
            reasoning *= 0.5;
        }
        let in_tokens = (r.in_chars as f32 / 4.0).max(1.0);
        let out = r.output_tokens as f32;
        s.w += 1.0;
        s.reasoning += reasoning;
        s.rubric += f32::from(u8::from(r.user.rubric || r.system.rubric));
        s.terse += f32::from(u8::from(terse));
        s.agentic += f32::from(u8::from(agentic));
        s.long_out += f32::from(u8::from(out >= 250.0 && out >= 2.0 * in_tokens));
        s.out_tokens += out;
        s.in_tokens += in_tokens;

        let dt = (r.ts - self.last_ts).max(0.0);
        self.recent = self.recent * (-(dt / 600.0) as f32).exp() + 1.0;
        self.peak_recent = self.peak_recent.max(self.recent);
        self.last_ts = r.ts;
        self.n = self.n.saturating_add(1);

        self.ring[self.pos as usize] = Slot {
            areas: r.user.areas | r.system.areas,
            prefix: r.user.prefix as u32,
            suffix: r.user.suffix as u32,
            full: r.user.full as u32,
        };
        self.pos = ((self.pos as usize + 1) % RING) as u8;
        self.len = (self.len + 1).min(RING as u8);

        let hour = ((r.ts.max(0.0) / 3600.0) as u64 % 24) as usize;
        self.hours[hour] = self.hours[hour].saturating_add(1);

        let ip = r.ip as u32;
        if !self.ips.contains(&ip) {
            self.ips.rotate_right(1);
            self.ips[0] = ip;
            self.distinct_ips = self.distinct_ips.saturating_add(1);
        }
    }

    /// The most common non-empty template frame in the ring and its share.
    fn frame(&self) -> (u32, f32, f32) {
        let slots = &self.ring[..self.len as usize];
        let mut best = (0u32, 0usize);
        for s in slots {
            for f in [s.prefix, s.suffix] {
                if f == 0 {
                    continue;
                }
                let c = slots
                    .iter()
                    .filter(|o| o.prefix == f || o.suffix == f)
                    .count();
                if c > best.1 {
                    best = (f, c);
                }
            }
        }
        let len = slots.len().max(1) as f32;
        let mut fulls: Vec<u32> = slots.iter().map(|s| s.full).collect();
        fulls.sort_unstable();
        fulls.dedup();
        (best.0, best.1 as f32 / len, fulls.len() as f32 / len)
    }

    fn evidence(&self) -> Evidence {
        let s = &self.sums;
        let rate = |x: f32| x / (s.w + 1.0);
        let areas = self.ring[..self.len as usize]
            .iter()
            .fold(0, |a, s| a | s.areas);
        let (_, share, fills) = self.frame();
        let template = if self.len >= 6 && share >= 0.5 {
            share * fills
        } else {
            0.0
        };
        let span = (self.last_ts - self.first_ts).max(0.0);
        let active_hours = self.hours.iter().filter(|h| **h > 0).count() as u32;
        let total: u32 = self.hours.iter().map(|h| u32::from(*h)).sum();
        let max = self.hours.iter().copied().max().unwrap_or(0);
        let flat = span >= 18.0 * 3600.0
            && active_hours >= 22
            && f64::from(max) <= 2.5 * f64::from(total) / 24.0;
        Evidence {
            n: self.n,
            reasoning: rate(s.reasoning),
            rubric: rate(s.rubric),
            breadth: areas.count_ones(),
            areas,
            template,
            template_share: share,
            fills,
            single_turn: rate(s.w - s.agentic),
            long_out: rate(s.long_out),
            out_ratio: s.out_tokens / s.in_tokens.max(1.0),
            terse: rate(s.terse),
            machine_rate: span >= 600.0 && self.recent >= 20.0,
            recent: self.recent,
            flat,
            active_hours,
            span_min: span / 60.0,
        }
    }
}

/// The detector: feed it records in time order, it returns at most one flag
/// per key, decided only from what it has seen so far.
#[derive(Debug)]
pub struct Detector {
    settings: Settings,
    keys: HashMap<Box<str>, KeyState>,
    groups: HashMap<u64, Group>,
    flagged: HashSet<Box<str>>,
    tick: u64,
    next_id: u32,
}

impl Detector {
    pub fn new(settings: Settings) -> Detector {
        Detector {
            settings,
            keys: HashMap::new(),
            groups: HashMap::new(),
            flagged: HashSet::new(),
            tick: 0,
            next_id: 0,
        }
    }

    /// Key states held now (for tests of the memory bound).
    pub fn tracked_keys(&self) -> usize {
        self.keys.len()
    }

    /// Groups held now.
    pub fn tracked_groups(&self) -> usize {
        self.groups.len()
    }

    /// Bytes of state per key and per group, excluding key names and group
    /// labels, so the memory bound can be stated from the settings.
    pub fn entry_sizes() -> (usize, usize) {
        (
            std::mem::size_of::<KeyState>() + std::mem::size_of::<Box<str>>() + 8,
            std::mem::size_of::<Group>() + 8 + GROUP_SUSPECTS * 4,
        )
    }

    /// Take one request into account; a flag if this request decides it.
    pub fn observe(&mut self, r: &Record) -> Option<Flag> {
        self.tick += 1;
        let tick = self.tick;
        if !self.keys.contains_key(r.key.as_str()) {
            if self.keys.len() >= self.settings.max_keys {
                self.evict_keys();
            }
            let id = self.next_id;
            self.next_id = self.next_id.wrapping_add(1);
            self.keys
                .insert(r.key.clone().into_boxed_str(), KeyState::new(id, r.ts));
        }
        let state = self.keys.get_mut(r.key.as_str())?;
        state.update(r);
        state.last_tick = tick;
        let ev = state.evidence();
        let (frame, share, _) = state.frame();
        let ua = text::word_hash(r.user_agent.as_bytes());
        let net = text::word_hash(r.net.as_bytes());
        let wanted = [
            group_id(1, ua),
            group_id(2, net),
            if share >= 0.5 {
                group_id(3, u64::from(frame))
            } else {
                0
            },
            group_id(4, text::join(ua, net)),
        ];
        let (id, first_ts) = (state.id, state.first_ts);
        let became_suspect = !state.suspicious && ev.suspect(state.n);
        state.suspicious |= became_suspect;
        let suspicious = state.suspicious;
        let mut joined = [0u64; 4];
        for (i, g) in wanted.iter().enumerate() {
            if *g != 0 && state.groups[i] != *g {
                state.groups[i] = *g;
                joined[i] = *g;
            }
        }
        let groups = state.groups;
        for (i, g) in groups.iter().enumerate() {
            if *g == 0 {
                continue;
            }
            let new_member = joined[i] != 0;
            if !self.groups.contains_key(g) && self.groups.len() >= self.settings.max_groups {
                self.evict_groups();
            }
            let label = || match i {
                0 => format!("user agent \"{}\"", truncate(&r.user_agent, 48)),
                1 => format!("network {}", r.net),
                2 => "one prompt frame".to_string(),
                _ => format!(
                    "user agent \"{}\" from network {}",
                    truncate(&r.user_agent, 48),
                    r.net
                ),
            };
            let grp = self.groups.entry(*g).or_insert_with(|| Group {
                label: label().into_boxed_str(),
                min_share: GROUP_KINDS[i].1,
                members: 0,
                suspects: Vec::new(),
                first_onset: first_ts,
                last_onset: first_ts,
                last_tick: tick,
            });
            grp.last_tick = tick;
            if new_member {
                grp.members = grp.members.saturating_add(1);
            }
            if suspicious
                && (became_suspect || new_member)
                && grp.suspects.len() < GROUP_SUSPECTS
                && !grp.suspects.contains(&id)
            {
                grp.suspects.push(id);
                grp.first_onset = grp.first_onset.min(first_ts);
                grp.last_onset = grp.last_onset.max(first_ts);
            }
        }
        if self.flagged.contains(r.key.as_str()) {
            return None;
        }
        self.decide(r, &ev, id, &groups)
    }

    fn decide(&mut self, r: &Record, ev: &Evidence, id: u32, groups: &[u64; 4]) -> Option<Flag> {
        let st = &self.settings;
        let own = ev.score();
        let cluster = groups
            .iter()
            .filter_map(|g| self.groups.get(g).map(|grp| (*g, grp)))
            .map(|(g, grp)| {
                let siblings = grp.suspects.iter().filter(|s| **s != id).count();
                (g, grp, siblings)
            })
            .filter(|(_, grp, s)| {
                *s >= st.min_siblings
                    && grp.suspects.len() as f32 >= grp.min_share * grp.members as f32
            })
            .max_by_key(|(_, _, s)| *s);
        let suspect = ev.suspect(ev.n);
        let solo = ev.n >= st.min_requests && own >= st.threshold && ev.signals() >= 2;
        let bonus = match &cluster {
            Some((_, _, s)) if suspect => 0.3 * (*s as f32 / 8.0).min(1.0),
            _ => 0.0,
        };
        let farm = cluster.is_some()
            && suspect
            && ev.n >= st.cluster_min_requests
            && own + bonus >= st.threshold;
        if !solo && !farm {
            return None;
        }
        let mut reasons = Vec::new();
        let (kind, cluster_id) = match cluster.filter(|_| suspect) {
            Some((g, grp, siblings)) => {
                let spread = (grp.last_onset - grp.first_onset) / 60.0;
                let st = self.keys.get(r.key.as_str());
                let ips = st.map_or(0, |s| s.distinct_ips);
                reasons.push(format!(
                    "key {} and {} sibling keys sharing {}: {} of its {} keys look like the same campaign, first seen within {:.0} minutes of each other",
                    r.key,
                    siblings,
                    grp.label,
                    grp.suspects.len(),
                    grp.members,
                    spread
                ));
                if ips >= 3 {
                    reasons.push(format!("{ips} different client addresses for this key"));
                }
                ("key_farm", Some(cluster_id(g)))
            }
            None => (ev.kind(), None),
        };
        reasons.extend(ev.reasons(&r.key));
        self.flagged.insert(r.key.clone().into_boxed_str());
        Some(Flag {
            key: r.key.clone(),
            flagged_at: r.ts,
            kind,
            score: f64::from((own + bonus).clamp(0.0, 1.0)),
            cluster: cluster_id,
            reasons,
        })
    }

    /// The keys counted as the same campaign in `cluster` (a flag's
    /// `cluster` id): the group's suspects still tracked, by name.
    pub fn cluster_keys(&self, cluster: &str) -> Vec<String> {
        let Some(grp) = self
            .groups
            .iter()
            .find(|(g, _)| cluster_id(**g) == cluster)
            .map(|(_, grp)| grp)
        else {
            return Vec::new();
        };
        self.keys
            .iter()
            .filter(|(_, k)| grp.suspects.contains(&k.id))
            .map(|(name, _)| name.to_string())
            .collect()
    }

    /// Drop the least recently seen eighth of the keys.
    fn evict_keys(&mut self) {
        let cut = cutoff(self.keys.values().map(|k| k.last_tick));
        self.keys.retain(|_, k| k.last_tick > cut);
    }

    fn evict_groups(&mut self) {
        let cut = cutoff(self.groups.values().map(|g| g.last_tick));
        self.groups.retain(|_, g| g.last_tick > cut);
    }
}

fn cluster_id(group: u64) -> String {
    format!("c-{:012x}", group & 0xffff_ffff_ffff)
}

fn group_id(kind: u64, h: u64) -> u64 {
    text::join(kind, h) | 1
}

/// The tick below which the oldest eighth of entries lie.
fn cutoff(ticks: impl Iterator<Item = u64>) -> u64 {
    let mut t: Vec<u64> = ticks.collect();
    if t.is_empty() {
        return 0;
    }
    let i = t.len() / 8;
    *t.select_nth_unstable(i).1
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}
