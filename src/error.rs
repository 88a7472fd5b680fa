//! Errors of the request path: where they came from and whether the failover
//! loop may move on. [`GatewayError::to_api`] is the one place that turns
//! any of them into what the app sees, in its own dialect.

use std::time::Duration;

use crate::dialect::{ApiError, DialectError, ErrorKind, VendorError};

/// How one attempt on one target failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum UpstreamError {
    #[error("connect error")]
    Connect,
    #[error("no response before the deadline")]
    Timeout,
    #[error("no first token within {0:?}")]
    FirstTokenTimeout(Duration),
    #[error("HTTP {status} {}", .vendor.code.as_deref().unwrap_or(""))]
    Status {
        status: u16,
        vendor: VendorError,
        retry_after: Option<Duration>,
    },
    #[error("in-band stream error {}", .vendor.code.as_deref().unwrap_or(""))]
    InBand {
        status: Option<u16>,
        vendor: VendorError,
    },
    #[error("malformed answer: {0}")]
    Malformed(String),
    #[error("stream ended before a finish reason")]
    Truncated,
    #[error("transport error: {0}")]
    Transport(String),
}

/// What the failover loop does after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Try the next eligible target.
    Failover,
    /// Try only targets with a larger context window.
    FailoverToLargerWindow,
    /// The request itself is at fault: answer now, try nothing else.
    Stop,
}

/// The low-cardinality reason a failover happened, for metrics and the trail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    Connect,
    Timeout,
    /// The connection broke (reset, closed) after it was established.
    Transport,
    FirstToken,
    ServerError,
    RateLimited,
    Overloaded,
    ModelUnavailable,
    Credentials,
    /// The vendor disabled our account: every target using it is out.
    AccountDisabled,
    ContextLength,
    InBand,
    Malformed,
    ClientError,
    ContentPolicy,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Connect => "connect",
            Reason::Timeout => "timeout",
            Reason::Transport => "connection_broken",
            Reason::FirstToken => "first_token_timeout",
            Reason::ServerError => "server_error",
            Reason::RateLimited => "rate_limited",
            Reason::Overloaded => "overloaded",
            Reason::ModelUnavailable => "model_unavailable",
            Reason::Credentials => "credentials",
            Reason::AccountDisabled => "account_disabled",
            Reason::ContextLength => "context_length",
            Reason::InBand => "in_band_error",
            Reason::Malformed => "malformed",
            Reason::ClientError => "client_error",
            Reason::ContentPolicy => "content_policy",
        }
    }
}

impl UpstreamError {
    /// The vendor's HTTP status, when it answered with one.
    pub fn status(&self) -> Option<u16> {
        match self {
            UpstreamError::Status { status, .. } => Some(*status),
            UpstreamError::InBand { status, .. } => *status,
            _ => None,
        }
    }

    /// Classifies the failure: why it happened and what to do next.
    pub fn classify(&self) -> (Reason, Decision) {
        use Decision::*;
        match self {
            UpstreamError::Connect => (Reason::Connect, Failover),
            UpstreamError::Timeout => (Reason::Timeout, Failover),
            UpstreamError::Transport(_) => (Reason::Transport, Failover),
            UpstreamError::FirstTokenTimeout(_) => (Reason::FirstToken, Failover),
            UpstreamError::Malformed(_) | UpstreamError::Truncated => (Reason::Malformed, Failover),
            UpstreamError::InBand { status, vendor } => match status {
                Some(s) if (400..500).contains(s) && *s != 429 => classify_status(*s, vendor),
                _ => (Reason::InBand, Failover),
            },
            UpstreamError::Status { status, vendor, .. } => classify_status(*status, vendor),
        }
    }
}

fn classify_status(status: u16, vendor: &VendorError) -> (Reason, Decision) {
    let code = vendor.code.as_deref().unwrap_or("").to_ascii_lowercase();
    let message = vendor.message.to_ascii_lowercase();
    if matches!(status, 400 | 401 | 403) && is_account_disabled(&code, &message) {
        return (Reason::AccountDisabled, Decision::Failover);
    }
    match status {
        429 => (Reason::RateLimited, Decision::Failover),
        529 => (Reason::Overloaded, Decision::Failover),
        503 if code.contains("overload") || message.contains("overload") => {
            (Reason::Overloaded, Decision::Failover)
        }
        500..=599 => (Reason::ServerError, Decision::Failover),
        // Redirects are never followed: the vendor answered something else
        // than an answer, which is its failure, not the app's.
        300..=399 => (Reason::Malformed, Decision::Failover),
        // The vendor says the model is gone: suspended, retired or disabled.
        404 => (Reason::ModelUnavailable, Decision::Failover),
        // Our credentials for this vendor were refused: another vendor can serve.
        401 | 403 => (Reason::Credentials, Decision::Failover),
        _ if is_context_length(&code, &message) => {
            (Reason::ContextLength, Decision::FailoverToLargerWindow)
        }
        _ if code.contains("content_filter")
            || code.contains("content_policy")
            || message.contains("content policy")
            || code == "safety" =>
        {
            (Reason::ContentPolicy, Decision::Stop)
        }
        _ => (Reason::ClientError, Decision::Stop),
    }
}

