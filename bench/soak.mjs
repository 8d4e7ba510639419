#!/usr/bin/env node
// soak.mjs — run the real daemon for a long time under a modest mixed load
// and check that nothing grows and nothing is lost.
//
//   node bench/soak.mjs [--duration 1800] [--clients 4] [--bin build/quantd]
//       [--model $QD_SHARED/gguf/stories260K.gguf] [--port 18095]
//       [--sample 10] [--think-ms 50] [--out soak.json]
//       [-- extra serve options, e.g. -t 1]
//
// Each client loops over requests drawn at random: non-streaming and
// streaming, chat and plain completions, max_tokens 4..48, and about one
// in five is a streaming request the client abandons after a few chunks
// or a few milliseconds (cancellation during queueing, prefill or decode).
// Clients pause 0..2*think-ms between requests. Every `--sample` seconds it records the daemon's resident memory
// (/proc/PID/status VmRSS) and open descriptors (/proc/PID/fd). At the end
// it waits for the daemon to go idle and reports:
//   - least-squares slopes of RSS (KiB/h) and fds (per hour), over the
//     whole run and over the run after its first 10% (warm-up);
//   - KV blocks in use at the end against the value before any request;
//   - /metrics accounting: generation requests received = finished +
//     cancelled + rejected + failed, and received = what the clients sent
//     (less early abandons that may never have reached the daemon).
// Node 20 built-ins only. Exit status 1 if an accounting or KV check fails
// or the daemon died.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';

const argv = process.argv.slice(2);
const extra = argv.includes('--') ? argv.slice(argv.indexOf('--') + 1) : [];
function opt(name, def) {
  const i = argv.indexOf('--' + name);
  return i >= 0 && (extra.length === 0 || i < argv.indexOf('--')) ? argv[i + 1] : def;
}
const shared = process.env.QD_SHARED || '../shared';
const DURATION = Number(opt('duration', 1800));
const CLIENTS = Math.min(Number(opt('clients', 4)), 4);
const BIN = opt('bin', 'build/quantd');
const MODEL = opt('model', path.join(shared, 'gguf/stories260K.gguf'));
const PORT = Number(opt('port', 18095));
const SAMPLE_S = Number(opt('sample', 10));
const THINK_MS = Number(opt('think-ms', 50));
const OUT = opt('out', null);
const NAME = path.basename(MODEL).replace(/\.gguf$/, '');

const agent = new http.Agent({ keepAlive: true, maxSockets: 16 });
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const rnd = (a, b) => a + Math.floor(Math.random() * (b - a + 1));

function get(p) {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port: PORT, path: p, agent }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode, body }));
    });
    req.on('error', reject);
    req.setTimeout(10000, () => req.destroy(new Error('timeout')));
  });
}

async function metrics() {
  const r = await get('/metrics');
  const m = new Map();
  for (const line of r.body.split('\n')) {
    if (!line || line[0] === '#') continue;
    const sp = line.lastIndexOf(' ');
    m.set(line.slice(0, sp), Number(line.slice(sp + 1)));
  }
  return m;
}

function procStats(pid) {
  const st = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const rss = Number(/VmRSS:\s+(\d+)/.exec(st)[1]);
  const fds = fs.readdirSync(`/proc/${pid}/fd`).length;
  return { rss, fds };
}

function slopePerHour(pts) { // pts: [t_s, v]
  const n = pts.length;
  if (n < 2) return 0;
  let st = 0, sv = 0;
  for (const [t, v] of pts) { st += t; sv += v; }
  const mt = st / n, mv = sv / n;
  let num = 0, den = 0;
  for (const [t, v] of pts) { num += (t - mt) * (v - mv); den += (t - mt) ** 2; }
  return den ? (num / den) * 3600 : 0;
}

// ---- one request ---------------------------------------------------------
const sent = { total: 0, ok: 0, abandoned: 0, abandoned_early: 0, status: {}, errors: 0 };

function oneRequest() {
  const chat = Math.random() < 0.5;
  const r = Math.random();
  const kind = r < 0.4 ? 'plain' : r < 0.8 ? 'stream' : 'cancel';
  const body = { model: NAME, max_tokens: rnd(4, 48), temperature: 0.8 };
  const words = ['Once upon a time', 'The little dog', 'Lily wanted', 'One day, a bird'];
  const text = words[rnd(0, words.length - 1)] + ' '.repeat(rnd(0, 3));
  if (chat) body.messages = [{ role: 'user', content: text }];
  else body.prompt = text;
  if (kind !== 'plain') body.stream = true;
  const payload = JSON.stringify(body);
  sent.total++;
  return new Promise((resolve) => {
    let done = false;
    const finish = (what) => {
      if (done) return;
      done = true;
      resolve(what);
    };
    const req = http.request({
      host: '127.0.0.1', port: PORT, method: 'POST', agent: kind === 'cancel' ? false : agent,
      path: chat ? '/v1/chat/completions' : '/v1/completions',
      headers: { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(payload) },
    }, (res) => {
      sent.status[res.statusCode] = (sent.status[res.statusCode] || 0) + 1;
      let chunks = 0;
      const cut = rnd(1, 6);
      res.on('data', () => {
        if (kind === 'cancel' && ++chunks >= cut) {
          sent.abandoned++;
          req.destroy();
          finish('abandoned');
        }
      });
      res.on('end', () => { if (!done) sent.ok++; finish('ok'); });
      res.on('error', () => finish('error'));
      res.on('close', () => finish('closed'));
    });
    req.on('error', () => { if (!done) sent.errors++; finish('error'); });
    req.setTimeout(120000, () => req.destroy(new Error('timeout')));
    if (kind === 'cancel' && Math.random() < 0.3) {
      // gone while queued or prefilling: before any byte comes back
      setTimeout(() => {
        if (!done) { sent.abandoned++; sent.abandoned_early++; req.destroy(); finish('abandoned'); }
      }, rnd(1, 30));
    }
    req.end(payload);
  });
}

