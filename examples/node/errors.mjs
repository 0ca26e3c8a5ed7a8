// Lockgate's errors are OpenAI's: the SDK throws its own error classes.
import OpenAI from "openai";

const baseURL = (process.env.LOCKGATE_URL ?? "http://127.0.0.1:4000") + "/v1";
const client = new OpenAI({ baseURL, apiKey: process.env.LOCKGATE_KEY, maxRetries: 0 });
try {
  await client.chat.completions.create({ model: "no-such-model", messages: [{ role: "user", content: "hi" }] });
} catch (err) {
  if (err instanceof OpenAI.NotFoundError) console.log("NotFoundError", err.status, err.code);
  else throw err;
}
try {
  await new OpenAI({ baseURL, apiKey: "lg-not-a-real-key", maxRetries: 0 }).models.list();
} catch (err) {
  if (err instanceof OpenAI.AuthenticationError) console.log("AuthenticationError", err.status, err.code);
  else throw err;
}