/// OpenAI 401 `account_deactivated`, Anthropic 400 "organization has been
/// disabled", Gemini 403 `CONSUMER_SUSPENDED`.
fn is_account_disabled(code: &str, message: &str) -> bool {
    code.contains("account_deactivated")
        || code.contains("consumer_suspended")
        || message.contains("consumer_suspended")
        || message.contains("organization has been disabled")
        || message.contains("account has been deactivated")
        || message.contains("account has been disabled")
}

fn is_context_length(code: &str, message: &str) -> bool {
    code.contains("context_length")
        || message.contains("context length")
        || message.contains("context window")
        || message.contains("prompt is too long")
        || message.contains("exceeds the maximum number of tokens")
}

/// One attempt of the failover loop, for the final error and the trail.
#[derive(Debug, Clone, PartialEq)]
pub struct Attempt {
    pub target: String,
    pub outcome: Result<(), UpstreamError>,
    pub duration: Duration,
}

/// Everything that can end a data-plane request with an error.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GatewayError {
    #[error(transparent)]
    BadRequest(#[from] DialectError),
    #[error("missing API key")]
    MissingKey,
    #[error("{0}")]
    InvalidKey(&'static str),
    #[error("this API key may not use route `{0}`")]
    OutOfScope(String),
    #[error("this API key is over its limit of {what}")]
    KeyRateLimited {
        what: &'static str,
        retry_after: Duration,
    },
    #[error("unknown route `{0}`")]
    UnknownRoute(String),
    #[error("request body is larger than {0} bytes")]
    BodyTooLarge(usize),
    #[error("content type must be application/json")]
    UnsupportedMediaType,
    #[error("route `{route}` has no target that can serve this request: {why}")]
    NoEligibleTarget { route: String, why: String },
    #[error("route `{route}`: no target could serve the request")]
    Exhausted {
        route: String,
        attempts: Vec<Attempt>,
    },
    /// Every target is suspended or ejected: answered at once, no attempt.
    #[error("route `{route}`: every target is out ({})", .skipped.iter().map(|(t, why)| format!("{t}: {why}")).collect::<Vec<_>>().join(", "))]
    AllOut {
        route: String,
        skipped: Vec<(String, String)>,
        retry_after: Duration,
    },
    #[error("upstream rejected the request")]
    Rejected { status: u16, vendor: VendorError },
    #[error("the gateway is at its limit of concurrent requests; retry shortly")]
    Shed,
}

impl GatewayError {
    /// A stable code for telemetry (`error.type`): which layer said no.
    pub fn code(&self) -> &'static str {
        match self {
            GatewayError::BadRequest(_) => "invalid_request",
            GatewayError::MissingKey => "missing_key",
            GatewayError::InvalidKey(_) => "invalid_key",
            GatewayError::OutOfScope(_) => "out_of_scope",
            GatewayError::KeyRateLimited { .. } => "key_rate_limited",
            GatewayError::UnknownRoute(_) => "unknown_route",
            GatewayError::BodyTooLarge(_) => "body_too_large",
            GatewayError::UnsupportedMediaType => "unsupported_media_type",
            GatewayError::NoEligibleTarget { .. } => "no_eligible_target",
            GatewayError::Exhausted { .. } => "targets_exhausted",
            GatewayError::AllOut { .. } => "all_targets_out",
            GatewayError::Rejected { .. } => "upstream_rejected",
            GatewayError::Shed => "shed",
        }
    }

    /// The app-facing error: a kind, a message without secrets, a retry hint.
    pub fn to_api(&self) -> ApiError {
        match self {
            GatewayError::BadRequest(e) => ApiError::from(e.clone()),
            GatewayError::MissingKey => ApiError::new(
                ErrorKind::Authentication,
                "missing API key: send it the way your SDK does (Authorization, x-api-key or x-goog-api-key)",
            ),
            GatewayError::InvalidKey(why) => ApiError::new(ErrorKind::Authentication, *why),
            GatewayError::OutOfScope(_) => ApiError::new(ErrorKind::Permission, self.to_string()),
            GatewayError::KeyRateLimited { retry_after, .. } => ApiError {
                retry_after: Some(retry_after.as_secs().max(1)),
                ..ApiError::new(ErrorKind::RateLimited, self.to_string())
            },
            GatewayError::UnknownRoute(route) => ApiError {
                param: Some("model".into()),
                ..ApiError::new(
                    ErrorKind::NotFound,
                    format!("unknown route `{route}`: the model must name a route of this gateway (GET /v1/models lists them)"),
                )
            },
            GatewayError::BodyTooLarge(_) => ApiError::new(ErrorKind::RequestTooLarge, self.to_string()),
            GatewayError::UnsupportedMediaType => {
                ApiError::new(ErrorKind::UnsupportedMediaType, self.to_string())
            }
            GatewayError::NoEligibleTarget { .. } => {
                ApiError::new(ErrorKind::InvalidRequest, self.to_string())
            }
            GatewayError::Rejected { status, vendor } => {
                let kind = match status {
                    413 => ErrorKind::RequestTooLarge,
                    _ => ErrorKind::InvalidRequest,
                };
                ApiError::new(kind, format!("the backend rejected the request: {}", vendor.message))
            }
            GatewayError::Exhausted { route, attempts } => exhausted(route, attempts),
            GatewayError::Shed => ApiError {
                retry_after: Some(1),
                ..ApiError::new(ErrorKind::Overloaded, self.to_string())
            },
            GatewayError::AllOut { retry_after, .. } => ApiError {
                retry_after: Some(retry_after.as_secs().max(1)),
                ..ApiError::new(ErrorKind::Overloaded, self.to_string())
            },
        }
    }
}

