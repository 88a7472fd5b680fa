"""The official openai SDK's Responses API (`responses.create`,
`responses.stream`) against `switchyard demo`, served by each of the four
simulated backend kinds, and chained conversations (`previous_response_id`)
that survive a failover."""

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
    "name": "get_weather",
    "description": "Weather for a city",
    "parameters": {
        "type": "object",
        "properties": {"location": {"type": "string"}, "days": {"type": "integer"}},
        "required": ["location"],
    },
}


def history_digest(turns):
    """The simulator's digest of a conversation, computed independently:
    `user: TEXT` / `assistant: TEXT` lines of every turn, in order."""
    return digest("\n".join(f"{role}: {text}" for role, text in turns))


def client_for(demo):
    return openai.OpenAI(base_url=f"{demo.base}/v1", api_key="demo-key", max_retries=0)


@pytest.fixture
def client(clean):
    return client_for(clean)


def admin(demo, path):
    req = urllib.request.Request(
        f"{demo.admin}{path}", data=json.dumps({"reason": "test"}).encode(), method="POST",
        headers={"authorization": f"Bearer {demo.token}", "content-type": "application/json"})
    urllib.request.urlopen(req, timeout=5).read()


@pytest.mark.parametrize("route", BACKENDS)
def test_create_text_with_usage_and_headers(client, route):
    vendor, model = BACKENDS[route]
    raw = client.responses.with_raw_response.create(
        model=route, input="hello there", temperature=0.5, metadata={"run": "t1"})
    resp = raw.parse()
    assert resp.id.startswith("resp_")
    assert resp.object == "response" and resp.status == "completed"
    assert resp.model == model
    assert resp.output_text.startswith(f"[{vendor}/{model}] digest={digest('hello there')} t=0.5")
    assert resp.output[0].type == "message" and resp.output[0].role == "assistant"
    assert resp.output[0].content[0].type == "output_text"
    assert resp.metadata == {"run": "t1"}
    u = resp.usage
    assert u.input_tokens > 0 and u.output_tokens > 0
    assert u.total_tokens == u.input_tokens + u.output_tokens
    assert u.output_tokens_details.reasoning_tokens == 0
    assert raw.headers["x-switchyard-route"] == route
    assert raw.headers["x-switchyard-target"] == route
    assert raw.headers["x-switchyard-attempts"] == "1"


@pytest.mark.parametrize("route", BACKENDS)
def test_instructions_reach_the_backend(client, route):
    plain = client.responses.create(model=route, input="short question")
    told = client.responses.create(
        model=route, input="short question",
        instructions="answer in one word please, and nothing else at all")
    assert told.instructions.startswith("answer in one word")
    # The simulator counts system words as prompt tokens.
    assert told.usage.input_tokens >= plain.usage.input_tokens + 10


@pytest.mark.parametrize("route", BACKENDS)
def test_image_reaches_the_backend(client, route):
    resp = client.responses.create(model=route, input=[{"role": "user", "content": [
        {"type": "input_text", "text": "what is this"},
        {"type": "input_image", "image_url": "data:image/png;base64,iVBORw0KGgo="},
    ]}])
    assert f"digest={digest('what is this')} images=1" in resp.output_text


@pytest.mark.parametrize("route", BACKENDS)
def test_stream_events_in_the_sdk_order(client, route):
    vendor, model = BACKENDS[route]
    with client.responses.stream(model=route, input="stream me") as stream:
        events = list(stream)
        final = stream.get_final_response()
    kinds = [e.type for e in events]
    assert kinds[:4] == ["response.created", "response.in_progress",
                         "response.output_item.added", "response.content_part.added"]
    assert kinds[-4:] == ["response.output_text.done", "response.content_part.done",
                          "response.output_item.done", "response.completed"]
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert len(deltas) > 3, "the answer must arrive in several deltas"
    seqs = [e.sequence_number for e in events]
    assert seqs == list(range(len(events)))
    text = "".join(deltas)
    assert text.startswith(f"[{vendor}/{model}] digest={digest('stream me')}")
    assert final.output_text == text
    assert final.usage.output_tokens > 0


@pytest.mark.parametrize("route", BACKENDS)
def test_tool_round_trip_with_function_call_output(client, route):
    vendor, model = BACKENDS[route]
    first = client.responses.create(
        model=route, input="weather in Paris?", tools=[WEATHER_TOOL], tool_choice="required")
    calls = [o for o in first.output if o.type == "function_call"]
    assert len(calls) == 1 and calls[0].name == "get_weather"
    assert json.loads(calls[0].arguments) == {"location": "sim-location", "days": 1}
    # Chained through the gateway's store.
    second = client.responses.create(
        model=route, previous_response_id=first.id, tools=[WEATHER_TOOL],
        input=[{"type": "function_call_output", "call_id": calls[0].call_id, "output": "sunny, 21C"}])
    assert second.output_text.startswith(f"[{vendor}/{model}] tool-result={digest('sunny, 21C')}")
    # The same turn with the history sent by the app itself.
    manual = client.responses.create(
        model=route, tools=[WEATHER_TOOL],
        input=[{"role": "user", "content": "weather in Paris?"},
               *[o.model_dump(exclude_none=True) for o in first.output],
               {"type": "function_call_output", "call_id": calls[0].call_id, "output": "sunny, 21C"}])
    assert manual.output_text == second.output_text


