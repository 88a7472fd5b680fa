//! Errors of the request path: where they came from and whether the failover
//! loop may move on. [`GatewayError::to_api`] is the one place that turns
//! any of them into what the app sees, in its own dialect.

use std::time::Duration;

use crate::dialect::{ApiError, DialectError, ErrorKind, VendorClass, VendorError};

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
    /// Try the same target once more (after the vendor's reset time, when
    /// the route's `max_retry_wait` and retry budget allow), else fail over.
    RetrySameTarget,
    /// Try the next eligible target.
    Failover,
    /// Try only targets with a larger (or unknown) context window.
    FailoverToLargerWindow,
    /// The vendor account is unusable: take every target of the provider out
    /// (one `alert`), then fail over to other providers.
    TakeProviderOut,
    /// The request itself is at fault: answer now, try nothing else.
    Stop,
}

impl Decision {
    /// The decision's name in the README's failure-class table.
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::RetrySameTarget => "retry_same_target",
            Decision::Failover => "failover",
            Decision::FailoverToLargerWindow => "failover_to_larger_window",
            Decision::TakeProviderOut => "take_provider_out",
            Decision::Stop => "stop",
        }
    }
}

/// The audit event a failure class leads to, beyond the attempt itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audit {
    /// None of its own; the failure counts toward outlier detection, which
    /// writes an `eject` event when the target crosses its threshold.
    Outlier,
    /// An `alert` event (once per take-out, however many requests saw it).
    Alert,
    /// Nothing: the target did nothing wrong.
    Nothing,
}

/// One row of the failure-class table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    pub decision: Decision,
    pub audit: Audit,
    /// How long a provider take-out lasts (zero for other decisions).
    pub take_out: Duration,
}

/// How long a disabled or suspended vendor account takes its provider out.
pub const ACCOUNT_DISABLED_TAKE_OUT: Duration = Duration::from_secs(300);
/// How long exhausted quota or billing takes its provider out: longer, since
/// it comes back only when someone pays or the day rolls over.
pub const QUOTA_EXHAUSTED_TAKE_OUT: Duration = Duration::from_secs(900);

/// The low-cardinality class of a failure, for the decision table, metrics
/// and the trail. Vendor answers get theirs from [`VendorClass`]; the rest
/// are what the connection did.
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
    /// Quota or billing exhausted: the provider is out for longer.
    QuotaExhausted,
    ModelUnavailable,
    /// The model exists, but this account may not use it.
    ModelBlocked,
    Credentials,
    /// The vendor disabled our account: every target using it is out.
    AccountDisabled,
    ContextLength,
    InBand,
    Malformed,
    InvalidRequest,
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
            Reason::QuotaExhausted => "quota_exhausted",
            Reason::ModelUnavailable => "model_unavailable",
            Reason::ModelBlocked => "model_blocked",
            Reason::Credentials => "credentials",
            Reason::AccountDisabled => "account_disabled",
            Reason::ContextLength => "context_length",
            Reason::InBand => "in_band_error",
            Reason::Malformed => "malformed",
            Reason::InvalidRequest => "client_error",
            Reason::ContentPolicy => "content_policy",
        }
    }

    /// THE failure-class table: what the loop does about each class and
    /// which audit event it leads to. Every decision reads this one match.
    pub fn rule(self) -> Rule {
        use Audit::*;
        use Decision::*;
        let (decision, audit, take_out) = match self {
            Reason::ServerError | Reason::RateLimited => (RetrySameTarget, Outlier, Duration::ZERO),
            Reason::Connect
            | Reason::Timeout
            | Reason::Transport
            | Reason::FirstToken
            | Reason::Overloaded
            | Reason::ModelUnavailable
            | Reason::ModelBlocked
            | Reason::Credentials
            | Reason::InBand
            | Reason::Malformed => (Failover, Outlier, Duration::ZERO),
            Reason::QuotaExhausted => (TakeProviderOut, Alert, QUOTA_EXHAUSTED_TAKE_OUT),
            Reason::AccountDisabled => (TakeProviderOut, Alert, ACCOUNT_DISABLED_TAKE_OUT),
            Reason::ContextLength => (FailoverToLargerWindow, Nothing, Duration::ZERO),
            Reason::InvalidRequest | Reason::ContentPolicy => (Stop, Nothing, Duration::ZERO),
        };
        Rule {
            decision,
            audit,
            take_out,
        }
    }

    /// The one mapping from a failure class to the error kind the app sees
    /// (for a failed request and for a stream that broke after it began).
    pub fn api_kind(self) -> ErrorKind {
        match self {
            Reason::Overloaded => ErrorKind::Overloaded,
            Reason::RateLimited => ErrorKind::RateLimited,
            Reason::Timeout | Reason::FirstToken => ErrorKind::Timeout,
            _ => ErrorKind::Upstream,
        }
    }
}

