"""The official openai SDK against `switchyard demo`, served by each of the
four simulated backend kinds."""

import json
import urllib.error
import urllib.request

import openai
import pytest

from conftest import digest

# route -> (vendor prefix in the simulator, upstream model)
BACKENDS = {
    "claude": ("anthropic", "claude-sonnet-4-5"),
    "gpt": ("openai", "gpt-5"),
    "gemini": ("gemini", "gemini-2.5-pro"),
    "local": ("local", "qwen3-32b"),
}

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"location": {"type": "string"}, "days": {"type": "integer"}},
            "required": ["location"],
        },
    },
}


@pytest.fixture
def client(clean):
    return openai.OpenAI(base_url=f"{clean.base}/v1", api_key="demo-key", max_retries=0)


@pytest.mark.parametrize("route", BACKENDS)
def test_non_stream(client, route):
    vendor, model = BACKENDS[route]
    raw = client.chat.completions.with_raw_response.create(
        model=route,
        messages=[{"role": "system", "content": "be brief"},
                  {"role": "user", "content": "hello there"}],
        temperature=0.5,
    )
    resp = raw.parse()
    text = resp.choices[0].message.content
    assert text.startswith(f"[{vendor}/{model}] digest={digest('hello there')}")
    assert "t=0.5" in text
    assert resp.model == model
    assert resp.choices[0].finish_reason == "stop"
    assert resp.usage.prompt_tokens > 0 and resp.usage.completion_tokens > 0
    assert raw.headers["x-switchyard-route"] == route
    assert raw.headers["x-switchyard-target"] == route
    assert raw.headers["x-switchyard-attempts"] == "1"


@pytest.mark.parametrize("route", BACKENDS)
def test_stream_with_usage(client, route):
    vendor, model = BACKENDS[route]
    stream = client.chat.completions.create(
        model=route, stream=True, stream_options={"include_usage": True},
        messages=[{"role": "user", "content": "stream me"}],
    )
    text, finish, usage, chunks = "", None, None, 0
    for chunk in stream:
        chunks += 1
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
            finish = chunk.choices[0].finish_reason or finish
        if chunk.usage:
            usage = chunk.usage
    assert chunks > 3, "the answer must arrive in several chunks"
    assert text.startswith(f"[{vendor}/{model}] digest={digest('stream me')}")
    assert finish == "stop"
    assert usage is not None and usage.completion_tokens > 0


@pytest.mark.parametrize("route", BACKENDS)
def test_max_tokens_and_stop(client, route):
    resp = client.chat.completions.create(
        model=route, max_tokens=3, messages=[{"role": "user", "content": "count"}])
    assert resp.choices[0].finish_reason == "length"
    assert len(resp.choices[0].message.content.split()) == 3
    resp = client.chat.completions.create(
        model=route, stop=["digest="], messages=[{"role": "user", "content": "stop early"}])
    assert resp.choices[0].finish_reason == "stop"
    assert "digest=" not in resp.choices[0].message.content


@pytest.mark.parametrize("route", BACKENDS)
def test_tool_call_streamed_then_round_trip(client, route):
    vendor, model = BACKENDS[route]
    messages = [{"role": "user", "content": "weather in Paris?"}]
    stream = client.chat.completions.create(
        model=route, stream=True, tools=[WEATHER_TOOL], messages=messages)
    calls, pieces, finish = {}, 0, None
    for chunk in stream:
        if not chunk.choices:
            continue
        delta = chunk.choices[0].delta
        finish = chunk.choices[0].finish_reason or finish
        for tc in delta.tool_calls or []:
            call = calls.setdefault(tc.index, {"id": None, "name": None, "args": ""})
            call["id"] = tc.id or call["id"]
            if tc.function and tc.function.name:
                call["name"] = tc.function.name
            if tc.function and tc.function.arguments:
                call["args"] += tc.function.arguments
                pieces += 1
    assert finish == "tool_calls"
    assert len(calls) == 1
    call = calls[0]
    assert call["name"] == "get_weather" and call["id"]
    assert json.loads(call["args"]) == {"location": "sim-location", "days": 1}
    # Anthropic and OpenAI-style vendors stream arguments in pieces; Gemini
    # sends a function call whole.
    assert pieces >= (1 if route == "gemini" else 3)

    messages += [
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": call["id"], "type": "function",
             "function": {"name": "get_weather", "arguments": call["args"]}}]},
        {"role": "tool", "tool_call_id": call["id"], "content": "sunny, 21C"},
    ]
    final = client.chat.completions.create(model=route, tools=[WEATHER_TOOL], messages=messages)
    text = final.choices[0].message.content
    assert text.startswith(f"[{vendor}/{model}] tool-result={digest('sunny, 21C')}")
    assert final.choices[0].finish_reason == "stop"


