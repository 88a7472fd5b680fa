//! Decoding an app's `generateContent` request into the canonical model.

use serde_json::{json, Map, Value};

use super::{field, get, get_str, invalid, snake};
use crate::dialect::util;
use crate::dialect::DialectError;
use crate::model::{
    ChatRequest, Dialect, Image, Message, Part, Passthrough, Role, ToolCall, ToolChoice, ToolDef,
    ToolResult,
};

/// Top-level fields this module models (both spellings); everything else is
/// passthrough. `model` is dropped: the URL names the model.
const KNOWN: &[&str] = &[
    "contents",
    "systemInstruction",
    "system_instruction",
    "tools",
    "toolConfig",
    "tool_config",
    "generationConfig",
    "generation_config",
    "model",
];

/// `generationConfig` fields the canonical model carries.
const KNOWN_GENERATION: &[&str] = &["temperature", "topP", "maxOutputTokens", "stopSequences"];

/// Reads an app's request body; `route` and `stream` come from the URL
/// (`models/{route}:generateContent` or `:streamGenerateContent`).
pub fn decode_request(body: &[u8], route: &str, stream: bool) -> Result<ChatRequest, DialectError> {
    let obj = util::parse_object(body)?;
    let contents = match field(&obj, "contents") {
        Some(Value::Array(items)) if !items.is_empty() => items,
        Some(Value::Array(_)) => return Err(invalid("`contents` must not be empty", "contents")),
        _ => return Err(invalid("`contents` must be an array", "contents")),
    };
    let mut ledger = CallLedger::default();
    let mut messages = Vec::with_capacity(contents.len());
    for (i, c) in contents.iter().enumerate() {
        decode_content(c, &format!("contents[{i}]"), &mut ledger, &mut messages)?;
    }
    let (tools, other_tools) = decode_tools(field(&obj, "tools"))?;
    let config = match field(&obj, "generationConfig") {
        None => Map::new(),
        Some(Value::Object(m)) => m.clone(),
        Some(_) => {
            return Err(invalid(
                "`generationConfig` must be an object",
                "generationConfig",
            ))
        }
    };
    if field(&config, "candidateCount")
        .and_then(Value::as_u64)
        .unwrap_or(1)
        > 1
    {
        return Err(invalid(
            "only one candidate per request is supported",
            "generationConfig.candidateCount",
        ));
    }
    let mut passthrough = util::passthrough(Dialect::Gemini, &obj, KNOWN);
    let extra_config: Map<String, Value> = config
        .iter()
        .filter(|(k, _)| !KNOWN_GENERATION.iter().any(|g| *k == g || **k == snake(g)))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for (key, extra) in [
        ("generationConfig", Value::Object(extra_config)),
        ("tools", Value::Array(other_tools)),
    ] {
        let empty = extra.as_object().is_some_and(Map::is_empty)
            || extra.as_array().is_some_and(Vec::is_empty);
        if !empty {
            passthrough
                .get_or_insert_with(|| Passthrough {
                    dialect: Dialect::Gemini,
                    fields: Map::new(),
                })
                .fields
                .insert(key.to_string(), extra);
        }
    }
    Ok(ChatRequest {
        model: route.to_string(),
        system: decode_system(field(&obj, "systemInstruction"))?,
        messages,
        tools,
        tool_choice: decode_tool_config(field(&obj, "toolConfig"))?,
        max_tokens: config_u32(&config, "maxOutputTokens")?,
        temperature: config_f64(&config, "temperature")?,
        top_p: config_f64(&config, "topP")?,
        stop: config_stops(&config)?,
        stream,
        passthrough,
    })
}

fn config_f64(config: &Map<String, Value>, key: &str) -> Result<Option<f64>, DialectError> {
    field(config, key)
        .map(|v| {
            v.as_f64().ok_or_else(|| {
                invalid(
                    format!("`{key}` must be a number"),
                    format!("generationConfig.{key}"),
                )
            })
        })
        .transpose()
}

fn config_u32(config: &Map<String, Value>, key: &str) -> Result<Option<u32>, DialectError> {
    field(config, key)
        .map(|v| {
            v.as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| {
                    invalid(
                        format!("`{key}` must be a non-negative integer"),
                        format!("generationConfig.{key}"),
                    )
                })
        })
        .transpose()
}

