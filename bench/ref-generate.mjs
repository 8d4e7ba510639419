// ref-generate.mjs — greedy continuation by llama.cpp (node-llama-cpp) of
// the BOS-only prompt, printed as text: checks that a GGUF file written by
// quantd loads and runs in llama.cpp.
//
//   node bench/ref-generate.mjs MODEL.gguf [N]
import { getLlama, LlamaCompletion } from "node-llama-cpp";

const [modelPath, nArg] = process.argv.slice(2);
if (!modelPath) {
  console.error("usage: ref-generate.mjs MODEL.gguf [N]");
  process.exit(2);
}
const llama = await getLlama({ gpu: false, build: "never", logLevel: "error" });
const model = await llama.loadModel({ modelPath });
const context = await model.createContext({ contextSize: 512, threads: 1 });
const seq = context.getSequence();
const n = Number(nArg || 32);
const out = [];
for await (const tok of seq.evaluate([model.tokens.bos], { temperature: 0 })) {
  out.push(tok);
  if (out.length >= n) break;
}
process.stdout.write(model.detokenize(out));
await context.dispose();
await model.dispose();
