//! `routes.toml`: the serde mirror of the file, its validation, and loading.
//!
//! Loading is compiled like a program: parse (every syntax error), type-check
//! (unknown keys, wrong types), layer `SWITCHYARD_*` env overrides with the
//! `config` crate, then validate references and values, collecting every
//! error with its `file:line:col` and key path. Only a file with no error
//! becomes a [`Config`]; the caller swaps it in or keeps the old one.

mod abuse;
mod locate;
mod validate;

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use abuse::{
    AbuseConfig, Action as AbuseAction, Mode as AbuseMode, Scope as AbuseScope,
    RELOADABLE_ABUSE_KEYS,
};
pub use validate::{validate, warnings};

/// The whole file. Tables keyed by name (not arrays) so that env overrides
/// such as `SWITCHYARD_ROUTES__FRONTIER__MAX_ATTEMPTS=2` can reach them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub gateway: GatewayConfig,
    pub auth: AuthConfig,
    pub health: HealthConfig,
    pub chaos: ChaosConfig,
    pub telemetry: TelemetryConfig,
    pub responses: ResponsesConfig,
    pub fleet: FleetConfig,
    pub abuse: AbuseConfig,
    pub providers: BTreeMap<String, ProviderConfig>,
    pub targets: BTreeMap<String, TargetConfig>,
    pub routes: BTreeMap<String, RouteConfig>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatewayConfig {
    /// Data-plane listen address.
    pub listen: SocketAddr,
    /// Admin-plane listen address; loopback by default.
    pub admin_listen: SocketAddr,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Where suspensions are kept across restarts; none: in memory only.
    pub state_file: Option<PathBuf>,
    /// Where the audit trail is appended as JSONL; none: in memory only.
    pub events_file: Option<PathBuf>,
    /// Requests served at once; beyond it, 503 with `Retry-After` at once
    /// instead of an unbounded queue.
    pub max_concurrent_requests: usize,
    /// A client must send its request headers within this time.
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// Most request headers accepted.
    pub max_headers: usize,
    /// Largest request head (line + headers), in bytes.
    pub max_header_bytes: usize,
    /// A client must send its whole request body within this time after
    /// its headers; else 408 and the connection is closed, so a slow body
    /// cannot hold a concurrency slot.
    #[serde(with = "humantime_serde")]
    pub body_read_timeout: Duration,
    /// Requests one app key may have in flight at once; none: a quarter of
    /// `max_concurrent_requests`, so one tenant cannot take every slot.
    pub max_concurrent_per_key: Option<usize>,
    /// Connections one client address may hold open at once; more are
    /// closed at accept. 0: no cap.
    pub max_connections_per_ip: usize,
    /// `Host` names the admin listener answers to, besides loopback names
    /// (`localhost`, `127.0.0.1`, `[::1]`, any port), so a DNS-rebinding
    /// page cannot read it. Add the names you reach it by from outside.
    pub admin_allowed_hosts: Vec<String>,
}

impl GatewayConfig {
    /// Requests one app key may have in flight: the configured cap, or a
    /// quarter of the gateway's, at least 1.
    pub fn per_key_concurrency(&self) -> usize {
        self.max_concurrent_per_key
            .unwrap_or(self.max_concurrent_requests / 4)
            .max(1)
    }
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            listen: ([0, 0, 0, 0], 8080).into(),
            admin_listen: ([127, 0, 0, 1], 9901).into(),
            max_body_bytes: 10 * 1024 * 1024,
            state_file: None,
            events_file: None,
            max_concurrent_requests: 1024,
            header_read_timeout: Duration::from_secs(10),
            max_headers: 100,
            max_header_bytes: 64 * 1024,
            body_read_timeout: Duration::from_secs(15),
            max_concurrent_per_key: None,
            max_connections_per_ip: 256,
            admin_allowed_hosts: Vec::new(),
        }
    }
}

/// Passive outlier detection: when a target is ejected and how it returns.
/// No health check ever sends a request of its own: the probe is one live
/// request let through when the back-off ends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthConfig {
    /// Eject after this many failures in a row.
    pub consecutive_failures: u32,
    /// ...or when at least this share of attempts failed in the window...
    pub error_rate: f64,
    /// ...once the window holds at least this many attempts.
    pub min_requests: u32,
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    /// First back-off; doubles with each consecutive ejection...
    #[serde(with = "humantime_serde")]
    pub base_ejection: Duration,
    /// ...up to this cap.
    #[serde(with = "humantime_serde")]
    pub max_ejection: Duration,
    /// Retries per second per route allowed beyond the 20% budget.
    pub retry_floor_per_sec: u32,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            consecutive_failures: 5,
            error_rate: 0.5,
            min_requests: 20,
            window: Duration::from_secs(10),
            base_ejection: Duration::from_secs(5),
            max_ejection: Duration::from_secs(20),
            retry_floor_per_sec: 10,
        }
    }
}

