// ref-bench.mjs — time llama.cpp (prebuilt CPU build inside node-llama-cpp)
// the way llama-bench does: pp = one batch of P prompt tokens, tg = N
// single-token decode steps. Prints one JSON object per test.
//
//   node bench/ref-bench.mjs MODEL.gguf [-p 512] [-n 128] [-t 2] [-r 3] [--batch B]
import { getLlama } from "node-llama-cpp";
import { readFileSync } from "node:fs";

const args = process.argv.slice(2);
const opt = { p: 512, n: 128, t: 2, r: 3, batch: 0 };
let modelPath = null;
for (let i = 0; i < args.length; i++) {
  const a = args[i];
  if (a === "-p") opt.p = +args[++i];
  else if (a === "-n") opt.n = +args[++i];
  else if (a === "-t") opt.t = +args[++i];
  else if (a === "-r") opt.r = +args[++i];
  else if (a === "--batch") opt.batch = +args[++i];
  else modelPath = a;
}
if (!modelPath) {
  console.error("usage: ref-bench.mjs MODEL.gguf [-p P] [-n N] [-t T] [-r R]");
  process.exit(2);
}

const llama = await getLlama({ gpu: false, build: "never", logLevel: "error" });
const model = await llama.loadModel({ modelPath });
const toks0 = model.fileInfo?.metadata?.tokenizer?.ggml?.tokens;
const nVocab = Array.isArray(toks0) ? toks0.length : 32000;
const sequences = Math.max(1, opt.batch);
const context = await model.createContext({
  contextSize: Math.max(opt.p, opt.n) * sequences + 64,
  batchSize: Math.max(opt.p, sequences),
  threads: opt.t,
  sequences,
  // Dispatch each batch at once instead of waiting for the next event-loop
  // cycle, so per-step overhead stays out of the figures.
  batching: { dispatchSchedule: "nextTick" },
});

// Deterministic pseudo-random token ids from the ordinary range.
function tokens(n, seed) {
  const out = [];
  let x = seed >>> 0;
  for (let i = 0; i < n; i++) {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    out.push(259 + (x % Math.max(1, Math.min(20000, nVocab - 259))));
  }
  return out;
}
function stats(v) {
  const m = v.reduce((a, b) => a + b, 0) / v.length;
  const sd = Math.sqrt(v.reduce((a, b) => a + (b - m) ** 2, 0) / Math.max(1, v.length - 1));
  return { mean: m, sd };
}
// Which of ggml's CPU variants the loader chose (libggml-cpu-VARIANT.so).
const cpuVariant = [...new Set(readFileSync("/proc/self/maps", "utf8")
  .match(/libggml-cpu-[a-z0-9_]+\.so/g) ?? [])].join(",") || "unknown";
const report = (test, v, extra = {}) => {
  const s = stats(v);
  console.log(JSON.stringify({ impl: "llama.cpp (node-llama-cpp 3.21.1)", model: modelPath,
    cpu_variant: cpuVariant, test, threads: opt.t, tokens_per_s: +s.mean.toFixed(2), sd: +s.sd.toFixed(2), ...extra }));
};

const seq = context.getSequence();
if (opt.p > 0) {
  const v = [];
  for (let r = 0; r <= opt.r; r++) {
    await seq.clearHistory();
    const toks = tokens(opt.p, r + 1);
    const t0 = process.hrtime.bigint();
    await seq.evaluateWithoutGeneratingNewTokens(toks);
    const dt = Number(process.hrtime.bigint() - t0) / 1e9;
    if (r > 0) v.push(opt.p / dt); // first run is warm-up
  }
  report(`pp${opt.p}`, v);
}
if (opt.n > 0) {
  const v = [];
  for (let r = 0; r <= opt.r; r++) {
    await seq.clearHistory();
    await seq.evaluateWithoutGeneratingNewTokens([1]);
    // n single-token decode steps (like llama-bench tg: decode only, no
    // sampling), each a separate llama_decode of one token.
    const toks = tokens(opt.n, 100 + r);
    const t0 = process.hrtime.bigint();
    for (const tok of toks) await seq.evaluateWithoutGeneratingNewTokens([tok]);
    const dt = Number(process.hrtime.bigint() - t0) / 1e9;
    if (r > 0) v.push(opt.n / dt);
  }
  report(`tg${opt.n}`, v);
}
await context.dispose();
await model.dispose();
