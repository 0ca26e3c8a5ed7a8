// The Vercel AI SDK 5 on Lockgate through @ai-sdk/openai-compatible: generateText, streamText,
// generateObject with a zod schema, and a tool the SDK runs itself between two steps.
import { createOpenAICompatible } from "@ai-sdk/openai-compatible";
import { generateObject, generateText, stepCountIs, streamText, tool } from "ai";
import { z } from "zod";

const lockgate = createOpenAICompatible({
  name: "lockgate",
  baseURL: (process.env.LOCKGATE_URL ?? "http://127.0.0.1:4000") + "/v1",
  apiKey: process.env.LOCKGATE_KEY,
  includeUsage: true, // usage on streams too
  supportsStructuredOutputs: true, // send zod schemas as response_format json_schema
});
const model = lockgate("gpt-4o-mini");

const { text, usage } = await generateText({ model, prompt: "Name one prime number." });
console.log("generateText:", text);
console.log("tokens:", usage.totalTokens);

const stream = streamText({ model, prompt: "Count to three." });
let streamed = "";
for await (const delta of stream.textStream) streamed += delta;
console.log("streamText:", streamed);

const { object } = await generateObject({
  model,
  schema: z.object({ name: z.string(), population: z.number().int(), coastal: z.boolean(), landmarks: z.array(z.string()) }),
  prompt: "Describe the city of Lisbon.",
});
console.log("generateObject:", JSON.stringify(object));

const withTools = await generateText({
  model,
  prompt: "What is the weather in Paris?",
  tools: {
    getWeather: tool({
      description: "The current weather in a city",
      inputSchema: z.object({ city: z.string() }),
      execute: async ({ city }) => ({ city, temperature: 18 }),
    }),
  },
  stopWhen: stepCountIs(3), // call the tool, then let the model answer with its result
});
for (const call of withTools.steps.flatMap((step) => step.toolCalls)) {
  console.log("tool call:", call.toolName, JSON.stringify(call.input));
}
console.log("answer:", withTools.text);