/// Chaos drills may inject faults into this gateway only when enabled.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ChaosConfig {
    pub enabled: bool,
}

/// OpenTelemetry export. The standard `OTEL_*` variables win over these
/// keys; read once at start (a reload does not change them).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// OTLP collector base URL (e.g. `http://collector:4318`); none and no
    /// `OTEL_EXPORTER_OTLP_*ENDPOINT`: export is off, at no cost.
    pub otlp_endpoint: Option<String>,
    pub otlp_protocol: OtlpProtocol,
    /// Used when neither `OTEL_SERVICE_NAME` nor `OTEL_RESOURCE_ATTRIBUTES`
    /// names the service; default `switchyard`.
    pub service_name: Option<String>,
    /// Export prompts and completions as span attributes. Off by default:
    /// they are the apps' data.
    pub capture_content: bool,
    /// Send the attempt's `traceparent` to vendors. Off by default: the
    /// app's trace ids stay inside.
    pub propagate_to_upstream: bool,
    /// Spans queued or being exported at most; beyond, spans are dropped
    /// and counted rather than slowing requests.
    pub queue_size: usize,
}

/// The Responses API's conversation store (`previous_response_id`): the
/// turns this gateway answered, kept in memory so a later turn can be sent
/// whole to whichever target serves it. Read once at start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ResponsesConfig {
    /// How long a stored turn can be continued or fetched.
    #[serde(with = "humantime_serde")]
    pub store_ttl: Duration,
    /// Memory cap of the store; the oldest turns are evicted first.
    /// 0 stores nothing (every `previous_response_id` is then unknown).
    pub store_max_bytes: usize,
}

impl Default for ResponsesConfig {
    fn default() -> Self {
        ResponsesConfig {
            store_ttl: Duration::from_secs(3600),
            store_max_bytes: 64 * 1024 * 1024,
        }
    }
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig {
            otlp_endpoint: None,
            otlp_protocol: OtlpProtocol::HttpProtobuf,
            service_name: None,
            capture_content: false,
            propagate_to_upstream: false,
            queue_size: 2048,
        }
    }
}

/// Fleet mode (contract §7): replicas share suspensions through Redis.
/// Off unless `redis_url` (or `$SWITCHYARD_REDIS_URL`) is set; read once
/// at start (a reload does not change it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FleetConfig {
    /// `redis://HOST:PORT/DB`; none and no `$SWITCHYARD_REDIS_URL`: a
    /// single gateway, with no Redis connection and no background task.
    pub redis_url: Option<String>,
    /// The fleet's key prefix in Redis: replicas with the same name share
    /// one policy.
    pub name: String,
    /// This replica's id in the fleet view; default host name + pid.
    pub replica: Option<String>,
    /// A replica whose heartbeat is older than this leaves the fleet view,
    /// and acknowledgements stop waiting for it.
    #[serde(with = "humantime_serde")]
    pub heartbeat_ttl: Duration,
    /// How long a suspend / resume waits for every live replica's ack.
    #[serde(with = "humantime_serde")]
    pub ack_timeout: Duration,
    /// Outlier ejections shared fleet-wide may take out at most this share
    /// of any route's targets (at least one), so a fleet-wide blip cannot
    /// empty a route; an ejection over the cap is lifted and audited
    /// (`eject_capped`). Ops suspensions are not capped.
    pub max_ejected_share: f64,
    /// App keys' request limits are counted fleet-wide over fixed windows
    /// of this length (a key's rpm scaled to it); shorter windows smooth
    /// bursts, at more Redis calls.
    #[serde(with = "humantime_serde")]
    pub rate_window: Duration,
}

impl Default for FleetConfig {
    fn default() -> Self {
        FleetConfig {
            redis_url: None,
            name: "switchyard".into(),
            replica: None,
            heartbeat_ttl: Duration::from_secs(6),
            ack_timeout: Duration::from_secs(2),
            max_ejected_share: 0.5,
            rate_window: Duration::from_secs(60),
        }
    }
}

