//! A labelled synthetic traffic log (contract §9 format): genuine families
//! that look suspicious in one way each (launch spikes, templated batch
//! jobs, an evaluation sweep, agents told to think step by step, keys
//! behind one NAT address) and campaign families (heavy distillation keys,
//! hydra farms, reward-model grading, reasoning-trace extraction, a
//! low-and-slow key). Deterministic per seed, so tests can hold seeds out.

mod grammar;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use serde_json::{json, Value};

use grammar::{area_question, chat_message, follow_up, pick, prose, reasoning_demand};

/// One logged request, serialised as a §9 log line.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    pub ts: f64,
    pub key: String,
    pub ip: String,
    pub user_agent: String,
    pub dialect: &'static str,
    pub route: String,
    pub body: Value,
    pub output_tokens: u64,
}

/// The truth about one key.
#[derive(Debug, Clone, Serialize)]
pub struct Label {
    pub key: String,
    pub family: &'static str,
    pub campaign: bool,
}

/// A generated log and its labels.
#[derive(Debug, Default)]
pub struct Traffic {
    /// Sorted by `ts`.
    pub events: Vec<Event>,
    pub labels: Vec<Label>,
}

impl Traffic {
    /// The log as JSON lines.
    pub fn log_jsonl(&self) -> String {
        lines(&self.events)
    }

    /// The labels as JSON lines.
    pub fn labels_jsonl(&self) -> String {
        lines(&self.labels)
    }
}

fn lines<T: Serialize>(xs: &[T]) -> String {
    let mut out = String::new();
    for x in xs {
        if let Ok(s) = serde_json::to_string(x) {
            out.push_str(&s);
            out.push('\n');
        }
    }
    out
}

/// Generate `hours` of traffic from `seed`.
pub fn generate(seed: u64, hours: f64) -> Traffic {
    let mut g = Gen {
        rng: StdRng::seed_from_u64(seed),
        // 2025-12-01 00:00 UTC, shifted by the seed so the daily rhythm
        // starts at a different hour each time.
        t0: 1_764_547_200.0 + (seed % 24) as f64 * 3600.0,
        span: hours * 3600.0,
        traffic: Traffic::default(),
        serial: 0,
    };
    g.genuine();
    g.campaigns();
    g.traffic
        .events
        .sort_by(|a, b| a.ts.total_cmp(&b.ts).then_with(|| a.key.cmp(&b.key)));
    g.traffic
}

#[derive(Clone, Copy, PartialEq)]
enum Wire {
    Chat,
    Responses,
    Anthropic,
    Gemini,
}

const SDK_UAS: &[&str] = &[
    "OpenAI/Python 1.99.1",
    "OpenAI/Python 2.3.0",
    "OpenAI/JS 5.20.0",
    "Anthropic/Python 0.69.0",
    "Anthropic/JS 0.65.0",
    "google-genai-sdk/1.38.0 gl-python/3.12.3",
    "python-httpx/0.28.1",
];

/// A conversation turn.
enum Turn {
    User(String),
    Assistant(String),
    ToolCall(String),
    ToolResult(String),
}

struct Who {
    key: String,
    ua: String,
    ip: String,
    wire: Wire,
    route: String,
}

struct Gen {
    rng: StdRng,
    t0: f64,
    span: f64,
    traffic: Traffic,
    serial: u32,
}

impl Gen {
    fn key(&mut self, family: &'static str, campaign: bool) -> String {
        self.serial += 1;
        let key = format!(
            "k-{:04}",
            self.serial * 7 % 10_000 + self.rng.random_range(0..7)
        );
        let key = format!("{key}-{}", self.serial);
        self.traffic.labels.push(Label {
            key: key.clone(),
            family,
            campaign,
        });
        key
    }

    fn ip(&mut self) -> String {
        format!(
            "{}.{}.{}.{}",
            self.rng.random_range(11..223),
            self.rng.random_range(0..255),
            self.rng.random_range(0..255),
            self.rng.random_range(1..255)
        )
    }

    fn wire(&mut self) -> Wire {
        match self.rng.random_range(0..10) {
            0..=3 => Wire::Chat,
            4 => Wire::Responses,
            5..=7 => Wire::Anthropic,
            _ => Wire::Gemini,
        }
    }

    fn who(&mut self, family: &'static str, campaign: bool) -> Who {
        let key = self.key(family, campaign);
        let ua = pick(&mut self.rng, SDK_UAS).to_string();
        let ip = self.ip();
        let wire = self.wire();
        let route = pick(&mut self.rng, &["chat", "smart", "fast", "default"]).to_string();
        Who {
            key,
            ua,
            ip,
            wire,
            route,
        }
    }

