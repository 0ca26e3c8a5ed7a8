// openai-node's client.responses against a real `lockgate serve` (started by tests/test_responses_node_e2e.py,
// which also scripts the fake OpenAI upstream behind it). openai-node's stream accumulator is the strict one:
// it requires response.created first and output indexes appended densely, in order (validateArrayAppend).
import assert from "node:assert/strict";
import { test } from "node:test";
import OpenAI from "openai";

const client = new OpenAI({ baseURL: process.env.LOCKGATE_BASE_URL, apiKey: process.env.LOCKGATE_API_KEY, maxRetries: 0 });
const MODEL = process.env.LOCKGATE_MODEL;
const TEXT = "Hello from the fake upstream.";
const WEATHER = {
  type: "function",
  name: "get_weather",
  description: "Weather now",
  parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"], additionalProperties: false },
  strict: true,
};

test("create: text", async () => {
  const response = await client.responses.create({ model: MODEL, input: "Hi", instructions: "Be brief." });
  assert.match(response.id, /^resp_/);
  assert.equal(response.status, "completed");
  assert.equal(response.output_text, TEXT);
  assert.equal(response.usage.total_tokens, response.usage.input_tokens + response.usage.output_tokens);
  assert.equal(typeof response.usage.input_tokens_details.cached_tokens, "number");
});

test("create with stream: true, read with for await", async () => {
  const stream = await client.responses.create({ model: MODEL, input: "Hi", stream: true });
  const events = [];
  for await (const event of stream) events.push(event);
  assert.equal(events[0].type, "response.created");
  assert.deepEqual(
    events.map((e) => e.sequence_number),
    events.map((_, i) => i),
  );
  const last = events.at(-1);
  assert.equal(last.type, "response.completed");
  const deltas = events.filter((e) => e.type === "response.output_text.delta").map((e) => e.delta);
  assert.equal(deltas.join(""), TEXT);
  assert.equal(new Set(events.filter((e) => e.response).map((e) => e.response.id)).size, 1);
  assert.equal(last.response.output[0].content[0].text, TEXT);
});

test("responses.stream() helper: events and finalResponse()", async () => {
  const deltas = [];
  const stream = client.responses.stream({ model: MODEL, input: "Hi" });
  stream.on("response.output_text.delta", (event) => deltas.push(event.delta));
  const final = await stream.finalResponse();
  assert.equal(deltas.join(""), TEXT);
  // finalResponse() is the response.completed snapshot (openai-node sets no output_text on it).
  assert.equal(final.output[0].content[0].text, TEXT);
  assert.equal(final.status, "completed");
});

test("tool round trip: two parallel calls through responses.stream(), then function_call_output", async () => {
  // The fake answers the first request with tools with two interleaved calls, the second with text.
  const stream = client.responses.stream({ model: MODEL, input: "Weather in Paris and Rome?", tools: [WEATHER] });
  const argsDone = [];
  stream.on("response.function_call_arguments.done", (event) => argsDone.push(event.output_index));
  const first = await stream.finalResponse();
  const calls = first.output.filter((item) => item.type === "function_call");
  assert.deepEqual(
    calls.map((c) => [c.call_id, c.name, JSON.parse(c.arguments)]),
    [
      ["call_n1", "get_weather", { city: "Paris" }],
      ["call_n2", "get_weather", { city: "Rome" }],
    ],
  );
  assert.deepEqual(argsDone.sort(), [0, 1]);

  const second = await client.responses.create({
    model: MODEL,
    previous_response_id: first.id,
    input: calls.map((c, i) => ({ type: "function_call_output", call_id: c.call_id, output: ["18C", "25C"][i] })),
    tools: [WEATHER],
  });
  assert.equal(second.status, "completed");
  assert.equal(second.output_text, "Paris 18C, Rome 25C.");
  assert.equal(second.previous_response_id, first.id);
});

test("errors are the SDK's classes", async () => {
  await assert.rejects(client.responses.create({ model: "no-such-model", input: "Hi" }), OpenAI.NotFoundError);
  await assert.rejects(
    client.responses.create({ model: MODEL, input: "Hi", tools: [{ type: "web_search" }] }),
    (err) => err instanceof OpenAI.BadRequestError && err.param === "tools",
  );
  const nobody = new OpenAI({ baseURL: process.env.LOCKGATE_BASE_URL, apiKey: "lg-wrong-key-000000", maxRetries: 0 });
  await assert.rejects(nobody.responses.create({ model: MODEL, input: "Hi" }), OpenAI.AuthenticationError);
});