@pytest.mark.parametrize("route", BACKENDS)
def test_streamed_function_call_arguments(client, route):
    with client.responses.stream(
            model=route, input="weather?", tools=[WEATHER_TOOL],
            tool_choice={"type": "function", "name": "get_weather"}) as stream:
        events = list(stream)
        final = stream.get_final_response()
    deltas = [e.delta for e in events if e.type == "response.function_call_arguments.delta"]
    done = [e for e in events if e.type == "response.function_call_arguments.done"]
    # Gemini streams a function call whole; the others in pieces.
    assert len(deltas) >= (1 if route == "gemini" else 2)
    assert len(done) == 1 and done[0].arguments == "".join(deltas)
    call = final.output[0]
    assert call.type == "function_call" and call.arguments == done[0].arguments
    assert json.loads(call.arguments)["location"] == "sim-location"


def test_chained_conversation_survives_a_failover(fresh):
    client = client_for(fresh)
    first = client.responses.create(model="frontier", input="turn one")
    assert first.output_text.startswith("[anthropic/claude-sonnet-4-5]")

    admin(fresh, "/admin/targets/claude/suspend")
    raw = client.responses.with_raw_response.create(
        model="frontier", previous_response_id=first.id, input="turn two")
    second = raw.parse()
    assert raw.headers["x-switchyard-target"] == "gpt"
    history = [("user", "turn one"), ("assistant", first.output_text), ("user", "turn two")]
    assert second.output_text.startswith(
        f"[openai/gpt-5] digest={digest('turn two')} history={history_digest(history)} ")
    assert second.previous_response_id == first.id

    admin(fresh, "/admin/targets/claude/resume")
    third = client.responses.create(
        model="frontier", previous_response_id=second.id, input="turn three")
    history += [("assistant", second.output_text), ("user", "turn three")]
    assert third.output_text.startswith(
        f"[anthropic/claude-sonnet-4-5] digest={digest('turn three')} "
        f"history={history_digest(history)} ")


def test_streamed_turns_are_stored_and_can_be_fetched_and_deleted(client):
    with client.responses.stream(model="gemini", input="first") as stream:
        first = stream.get_final_response()
    fetched = client.responses.retrieve(first.id)
    assert fetched.output_text == first.output_text and fetched.status == "completed"
    second = client.responses.create(model="local", previous_response_id=first.id, input="second")
    history = [("user", "first"), ("assistant", first.output_text), ("user", "second")]
    assert f"history={history_digest(history)}" in second.output_text
    client.responses.delete(first.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(first.id)
    with pytest.raises(openai.BadRequestError) as err:
        client.responses.create(model="gpt", previous_response_id=first.id, input="third")
    assert err.value.code == "previous_response_not_found"


def test_unknown_previous_response_is_a_bad_request(clean):
    client = client_for(clean)
    with pytest.raises(openai.BadRequestError) as err:
        client.responses.create(model="gpt", previous_response_id="resp_never", input="x")
    assert err.value.status_code == 400
    assert err.value.code == "previous_response_not_found"
    assert err.value.param == "previous_response_id"
    assert "resp_never" in err.value.message
    assert clean.counts() == {}, "no backend may answer without the context"


def test_store_false_keeps_nothing(client):
    resp = client.responses.create(model="gpt", input="forget me", store=False)
    assert resp.store is False
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(resp.id)
    with pytest.raises(openai.BadRequestError):
        client.responses.create(model="gpt", previous_response_id=resp.id, input="again")


def test_refused_features_are_bad_requests(client):
    with pytest.raises(openai.BadRequestError) as err:
        client.responses.create(model="gpt", input="x", tools=[{"type": "web_search"}])
    assert err.value.param == "tools[0].type"
    with pytest.raises(openai.BadRequestError) as err:
        client.responses.create(model="gpt", input="x", text={
            "format": {"type": "json_schema", "name": "s", "schema": {"type": "object"}}})
    assert err.value.param == "text.format"
    with pytest.raises(openai.NotFoundError):
        client.responses.create(model="no-such-route", input="x")


def test_missing_key_is_401_in_openai_shape(clean):
    for method, path, body in [("POST", "/v1/responses", b'{"model":"gpt","input":"x"}'),
                               ("GET", "/v1/responses/resp_x", None),
                               ("DELETE", "/v1/responses/resp_x", None)]:
        req = urllib.request.Request(f"{clean.base}{path}", data=body, method=method,
                                     headers={"content-type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(req, timeout=5)
        assert err.value.code == 401, path
        assert json.loads(err.value.read())["error"]["code"] == "invalid_api_key"


def test_cut_stream_raises_instead_of_returning_partial_text(fresh):
    client = client_for(fresh)
    fresh.knobs("openai", "gpt-5", reset_after_tokens=3)
    seen = []
    with pytest.raises(openai.APIError):
        with client.responses.stream(model="gpt", input="cut me") as stream:
            for event in stream:
                seen.append(event.type)
    assert "response.output_text.delta" in seen, "the stream must have begun"
    assert "response.completed" not in seen