    /// Fraction of peak activity at `t`: people sleep, machines do not.
    fn diurnal(&self, t: f64) -> f64 {
        let hour = (t / 3600.0) % 24.0;
        let day = ((hour - 7.0) / 15.0 * std::f64::consts::PI).sin().max(0.0);
        0.15 + 0.85 * day
    }

    /// Arrival times of a Poisson process with rate `rate(t)` per hour,
    /// bounded by `peak`, between `from` and `to` (offsets into the span).
    fn arrivals(&mut self, from: f64, to: f64, peak: f64, rate: impl Fn(f64) -> f64) -> Vec<f64> {
        let mut out = Vec::new();
        if peak <= 0.0 {
            return out;
        }
        let mut t = from;
        loop {
            let u: f64 = self.rng.random_range(1e-9..1.0);
            t += -u.ln() * 3600.0 / peak;
            if t >= to.min(self.span) {
                return out;
            }
            if self
                .rng
                .random_bool((rate(self.t0 + t) / peak).clamp(0.0, 1.0))
            {
                out.push(self.t0 + t);
            }
        }
    }

    fn emit(
        &mut self,
        who: &Who,
        ts: f64,
        system: Option<&str>,
        turns: &[Turn],
        tools: bool,
        out: u64,
    ) {
        let body = body(who.wire, &who.route, system, turns, tools);
        self.traffic.events.push(Event {
            ts: (ts * 1000.0).round() / 1000.0,
            key: who.key.clone(),
            ip: who.ip.clone(),
            user_agent: who.ua.clone(),
            dialect: match who.wire {
                Wire::Chat | Wire::Responses => "openai",
                Wire::Anthropic => "anthropic",
                Wire::Gemini => "gemini",
            },
            route: who.route.clone(),
            body,
            output_tokens: out,
        });
    }

    fn genuine(&mut self) {
        for _ in 0..6 {
            let who = self.who("chat_assistant", false);
            let peak = self.rng.random_range(25.0..70.0);
            self.chat(&who, peak, None);
        }
        for _ in 0..2 {
            let who = self.who("launch_spike", false);
            let base = self.rng.random_range(10.0..20.0);
            let mult = self.rng.random_range(5.0..15.0);
            let at = self.t0 + self.span * self.rng.random_range(0.3..0.6);
            self.chat(&who, base * mult, Some((base, mult, at)));
        }
        for _ in 0..4 {
            self.rag();
        }
        for _ in 0..4 {
            let who = self.who("coding_agent", false);
            {
                let n = self.rng.random_range(4.0..10.0);
                self.coding_agent(&who, n)
            };
        }
        self.batch("batch_summarise");
        self.batch("batch_classify");
        for _ in 0..2 {
            self.translation();
        }
        self.eval_sweep();
        for _ in 0..220 {
            self.long_tail();
        }
        self.nat();
    }

    fn chat(&mut self, who: &Who, peak: f64, spike: Option<(f64, f64, f64)>) {
        let day = |g: &Gen, t: f64| g.diurnal(t);
        let shape: Vec<f64> = (0..24 * 60)
            .map(|m| day(self, self.t0 + m as f64 * 60.0))
            .collect();
        let t0 = self.t0;
        let rate = move |t: f64| {
            let d = shape[(((t - t0) / 60.0) as usize).min(shape.len() - 1)];
            match spike {
                Some((base, mult, at)) if t >= at => {
                    let ramp = ((t - at) / 900.0).min(1.0);
                    base * d.max(0.5) * (1.0 + (mult - 1.0) * ramp)
                }
                Some((base, _, _)) => base * d,
                None => peak * d,
            }
        };
        let system = pick(
            &mut self.rng,
            &[
                "You are a helpful assistant.",
                "You are Nova, a friendly assistant for our mobile app. Keep answers concise.",
                "You are a helpful, harmless and honest assistant.",
            ],
        )
        .to_string();
        for start in self.arrivals(0.0, self.span, peak, rate) {
            self.conversation(who, start, &system);
        }
    }