fn config_stops(config: &Map<String, Value>) -> Result<Vec<String>, DialectError> {
    let bad = || {
        invalid(
            "`stopSequences` must be an array of strings",
            "generationConfig.stopSequences",
        )
    };
    match field(config, "stopSequences") {
        None => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|s| s.as_str().map(str::to_owned).ok_or_else(bad))
            .collect(),
        Some(_) => Err(bad()),
    }
}

/// `systemInstruction` as a Content (`{parts:[{text}]}`, role ignored) or,
/// leniently, a bare string; several parts are joined with blank lines.
fn decode_system(v: Option<&Value>) -> Result<Option<String>, DialectError> {
    let text = match v {
        None => return Ok(None),
        Some(Value::String(s)) => s.clone(),
        Some(content) => {
            let parts = get(content, "parts")
                .and_then(Value::as_array)
                .ok_or_else(|| {
                    invalid(
                        "`systemInstruction` must be a Content with `parts`",
                        "systemInstruction.parts",
                    )
                })?;
            parts
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    get_str(p, "text").ok_or_else(|| {
                        invalid(
                            "`systemInstruction` parts must be text",
                            format!("systemInstruction.parts[{i}]"),
                        )
                    })
                })
                .collect::<Result<Vec<_>, _>>()?
                .join("\n\n")
        }
    };
    Ok((!text.is_empty()).then_some(text))
}

/// Names function calls and links function responses to them.
///
/// Calls get their own `id` if they carry one, else `call_{n}`, counting
/// calls from 0 across the conversation (deterministic, so a replayed
/// request decodes the same). A response without an id answers a call of
/// the same name from the latest model turn that left one unanswered, the
/// earliest such call first: parallel calls are answered in order.
#[derive(Default)]
pub(super) struct CallLedger {
    calls: u32,
    /// Model turns seen so far.
    turn: u32,
    /// Unanswered calls: (turn, name, id).
    pending: Vec<(u32, String, String)>,
}

impl CallLedger {
    /// Marks the start of a model turn: its calls are the latest ones.
    pub(super) fn model_turn(&mut self) {
        self.turn += 1;
    }

    pub(super) fn call(&mut self, name: &str, id: Option<&str>) -> String {
        let id = id.map_or_else(|| format!("call_{}", self.calls), str::to_owned);
        self.calls += 1;
        self.pending.push((self.turn, name.to_string(), id.clone()));
        id
    }

    pub(super) fn answer(&mut self, name: &str, id: Option<&str>) -> String {
        if let Some(id) = id {
            self.pending.retain(|(_, _, p)| p != id);
            return id.to_string();
        }
        let latest = self
            .pending
            .iter()
            .filter(|(_, n, _)| n == name)
            .map(|(t, _, _)| *t)
            .max();
        match self
            .pending
            .iter()
            .position(|(t, n, _)| n == name && Some(*t) == latest)
        {
            Some(i) => self.pending.remove(i).2,
            None => {
                // An answer to no known call: a fresh id keeps it unique.
                self.calls += 1;
                format!("call_{}", self.calls - 1)
            }
        }
    }
}

/// Appends one Content as one or two canonical messages: a user Content
/// with function responses becomes a Tool message, then a User message for
/// the rest.
fn decode_content(
    c: &Value,
    path: &str,
    ledger: &mut CallLedger,
    out: &mut Vec<Message>,
) -> Result<(), DialectError> {
    let model_turn = match get_str(c, "role").unwrap_or("user") {
        "model" => true,
        // "function" is the role older API versions used for responses.
        "user" | "function" => false,
        other => {
            return Err(invalid(
                format!("`{path}.role` must be user or model, not `{other}`"),
                format!("{path}.role"),
            ))
        }
    };
    let parts = get(c, "parts").and_then(Value::as_array).ok_or_else(|| {
        invalid(
            format!("`{path}.parts` must be an array"),
            format!("{path}.parts"),
        )
    })?;
    if model_turn {
        ledger.model_turn();
    }
    let mut content = Vec::with_capacity(parts.len());
    for (j, p) in parts.iter().enumerate() {
        let ppath = format!("{path}.parts[{j}]");
        if let Some(part) = decode_part(p, &ppath, model_turn, ledger)? {
            content.push(part);
        }
    }
    if model_turn {
        out.push(Message {
            role: Role::Assistant,
            content,
        });
        return Ok(());
    }
    let (results, rest): (Vec<Part>, Vec<Part>) = content
        .into_iter()
        .partition(|p| matches!(p, Part::ToolResult(_)));
    let only_results = !results.is_empty() && rest.is_empty();
    if !results.is_empty() {
        out.push(Message {
            role: Role::Tool,
            content: results,
        });
    }
    if !only_results {
        out.push(Message {
            role: Role::User,
            content: rest,
        });
    }
    Ok(())
}

