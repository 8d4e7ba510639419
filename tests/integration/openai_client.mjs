// openai_client.mjs — the official `openai` npm client against quantd.
//
// usage: node openai_client.mjs BASE_URL MODEL
// (BASE_URL like http://127.0.0.1:8080/v1). Lists the models, runs a
// non-streamed and a streamed chat completion and a text completion, and
// checks what the client parsed. Exit 0 on success, 1 with a message.
import OpenAI from "openai";

const [baseURL, model] = process.argv.slice(2);
if (!baseURL || !model) {
  console.error("usage: node openai_client.mjs BASE_URL MODEL");
  process.exit(2);
}

function check(cond, what) {
  if (!cond) {
    console.error("FAIL: " + what);
    process.exit(1);
  }
}

const client = new OpenAI({ baseURL, apiKey: "unused", maxRetries: 0, timeout: 60000 });

const models = await client.models.list();
check(models.data.some((m) => m.id === model), `model ${model} listed`);

const messages = [
  { role: "system", content: "Be brief." },
  { role: "user", content: "Say hello." },
];

// Non-streamed.
const r = await client.chat.completions.create({ model, messages, max_tokens: 8, temperature: 0 });
check(r.object === "chat.completion", "object chat.completion");
check(r.choices.length === 1, "one choice");
check(typeof r.choices[0].message.content === "string", "message content is a string");
check(r.choices[0].message.role === "assistant", "role assistant");
check(["stop", "length"].includes(r.choices[0].finish_reason), "finish_reason");
check(r.usage.prompt_tokens > 0, "usage.prompt_tokens > 0");
check(r.usage.completion_tokens > 0 && r.usage.completion_tokens <= 8, "completion_tokens in 1..8");
check(r.usage.total_tokens === r.usage.prompt_tokens + r.usage.completion_tokens, "total_tokens");

// Streamed, same greedy request: same text, usage in the last chunk.
const stream = await client.chat.completions.create({
  model, messages, max_tokens: 8, temperature: 0, stream: true,
  stream_options: { include_usage: true },
});
let text = "", chunks = 0, finish = null, usage = null;
for await (const c of stream) {
  chunks++;
  check(c.object === "chat.completion.chunk", "chunk object");
  if (c.usage) usage = c.usage;
  for (const ch of c.choices) {
    if (ch.delta && typeof ch.delta.content === "string") text += ch.delta.content;
    if (ch.finish_reason) finish = ch.finish_reason;
  }
}
check(chunks >= 2, "at least two chunks");
check(finish === r.choices[0].finish_reason, "stream finish_reason equals non-stream");
check(text === r.choices[0].message.content,
  `streamed text ${JSON.stringify(text)} equals non-streamed ${JSON.stringify(r.choices[0].message.content)}`);
check(usage && usage.completion_tokens === r.usage.completion_tokens, "stream usage");

// Text completion.
const t = await client.completions.create({ model, prompt: "Once upon a time", max_tokens: 4, temperature: 0 });
check(t.object === "text_completion" && typeof t.choices[0].text === "string", "text completion");

// An error reaches the client as APIError with OpenAI's fields.
try {
  await client.chat.completions.create({ model: "no-such-model", messages, max_tokens: 2 });
  check(false, "unknown model must fail");
} catch (e) {
  check(e instanceof OpenAI.APIError && e.status === 404, `404 APIError (got ${e})`);
}

console.log(`ok: ${chunks} chunks, text ${JSON.stringify(text)}, usage ${JSON.stringify(r.usage)}`);