def test_image_reaches_the_backend(client):
    resp = client.chat.completions.create(model="claude", messages=[{"role": "user", "content": [
        {"type": "text", "text": "what is this"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
    ]}])
    assert "images=1" in resp.choices[0].message.content


def test_models_lists_routes(client):
    ids = {m.id for m in client.models.list()}
    assert ids == {"claude", "gpt", "gemini", "local", "frontier"}


def test_unknown_route_is_not_found(client):
    with pytest.raises(openai.NotFoundError) as e:
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])
    assert "unknown route `nope`" in str(e.value)


def test_invalid_request_is_bad_request(client):
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="gpt", messages=[])
    assert "messages" in str(e.value)


def test_missing_key_is_401_in_openai_shape(clean):
    req = urllib.request.Request(
        f"{clean.base}/v1/chat/completions", method="POST",
        data=json.dumps({"model": "gpt", "messages": [{"role": "user", "content": "x"}]}).encode(),
        headers={"content-type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=10)
    assert e.value.code == 401
    body = json.loads(e.value.read())
    assert body["error"]["code"] == "invalid_api_key"
    assert "missing API key" in body["error"]["message"]


@pytest.mark.parametrize("status,exc", [
    (429, openai.RateLimitError),
    (529, openai.InternalServerError),
    (500, openai.InternalServerError),
])
def test_vendor_errors_map_to_the_sdk_exception(fresh, status, exc):
    client = openai.OpenAI(base_url=f"{fresh.base}/v1", api_key="demo-key", max_retries=0)
    fresh.knobs("anthropic", "claude-sonnet-4-5", error_status=status, error_rate=1.0)
    with pytest.raises(exc) as e:
        client.chat.completions.create(model="claude", messages=[{"role": "user", "content": "x"}])
    assert "claude" in str(e.value)
    assert "sim-key" not in str(e.value)


def test_suspended_primary_fails_over_invisibly(fresh):
    client = openai.OpenAI(base_url=f"{fresh.base}/v1", api_key="demo-key", max_retries=0)
    clean = fresh
    clean.knobs("anthropic", "claude-sonnet-4-5", suspended=True)
    raw = client.chat.completions.with_raw_response.create(
        model="frontier", messages=[{"role": "user", "content": "still there?"}])
    resp = raw.parse()
    assert raw.headers["x-switchyard-target"] == "gpt"
    assert raw.headers["x-switchyard-attempts"] == "2"
    assert resp.choices[0].message.content.startswith(f"[openai/gpt-5] digest={digest('still there?')}")
    counts = clean.counts()
    assert counts.get("anthropic/claude-sonnet-4-5") == 1
    assert counts.get("openai/gpt-5") == 1


def test_stream_failover_before_first_token(fresh):
    client = openai.OpenAI(base_url=f"{fresh.base}/v1", api_key="demo-key", max_retries=0)
    fresh.knobs("anthropic", "claude-sonnet-4-5", in_band_error=True)
    stream = client.chat.completions.create(
        model="frontier", stream=True, messages=[{"role": "user", "content": "hi"}])
    text = "".join((c.choices[0].delta.content or "") for c in stream if c.choices)
    assert text.startswith("[openai/gpt-5]")


def test_stream_cut_mid_answer_raises(fresh):
    client = openai.OpenAI(base_url=f"{fresh.base}/v1", api_key="demo-key", max_retries=0)
    fresh.knobs("openai", "gpt-5", reset_after_tokens=3)
    stream = client.chat.completions.create(
        model="gpt", stream=True, messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.APIError):
        for _ in stream:
            pass