/// The two OTLP transports, spelled as `OTEL_EXPORTER_OTLP_PROTOCOL` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum OtlpProtocol {
    #[serde(rename = "grpc")]
    Grpc,
    #[serde(rename = "http/protobuf")]
    HttpProtobuf,
}

/// How app keys are checked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    pub mode: AuthMode,
    /// The keys file `switchyard keys` manages (HMACs, never keys).
    pub keys_file: PathBuf,
    /// Env var holding the server-side HMAC secret.
    pub secret_env: String,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            mode: AuthMode::Keys,
            keys_file: PathBuf::from("switchyard-keys.json"),
            secret_env: "SWITCHYARD_KEY_SECRET".into(),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMode {
    /// Only keys from the keys file are accepted.
    #[default]
    Keys,
    /// Any non-empty key is accepted: for demos and trusted networks only.
    AnyKey,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProviderKind {
    Anthropic,
    #[serde(rename = "openai")]
    OpenAi,
    Gemini,
    /// vLLM, Ollama, llama.cpp, TGI: the OpenAI format with quirks.
    #[serde(rename = "openai_compatible")]
    OpenAiCompatible,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    pub kind: ProviderKind,
    /// Base URL, as the vendor's SDK takes it (OpenAI and Gemini include the
    /// version segment: `.../v1`, `.../v1beta`; Anthropic does not).
    pub base_url: String,
    /// Env var that holds the vendor key; required except for
    /// `openai_compatible`.
    pub api_key_env: Option<String>,
    /// File that holds the vendor key (alternative to `api_key_env`).
    pub api_key_file: Option<PathBuf>,
    #[serde(default = "defaults::connect_timeout", with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Total deadline of one attempt, headers and body; long, because a
    /// long completion can take minutes before its headers.
    #[serde(default = "defaults::request_timeout", with = "humantime_serde")]
    pub request_timeout: Duration,
    #[serde(default = "defaults::max_idle")]
    pub max_idle_connections: usize,
    /// `openai_compatible` only: send `max_completion_tokens` instead of
    /// `max_tokens`.
    #[serde(default)]
    pub max_completion_tokens: bool,
    /// `openai_compatible` only: ask for usage in streams.
    #[serde(default = "defaults::yes")]
    pub stream_usage: bool,
    /// `openai_compatible` only: the server understands `tool_choice: required`.
    #[serde(default = "defaults::yes")]
    pub tool_choice_required: bool,
    /// `kind = "openai"` only: the API requests go to, `chat` (Chat
    /// Completions) or `responses` (for models served only there).
    #[serde(default)]
    pub api: OpenAiApi,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetConfig {
    pub provider: String,
    /// The upstream model name.
    pub model: String,
    #[serde(default = "defaults::yes")]
    pub tools: bool,
    #[serde(default = "defaults::yes")]
    pub images: bool,
    /// Context window in tokens; unset means unknown (planned as
    /// `defaults::CONTEXT_WINDOW`, and tried after a context-length error
    /// elsewhere, since it may well be larger).
    #[serde(default)]
    pub context_window: Option<u64>,
    /// Accepts an assistant prefill (continuation of a partial answer).
    #[serde(default)]
    pub prefill: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Targets in priority order.
    pub targets: Vec<String>,
    /// At most this many attempts per request (default: one per target).
    pub max_attempts: Option<u32>,
    /// Time from sending a stream request to its first content event.
    #[serde(default = "defaults::first_token_timeout", with = "humantime_serde")]
    pub first_token_timeout: Duration,
    /// Time from sending a non-stream request to the response headers.
    /// Vendors send them only once the whole answer is ready, so this is
    /// above the longest generation; it fails over a vendor that accepts
    /// the connection and never answers long before `request_timeout`.
    #[serde(default = "defaults::header_timeout", with = "humantime_serde")]
    pub header_timeout: Duration,
    /// Largest request body for this route (default: the gateway's).
    pub max_body_bytes: Option<usize>,
    /// Longest silence allowed between two chunks of a stream once it began.
    #[serde(default = "defaults::idle_timeout", with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// What to do with a target that cannot honour the request.
    #[serde(default)]
    pub on_unsupported: OnUnsupported,
    /// Longest `Retry-After` of a 429 worth waiting for on the same target;
    /// a longer one fails over at once.
    #[serde(default = "defaults::max_retry_wait", with = "humantime_serde")]
    pub max_retry_wait: Duration,
    /// Commit window: hold the first N content events of a stream before
    /// anything reaches the app, so a failure inside it fails over
    /// invisibly. 0 = off.
    #[serde(default)]
    pub commit_tokens: u32,
    /// Commit window by time; ends at whichever of the two comes first.
    #[serde(default, with = "humantime_serde")]
    pub commit_time: Option<Duration>,
    /// Capability-aware continuation: when a stream is cut after it began,
    /// continue once on a later target that accepts an assistant prefill,
    /// forwarding only the continuation. Never in a turn with tool calls.
    #[serde(default)]
    pub continue_on_cut: bool,
}

/// Which OpenAI API an `openai` provider is called through.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OpenAiApi {
    #[default]
    Chat,
    Responses,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnUnsupported {
    /// Skip that target and try the next.
    #[default]
    Skip,
    /// Fail the request with a clear error.
    Fail,
}

pub(crate) mod defaults {
    use std::time::Duration;
    pub fn connect_timeout() -> Duration {
        Duration::from_secs(5)
    }
    pub fn request_timeout() -> Duration {
        Duration::from_secs(600)
    }
    pub fn first_token_timeout() -> Duration {
        Duration::from_secs(30)
    }
    pub fn header_timeout() -> Duration {
        Duration::from_secs(120)
    }
    pub fn max_retry_wait() -> Duration {
        Duration::from_secs(2)
    }
    pub fn idle_timeout() -> Duration {
        Duration::from_secs(60)
    }
    pub fn max_idle() -> usize {
        64
    }
    /// The window planned for a target whose window is not configured.
    pub const CONTEXT_WINDOW: u64 = 128_000;
    pub fn yes() -> bool {
        true
    }
}

/// One problem in a routes file, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: String,
    pub line: usize,
    pub col: usize,
    /// Dotted key path, e.g. `routes.frontier.targets[2]`; empty for syntax.
    pub key: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file, self.line, self.col)?;
        if !self.key.is_empty() {
            write!(f, "{}: ", self.key)?;
        }
        f.write_str(&self.message)
    }
}

