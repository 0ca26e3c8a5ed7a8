// A tool round trip with the openai npm package: the model asks for a tool, we run it, it answers with the result.
import OpenAI from "openai";

const client = new OpenAI({
  baseURL: (process.env.LOCKGATE_URL ?? "http://127.0.0.1:4000") + "/v1",
  apiKey: process.env.LOCKGATE_KEY,
});

// The local function the model may call (a real one would ask a weather service).
function getWeather({ city, unit = "celsius" }) {
  return { city, temperature: unit === "celsius" ? 18 : 64, unit };
}

const tools = [
  {
    type: "function",
    function: {
      name: "get_weather",
      description: "The current weather in a city",
      parameters: {
        type: "object",
        properties: { city: { type: "string" }, unit: { type: "string", enum: ["celsius", "fahrenheit"] } },
        required: ["city", "unit"],
        additionalProperties: false,
      },
    },
  },
];
const messages = [{ role: "user", content: "What is the weather in Paris?" }];

for (;;) {
  const reply = await client.chat.completions.create({ model: "gpt-4o-mini", messages, tools });
  const message = reply.choices[0].message;
  if (!message.tool_calls?.length) {
    console.log("answer:", message.content);
    break;
  }
  messages.push(message); // the assistant's turn, with its tool calls
  for (const call of message.tool_calls) {
    const args = JSON.parse(call.function.arguments);
    console.log("call:", call.function.name, JSON.stringify(args));
    messages.push({ role: "tool", tool_call_id: call.id, content: JSON.stringify(getWeather(args)) });
  }
}