/// One request part; `None` for thought parts and bare thought signatures.
fn decode_part(
    p: &Value,
    path: &str,
    model_turn: bool,
    ledger: &mut CallLedger,
) -> Result<Option<Part>, DialectError> {
    if get(p, "thought").and_then(Value::as_bool) == Some(true) {
        return Ok(None);
    }
    if let Some(text) = get(p, "text") {
        let text = text
            .as_str()
            .ok_or_else(|| invalid("`text` must be a string", format!("{path}.text")))?;
        return Ok(Some(Part::Text(text.to_string())));
    }
    if let Some(blob) = get(p, "inlineData") {
        let (Some(mime), Some(data)) = (get_str(blob, "mimeType"), get_str(blob, "data")) else {
            return Err(invalid(
                "`inlineData` needs `mimeType` and `data`",
                format!("{path}.inlineData"),
            ));
        };
        image_only(mime, &format!("{path}.inlineData.mimeType"))?;
        return Ok(Some(Part::Image(Image::Base64 {
            media_type: mime.to_string(),
            data: data.to_string(),
        })));
    }
    if let Some(file) = get(p, "fileData") {
        let uri = get_str(file, "fileUri").ok_or_else(|| {
            invalid(
                "`fileData` needs `fileUri`",
                format!("{path}.fileData.fileUri"),
            )
        })?;
        if let Some(mime) = get_str(file, "mimeType") {
            image_only(mime, &format!("{path}.fileData.mimeType"))?;
        }
        return Ok(Some(Part::Image(Image::Url(uri.to_string()))));
    }
    if let Some(call) = get(p, "functionCall") {
        if !model_turn {
            return Err(invalid(
                "`functionCall` parts belong in model turns",
                format!("{path}.functionCall"),
            ));
        }
        let name = get_str(call, "name").ok_or_else(|| {
            invalid(
                "`functionCall` needs `name`",
                format!("{path}.functionCall.name"),
            )
        })?;
        return Ok(Some(Part::ToolCall(ToolCall {
            id: ledger.call(name, get_str(call, "id")),
            name: name.to_string(),
            arguments: get(call, "args").map_or_else(|| "{}".to_string(), Value::to_string),
        })));
    }
    if let Some(resp) = get(p, "functionResponse") {
        if model_turn {
            return Err(invalid(
                "`functionResponse` parts belong in user turns",
                format!("{path}.functionResponse"),
            ));
        }
        let name = get_str(resp, "name").ok_or_else(|| {
            invalid(
                "`functionResponse` needs `name`",
                format!("{path}.functionResponse.name"),
            )
        })?;
        let (content, is_error) = response_text(get(resp, "response"));
        return Ok(Some(Part::ToolResult(ToolResult {
            call_id: ledger.answer(name, get_str(resp, "id")),
            name: Some(name.to_string()),
            content,
            is_error,
        })));
    }
    if get(p, "thoughtSignature").is_some() {
        return Ok(None);
    }
    Err(invalid(
        "parts must hold text, inlineData, fileData, functionCall or functionResponse",
        path,
    ))
}

/// The canonical model carries images only; other media would reach
/// backends that read them as images.
fn image_only(mime: &str, path: &str) -> Result<(), DialectError> {
    if mime.starts_with("image/") {
        Ok(())
    } else {
        Err(invalid(
            format!("media type `{mime}` is not supported; only images are"),
            path,
        ))
    }
}