/// Every problem found in a file; a file with any is never applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {file}: {message}")]
    Read { file: String, message: String },
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Problem>),
}

impl ConfigError {
    pub fn problems(&self) -> Vec<String> {
        match self {
            ConfigError::Read { .. } => vec![self.to_string()],
            ConfigError::Invalid(p) => p.iter().map(ToString::to_string).collect(),
        }
    }
}

/// Reads and validates a routes file, applying `SWITCHYARD_*` overrides.
pub fn load_file(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
        file: path.display().to_string(),
        message: e.to_string(),
    })?;
    load_str(&path.display().to_string(), &text, env_overrides())
}

/// The `SWITCHYARD_*` variables that override keys of the file. Only names
/// with a `__` nesting separator count: `SWITCHYARD_CONFIG` and
/// `SWITCHYARD_ADMIN_TOKEN` are settings of the process, not of the table.
pub fn env_overrides() -> Vec<(String, String)> {
    std::env::vars()
        .filter(|(k, _)| k.starts_with("SWITCHYARD_") && k.contains("__"))
        .collect()
}

/// Parses, layers overrides, and validates `text` (named `file` in errors).
pub fn load_str(file: &str, text: &str, env: Vec<(String, String)>) -> Result<Config, ConfigError> {
    let located = locate::Located::parse(file, text)?;
    // Type-check the file alone first: toml's errors carry a position.
    let typed = toml::from_str::<Config>(text)
        .map_err(|e| ConfigError::Invalid(vec![located.problem_from_toml(&e)]))?;
    // Layer env overrides only when there are some: it means a third parse.
    let layered = if env.is_empty() {
        typed
    } else {
        layer_env(text, env).map_err(|message| {
            ConfigError::Invalid(vec![Problem {
                file: file.to_string(),
                line: 0,
                col: 0,
                key: "env".into(),
                message,
            }])
        })?
    };
    let problems = validate(&layered);
    if problems.is_empty() {
        Ok(layered)
    } else {
        Err(ConfigError::Invalid(
            problems
                .into_iter()
                .map(|(key, msg)| located.problem(&key, msg))
                .collect(),
        ))
    }
}

