//! Outbound I/O to one vendor endpoint: a pooled client per provider, its
//! credential, and the URL and headers its dialect needs.
//!
//! The provider builds and sends one attempt; it does not decide what a
//! failure means (that is `crate::error` and `crate::failover`).

pub mod fault;
mod secret;

use std::time::Duration;

use http::{HeaderMap, HeaderValue};

pub use secret::Secret;

use crate::config::{OpenAiApi, ProviderConfig, ProviderKind};
use crate::dialect::{self, openai::Flavor};
use crate::error::UpstreamError;
use crate::model::{ChatRequest, Dialect};

/// Why a provider could not be built from its config.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    #[error("provider `{provider}`: env var {var} is not set")]
    MissingKeyEnv { provider: String, var: String },
    #[error("provider `{provider}`: cannot read key file: {message}")]
    KeyFile { provider: String, message: String },
    #[error("provider `{provider}`: cannot build HTTP client: {message}")]
    Client { provider: String, message: String },
}

/// A ready-to-use vendor endpoint.
#[derive(Debug)]
pub struct Provider {
    pub name: String,
    pub kind: ProviderKind,
    base_url: String,
    key: Option<Secret>,
    client: reqwest::Client,
    flavor: Flavor,
    /// Host and port of `base_url`, for telemetry's `server.*` attributes.
    server: Option<(String, u16)>,
    /// The config it was built from, to reuse the pool across reloads.
    pub config: ProviderConfig,
}

/// Where credentials named in the config are looked up.
pub type EnvLookup = std::sync::Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// The process environment, the lookup `serve` uses.
pub fn process_env() -> EnvLookup {
    std::sync::Arc::new(|name| std::env::var(name).ok())
}

/// Request headers from the app that a vendor may need to see.
#[derive(Debug, Clone, Default)]
pub struct Forwarded {
    /// The app's `anthropic-version`, passed through to Anthropic backends.
    pub anthropic_version: Option<HeaderValue>,
}

const DEFAULT_ANTHROPIC_VERSION: &str = "2023-06-01";

