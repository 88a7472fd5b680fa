//! Every span and metric attribute name, in one place.
//!
//! The OpenTelemetry GenAI conventions are still "development" and their
//! Rust constants moved crates (the upstream ones are marked deprecated), so
//! the names we emit are spelled here once and nowhere else. Our own
//! attributes live under the `switchyard.` namespace.

/// `chat`: the one GenAI operation the gateway serves.
pub const GEN_AI_OPERATION_NAME: &str = "gen_ai.operation.name";
/// The vendor (`anthropic`, `openai`, `gcp.gemini`, ...).
pub const GEN_AI_PROVIDER_NAME: &str = "gen_ai.provider.name";
/// On the request span: the route the app asked for; on an attempt span:
/// the upstream model the target names.
pub const GEN_AI_REQUEST_MODEL: &str = "gen_ai.request.model";
pub const GEN_AI_REQUEST_MAX_TOKENS: &str = "gen_ai.request.max_tokens";
pub const GEN_AI_REQUEST_TEMPERATURE: &str = "gen_ai.request.temperature";
pub const GEN_AI_REQUEST_TOP_P: &str = "gen_ai.request.top_p";
/// Set (true) on streamed requests only.
pub const GEN_AI_REQUEST_STREAM: &str = "gen_ai.request.stream";
/// The model the vendor says answered.
pub const GEN_AI_RESPONSE_MODEL: &str = "gen_ai.response.model";
pub const GEN_AI_RESPONSE_ID: &str = "gen_ai.response.id";
pub const GEN_AI_RESPONSE_FINISH_REASONS: &str = "gen_ai.response.finish_reasons";
pub const GEN_AI_USAGE_INPUT_TOKENS: &str = "gen_ai.usage.input_tokens";
pub const GEN_AI_USAGE_OUTPUT_TOKENS: &str = "gen_ai.usage.output_tokens";
/// `input` or `output`, on the token-usage histogram.
pub const GEN_AI_TOKEN_TYPE: &str = "gen_ai.token.type";
/// Prompt and completion content: exported only when capture is enabled.
pub const GEN_AI_INPUT_MESSAGES: &str = "gen_ai.input.messages";
pub const GEN_AI_OUTPUT_MESSAGES: &str = "gen_ai.output.messages";
pub const GEN_AI_SYSTEM_INSTRUCTIONS: &str = "gen_ai.system_instructions";

pub const ERROR_TYPE: &str = "error.type";
pub const SERVER_ADDRESS: &str = "server.address";
pub const SERVER_PORT: &str = "server.port";
pub const HTTP_REQUEST_METHOD: &str = "http.request.method";
pub const HTTP_RESPONSE_STATUS_CODE: &str = "http.response.status_code";
pub const URL_PATH: &str = "url.path";

/// The dialect the app spoke (`openai`, `anthropic`, `gemini`).
pub const SWITCHYARD_DIALECT: &str = "switchyard.dialect";
pub const SWITCHYARD_ROUTE: &str = "switchyard.route";
/// The target that served (request span) or was tried (attempt span).
pub const SWITCHYARD_TARGET: &str = "switchyard.target";
/// 1-based number of this attempt within the request.
pub const SWITCHYARD_ATTEMPT: &str = "switchyard.attempt";
/// How many attempts the request took.
pub const SWITCHYARD_ATTEMPTS: &str = "switchyard.attempts";
/// `ok`, or the failure's reason code (`server_error`, `timeout`, ...).
pub const SWITCHYARD_OUTCOME: &str = "switchyard.outcome";
/// Set on an attempt whose failure moved the request on to another target.
pub const SWITCHYARD_FAILOVER_REASON: &str = "switchyard.failover.reason";
/// Seconds from the attempt's start to its first content chunk.
pub const SWITCHYARD_TIME_TO_FIRST_CHUNK: &str = "switchyard.time_to_first_chunk";

/// The span event marking a stream's first content chunk.
pub const EVENT_FIRST_CHUNK: &str = "gen_ai.first_chunk";

/// The namespace for our own metric labels in OTLP (Prometheus keeps the
/// bare label name).
pub const NAMESPACE: &str = "switchyard.";