/// A function response object as text: a lone string under `content`,
/// `result` or `output` is unwrapped, a lone string under `error` marks the
/// result as an error, anything else is the object's JSON.
fn response_text(response: Option<&Value>) -> (String, bool) {
    let Some(response) = response else {
        return (String::new(), false);
    };
    if let Some(obj) = response.as_object().filter(|o| o.len() == 1) {
        for (key, is_error) in [
            ("content", false),
            ("result", false),
            ("output", false),
            ("error", true),
        ] {
            if let Some(text) = obj.get(key).and_then(Value::as_str) {
                return (text.to_string(), is_error);
            }
        }
    }
    (response.to_string(), false)
}

/// Function declarations, plus the tool entries that are not functions
/// (`googleSearch`, `codeExecution`...), kept for the passthrough.
fn decode_tools(tools: Option<&Value>) -> Result<(Vec<ToolDef>, Vec<Value>), DialectError> {
    let items = match tools {
        None => return Ok((Vec::new(), Vec::new())),
        Some(Value::Array(items)) => items,
        Some(_) => return Err(invalid("`tools` must be an array", "tools")),
    };
    let mut defs = Vec::new();
    let mut others = Vec::new();
    for (i, tool) in items.iter().enumerate() {
        let Some(mut rest) = tool.as_object().cloned() else {
            return Err(invalid(
                "each tool must be an object",
                format!("tools[{i}]"),
            ));
        };
        let decls = rest
            .remove("functionDeclarations")
            .or_else(|| rest.remove("function_declarations"));
        for (j, d) in decls
            .as_ref()
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            let path = format!("tools[{i}].functionDeclarations[{j}]");
            let name = get_str(d, "name").ok_or_else(|| {
                invalid(
                    "a function declaration needs `name`",
                    format!("{path}.name"),
                )
            })?;
            let parameters = match (get(d, "parametersJsonSchema"), get(d, "parameters")) {
                (Some(schema), _) => schema.clone(),
                (None, Some(schema)) => json_schema_types(schema.clone()),
                (None, None) => json!({"type": "object", "properties": {}}),
            };
            defs.push(ToolDef {
                name: name.to_string(),
                description: get_str(d, "description").map(str::to_owned),
                parameters,
            });
        }
        if !rest.is_empty() {
            others.push(Value::Object(rest));
        }
    }
    Ok((defs, others))
}

/// Gemini's `parameters` is an OpenAPI-style Schema whose types the SDKs
/// write in capitals (`OBJECT`); JSON Schema, which other vendors read,
/// wants them in lower case.
fn json_schema_types(mut schema: Value) -> Value {
    match &mut schema {
        Value::Object(obj) => {
            for (key, v) in obj.iter_mut() {
                match v {
                    Value::String(s) if key == "type" => *s = s.to_ascii_lowercase(),
                    _ => *v = json_schema_types(v.take()),
                }
            }
        }
        Value::Array(items) => {
            for v in items.iter_mut() {
                *v = json_schema_types(v.take());
            }
        }
        _ => {}
    }
    schema
}

fn decode_tool_config(v: Option<&Value>) -> Result<Option<ToolChoice>, DialectError> {
    let Some(config) = v.and_then(|v| get(v, "functionCallingConfig")) else {
        return Ok(None);
    };
    let names: Vec<&str> = get(config, "allowedFunctionNames")
        .and_then(Value::as_array)
        .map(|n| n.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    Ok(
        match get_str(config, "mode").unwrap_or("MODE_UNSPECIFIED") {
            "MODE_UNSPECIFIED" => None,
            "AUTO" | "VALIDATED" => Some(ToolChoice::Auto),
            "NONE" => Some(ToolChoice::None),
            // Several allowed names have no canonical form; any tool is closest.
            "ANY" => Some(match names.as_slice() {
                [one] => ToolChoice::Tool((*one).to_string()),
                _ => ToolChoice::Required,
            }),
            _ => {
                return Err(invalid(
                    "`functionCallingConfig.mode` must be AUTO, ANY, NONE or VALIDATED",
                    "toolConfig.functionCallingConfig.mode",
                ))
            }
        },
    )
}
