// The book's browser page: the microcontroller's encoder (C, compiled to WebAssembly) and the server
// decoder (ONNX, onnxruntime-web) on the reader's own machine. Everything is served by the book itself.
// window.tinycodecDemo exposes the last result (PCM, codes, decoded audio, timings) for the tests.
(function () {
  "use strict";
  const base = new URL(".", document.currentScript.src).href;
  const $ = (id) => document.getElementById(id);
  const state = { manifest: null, enc: null, session: null, results: [] };

  function log(msg) { $("tc-status").textContent = msg; }

  async function init() {
    if (location.protocol === "file:") {  // browsers do not let a page fetch its own files from file://
      throw new Error("this page must be served, not opened as a file: in the repository run " +
                      "`python -m http.server -d _build/html 8000` and open " +
                      "http://localhost:8000/book/08_browser.html");
    }
    state.manifest = await (await fetch(base + "manifest.json")).json();
    const bytes = await (await fetch(base + "tinycodec_encoder.wasm")).arrayBuffer();
    const { instance } = await WebAssembly.instantiate(bytes, {});
    state.enc = instance.exports;
    if (state.enc.tc_wasm_init() !== 0) throw new Error("the encoder did not initialise");
    ort.env.wasm.wasmPaths = base;
    ort.env.wasm.numThreads = 1;
    state.session = await ort.InferenceSession.create(base + "decoder.onnx", { executionProviders: ["wasm"] });
    const select = $("tc-clip");
    state.manifest.clips.forEach((c, i) => select.add(new Option(c.name, i)));
  }

  // one hop of int16 PCM at a time, as the device does: codes [n_q][F]
  async function encode(pcm, onFrame) {
    const e = state.enc, hop = e.tc_wasm_hop_length(), nq = e.tc_wasm_n_q();
    e.tc_wasm_reset();
    const frames = Math.floor(pcm.length / hop);
    const codes = Array.from({ length: nq }, () => new Array(frames));
    let spent = 0;
    for (let f = 0; f < frames; f++) {
      const t = performance.now();
      new Int16Array(e.memory.buffer, e.tc_wasm_pcm(), hop).set(pcm.subarray(f * hop, (f + 1) * hop));
      e.tc_wasm_encode_frame();
      const out = new Uint16Array(e.memory.buffer, e.tc_wasm_codes(), nq);
      for (let q = 0; q < nq; q++) codes[q][f] = out[q];
      spent += performance.now() - t;
      if (onFrame && (f % 25 === 0 || f === frames - 1)) { onFrame(f, codes); await new Promise((r) => setTimeout(r, 0)); }
    }
    return { codes, msPerFrame: spent / Math.max(frames, 1) };
  }

  async function decode(codes, n) {
    const nq = codes.length, frames = codes[0].length;
    const flat = new BigInt64Array(nq * frames);
    for (let q = 0; q < nq; q++) for (let f = 0; f < frames; f++) flat[q * frames + f] = BigInt(codes[q][f]);
    const levels = new Float32Array(nq).map((_, q) => (q < n ? 1 : 0));
    const t = performance.now();
    const out = await state.session.run({
      codes: new ort.Tensor("int64", flat, [1, nq, frames]),
      levels: new ort.Tensor("float32", levels, [nq]),
    });
    return { wav: out.wav.data, msPerFrame: (performance.now() - t) / Math.max(frames, 1) };
  }

  // ---- display ----------------------------------------------------------------------------------
  function level(x) { // the book's loudness record: mean removed, RMS in dBFS, share of active 50 ms frames
    let mean = 0; for (const v of x) mean += v; mean /= Math.max(x.length, 1);
    let power = 0; for (const v of x) power += (v - mean) ** 2;
    const rms = 20 * Math.log10(Math.max(Math.sqrt(power / Math.max(x.length, 1)), 1e-6));
    const n = 800, frames = Math.floor(x.length / n); let active = 0;
    for (let f = 0; f < frames; f++) {
      let p = 0; for (let i = f * n; i < (f + 1) * n; i++) p += (x[i] - mean) ** 2;
      if (10 * Math.log10(Math.max(p / n, 1e-12)) >= -50) active++;
    }
    return { rms, active: frames ? active / frames : 0 };
  }

  function player(x, sr) {
    const n = x.length, buf = new ArrayBuffer(44 + 2 * n), v = new DataView(buf);
    const str = (o, s) => [...s].forEach((c, i) => v.setUint8(o + i, c.charCodeAt(0)));
    str(0, "RIFF"); v.setUint32(4, 36 + 2 * n, true); str(8, "WAVEfmt "); v.setUint32(16, 16, true);
    v.setUint16(20, 1, true); v.setUint16(22, 1, true); v.setUint32(24, sr, true); v.setUint32(28, 2 * sr, true);
    v.setUint16(32, 2, true); v.setUint16(34, 16, true); str(36, "data"); v.setUint32(40, 2 * n, true);
    for (let i = 0; i < n; i++) v.setInt16(44 + 2 * i, Math.max(-32768, Math.min(32767, Math.round(x[i] * 32767))), true);
    const audio = document.createElement("audio");
    audio.controls = true;
    audio.src = URL.createObjectURL(new Blob([buf], { type: "audio/wav" }));
    const l = level(x);
    audio.dataset.tinycodecRmsDbfs = l.rms.toFixed(1);
    audio.dataset.tinycodecActiveFraction = l.active.toFixed(2);
    audio.dataset.tinycodecAudible = String(l.rms >= -45 && l.active >= 0.25);
    return audio;
  }

  function fft(re, im) { // in place, radix 2
    const n = re.length;
    for (let i = 1, j = 0; i < n; i++) {
      let bit = n >> 1; for (; j & bit; bit >>= 1) j ^= bit; j ^= bit;
      if (i < j) { [re[i], re[j]] = [re[j], re[i]]; [im[i], im[j]] = [im[j], im[i]]; }
    }
    for (let len = 2; len <= n; len <<= 1) {
      const a = -2 * Math.PI / len;
      for (let i = 0; i < n; i += len) for (let k = 0; k < len / 2; k++) {
        const wr = Math.cos(a * k), wi = Math.sin(a * k), u = i + k, w = i + k + len / 2;
        const xr = re[w] * wr - im[w] * wi, xi = re[w] * wi + im[w] * wr;
        re[w] = re[u] - xr; im[w] = im[u] - xi; re[u] += xr; im[u] += xi;
      }
    }
  }

  function spectrogram(x, title) {
    const nfft = 512, hop = 128, bins = 160, frames = Math.max(1, Math.floor((x.length - nfft) / hop));
    const canvas = document.createElement("canvas");
    canvas.width = Math.min(frames, 600); canvas.height = bins; canvas.title = title;
    canvas.style.width = "100%"; canvas.style.maxWidth = "600px"; canvas.style.height = "120px";
    const ctx = canvas.getContext("2d"), img = ctx.createImageData(canvas.width, bins);
    const re = new Float64Array(nfft), im = new Float64Array(nfft);
    for (let c = 0; c < canvas.width; c++) {
      const f = Math.floor(c * frames / canvas.width);
      for (let i = 0; i < nfft; i++) { re[i] = (x[f * hop + i] || 0) * (0.5 - 0.5 * Math.cos(2 * Math.PI * i / nfft)); im[i] = 0; }
      fft(re, im);
      for (let b = 0; b < bins; b++) {
        const db = 10 * Math.log10(re[b] * re[b] + im[b] * im[b] + 1e-10);
        const v = Math.max(0, Math.min(255, Math.round((db + 60) * 3.2)));
        const o = 4 * ((bins - 1 - b) * canvas.width + c);
        img.data[o] = v; img.data[o + 1] = Math.round(v * 0.6); img.data[o + 2] = 255 - v; img.data[o + 3] = 255;
      }
    }
    ctx.putImageData(img, 0, 0);
    return canvas;
  }

  function row(label, x, sr, extra) {
    const div = document.createElement("div");
    div.className = "tc-row";
    const h = document.createElement("p");
    h.innerHTML = `<strong>${label}</strong> ${extra || ""}`;
    div.append(h, player(x, sr), spectrogram(x, label));
    return div;
  }

  // ---- one run: PCM -> codes -> every bitrate ---------------------------------------------------
  async function run(pcm, source) {
    const m = state.manifest, sr = m.sample_rate, hop = m.hop_length;
    pcm = pcm.subarray(0, Math.floor(pcm.length / hop) * hop);
    const out = $("tc-results"); out.innerHTML = "";
    const codesView = $("tc-codes");
    log(`encoding ${(pcm.length / sr).toFixed(1)} s of ${source} frame by frame...`);
    const enc = await encode(pcm, (f, codes) => {
      const lines = [];
      for (let g = Math.max(0, f - 7); g <= f; g++) lines.push(`frame ${String(g).padStart(4)}: ` + codes.map((c) => String(c[g]).padStart(3)).join(" "));
      codesView.textContent = lines.join("\n");
    });
    const bitsPerCode = Math.log2(m.codebook_size), frameRate = sr / hop;
    const original = Float32Array.from(pcm, (v) => v / 32768);
    out.append(row("original", original, sr, `(${source})`));
    const result = { source, pcm: Array.from(pcm), codes: enc.codes, encode_ms_per_frame: enc.msPerFrame, decoded: {}, decode_ms_per_frame: {} };
    for (let n = m.n_q; n >= 1; n--) {
      const dec = await decode(enc.codes, n);
      result.decoded[n] = Array.from(dec.wav);
      result.decode_ms_per_frame[n] = dec.msPerFrame;
      const kbps = (n * bitsPerCode * frameRate / 1000).toFixed(2);
      out.append(row(`${n} codebook${n > 1 ? "s" : ""}: ${kbps} kbit/s`, dec.wav, sr, `decoded in ${dec.msPerFrame.toFixed(2)} ms per frame`));
    }
    $("tc-timing").textContent = `encoder (WebAssembly, the device's C code): ${enc.msPerFrame.toFixed(3)} ms per ${(1000 * hop / sr).toFixed(0)} ms frame; ` +
      `decoder (onnxruntime-web, 5 codebooks): ${result.decode_ms_per_frame[m.n_q].toFixed(2)} ms per frame`;
    log(`done: ${enc.codes[0].length} frames, ${m.n_q} codes each`);
    state.results.push(result);
    return result;
  }

  async function runClip(i) {
    const c = state.manifest.clips[i];
    const bytes = await (await fetch(base + c.file)).arrayBuffer();
    return run(new Int16Array(bytes), `demo clip "${c.name}"`);
  }

  async function toPcm16(samples, rate) { // any rate, mono float -> int16 at the model's rate
    const sr = state.manifest.sample_rate;
    let x = samples;
    if (rate !== sr) {
      const ctx = new OfflineAudioContext(1, Math.ceil(samples.length * sr / rate), sr);
      const buf = ctx.createBuffer(1, samples.length, rate); buf.copyToChannel(samples, 0);
      const src = ctx.createBufferSource(); src.buffer = buf; src.connect(ctx.destination); src.start();
      x = (await ctx.startRendering()).getChannelData(0);
    }
    return Int16Array.from(x, (v) => Math.max(-32768, Math.min(32767, Math.round(v * 32768))));
  }

  async function runFile(file) {
    const ctx = new AudioContext();
    const audio = await ctx.decodeAudioData(await file.arrayBuffer());
    ctx.close();
    return run(await toPcm16(audio.getChannelData(0), audio.sampleRate), `file "${file.name}"`);
  }

  async function record(seconds) {
    const stream = await navigator.mediaDevices.getUserMedia({ audio: true });
    const ctx = new AudioContext();
    const source = ctx.createMediaStreamSource(stream);
    const node = ctx.createScriptProcessor(4096, 1, 1);
    const chunks = []; let total = 0;
    const need = Math.round(seconds * ctx.sampleRate);
    await new Promise((resolve) => {
      node.onaudioprocess = (ev) => {
        if (total >= need) return;
        const x = ev.inputBuffer.getChannelData(0); chunks.push(new Float32Array(x)); total += x.length;
        log(`recording ${(total / ctx.sampleRate).toFixed(1)} / ${seconds} s...`);
        if (total >= need) resolve();
      };
      source.connect(node); node.connect(ctx.destination);
    });
    source.disconnect(); node.disconnect(); stream.getTracks().forEach((t) => t.stop());
    const all = new Float32Array(total); let o = 0; for (const c of chunks) { all.set(c, o); o += c.length; }
    const rate = ctx.sampleRate; ctx.close();
    return run(await toPcm16(all.subarray(0, need), rate), "your microphone");
  }

  const ready = init().then(() => {
    $("tc-run").onclick = () => runClip(Number($("tc-clip").value));
    $("tc-file").onchange = (ev) => ev.target.files[0] && runFile(ev.target.files[0]);
    $("tc-record").onclick = () => record(4).catch((e) => log(`no microphone: ${e.message}`));
    return runClip(0);
  }).catch((e) => { log(`could not start: ${e.message}`); throw e; });
  window.tinycodecDemo = { ready, runClip, runFile, record, results: state.results };
})();
