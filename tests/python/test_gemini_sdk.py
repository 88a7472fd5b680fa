"""The official google-genai SDK against `switchyard demo`, served by each
of the four simulated backend kinds.

The Python SDK calls `/v1/models/...` by default and the JS SDK
`/v1beta/models/...`; both are served. The SDK sends the key as
`x-goog-api-key`; `?key=` is checked with raw HTTP.
"""

import json
import urllib.error
import urllib.request

import httpx2
import pytest
from google import genai
from google.genai import errors, types

from conftest import digest

# route -> (vendor prefix in the simulator, upstream model)
BACKENDS = {
    "claude": ("anthropic", "claude-sonnet-4-5"),
    "gpt": ("openai", "gpt-5"),
    "gemini": ("gemini", "gemini-2.5-pro"),
    "local": ("local", "qwen3-32b"),
}

FILLER = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu"

# The same function declared the two ways the SDK offers: a JSON Schema, and
# Gemini's own OpenAPI-style Schema with upper-case types.
WEATHER_JSON_SCHEMA = types.FunctionDeclaration(
    name="get_weather", description="Weather for a city",
    parameters_json_schema={
        "type": "object",
        "properties": {"location": {"type": "string"}, "days": {"type": "integer"}},
        "required": ["location"],
    })
WEATHER_SCHEMA = types.FunctionDeclaration(
    name="get_weather", description="Weather for a city",
    parameters=types.Schema(
        type="OBJECT",
        properties={"location": types.Schema(type="STRING"), "days": types.Schema(type="INTEGER")},
        required=["location"]))
WEATHER_ARGS = {"location": "sim-location", "days": 1}


def make_client(base, api_version="v1beta", **http):
    return genai.Client(api_key="demo-key", http_options=types.HttpOptions(
        base_url=base, api_version=api_version, **http))


@pytest.fixture
def client(clean):
    return make_client(clean.base)


@pytest.fixture
def fresh_client(fresh):
    return make_client(fresh.base)


def tools_config(decl=WEATHER_JSON_SCHEMA, **kw):
    return types.GenerateContentConfig(tools=[types.Tool(function_declarations=[decl])], **kw)


@pytest.mark.parametrize("api_version", ["v1beta", "v1"])
@pytest.mark.parametrize("route", BACKENDS)
def test_non_stream_text_system_temperature(clean, route, api_version):
    vendor, model = BACKENDS[route]
    sent = []
    http = httpx2.Client(event_hooks={"request": [lambda r: sent.append(r)]})
    client = make_client(clean.base, api_version, httpx_client=http)
    resp = client.models.generate_content(
        model=route, contents="hello there",
        config=types.GenerateContentConfig(system_instruction="be brief", temperature=0.5, top_p=0.9))
    assert resp.text == f"[{vendor}/{model}] digest={digest('hello there')} t=0.5 p=0.9 {FILLER}"
    assert resp.candidates[0].finish_reason == types.FinishReason.STOP
    assert resp.model_version == model
    usage = resp.usage_metadata
    assert usage.prompt_token_count > 0 and usage.candidates_token_count == 16
    assert usage.total_token_count == usage.prompt_token_count + usage.candidates_token_count
    assert resp.sdk_http_response.headers["x-switchyard-target"] == route
    # What the SDK really sent: the path for this API version, the key header.
    assert sent[-1].url.path == f"/{api_version}/models/{route}:generateContent"
    assert sent[-1].headers["x-goog-api-key"] == "demo-key"


def test_python_sdk_default_api_version_is_v1(clean):
    sent = []
    http = httpx2.Client(event_hooks={"request": [lambda r: sent.append(r)]})
    client = genai.Client(api_key="demo-key", http_options=types.HttpOptions(
        base_url=clean.base, httpx_client=http))
    resp = client.models.generate_content(model="gpt", contents="default path")
    assert resp.text.startswith(f"[openai/gpt-5] digest={digest('default path')}")
    assert sent[-1].url.path == "/v1/models/gpt:generateContent"


@pytest.mark.parametrize("route", BACKENDS)
def test_system_instruction_counts_as_input(client, route):
    bare = client.models.generate_content(model=route, contents="q")
    with_system = client.models.generate_content(
        model=route, contents="q",
        config=types.GenerateContentConfig(system_instruction="you are a very careful assistant"))
    assert with_system.usage_metadata.prompt_token_count > bare.usage_metadata.prompt_token_count
    assert with_system.text.startswith(f"[{BACKENDS[route][0]}/")


