/**
 * Vercel's AI SDK (`ai` and `@ai-sdk/openai`, pinned in tools/npm) as a user writes it, against
 * the proxy: `node ai_sdk.mjs <base URL> <key>` prints what each scenario got, as JSON.
 *
 * The provider's default model speaks the Responses API with `store` on, so a later turn sends
 * the earlier answer back as an `item_reference` to its id, not as text. What each request sent
 * is recorded too (the input items' types), to show the references really went out.
 */
import { createRequire } from "node:module";
import { pathToFileURL } from "node:url";

/** A package as installed in tools/npm (this file is outside it, so a bare import would not find it). */
const installed = (name) =>
  import(pathToFileURL(createRequire(new URL("../../tools/npm/", import.meta.url)).resolve(name)).href);
const { generateText, jsonSchema, stepCountIs, streamText, tool } = await installed("ai");
const { createOpenAI } = await installed("@ai-sdk/openai");

const [baseURL, apiKey] = process.argv.slice(2);
const sent = [];
const openai = createOpenAI({
  baseURL,
  apiKey,
  fetch: async (url, init) => {
    const body = init?.body ? JSON.parse(init.body) : {};
    sent.push((Array.isArray(body.input) ? body.input : []).map((item) => item.type ?? item.role));
    return fetch(url, init);
  },
});

/** What the `inspect` bot was sent: each message's role and text. */
const seen = (text) => JSON.parse(text).query.map((m) => [m.role, m.content]);

/** Two turns, the second built from the first's `response.messages`. */
async function conversation(first) {
  sent.length = 0;
  const messages = [{ role: "user", content: "what is the capital of France?" }];
  messages.push(...(await first(messages)));
  messages.push({ role: "user", content: "and of Italy?" });
  const second = await generateText({ model: openai("inspect"), messages });
  return { seen: seen(second.text), sent: [...sent] };
}

const generated = await conversation(async (messages) => {
  const result = await generateText({ model: openai("echo"), messages });
  return result.response.messages;
});

const streamed = await conversation(async (messages) => {
  const result = streamText({ model: openai("echo"), messages });
  for await (const _ of result.textStream); // read as it streams
  return (await result.response).messages;
});

sent.length = 0;
const toolLoop = await generateText({
  model: openai("weather"),
  prompt: "What is the weather in Paris?",
  tools: {
    get_weather: tool({
      description: "Current weather for a city",
      inputSchema: jsonSchema({
        type: "object",
        properties: { city: { type: "string" } },
        required: ["city"],
      }),
      execute: async ({ city }) => `sunny in ${city}`,
    }),
  },
  stopWhen: stepCountIs(3),
});

console.log(
  JSON.stringify({
    generated,
    streamed,
    tools: { text: toolLoop.text, steps: toolLoop.steps.length, sent: [...sent] },
  }),
);