fn layer_env(text: &str, env: Vec<(String, String)>) -> Result<Config, String> {
    let mut builder = config::Config::builder()
        .add_source(config::File::from_str(text, config::FileFormat::Toml));
    if !env.is_empty() {
        let map = env.into_iter().collect::<std::collections::HashMap<_, _>>();
        builder = builder.add_source(
            config::Environment::with_prefix("SWITCHYARD")
                .prefix_separator("_")
                .separator("__")
                .try_parsing(true)
                .source(Some(map)),
        );
    }
    builder
        .build()
        .and_then(config::Config::try_deserialize::<Config>)
        .map_err(|e| format!("SWITCHYARD_* override: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal valid table; other config tests (`abuse`) build on it.
    pub(super) const GOOD: &str = r#"
[auth]
mode = "any_key"

[providers.oa]
kind = "openai"
base_url = "https://api.openai.com/v1"
api_key_env = "OPENAI_API_KEY"

[targets.gpt]
provider = "oa"
model = "gpt-5"

[routes.Frontier]
targets = ["gpt"]
"#;

    #[test]
    fn a_good_file_loads_with_defaults() {
        let cfg = load_str("r.toml", GOOD, Vec::new()).unwrap();
        assert_eq!(cfg.gateway.listen.port(), 8080);
        assert_eq!(
            cfg.routes["Frontier"].first_token_timeout,
            Duration::from_secs(30)
        );
        assert!(cfg.targets["gpt"].tools);
    }

    #[test]
    fn env_overrides_reach_nested_keys() {
        let env = vec![
            (
                "SWITCHYARD_GATEWAY__ADMIN_LISTEN".to_string(),
                "127.0.0.1:9999".to_string(),
            ),
            (
                "SWITCHYARD_TARGETS__GPT__CONTEXT_WINDOW".to_string(),
                "4096".to_string(),
            ),
        ];
        let cfg = load_str("r.toml", GOOD, env).unwrap();
        assert_eq!(cfg.gateway.admin_listen.port(), 9999);
        assert_eq!(cfg.targets["gpt"].context_window, Some(4096));
        assert!(
            cfg.routes.contains_key("Frontier"),
            "route names keep their case"
        );
    }

    #[test]
    fn every_semantic_error_is_reported_with_its_position() {
        let bad = GOOD
            .replace(
                "targets = [\"gpt\"]",
                "targets = [\"gpt\", \"nope\", \"gpt\"]\nmax_attempts = 0",
            )
            .replace("provider = \"oa\"", "provider = \"missing\"");
        let err = load_str("r.toml", &bad, Vec::new()).unwrap_err();
        let lines = err.problems();
        assert!(
            lines
                .iter()
                .any(|l| l
                    .starts_with("r.toml:11:1: targets.gpt.provider: unknown provider `missing`")),
            "{lines:#?}"
        );
        assert!(
            lines.iter().any(|l| l
                .starts_with("r.toml:15:19: routes.Frontier.targets[1]: unknown target `nope`")),
            "{lines:#?}"
        );
        assert!(
            lines
                .iter()
                .any(|l| l.contains("routes.Frontier.targets[2]: target `gpt` is listed twice")),
            "{lines:#?}"
        );
        assert!(
            lines
                .iter()
                .any(|l| l.contains("routes.Frontier.max_attempts: must be at least 1")),
            "{lines:#?}"
        );
    }

    #[test]
    fn syntax_unknown_keys_and_bad_durations_name_the_line() {
        let err = load_str("r.toml", "[gateway\nlisten = 1", Vec::new()).unwrap_err();
        assert!(err.problems()[0].starts_with("r.toml:1:"), "{err}");
        let err = load_str(
            "r.toml",
            &GOOD.replace("model = \"gpt-5\"", "model = \"gpt-5\"\ncolour = 1"),
            Vec::new(),
        )
        .unwrap_err();
        assert!(
            err.problems()[0].contains("r.toml:13:1") && err.problems()[0].contains("colour"),
            "{err}"
        );
        let err = load_str(
            "r.toml",
            &format!("{GOOD}first_token_timeout = \"soon\"\n"),
            Vec::new(),
        )
        .unwrap_err();
        assert!(err.problems()[0].starts_with("r.toml:16:23:"), "{err}");
    }

    #[test]
    fn the_shipped_routes_file_is_valid() {
        let text = include_str!("../../routes.toml");
        load_str("routes.toml", text, Vec::new()).unwrap();
    }
}