@pytest.mark.parametrize("route", BACKENDS)
def test_multi_turn_answers_the_last_user_turn(client, route):
    vendor, model = BACKENDS[route]
    first = client.models.generate_content(model=route, contents="first question")
    resp = client.models.generate_content(model=route, contents=[
        types.Content(role="user", parts=[types.Part.from_text(text="first question")]),
        first.candidates[0].content,
        types.Content(role="user", parts=[types.Part.from_text(text="second "),
                                          types.Part.from_text(text="question")]),
    ])
    assert resp.text.startswith(f"[{vendor}/{model}] digest={digest('second question')} ")
    assert resp.usage_metadata.prompt_token_count > first.usage_metadata.prompt_token_count


@pytest.mark.parametrize("route", BACKENDS)
def test_max_output_tokens_and_stop_sequences(client, route):
    vendor, model = BACKENDS[route]
    resp = client.models.generate_content(
        model=route, contents="count", config=types.GenerateContentConfig(max_output_tokens=3))
    assert resp.candidates[0].finish_reason == types.FinishReason.MAX_TOKENS
    assert len(resp.text.split()) == 3
    assert resp.usage_metadata.candidates_token_count == 3
    resp = client.models.generate_content(
        model=route, contents="stop early",
        config=types.GenerateContentConfig(stop_sequences=["gamma"]))
    # Gemini has no finish reason of its own for a stop sequence: STOP.
    assert resp.candidates[0].finish_reason == types.FinishReason.STOP
    assert resp.text == f"[{vendor}/{model}] digest={digest('stop early')} alpha beta "


@pytest.mark.parametrize("api_version", ["v1beta", "v1"])
@pytest.mark.parametrize("route", BACKENDS)
def test_stream_text_and_usage(route, api_version, clean):
    vendor, model = BACKENDS[route]
    client = make_client(clean.base, api_version)
    chunks = list(client.models.generate_content_stream(
        model=route, contents="stream me",
        config=types.GenerateContentConfig(system_instruction="be brief")))
    assert len(chunks) > 3, "the answer must arrive in several chunks"
    text = "".join(c.text or "" for c in chunks)
    assert text == f"[{vendor}/{model}] digest={digest('stream me')} {FILLER}"
    # The finish reason and usage come once, in the last chunk.
    assert [c.candidates[0].finish_reason for c in chunks[:-1]] == [None] * (len(chunks) - 1)
    last = chunks[-1]
    assert last.candidates[0].finish_reason == types.FinishReason.STOP
    assert last.usage_metadata.prompt_token_count > 0
    assert last.usage_metadata.candidates_token_count == 14
    assert all(c.model_version == model for c in chunks)


@pytest.mark.parametrize("route", BACKENDS)
def test_stream_max_tokens(client, route):
    chunks = list(client.models.generate_content_stream(
        model=route, contents="short", config=types.GenerateContentConfig(max_output_tokens=2)))
    assert len("".join(c.text or "" for c in chunks).split()) == 2
    assert chunks[-1].candidates[0].finish_reason == types.FinishReason.MAX_TOKENS
    assert chunks[-1].usage_metadata.candidates_token_count == 2


@pytest.mark.parametrize("decl", [WEATHER_JSON_SCHEMA, WEATHER_SCHEMA], ids=["json_schema", "schema"])
@pytest.mark.parametrize("route", BACKENDS)
def test_function_call_streamed_then_round_trip(client, route, decl):
    vendor, model = BACKENDS[route]
    config = tools_config(decl)
    question = types.Content(role="user", parts=[types.Part.from_text(text="weather in Paris?")])
    chunks = list(client.models.generate_content_stream(
        model=route, contents=[question], config=config))
    calls = [fc for c in chunks for fc in (c.function_calls or [])]
    # A Gemini function call always arrives whole, whatever the backend streamed.
    assert len(calls) == 1
    call = calls[0]
    assert call.name == "get_weather" and call.args == WEATHER_ARGS
    assert call.id, "the gateway names calls so the SDK can echo the id"
    assert chunks[-1].candidates[0].finish_reason == types.FinishReason.STOP
    assert chunks[-1].usage_metadata.candidates_token_count > 0

    model_turn = types.Content(role="model", parts=[types.Part(function_call=call)])
    answer = types.Content(role="user", parts=[
        types.Part.from_function_response(name="get_weather", response={"result": "sunny, 21C"})])
    resp = client.models.generate_content(
        model=route, contents=[question, model_turn, answer], config=config)
    assert resp.text.startswith(f"[{vendor}/{model}] tool-result={digest('sunny, 21C')} ")
    assert resp.candidates[0].finish_reason == types.FinishReason.STOP


