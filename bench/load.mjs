#!/usr/bin/env node
// load.mjs — load generator for a running quantd daemon (node >= 18, no
// dependencies): N concurrent streaming chat completions with distinct
// prompts, fixed max_tokens, temperature 0. Reports aggregate generated
// tokens/s, time to first token (TTFT) and inter-token latency (ITL)
// percentiles for each N; then a shared-system-prompt run: two requests
// with the same long system message, one after the other, and the second
// one's usage.prompt_tokens_details.cached_tokens and TTFT against the
// first's.
//
//   node bench/load.mjs --url http://127.0.0.1:8080 [--model NAME]
//        [--n 1,4,8,16] [--max-tokens 64] [--prompt-words 12]
//        [--system-words 700] [--steady SECONDS] [--json]
//
// --steady S: instead of one burst of N simultaneous requests, N clients
// each send request after request (closed loop) for S seconds, client i
// starting i/N of a single request's duration after the first, so that
// arrivals are spread as on a server in use. The first quarter of S (at
// least two single-request durations) is warm-up; tokens/s counts the
// tokens streamed in the rest of the window, TTFT and ITL the requests
// started in it.

import { now, pct, prompt } from './loadgen.mjs';

const args = Object.fromEntries(
  process.argv.slice(2).reduce((acc, a, i, all) => {
    if (a.startsWith('--')) acc.push([a.slice(2), all[i + 1]?.startsWith('--') || all[i + 1] === undefined ? '1' : all[i + 1]]);
    return acc;
  }, []));
const url = (args.url || 'http://127.0.0.1:8080').replace(/\/$/, '');
const Ns = (args.n || '1,4,8,16').split(',').map(Number);
const maxTokens = Number(args['max-tokens'] || 64);
const promptWords = Number(args['prompt-words'] || 12);
const systemWords = Number(args['system-words'] || 700);
const apiKey = args['api-key'] || process.env.QUANTD_API_KEY || '';
const steady = Number(args.steady || 0);