    fn conversation(&mut self, who: &Who, start: f64, system: &str) {
        let mut turns = vec![Turn::User(chat_message(&mut self.rng))];
        let n = self.rng.random_range(1..=4);
        let mut t = start;
        for i in 0..n {
            let out = self.rng.random_range(60..700);
            self.emit(who, t, Some(system), &turns, false, out);
            turns.push(Turn::Assistant(prose(&mut self.rng, 2)));
            turns.push(Turn::User(follow_up(&mut self.rng)));
            t += self.rng.random_range(20.0..180.0);
            if i + 1 < n && t - self.t0 >= self.span {
                break;
            }
        }
    }

    fn rag(&mut self) {
        let who = self.who("rag_support_bot", false);
        let product = pick(
            &mut self.rng,
            &["Acme Router X2", "PayFlow", "Helio CRM", "TaskNest"],
        );
        let system = format!(
            "You are the support assistant for {product}. Answer only from the provided context. If the context does not contain the answer, say you don't know and offer to open a ticket."
        );
        let peak = self.rng.random_range(30.0..90.0);
        let t0 = self.t0;
        let shape = self.diurnal_table();
        for t in self.arrivals(0.0, self.span, peak, move |t| peak * lookup(&shape, t0, t)) {
            let q = format!(
                "{} {} {}",
                pick(
                    &mut self.rng,
                    &[
                        "How do I",
                        "Why can't I",
                        "Is it possible to",
                        "What happens if I",
                        "Where can I"
                    ]
                ),
                pick(
                    &mut self.rng,
                    &[
                        "reset my password",
                        "export my invoices",
                        "change the billing address",
                        "connect a second device",
                        "cancel my subscription",
                        "enable two-factor login",
                        "update the firmware",
                        "add a team member"
                    ]
                ),
                pick(
                    &mut self.rng,
                    &[
                        "?",
                        "on the free plan?",
                        "from the mobile app?",
                        "without losing data?",
                        "after the last update?"
                    ]
                )
            );
            let doc = prose(&mut self.rng, 3);
            let doc2 = prose(&mut self.rng, 2);
            let user = format!("Context:\n[1] {doc}\n[2] {doc2}\n\nQuestion: {q}");
            let out = self.rng.random_range(60..350);
            self.emit(&who, t, Some(&system), &[Turn::User(user)], false, out);
        }
    }

    fn diurnal_table(&self) -> Vec<f64> {
        (0..24 * 60)
            .map(|m| self.diurnal(self.t0 + m as f64 * 60.0))
            .collect()
    }

    fn coding_agent(&mut self, who: &Who, sessions_per_hour: f64) {
        let system = "You are a coding agent working in a git repository. Think step by step before each tool call. Use read_file, edit_file and run_tests; keep changes minimal.";
        let t0 = self.t0;
        let shape = self.diurnal_table();
        let peak = sessions_per_hour;
        for start in self.arrivals(0.0, self.span, peak, move |t| peak * lookup(&shape, t0, t)) {
            let task = format!(
                "Fix the failing test in {} : {}",
                pick(
                    &mut self.rng,
                    &[
                        "src/parser.rs",
                        "app/models/user.py",
                        "lib/cache.ts",
                        "pkg/server/handler.go"
                    ]
                ),
                pick(
                    &mut self.rng,
                    &[
                        "it panics on empty input",
                        "the timeout is never applied",
                        "unicode names are truncated",
                        "the retry loop never ends"
                    ]
                )
            );
            let mut turns = vec![Turn::User(task)];
            let mut t = start;
            for _ in 0..self.rng.random_range(3..12) {
                let out = self.rng.random_range(40..900);
                self.emit(who, t, Some(system), &turns, true, out);
                turns.push(Turn::ToolCall(
                    pick(&mut self.rng, &["read_file", "edit_file", "run_tests"]).to_string(),
                ));
                turns.push(Turn::ToolResult(prose(&mut self.rng, 1)));
                t += self.rng.random_range(2.0..15.0);
            }
        }
    }

    fn batch(&mut self, family: &'static str) {
        let who = self.who(family, false);
        let start = self.rng.random_range(0.0..self.span * 0.6);
        let len = self.rng.random_range(900.0..1800.0);
        let rate = self.rng.random_range(3600.0..6000.0);
        let classify = family == "batch_classify";
        for t in self.arrivals(start, start + len, rate, move |_| rate) {
            let id = self.rng.random_range(10_000..99_999);
            let (user, out) = if classify {
                (
                    format!(
                        "Classify the support ticket below into exactly one of: billing, technical, account, shipping, other. Reply with only the label.\n\nTicket #{id}: {}",
                        prose(&mut self.rng, 2)
                    ),
                    self.rng.random_range(1..4),
                )
            } else {
                (
                    format!(
                        "Summarize the following article in two sentences for the nightly digest.\n\nArticle {id}:\n{}",
                        { let n = self.rng.random_range(4..9); prose(&mut self.rng, n) }
                    ),
                    self.rng.random_range(30..90),
                )
            };
            self.emit(&who, t, None, &[Turn::User(user)], false, out);
        }
    }

