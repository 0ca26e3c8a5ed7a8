// A chat completion through Lockgate with the openai npm package: only baseURL and the key change.
import OpenAI from "openai";

const client = new OpenAI({
  baseURL: (process.env.LOCKGATE_URL ?? "http://127.0.0.1:4000") + "/v1",
  apiKey: process.env.LOCKGATE_KEY,
});
const reply = await client.chat.completions.create({
  model: "gpt-4o-mini",
  messages: [{ role: "user", content: "Name one prime number." }],
});
console.log(reply.choices[0].message.content);
console.log("tokens:", reply.usage?.total_tokens);