fn exhausted(route: &str, attempts: &[Attempt]) -> ApiError {
    let tried: Vec<String> = attempts
        .iter()
        .map(|a| match &a.outcome {
            Ok(()) => format!("{}: ok", a.target),
            Err(e) => format!("{}: {}", a.target, e.classify().0.as_str()),
        })
        .collect();
    let last = attempts.last().and_then(|a| a.outcome.as_ref().err());
    let (kind, retry_after) = match last.map(|e| (e, e.classify().0)) {
        Some((e, Reason::RateLimited)) => {
            let hint = match e {
                UpstreamError::Status { retry_after, .. } => {
                    retry_after.map(|d| d.as_secs().max(1))
                }
                _ => None,
            };
            (ErrorKind::RateLimited, hint.or(Some(1)))
        }
        Some((_, Reason::Overloaded)) => (ErrorKind::Overloaded, Some(1)),
        Some((_, Reason::Timeout | Reason::FirstToken)) => (ErrorKind::Timeout, None),
        _ => (ErrorKind::Upstream, None),
    };
    ApiError {
        retry_after,
        ..ApiError::new(
            kind,
            format!(
                "route `{route}`: no target could serve the request (tried {})",
                tried.join(", ")
            ),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(status: u16, code: &str, message: &str) -> (Reason, Decision) {
        UpstreamError::Status {
            status,
            vendor: VendorError {
                code: Some(code.into()),
                message: message.into(),
            },
            retry_after: None,
        }
        .classify()
    }

    #[test]
    fn classification_follows_the_failover_rules() {
        use Decision::*;
        assert_eq!(
            status(500, "api_error", ""),
            (Reason::ServerError, Failover)
        );
        assert_eq!(
            status(529, "overloaded_error", ""),
            (Reason::Overloaded, Failover)
        );
        assert_eq!(
            status(429, "rate_limit_error", ""),
            (Reason::RateLimited, Failover)
        );
        assert_eq!(
            status(404, "model_not_found", ""),
            (Reason::ModelUnavailable, Failover)
        );
        assert_eq!(
            status(400, "invalid_request_error", "bad"),
            (Reason::ClientError, Stop)
        );
        assert_eq!(
            status(400, "content_filter", "no"),
            (Reason::ContentPolicy, Stop)
        );
        assert_eq!(
            status(
                400,
                "invalid_request_error",
                "prompt is too long: 300000 tokens"
            ),
            (Reason::ContextLength, FailoverToLargerWindow)
        );
        assert_eq!(
            status(401, "account_deactivated", "x"),
            (Reason::AccountDisabled, Failover)
        );
        assert_eq!(
            status(
                400,
                "invalid_request_error",
                "This organization has been disabled."
            ),
            (Reason::AccountDisabled, Failover)
        );
        assert_eq!(
            status(403, "PERMISSION_DENIED", "CONSUMER_SUSPENDED"),
            (Reason::AccountDisabled, Failover)
        );
        assert_eq!(
            UpstreamError::Connect.classify(),
            (Reason::Connect, Failover)
        );
        assert_eq!(
            UpstreamError::FirstTokenTimeout(Duration::from_secs(1)).classify(),
            (Reason::FirstToken, Failover)
        );
    }
}