    fn translation(&mut self) {
        let who = self.who("translation_pipeline", false);
        let rate = self.rng.random_range(40.0..100.0);
        let lang = pick(
            &mut self.rng,
            &["French", "German", "Japanese", "Portuguese", "Spanish"],
        );
        for t in self.arrivals(0.0, self.span, rate, move |_| rate) {
            let text = {
                let n = self.rng.random_range(1..5);
                prose(&mut self.rng, n)
            };
            let out = (text.len() as u64 / 4) * 11 / 10;
            let user = format!(
                "Translate the following text from English into {lang}. Keep the formatting and do not add anything.\n\n{text}"
            );
            self.emit(&who, t, None, &[Turn::User(user)], false, out);
        }
    }

    fn eval_sweep(&mut self) {
        let who = self.who("eval_sweep", false);
        let start = self.rng.random_range(0.0..self.span * 0.5);
        let rate = self.rng.random_range(2000.0..4000.0);
        let n = self.rng.random_range(300..600);
        let times: Vec<f64> = self
            .arrivals(start, self.span, rate, move |_| rate)
            .into_iter()
            .take(n)
            .collect();
        for t in times {
            let area = self.rng.random_range(0..16);
            let q = area_question(&mut self.rng, area);
            let user = format!(
                "Question: {q}\nA) {}\nB) {}\nC) {}\nD) {}\nAnswer with only the letter of the correct option.",
                self.rng.random_range(1..100),
                self.rng.random_range(1..100),
                self.rng.random_range(1..100),
                self.rng.random_range(1..100)
            );
            let out = self.rng.random_range(1..3);
            self.emit(&who, t, None, &[Turn::User(user)], false, out);
        }
    }

    fn long_tail(&mut self) {
        let who = self.who("long_tail", false);
        let n = self.rng.random_range(1..15);
        let shape = self.diurnal_table();
        for _ in 0..n {
            let t = self.t0 + self.rng.random_range(0.0..self.span);
            if self.rng.random_bool(lookup(&shape, self.t0, t)) {
                let user = chat_message(&mut self.rng);
                let out = self.rng.random_range(50..600);
                self.emit(&who, t, None, &[Turn::User(user)], false, out);
            }
        }
    }

    fn nat(&mut self) {
        let ip = self.ip();
        for i in 0..8 {
            let mut who = self.who("corporate_nat", false);
            who.ip = ip.clone();
            if i % 3 == 0 {
                {
                    let n = self.rng.random_range(1.0..4.0);
                    self.coding_agent(&who, n)
                };
            } else {
                let peak = self.rng.random_range(5.0..25.0);
                self.chat(&who, peak, None);
            }
        }
    }

    fn campaigns(&mut self) {
        for _ in 0..2 {
            let who = self.who("distillation_heavy", true);
            let rate = self.rng.random_range(150.0..300.0);
            let demand = self.rng.random_range(0.3..0.95);
            self.distill(&who, 0.0, self.span, rate, demand, None);
        }
        for _ in 0..2 {
            self.hydra();
        }
        for _ in 0..2 {
            self.grading();
        }
        for _ in 0..2 {
            self.reasoning_extraction();
        }
        for _ in 0..2 {
            let who = self.who("low_and_slow", true);
            let rate = self.rng.random_range(5.0..10.0);
            let demand = self.rng.random_range(0.5..0.9);
            self.distill(&who, 0.0, self.span, rate, demand, None);
        }
    }