// One streaming chat request. Resolves with timings and usage.
async function chat(model, messages) {
  const t0 = now();
  const res = await fetch(`${url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json',
               ...(apiKey ? { authorization: `Bearer ${apiKey}` } : {}) },
    body: JSON.stringify({ model, messages, stream: true, max_tokens: maxTokens,
                           temperature: 0, stream_options: { include_usage: true } }),
  });
  if (!res.ok) throw new Error(`HTTP ${res.status}: ${await res.text()}`);
  const dec = new TextDecoder();
  let buf = '', first = null, last = null, n = 0, usage = null;
  const gaps = [], times = [];
  for await (const chunk of res.body) {
    buf += dec.decode(chunk, { stream: true });
    let at;
    while ((at = buf.indexOf('\n\n')) >= 0) {
      const ev = buf.slice(0, at);
      buf = buf.slice(at + 2);
      for (const line of ev.split('\n')) {
        if (!line.startsWith('data: ')) continue;
        const data = line.slice(6);
        if (data === '[DONE]') continue;
        const j = JSON.parse(data);
        if (j.usage) usage = j.usage;
        const c = j.choices?.[0];
        // The first chunk carries only the role (content ""): a token is
        // a chunk with text.
        if (c && c.delta && c.delta.content) {
          const t = now();
          if (first === null) first = t; else gaps.push(t - last);
          times.push(t);
          last = t;
          n++;
        }
      }
    }
  }
  return { ttft: first === null ? NaN : first - t0, gaps, times, chunks: n, usage,
           start: t0, total: now() - t0 };
}

async function modelName() {
  if (args.model) return args.model;
  const r = await fetch(`${url}/v1/models`, {
    headers: apiKey ? { authorization: `Bearer ${apiKey}` } : {} });
  const j = await r.json();
  return j.data[0].id;
}

const f = (x) => (Number.isFinite(x) ? x.toFixed(1) : '-');

async function main() {
  const model = await modelName();
  const rows = [];
  // Warm-up: page the weights in.
  await chat(model, [{ role: 'user', content: 'warm up' }]);
  let base = 1000;
  if (steady > 0) {
    // one request alone: its duration spaces the clients' starts
    const one = await chat(model, [{ role: 'user', content: prompt(base++, promptWords) }]);
    for (const N of Ns) {
      const t0 = now(), tEnd = t0 + steady * 1000;
      const tw = t0 + Math.max(steady * 250, 2 * one.total);
      const done = [];
      await Promise.all(Array.from({ length: N }, async (_, i) => {
        await new Promise((r) => setTimeout(r, (i * one.total) / N));
        while (now() < tEnd)
          done.push(await chat(model, [{ role: 'user', content: prompt(base++, promptWords) }]));
      }));
      const inWin = done.filter((r) => r.start >= tw && r.start < tEnd);
      const toks = done.reduce((a, r) => a + r.times.filter((t) => t >= tw && t < tEnd).length, 0);
      const ttft = inWin.map((r) => r.ttft), gaps = inWin.flatMap((r) => r.gaps);
      rows.push({ N, gen: toks, wall_s: (tEnd - tw) / 1000, tok_s: toks / ((tEnd - tw) / 1000),
                  reqs: inWin.length,
                  prompt_tokens: inWin.length ? Math.round(inWin.reduce((a, r) => a + (r.usage?.prompt_tokens ?? 0), 0) / inWin.length) : NaN,
                  ttft_p50: pct(ttft, 50), ttft_p99: pct(ttft, 99),
                  itl_p50: pct(gaps, 50), itl_p99: pct(gaps, 99) });
    }
  }
  for (const N of steady > 0 ? [] : Ns) {
    const t0 = now();
    const rs = await Promise.all(Array.from({ length: N }, (_, i) =>
      chat(model, [{ role: 'user', content: prompt(base + i, promptWords) }])));
    base += N;
    const wall = (now() - t0) / 1000;
    const gen = rs.reduce((a, r) => a + (r.usage?.completion_tokens ?? r.chunks), 0);
    const ttft = rs.map((r) => r.ttft), gaps = rs.flatMap((r) => r.gaps);
    rows.push({ N, gen, wall_s: wall, tok_s: gen / wall, reqs: N,
                prompt_tokens: Math.round(rs.reduce((a, r) => a + (r.usage?.prompt_tokens ?? 0), 0) / N),
                ttft_p50: pct(ttft, 50), ttft_p99: pct(ttft, 99),
                itl_p50: pct(gaps, 50), itl_p99: pct(gaps, 99) });
  }
  // Shared system prompt: the second request should adopt the first's
  // system-prompt blocks (skipped with --system-words 0).
  let prefix = null;
  if (systemWords > 0) {
    const system = 'You are a careful assistant. ' + prompt(7, systemWords);
    const a = await chat(model, [{ role: 'system', content: system },
                                 { role: 'user', content: 'First question?' }]);
    const b = await chat(model, [{ role: 'system', content: system },
                                 { role: 'user', content: 'Second question?' }]);
    prefix = {
      prompt_tokens: b.usage?.prompt_tokens,
      first_cached: a.usage?.prompt_tokens_details?.cached_tokens ?? 0,
      second_cached: b.usage?.prompt_tokens_details?.cached_tokens ?? 0,
      first_ttft_ms: a.ttft, second_ttft_ms: b.ttft,
    };
  }
  if (args.json) {
    console.log(JSON.stringify({ model, max_tokens: maxTokens, rows, prefix }, null, 1));
    return;
  }
  console.log(`model ${model}, max_tokens ${maxTokens}, temperature 0, streaming, ` +
    (steady > 0 ? `steady load for ${steady} s per N (closed loop, staggered starts)` : 'one burst of N requests'));
  console.log('|  N | reqs | prompt tok | gen tok | wall s | tok/s | TTFT p50 ms | TTFT p99 ms | ITL p50 ms | ITL p99 ms |');
  console.log('|---:|-----:|-----------:|--------:|-------:|------:|------------:|------------:|-----------:|-----------:|');
  for (const r of rows)
    console.log(`| ${String(r.N).padStart(2)} | ${String(r.reqs).padStart(4)} | ${String(r.prompt_tokens).padStart(10)} | ` +
      `${String(r.gen).padStart(7)} | ${r.wall_s.toFixed(2).padStart(6)} | ` +
      `${f(r.tok_s).padStart(5)} | ${f(r.ttft_p50).padStart(11)} | ${f(r.ttft_p99).padStart(11)} | ` +
      `${f(r.itl_p50).padStart(10)} | ${f(r.itl_p99).padStart(10)} |`);
  if (prefix) console.log(`shared system prompt (${prefix.prompt_tokens} prompt tokens): cached_tokens ` +
    `${prefix.first_cached} -> ${prefix.second_cached}; TTFT ${f(prefix.first_ttft_ms)} ms -> ` +
    `${f(prefix.second_ttft_ms)} ms`);
}

main().catch((e) => { console.error(e.message || e); process.exit(1); });