// ---- main ----------------------------------------------------------------
async function main() {
  if (!fs.existsSync(MODEL)) {
    console.error(`model not found: ${MODEL}`);
    process.exit(2);
  }
  const logPath = path.join(os.tmpdir(), `quantd-soak-${process.pid}.log`);
  const log = fs.openSync(logPath, 'w');
  const d = spawn(BIN, ['serve', '-m', MODEL, '--host', '127.0.0.1', '--port', String(PORT),
    '--log-level', 'warn', ...extra], { stdio: ['ignore', log, log] });
  let exited = null;
  d.on('exit', (code, sig) => { exited = { code, sig }; });
  for (let i = 0; ; i++) {
    if (exited || i > 300) { console.error(`daemon did not start; log ${logPath}`); process.exit(1); }
    try { if ((await get('/ready')).status === 200) break; } catch { /* not yet */ }
    await sleep(100);
  }
  const kvKey = `quantd_kv_blocks_used{model="${NAME}"}`;
  const m0 = await metrics();
  const kvIdle = m0.get(kvKey);
  console.log(`soak: pid ${d.pid}, ${CLIENTS} clients, ${DURATION} s, model ${MODEL}; ` +
    `idle KV blocks ${kvIdle}; log ${logPath}`);

  const t0 = Date.now();
  const samples = [];
  const sample = () => {
    if (exited) return;
    const s = procStats(d.pid);
    samples.push({ t: (Date.now() - t0) / 1000, ...s });
  };
  sample();
  const timer = setInterval(() => {
    sample();
    const s = samples[samples.length - 1];
    if (samples.length % 6 === 1)
      console.log(`  t=${s.t.toFixed(0)}s rss=${s.rss} KiB fds=${s.fds} requests=${sent.total}`);
  }, SAMPLE_S * 1000);

  const end = t0 + DURATION * 1000;
  await Promise.all(Array.from({ length: CLIENTS }, async () => {
    while (Date.now() < end && !exited) {
      await oneRequest();
      if (THINK_MS) await sleep(rnd(0, 2 * THINK_MS));
    }
  }));
  clearInterval(timer);
  sample();

  // Idle: nothing running or queued, KV back (cancellations land within a step).
  let m;
  for (let i = 0; i < 100; i++) {
    m = await metrics();
    const running = m.get(`quantd_requests_running{model="${NAME}"}`);
    const queued = m.get(`quantd_queue_depth{model="${NAME}"}`);
    if (!running && !queued && m.get(kvKey) === kvIdle &&
        m.get('quantd_active_requests') <= 1) break;
    await sleep(100);
  }
  const rec = m.get('quantd_generation_requests_received_total') || 0;
  const out = {};
  let ended = 0;
  for (const o of ['finished', 'cancelled', 'rejected', 'failed']) {
    out[o] = m.get(`quantd_generation_requests_ended_total{outcome="${o}"}`) || 0;
    ended += out[o];
  }
  const pts = (k, from) => samples.filter((s) => s.t >= from).map((s) => [s.t, s[k]]);
  const warm = DURATION * 0.1;
  const report = {
    duration_s: DURATION, clients: CLIENTS, samples: samples.length,
    client: sent,
    rss_kib: { first: samples[0]?.rss, last: samples.at(-1)?.rss,
      max: Math.max(...samples.map((s) => s.rss)),
      slope_kib_per_h: slopePerHour(pts('rss', 0)),
      slope_after_warmup_kib_per_h: slopePerHour(pts('rss', warm)) },
    fds: { first: samples[0]?.fds, last: samples.at(-1)?.fds,
      max: Math.max(...samples.map((s) => s.fds)),
      slope_per_h: slopePerHour(pts('fds', 0)),
      slope_after_warmup_per_h: slopePerHour(pts('fds', warm)) },
    kv_blocks: { idle: kvIdle, end: m.get(kvKey) },
    metrics: { received: rec, ...out, ended },
    http_status: Object.fromEntries([...m].filter(([k]) => k.startsWith('quantd_requests_total'))),
  };
  const checks = {
    daemon_alive: !exited,
    kv_back_to_idle: report.kv_blocks.end === kvIdle,
    received_eq_ended: rec === ended,
    // an early abandon may close the socket before the request arrived
    received_matches_sent: rec <= sent.total && rec >= sent.total - sent.abandoned_early,
    no_5xx_but_503: !Object.keys(report.http_status).some((k) => /status="5\d\d"/.test(k) && !/503/.test(k)),
  };
  report.checks = checks;
  console.log(JSON.stringify(report, null, 2));
  if (OUT) fs.writeFileSync(OUT, JSON.stringify(report, null, 2) + '\n');
  d.kill('SIGTERM');
  await new Promise((r) => (exited ? r() : d.on('exit', r)));
  agent.destroy();
  const ok = Object.values(checks).every(Boolean);
  console.log(ok ? 'soak: all checks passed' : 'soak: CHECK FAILED');
  process.exit(ok ? 0 : 1);
}

main().catch((e) => { console.error(e); process.exit(1); });