impl Provider {
    /// `env` looks up the variables named in the config; the process
    /// environment in production, a fixed map in the demo and tests.
    pub fn build(
        name: &str,
        cfg: &ProviderConfig,
        env: &EnvLookup,
    ) -> Result<Provider, ProviderError> {
        let key = match (&cfg.api_key_env, &cfg.api_key_file) {
            (Some(var), _) => Some(Secret::new(env(var).ok_or_else(|| {
                ProviderError::MissingKeyEnv {
                    provider: name.into(),
                    var: var.clone(),
                }
            })?)),
            (None, Some(path)) => Some(Secret::new(
                std::fs::read_to_string(path)
                    .map_err(|e| ProviderError::KeyFile {
                        provider: name.into(),
                        message: e.to_string(),
                    })?
                    .trim()
                    .to_string(),
            )),
            (None, None) => None,
        };
        let client = reqwest::Client::builder()
            .connect_timeout(cfg.connect_timeout)
            .pool_max_idle_per_host(cfg.max_idle_connections)
            .pool_idle_timeout(Duration::from_secs(90))
            .tcp_nodelay(true)
            // A vendor redirect must never steer where a request goes.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| ProviderError::Client {
                provider: name.into(),
                message: e.to_string(),
            })?;
        let flavor = match cfg.kind {
            ProviderKind::OpenAiCompatible => Flavor {
                max_completion_tokens: cfg.max_completion_tokens,
                stream_usage: cfg.stream_usage,
                tool_choice_required: cfg.tool_choice_required,
            },
            _ => Flavor::OPENAI,
        };
        let server = reqwest::Url::parse(&cfg.base_url)
            .ok()
            .and_then(|u| Some((u.host_str()?.to_string(), u.port_or_known_default()?)));
        Ok(Provider {
            name: name.to_string(),
            kind: cfg.kind,
            server,
            base_url: cfg.base_url.trim_end_matches('/').to_string(),
            key,
            client,
            flavor,
            config: cfg.clone(),
        })
    }

    /// The wire format this provider speaks.
    pub fn dialect(&self) -> Dialect {
        match self.kind {
            ProviderKind::Anthropic => Dialect::Anthropic,
            ProviderKind::OpenAi if self.config.api == OpenAiApi::Responses => Dialect::Responses,
            ProviderKind::OpenAi | ProviderKind::OpenAiCompatible => Dialect::OpenAi,
            ProviderKind::Gemini => Dialect::Gemini,
        }
    }

    /// `gen_ai.provider.name`: the GenAI conventions' well-known values,
    /// and our own for servers that only speak OpenAI's API.
    pub fn gen_ai_name(&self) -> &'static str {
        match self.kind {
            ProviderKind::Anthropic => "anthropic",
            ProviderKind::OpenAi => "openai",
            ProviderKind::Gemini => "gcp.gemini",
            ProviderKind::OpenAiCompatible => "openai_compatible",
        }
    }

    /// Who an attempt on `model` goes to, for its span and metrics.
    pub fn operation_target<'a>(
        &'a self,
        target: &'a str,
        model: &'a str,
    ) -> crate::telemetry::OperationTarget<'a> {
        crate::telemetry::OperationTarget {
            target,
            provider: self.gen_ai_name(),
            model,
            server: self.server.as_ref().map(|(h, p)| (h.as_str(), *p)),
        }
    }

    /// The host and port requests go to, for logs and telemetry.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    fn url(&self, model: &str, stream: bool) -> String {
        match self.kind {
            ProviderKind::Anthropic => format!("{}/v1/messages", self.base_url),
            ProviderKind::OpenAi if self.config.api == OpenAiApi::Responses => {
                format!("{}/responses", self.base_url)
            }
            ProviderKind::OpenAi | ProviderKind::OpenAiCompatible => {
                format!("{}/chat/completions", self.base_url)
            }
            ProviderKind::Gemini if stream => {
                format!(
                    "{}/models/{model}:streamGenerateContent?alt=sse",
                    self.base_url
                )
            }
            ProviderKind::Gemini => format!("{}/models/{model}:generateContent", self.base_url),
        }
    }

    fn body(&self, model: &str, req: &ChatRequest) -> serde_json::Value {
        match self.kind {
            ProviderKind::Anthropic => dialect::anthropic::encode_request(req, model),
            ProviderKind::OpenAi if self.config.api == OpenAiApi::Responses => {
                dialect::responses::encode_request(req, model)
            }
            ProviderKind::OpenAi | ProviderKind::OpenAiCompatible => {
                dialect::openai::encode_request(req, model, self.flavor)
            }
            ProviderKind::Gemini => dialect::gemini::encode_request(req, model),
        }
    }

    /// `traceparent` is sent only when the operator opted into propagating
    /// traces to vendors; the app's own trace headers never are.
    fn headers(&self, fwd: &Forwarded, traceparent: Option<HeaderValue>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(tp) = traceparent {
            h.insert("traceparent", tp);
        }
        h.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if self.kind == ProviderKind::Anthropic {
            h.insert(
                "anthropic-version",
                fwd.anthropic_version
                    .clone()
                    .unwrap_or(HeaderValue::from_static(DEFAULT_ANTHROPIC_VERSION)),
            );
        }
        let Some(key) = &self.key else { return h };
        match self.kind {
            ProviderKind::Anthropic => {
                h.insert("x-api-key", key.header_value());
            }
            ProviderKind::OpenAi | ProviderKind::OpenAiCompatible => {
                h.insert(http::header::AUTHORIZATION, key.bearer_value());
            }
            // The header, never `?key=`: URLs end up in logs.
            ProviderKind::Gemini => {
                h.insert("x-goog-api-key", key.header_value());
            }
        }
        h
    }

    /// Sends one attempt and waits for the response headers. The deadline
    /// covers the whole attempt; the caller applies it to the body too.
    pub async fn send(
        &self,
        model: &str,
        req: &ChatRequest,
        fwd: &Forwarded,
        traceparent: Option<HeaderValue>,
        deadline: Duration,
    ) -> Result<reqwest::Response, UpstreamError> {
        let body = serde_json::to_vec(&self.body(model, req)).expect("serialize JSON value");
        let fut = self
            .client
            .post(self.url(model, req.stream))
            .headers(self.headers(fwd, traceparent))
            .body(body)
            .send();
        match tokio::time::timeout(deadline, fut).await {
            Err(_) => Err(UpstreamError::Timeout),
            Ok(Err(e)) => Err(transport_error(&e)),
            Ok(Ok(resp)) => Ok(resp),
        }
    }

    pub fn request_timeout(&self) -> Duration {
        self.config.request_timeout
    }
}

/// Maps a client error to an upstream error without its URL (which names
/// internal hosts) or anything else the app should not see.
pub fn transport_error(e: &reqwest::Error) -> UpstreamError {
    if e.is_connect() {
        UpstreamError::Connect
    } else if e.is_timeout() {
        UpstreamError::Timeout
    } else {
        let mut msg = e.without_url_ref_string();
        msg.truncate(200);
        UpstreamError::Transport(msg)
    }
}

trait WithoutUrl {
    fn without_url_ref_string(&self) -> String;
}

impl WithoutUrl for reqwest::Error {
    fn without_url_ref_string(&self) -> String {
        let mut source: Option<&dyn std::error::Error> = std::error::Error::source(self);
        let mut last = String::from("connection failed");
        while let Some(s) = source {
            last = s.to_string();
            source = s.source();
        }
        last
    }
}
