// A streamed chat completion: text as it arrives, then the usage from the last chunk.
import OpenAI from "openai";

const client = new OpenAI({
  baseURL: (process.env.LOCKGATE_URL ?? "http://127.0.0.1:4000") + "/v1",
  apiKey: process.env.LOCKGATE_KEY,
});
const stream = await client.chat.completions.create({
  model: "gpt-4o-mini",
  messages: [{ role: "user", content: "Count to three." }],
  stream: true,
  stream_options: { include_usage: true },
});
let text = "";
for await (const chunk of stream) {
  text += chunk.choices[0]?.delta?.content ?? "";
  if (chunk.usage) console.log(text + `\nusage: ${chunk.usage.prompt_tokens} in, ${chunk.usage.completion_tokens} out`);
}
