// loadgen.mjs — what bench/load.mjs (quantd) and bench/ref-load.mjs
// (llama.cpp) share, so both sides get the same prompts and statistics.

export const now = () => Number(process.hrtime.bigint()) / 1e6; // ms

// p-th percentile (nearest rank) of a list of numbers; NaN when empty.
export function pct(xs, p) {
  if (!xs.length) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
}

const WORDS = ('time river stone light garden window story market silver ' +
  'forest castle letter winter summer engine bridge island planet music ' +
  'shadow mirror candle harbor valley meadow').split(' ');

// Request i's prompt: `words` words from a fixed generator, distinct per i.
export function prompt(i, words) {
  const out = [];
  let x = (i + 1) * 2654435761 >>> 0;
  for (let k = 0; k < words; k++) {
    x = (x * 1103515245 + 12345) >>> 0;
    out.push(WORDS[x % WORDS.length]);
  }
  return `Request ${i}: tell a story about ${out.join(' ')}.`;
}
