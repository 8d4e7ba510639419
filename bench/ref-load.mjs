#!/usr/bin/env node
// ref-load.mjs — the reference side of bench/load.mjs: the same load
// (N concurrent requests with distinct prompts, greedy, a fixed number of
// generated tokens) run by llama.cpp through node-llama-cpp, as one
// context with N sequences — the way llama-server serves N slots, batching
// the sequences' tokens into one decode per step.
// Reports aggregate generated tokens/s, time to first token and
// inter-token latency percentiles for each N, in load.mjs's table format.
//
//   node bench/ref-load.mjs MODEL.gguf [--n 1,4,8,16] [--max-tokens 64]
//        [--prompt-words 12] [--threads 2] [--json]
// Needs node-llama-cpp (bench/setup-reference.sh installs it).
import { getLlama } from 'node-llama-cpp';
import { now, pct, prompt } from './loadgen.mjs';


const argv = process.argv.slice(2);
const modelPath = argv.find((a, i) => !a.startsWith('--') && !(argv[i - 1] || '').startsWith('--'));
if (!modelPath) {
  console.error('usage: ref-load.mjs MODEL.gguf [--n 1,4,8,16] [--max-tokens 64] [--prompt-words 12] [--threads 2] [--json]');
  process.exit(2);
}
const opt = (name, def) => {
  const i = argv.indexOf(`--${name}`);
  if (i < 0) return def;
  const v = argv[i + 1];
  return v === undefined || v.startsWith('--') ? '1' : v;
};
const Ns = opt('n', '1,4,8,16').split(',').map(Number);
const maxTokens = Number(opt('max-tokens', 64));
const promptWords = Number(opt('prompt-words', 12));
const threads = Number(opt('threads', 2));
const asJson = opt('json', null) !== null;


const llama = await getLlama({ gpu: false, build: 'never', logLevel: 'error' });
const model = await llama.loadModel({ modelPath });

async function one(seq, text) {
  const tokens = [model.tokens.bos, ...model.tokenize(text)].filter((t) => t != null);
  const t0 = now();
  let first = null, last = null, n = 0;
  const gaps = [];
  for await (const tok of seq.evaluate(tokens, { temperature: 0 })) {
    void tok;
    const t = now();
    if (first === null) first = t - t0;
    else gaps.push(t - last);
    last = t;
    if (++n >= maxTokens) break;
  }
  return { ttft: first, gaps, n, promptTokens: tokens.length };
}

const rows = [];
let base = 1000;
const maxN = Math.max(...Ns);
const ctxSize = maxN * (promptWords * 4 + 64 + maxTokens + 16);
const context = await model.createContext({ contextSize: ctxSize, sequences: maxN,
                                            threads, batchSize: 512 });
// One sequence per concurrent request, taken once and cleared between
// rounds (a disposed sequence is not handed out again at once).
const seqs = Array.from({ length: maxN }, () => context.getSequence());
await one(seqs[0], 'warm up'); // page the weights in
for (const N of Ns) {
  await Promise.all(seqs.map((s) => s.clearHistory()));
  const t0 = now();
  const rs = await Promise.all(seqs.slice(0, N).map((s, i) => one(s, prompt(base + i, promptWords))));
  const wall = (now() - t0) / 1000;
  base += N;
  const gen = rs.reduce((a, r) => a + r.n, 0);
  const ttft = rs.map((r) => r.ttft);
  const itl = rs.flatMap((r) => r.gaps);
  rows.push({ n: N, tokens: gen, wall_s: wall, tok_per_s: gen / wall,
              ttft_p50_ms: pct(ttft, 50), ttft_p99_ms: pct(ttft, 99),
              itl_p50_ms: pct(itl, 50), itl_p99_ms: pct(itl, 99),
              prompt_tokens: rs[0].promptTokens });
}
await context.dispose();
await model.dispose();

const f = (x) => (Number.isFinite(x) ? x.toFixed(1) : '-');
if (asJson) {
  for (const r of rows) console.log(JSON.stringify({ engine: 'llama.cpp', ...r }));
} else {
  console.log('llama.cpp (node-llama-cpp, one context, N sequences)');
  console.log('| N | tokens | wall s | tok/s | TTFT p50 ms | TTFT p99 ms | ITL p50 ms | ITL p99 ms |');
  console.log('|---:|--------:|-------:|------:|------------:|------------:|-----------:|-----------:|');
  for (const r of rows)
    console.log(`| ${r.n} | ${r.tokens} | ${f(r.wall_s)} | ${f(r.tok_per_s)} | ${f(r.ttft_p50_ms)} | ` +
                `${f(r.ttft_p99_ms)} | ${f(r.itl_p50_ms)} | ${f(r.itl_p99_ms)} |`);
}
