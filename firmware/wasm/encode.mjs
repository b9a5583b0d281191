// Encode int16 PCM with the WebAssembly build of the firmware encoder, frame by frame, as a page does.
//   node firmware/wasm/encode.mjs ENCODER.wasm IN.pcm OUT.json
// IN.pcm: raw little-endian int16 at the model's rate; OUT.json: {"n_q", "hop_length", "codes": [[...] per level],
// "ms_per_frame"}. Used by tests/test_wasm.py to compare with the Python int8 reference.
import { readFileSync, writeFileSync } from "node:fs";

const [wasmPath, pcmPath, outPath] = process.argv.slice(2);
const { instance } = await WebAssembly.instantiate(readFileSync(wasmPath), {});
const e = instance.exports;
if (e.tc_wasm_init() !== 0) throw new Error("tinycodec_encoder_init failed");
const hop = e.tc_wasm_hop_length(), nq = e.tc_wasm_n_q();
const raw = readFileSync(pcmPath);
const pcm = new Int16Array(raw.buffer, raw.byteOffset, Math.floor(raw.length / 2));
const frames = Math.floor(pcm.length / hop);
const codes = Array.from({ length: nq }, () => []);
const start = performance.now();
for (let f = 0; f < frames; f++) {
  new Int16Array(e.memory.buffer, e.tc_wasm_pcm(), hop).set(pcm.subarray(f * hop, (f + 1) * hop));
  e.tc_wasm_encode_frame();
  const out = new Uint16Array(e.memory.buffer, e.tc_wasm_codes(), nq);
  for (let q = 0; q < nq; q++) codes[q].push(out[q]);
}
const ms = (performance.now() - start) / Math.max(frames, 1);
writeFileSync(outPath, JSON.stringify({ n_q: nq, hop_length: hop, codes, ms_per_frame: ms }));