impl From<VendorClass> for Reason {
    fn from(class: VendorClass) -> Reason {
        match class {
            VendorClass::Overloaded => Reason::Overloaded,
            VendorClass::RateLimited => Reason::RateLimited,
            VendorClass::QuotaExhausted => Reason::QuotaExhausted,
            VendorClass::ModelUnavailable => Reason::ModelUnavailable,
            VendorClass::ModelBlocked => Reason::ModelBlocked,
            VendorClass::AccountDisabled => Reason::AccountDisabled,
            VendorClass::Credentials => Reason::Credentials,
            VendorClass::ContentPolicy => Reason::ContentPolicy,
            VendorClass::ContextLength => Reason::ContextLength,
            VendorClass::InvalidRequest => Reason::InvalidRequest,
            VendorClass::ServerError => Reason::ServerError,
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

    /// The failure's class: from the vendor's own error class when it
    /// answered, else from what the connection did.
    pub fn reason(&self) -> Reason {
        match self {
            UpstreamError::Connect => Reason::Connect,
            UpstreamError::Timeout => Reason::Timeout,
            UpstreamError::Transport(_) => Reason::Transport,
            UpstreamError::FirstTokenTimeout(_) => Reason::FirstToken,
            UpstreamError::Malformed(_) | UpstreamError::Truncated => Reason::Malformed,
            // Redirects are never followed: the vendor answered something
            // else than an answer, which is its failure, not the app's.
            UpstreamError::Status { status, .. } if (300..400).contains(status) => {
                Reason::Malformed
            }
            UpstreamError::Status { vendor, .. } => vendor.class.into(),
            UpstreamError::InBand { vendor, .. } => match Reason::from(vendor.class) {
                // A stream that failed in band without a class of its own is
                // the vendor's failure, whatever it called it.
                Reason::ServerError => Reason::InBand,
                r => r,
            },
        }
    }

    /// Classifies the failure: why it happened and what to do next.
    pub fn classify(&self) -> (Reason, Decision) {
        let reason = self.reason();
        (reason, reason.rule().decision)
    }

    /// The context window the vendor stated in a context-length error.
    pub fn context_limit(&self) -> Option<u32> {
        match self {
            UpstreamError::Status { vendor, .. } | UpstreamError::InBand { vendor, .. } => {
                vendor.context_limit
            }
            _ => None,
        }
    }

    /// When the vendor says its limit resets (header, or body for Gemini).
    pub fn reset_after(&self) -> Option<Duration> {
        match self {
            UpstreamError::Status {
                retry_after,
                vendor,
                ..
            } => retry_after.or(vendor.retry_in),
            UpstreamError::InBand { vendor, .. } => vendor.retry_in,
            _ => None,
        }
    }
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
    /// The abuse detector flagged the key and it is suspended until ops
    /// lift the quarantine.
    #[error("this API key is suspended: its traffic was flagged as a suspected distillation or key-farm campaign; ask the gateway's operators to review it")]
    Quarantined,
    #[error("this API key is over its limit of {what}")]
    KeyRateLimited {
        what: &'static str,
        retry_after: Duration,
    },
    #[error("unknown route `{0}`")]
    UnknownRoute(String),
    #[error("request body is larger than {0} bytes")]
    BodyTooLarge(usize),
    /// The client stopped sending its body; the connection is closed.
    #[error("the request body did not arrive within {0:?}")]
    BodyTimeout(Duration),
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
            GatewayError::Quarantined => "key_quarantined",
            GatewayError::KeyRateLimited { .. } => "key_rate_limited",
            GatewayError::UnknownRoute(_) => "unknown_route",
            GatewayError::BodyTooLarge(_) => "body_too_large",
            GatewayError::BodyTimeout(_) => "body_timeout",
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
            GatewayError::OutOfScope(_) | GatewayError::Quarantined => {
                ApiError::new(ErrorKind::Permission, self.to_string())
            }
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
            GatewayError::BodyTimeout(_) => ApiError::new(ErrorKind::RequestTimeout, self.to_string()),
            GatewayError::UnsupportedMediaType => {
                ApiError::new(ErrorKind::UnsupportedMediaType, self.to_string())
            }
            GatewayError::NoEligibleTarget { .. } => {
                ApiError::new(ErrorKind::InvalidRequest, self.to_string())
            }
            // A prompt too long for every target: the vendor's own 400, in
            // the app's dialect, so the app can shorten it.
            GatewayError::Rejected { vendor, .. } if vendor.class == VendorClass::ContextLength => {
                ApiError {
                    param: Some("messages".into()),
                    code: Some("context_length_exceeded"),
                    ..ApiError::new(ErrorKind::InvalidRequest, vendor.message.clone())
                }
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
    let reason = last.map(UpstreamError::reason);
    let kind = reason.map_or(ErrorKind::Upstream, Reason::api_kind);
    let retry_after = match kind {
        ErrorKind::RateLimited => Some(
            last.and_then(UpstreamError::reset_after)
                .map_or(1, |d| d.as_secs().max(1)),
        ),
        ErrorKind::Overloaded => Some(1),
        _ => None,
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

    fn status(status: u16, class: VendorClass) -> (Reason, Decision) {
        UpstreamError::Status {
            status,
            vendor: VendorError::new(class, None, String::new()),
            retry_after: None,
        }
        .classify()
    }

    #[test]
    fn classification_follows_the_failure_class_table() {
        use Decision::*;
        assert_eq!(
            status(500, VendorClass::ServerError),
            (Reason::ServerError, RetrySameTarget)
        );
        assert_eq!(
            status(529, VendorClass::Overloaded),
            (Reason::Overloaded, Failover)
        );
        assert_eq!(
            status(302, VendorClass::InvalidRequest),
            (Reason::Malformed, Failover),
            "a redirect is the vendor's failure"
        );
        assert_eq!(
            status(401, VendorClass::AccountDisabled),
            (Reason::AccountDisabled, TakeProviderOut)
        );
        assert_eq!(
            status(429, VendorClass::QuotaExhausted),
            (Reason::QuotaExhausted, TakeProviderOut)
        );
        assert_eq!(
            status(400, VendorClass::ContextLength),
            (Reason::ContextLength, FailoverToLargerWindow)
        );
        assert_eq!(
            status(400, VendorClass::ContentPolicy),
            (Reason::ContentPolicy, Stop)
        );
        assert_eq!(
            UpstreamError::Connect.classify(),
            (Reason::Connect, Failover)
        );
        assert_eq!(
            UpstreamError::FirstTokenTimeout(Duration::from_secs(1)).classify(),
            (Reason::FirstToken, Failover)
        );
        assert_eq!(
            UpstreamError::InBand {
                status: None,
                vendor: VendorError::default()
            }
            .classify(),
            (Reason::InBand, Failover)
        );
    }

    #[test]
    fn only_take_outs_raise_alerts_and_only_they_last() {
        for r in [
            Reason::Connect,
            Reason::ServerError,
            Reason::RateLimited,
            Reason::Overloaded,
            Reason::QuotaExhausted,
            Reason::ModelUnavailable,
            Reason::ModelBlocked,
            Reason::Credentials,
            Reason::AccountDisabled,
            Reason::ContextLength,
            Reason::InvalidRequest,
            Reason::ContentPolicy,
        ] {
            let rule = r.rule();
            let takes_out = rule.decision == Decision::TakeProviderOut;
            assert_eq!(takes_out, rule.audit == Audit::Alert, "{r:?}");
            assert_eq!(takes_out, !rule.take_out.is_zero(), "{r:?}");
        }
        assert!(QUOTA_EXHAUSTED_TAKE_OUT > ACCOUNT_DISABLED_TAKE_OUT);
    }

    #[test]
    fn first_token_timeouts_are_timeouts_for_the_app() {
        assert_eq!(Reason::FirstToken.api_kind(), ErrorKind::Timeout);
        assert_eq!(Reason::Timeout.api_kind(), ErrorKind::Timeout);
        assert_eq!(Reason::Overloaded.api_kind(), ErrorKind::Overloaded);
        assert_eq!(Reason::Credentials.api_kind(), ErrorKind::Upstream);
    }
}