    /// A distillation harness: a few templates, a capability sweep in the
    /// slot, a reasoning demand most of the time, long answers.
    fn distill(
        &mut self,
        who: &Who,
        from: f64,
        to: f64,
        rate: f64,
        demand: f64,
        pool: Option<&[String]>,
    ) {
        let intros: Vec<String> = (0..self.rng.random_range(2..5))
            .map(|_| {
                format!(
                    "{} {}",
                    pick(
                        &mut self.rng,
                        &[
                            "You are a world-class expert.",
                            "Act as a senior specialist.",
                            "You are an expert tutor.",
                            "As a domain expert,"
                        ]
                    ),
                    pick(
                        &mut self.rng,
                        &[
                            "Answer the following problem completely.",
                            "Solve the task below with full rigour.",
                            "Provide a comprehensive, correct solution to this problem.",
                            "Respond to the question below as thoroughly as possible."
                        ]
                    )
                )
            })
            .collect();
        let areas: Vec<usize> = (0..16).collect();
        let mut i = self.rng.random_range(0..16);
        for t in self.arrivals(from, to, rate, move |_| rate) {
            let mut w = Who {
                key: who.key.clone(),
                ua: who.ua.clone(),
                ip: who.ip.clone(),
                wire: who.wire,
                route: who.route.clone(),
            };
            if let Some(pool) = pool {
                w.ip = pool[self.rng.random_range(0..pool.len())].clone();
            }
            i = (i + self.rng.random_range(1..4)) % areas.len();
            let intro = intros[self.rng.random_range(0..intros.len())].clone();
            let q = area_question(&mut self.rng, areas[i]);
            let user = if self.rng.random_bool(demand) {
                format!(
                    "{intro}\n\nProblem: {q}\n\n{}",
                    reasoning_demand(&mut self.rng)
                )
            } else {
                format!("{intro}\n\nProblem: {q}")
            };
            let out = self.rng.random_range(500..2000);
            self.emit(&w, t, None, &[Turn::User(user)], false, out);
        }
    }

    fn hydra(&mut self) {
        let keys = self.rng.random_range(20..60);
        let ua = if self.rng.random_bool(0.5) {
            pick(&mut self.rng, SDK_UAS).to_string()
        } else {
            format!(
                "datagen-client/{}.{}",
                self.rng.random_range(0..4),
                self.rng.random_range(0..20)
            )
        };
        let pool: Vec<String> = (0..self.rng.random_range(2..5))
            .flat_map(|_| {
                let net = format!(
                    "{}.{}.{}",
                    self.rng.random_range(30..200),
                    self.rng.random_range(0..255),
                    self.rng.random_range(0..255)
                );
                (0..6)
                    .map(|_| format!("{net}.{}", self.rng.random_range(2..250)))
                    .collect::<Vec<_>>()
            })
            .collect();
        let wire = self.wire();
        let start = self.rng.random_range(0.0..self.span * 0.4);
        let demand = self.rng.random_range(0.4..0.9);
        let (slow, fast) = if self.rng.random_bool(0.5) {
            (5.0, 15.0)
        } else {
            (15.0, 40.0)
        };
        for _ in 0..keys {
            let mut who = self.who("hydra_farm", true);
            who.ua.clone_from(&ua);
            who.wire = wire;
            who.ip = pool[0].clone();
            let onset = start + self.rng.random_range(0.0..2700.0);
            let life = self.rng.random_range(5400.0..14400.0);
            let rate = self.rng.random_range(slow..fast);
            self.distill(&who, onset, onset + life, rate, demand, Some(&pool));
        }
    }

    fn grading(&mut self) {
        let who = self.who("reward_model_grading", true);
        let rate = self.rng.random_range(100.0..250.0);
        let criteria = [
            "helpfulness",
            "harmlessness",
            "honesty",
            "factual accuracy",
            "instruction following",
            "conciseness",
            "reasoning quality",
        ];
        for t in self.arrivals(0.0, self.span, rate, move |_| rate) {
            let q = if self.rng.random_bool(0.5) {
                {
                    let n = self.rng.random_range(0..16);
                    area_question(&mut self.rng, n)
                }
            } else {
                chat_message(&mut self.rng)
            };
            let a = pick(&mut self.rng, &criteria);
            let b = pick(&mut self.rng, &criteria);
            let user = if self.rng.random_bool(0.5) {
                format!(
                    "You are an impartial judge. Using the rubric below, rate the assistant's response on a scale of 1 to 10.\nRubric: {a}; {b}; overall quality.\n\n[Question]\n{q}\n\n[Assistant response]\n{}\n\nGive a brief justification, then output 'Score: N'.",
                    { let n = self.rng.random_range(2..6); prose(&mut self.rng, n) }
                )
            } else {
                format!(
                    "Compare the two responses to the prompt and decide which response is better according to {a} and {b}.\n\nPrompt: {q}\n\nResponse A: {}\n\nResponse B: {}\n\nAnswer 'A' or 'B' with a one-paragraph rationale and a preference strength from 1 to 5.",
                    prose(&mut self.rng, 2),
                    prose(&mut self.rng, 3)
                )
            };
            let out = self.rng.random_range(40..260);
            self.emit(&who, t, None, &[Turn::User(user)], false, out);
        }
    }