# How the gateway turns a functionResponse into canonical text (and so what
# every backend digests): a lone string under content/result/output/error
# is unwrapped; any other object becomes its compact JSON, keys sorted.
RESPONSES = [
    ({"result": "sunny, 21C"}, "sunny, 21C"),
    ({"content": "rain"}, "rain"),
    ({"output": "snow"}, "snow"),
    ({"error": "city not found"}, "city not found"),
    ({"temp_c": 21, "sky": "sunny"}, json.dumps({"sky": "sunny", "temp_c": 21}, separators=(",", ":"))),
]


@pytest.mark.parametrize("response,text", RESPONSES, ids=lambda v: json.dumps(v)[:20])
@pytest.mark.parametrize("route", BACKENDS)
def test_function_response_text_reaches_every_backend(client, route, response, text):
    vendor, model = BACKENDS[route]
    config = tools_config()
    question = types.Content(role="user", parts=[types.Part.from_text(text="weather in Rome?")])
    first = client.models.generate_content(model=route, contents=[question], config=config)
    (call,) = first.function_calls
    assert call.args == WEATHER_ARGS
    assert first.candidates[0].finish_reason == types.FinishReason.STOP
    resp = client.models.generate_content(model=route, config=config, contents=[
        question,
        first.candidates[0].content,
        types.Content(role="user", parts=[
            types.Part.from_function_response(name="get_weather", response=response)]),
    ])
    assert resp.text.startswith(f"[{vendor}/{model}] tool-result={digest(text)} ")


@pytest.mark.parametrize("route", BACKENDS)
def test_function_call_without_ids_like_a_hand_built_history(client, route):
    """Apps that build the history by hand send no ids at all; the gateway
    links the response to the call by name."""
    vendor, model = BACKENDS[route]
    resp = client.models.generate_content(model=route, config=tools_config(), contents=[
        types.Content(role="user", parts=[types.Part.from_text(text="weather?")]),
        types.Content(role="model", parts=[types.Part.from_function_call(
            name="get_weather", args={"location": "Lima"})]),
        types.Content(role="user", parts=[types.Part.from_function_response(
            name="get_weather", response={"result": "warm"})]),
    ])
    assert resp.text.startswith(f"[{vendor}/{model}] tool-result={digest('warm')} ")


@pytest.mark.parametrize("route", BACKENDS)
def test_forced_function_with_tool_config(client, route):
    config = tools_config(tool_config=types.ToolConfig(function_calling_config=types.FunctionCallingConfig(
        mode="ANY", allowed_function_names=["get_weather"])))
    resp = client.models.generate_content(model=route, contents="anything", config=config)
    assert [(c.name, c.args) for c in resp.function_calls] == [("get_weather", WEATHER_ARGS)]
    config = tools_config(tool_config=types.ToolConfig(
        function_calling_config=types.FunctionCallingConfig(mode="NONE")))
    resp = client.models.generate_content(model=route, contents="anything", config=config)
    assert not resp.function_calls
    assert resp.text.startswith(f"[{BACKENDS[route][0]}/")


@pytest.mark.parametrize("route", BACKENDS)
def test_inline_image(client, route):
    vendor, model = BACKENDS[route]
    resp = client.models.generate_content(model=route, contents=[
        types.Part.from_text(text="what is this"),
        types.Part.from_bytes(data=b"\x89PNG\r\n\x1a\n", mime_type="image/png"),
    ])
    assert resp.text.startswith(f"[{vendor}/{model}] digest={digest('what is this')} images=1 ")


def test_unknown_route_is_404_client_error(client):
    with pytest.raises(errors.ClientError) as e:
        client.models.generate_content(model="nope", contents="x")
    assert e.value.code == 404
    assert e.value.status == "NOT_FOUND"
    assert "unknown route `nope`" in e.value.message


@pytest.mark.parametrize("kwargs,needle", [
    (dict(contents="x", config=types.GenerateContentConfig(candidate_count=2)), "candidate"),
    (dict(contents=[types.Part.from_bytes(data=b"RIFF", mime_type="audio/wav")]), "audio/wav"),
])
def test_bad_request_is_400_client_error(client, clean, kwargs, needle):
    with pytest.raises(errors.ClientError) as e:
        client.models.generate_content(model="gpt", **kwargs)
    assert e.value.code == 400
    assert e.value.status == "INVALID_ARGUMENT"
    assert needle in e.value.message
    assert clean.counts() == {}


# Gemini's overload is a 503 saying "overloaded", Anthropic's a 529.
@pytest.mark.parametrize("route,status", [("gemini", 503), ("gemini", 529), ("claude", 529)])
def test_vendor_overload_is_503_server_error(fresh_client, fresh, route, status):
    client = fresh_client
    vendor, model = BACKENDS[route]
    fresh.knobs(vendor, model, error_status=status)
    with pytest.raises(errors.ServerError) as e:
        client.models.generate_content(model=route, contents="x")
    assert e.value.code == 503
    assert e.value.status == "UNAVAILABLE"
    assert route in e.value.message
    assert "sim-key" not in str(e.value.details)