    fn reasoning_extraction(&mut self) {
        let who = self.who("reasoning_extraction", true);
        let rate = self.rng.random_range(40.0..120.0);
        let suffix = reasoning_demand(&mut self.rng);
        for t in self.arrivals(0.0, self.span, rate, move |_| rate) {
            let q = if self.rng.random_bool(0.6) {
                {
                    let n = self.rng.random_range(0..16);
                    area_question(&mut self.rng, n)
                }
            } else {
                chat_message(&mut self.rng)
            };
            let user = format!("{q}\n\n{suffix}");
            let out = self.rng.random_range(400..1600);
            self.emit(&who, t, None, &[Turn::User(user)], false, out);
        }
    }
}

fn lookup(shape: &[f64], t0: f64, t: f64) -> f64 {
    shape[(((t - t0) / 60.0).max(0.0) as usize).min(shape.len() - 1)]
}

/// A request body in one wire format.
fn body(wire: Wire, model: &str, system: Option<&str>, turns: &[Turn], tools: bool) -> Value {
    let tool_defs = json!([{"name": "read_file", "description": "Read a file", "input_schema": {"type": "object", "properties": {"path": {"type": "string"}}}}]);
    match wire {
        Wire::Chat | Wire::Responses => {
            let mut msgs = Vec::new();
            if let (Some(s), Wire::Chat) = (system, wire) {
                msgs.push(json!({"role": "system", "content": s}));
            }
            for (i, t) in turns.iter().enumerate() {
                msgs.push(match t {
                    Turn::User(s) => json!({"role": "user", "content": s}),
                    Turn::Assistant(s) => json!({"role": "assistant", "content": s}),
                    Turn::ToolCall(name) => json!({"role": "assistant", "content": null, "tool_calls": [{"id": format!("call_{i}"), "type": "function", "function": {"name": name, "arguments": "{}"}}]}),
                    Turn::ToolResult(s) => json!({"role": "tool", "tool_call_id": format!("call_{}", i.saturating_sub(1)), "content": s}),
                });
            }
            if wire == Wire::Responses {
                let mut b = json!({"model": model, "input": msgs});
                if let Some(s) = system {
                    b["instructions"] = json!(s);
                }
                if tools {
                    b["tools"] = json!([{"type": "function", "name": "read_file", "parameters": {"type": "object"}}]);
                }
                return b;
            }
            let mut b = json!({"model": model, "messages": msgs});
            if tools {
                b["tools"] = json!([{"type": "function", "function": {"name": "read_file", "parameters": {"type": "object"}}}]);
            }
            b
        }
        Wire::Anthropic => {
            let msgs: Vec<Value> = turns
                .iter()
                .enumerate()
                .map(|(i, t)| match t {
                    Turn::User(s) => json!({"role": "user", "content": s}),
                    Turn::Assistant(s) => json!({"role": "assistant", "content": [{"type": "text", "text": s}]}),
                    Turn::ToolCall(name) => json!({"role": "assistant", "content": [{"type": "tool_use", "id": format!("toolu_{i}"), "name": name, "input": {}}]}),
                    Turn::ToolResult(s) => json!({"role": "user", "content": [{"type": "tool_result", "tool_use_id": format!("toolu_{}", i.saturating_sub(1)), "content": s}]}),
                })
                .collect();
            let mut b = json!({"model": model, "max_tokens": 2048, "messages": msgs});
            if let Some(s) = system {
                b["system"] = json!(s);
            }
            if tools {
                b["tools"] = tool_defs;
            }
            b
        }
        Wire::Gemini => {
            let contents: Vec<Value> = turns
                .iter()
                .map(|t| match t {
                    Turn::User(s) => json!({"role": "user", "parts": [{"text": s}]}),
                    Turn::Assistant(s) => json!({"role": "model", "parts": [{"text": s}]}),
                    Turn::ToolCall(name) => json!({"role": "model", "parts": [{"functionCall": {"name": name, "args": {}}}]}),
                    Turn::ToolResult(s) => json!({"role": "user", "parts": [{"functionResponse": {"name": "read_file", "response": {"content": s}}}]}),
                })
                .collect();
            let mut b = json!({"contents": contents});
            if let Some(s) = system {
                b["systemInstruction"] = json!({"parts": [{"text": s}]});
            }
            if tools {
                b["tools"] = json!([{"functionDeclarations": [{"name": "read_file"}]}]);
            }
            b
        }
    }
}