@pytest.mark.parametrize("route,status", [("gpt", 500), ("claude", 503), ("local", 502)])
def test_other_vendor_5xx_is_502_server_error(fresh_client, fresh, route, status):
    client = fresh_client
    vendor, model = BACKENDS[route]
    fresh.knobs(vendor, model, error_status=status)
    with pytest.raises(errors.ServerError) as e:
        client.models.generate_content(model=route, contents="x")
    assert e.value.code == 502
    assert "server_error" in e.value.message


def test_vendor_429_is_resource_exhausted(fresh_client, fresh):
    client = fresh_client
    fresh.knobs("gemini", "gemini-2.5-pro", error_status=429, retry_after_secs=3)
    with pytest.raises(errors.ClientError) as e:
        client.models.generate_content(model="gemini", contents="x")
    assert e.value.code == 429
    assert e.value.status == "RESOURCE_EXHAUSTED"


@pytest.mark.parametrize("route", BACKENDS)
def test_stream_cut_mid_answer_raises(fresh_client, fresh, route):
    client = fresh_client
    vendor, model = BACKENDS[route]
    fresh.knobs(vendor, model, reset_after_tokens=3)
    got = []
    with pytest.raises(errors.APIError) as e:
        for chunk in client.models.generate_content_stream(model=route, contents="cut"):
            got.append(chunk.text)
            assert chunk.candidates[0].finish_reason is None
    assert e.value.code >= 500
    assert "".join(got) == f"[{vendor}/{model}] digest={digest('cut')} alpha"


def test_suspended_primary_fails_over_invisibly(fresh_client, fresh):
    client = fresh_client
    fresh.knobs("anthropic", "claude-sonnet-4-5", suspended=True)
    resp = client.models.generate_content(model="frontier", contents="still there?")
    assert resp.text.startswith(f"[openai/gpt-5] digest={digest('still there?')}")
    assert resp.model_version == "gpt-5"
    assert resp.sdk_http_response.headers["x-switchyard-attempts"] == "2"


# ------------------------------------------------------------ raw HTTP keys

def raw_generate(base, path, headers=None, body=None):
    body = body or {"contents": [{"role": "user", "parts": [{"text": "raw"}]}]}
    req = urllib.request.Request(
        f"{base}{path}", method="POST", data=json.dumps(body).encode(),
        headers={"content-type": "application/json", **(headers or {})})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return resp.status, resp.headers, resp.read()


@pytest.mark.parametrize("version", ["v1beta", "v1"])
def test_key_in_query(clean, version):
    status, _, body = raw_generate(clean.base, f"/{version}/models/claude:generateContent?key=demo-key")
    assert status == 200
    answer = json.loads(body)
    text = answer["candidates"][0]["content"]["parts"][0]["text"]
    assert text.startswith(f"[anthropic/claude-sonnet-4-5] digest={digest('raw')}")


def test_key_in_header_and_stream_with_alt_sse(clean):
    status, headers, body = raw_generate(
        clean.base, "/v1beta/models/gpt:streamGenerateContent?alt=sse",
        headers={"x-goog-api-key": "demo-key"})
    assert status == 200
    assert headers["content-type"].startswith("text/event-stream")
    frames = [json.loads(line[len("data: "):]) for line in body.decode().splitlines()
              if line.startswith("data: ")]
    assert len(frames) > 3
    assert frames[-1]["candidates"][0]["finishReason"] == "STOP"
    assert "usageMetadata" in frames[-1]


def test_key_in_query_after_other_params(clean):
    status, _, body = raw_generate(
        clean.base, "/v1beta/models/local:streamGenerateContent?alt=sse&key=demo-key")
    assert status == 200 and b"finishReason" in body


def test_missing_key_is_401_unauthenticated(clean):
    with pytest.raises(urllib.error.HTTPError) as e:
        raw_generate(clean.base, "/v1beta/models/gpt:generateContent")
    assert e.value.code == 401
    assert json.loads(e.value.read())["error"]["status"] == "UNAUTHENTICATED"


def test_unknown_method_is_400(clean):
    with pytest.raises(urllib.error.HTTPError) as e:
        raw_generate(clean.base, "/v1beta/models/gpt:embedContent?key=demo-key")
    assert e.value.code == 400
    assert json.loads(e.value.read())["error"]["status"] == "INVALID_ARGUMENT"
