// The page: the model loaded and checked, frames from the camera (or a video file, or a list of still images
// for the parity test) preprocessed, stepped through the model with the state carried, scores smoothed, and
// the label, confidence, fps and model latency drawn over the video.
//
// URL parameters (python -m apps.web prints a URL with the ones it was given):
//   model=URL      the stream-mode sidecar JSON (default: model/sidecar.json, what the server serves)
//   ep=auto|wasm|webgpu   onnxruntime-web execution provider (auto: WebGPU when the browser has an adapter)
//   threads=N      WASM threads (default: up to 4 when the page is cross-origin isolated, else 1)
//   smoothing=ema|vote|none, alpha=, threshold=, window=   as the Python apps' flags of the same names
//   frames=URL     a JSON {"frames": [image URLs]}: run those images once, in order, instead of a camera, and
//                  keep every frame's logits in window.xvit.results (the parity test's entry point)

import { makePreprocessor } from "./preprocess.js";
import { NO_ACTION, Smoother, softmax } from "./smoother.js";
import { ModelError, StreamModel } from "./model.js";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);

// What tests and benchmarks read (the same figures the overlay shows).
const xvit = (window.xvit = { state: "loading", error: null, note: null, stats: null, results: [] });

function setStatus(text) {
  $("status").textContent = text;
}

function showMessage(text, kind = "error") {
  const box = $("message");
  box.textContent = text;
  box.className = kind === "error" ? "" : "note";
  box.hidden = false;
  if (kind === "error") {
    xvit.state = "error";
    xvit.error = text;
    setStatus("stopped");
    $("label").textContent = "error";
  } else {
    xvit.note = text;
  }
}

// Anything not caught below still reaches the page, not only the console.
window.addEventListener("error", (e) => showMessage(`unexpected error: ${e.message}`));
window.addEventListener("unhandledrejection", (e) => showMessage(`unexpected error: ${e.reason?.message ?? e.reason}`));

function numberParam(name, fallback, check, what) {
  if (!params.has(name)) return fallback;
  const v = Number(params.get(name));
  if (!check(v)) throw new Error(`URL parameter ${name}=${params.get(name)}: must be ${what}`);
  return v;
}

function readSettings() {
  const ep = params.get("ep") ?? "auto";
  if (!["auto", "wasm", "webgpu"].includes(ep)) throw new Error(`URL parameter ep=${ep}: must be auto, wasm or webgpu`);
  const cores = navigator.hardwareConcurrency || 1;
  // Threads need SharedArrayBuffer, which only a cross-origin isolated page has (the server's COOP/COEP headers).
  const threads = numberParam("threads", crossOriginIsolated ? Math.min(4, cores) : 1,
    (v) => Number.isInteger(v) && v >= 1, "a whole number >= 1");
  return {
    model: params.get("model") ?? "model/sidecar.json",
    frames: params.get("frames"),
    ep,
    threads,
    smoothing: {
      method: params.get("smoothing") ?? "ema",
      alpha: numberParam("alpha", 0.3, (v) => v > 0 && v <= 1, "in (0, 1]"),
      threshold: numberParam("threshold", 0.5, (v) => v >= 0 && v <= 1, "in [0, 1]"),
      window: numberParam("window", 5, (v) => Number.isInteger(v) && v >= 1, "a whole number >= 1"),
    },
  };
}

async function loadRuntime(settings) {
  let backend = settings.ep;
  if (backend !== "wasm") {
    const adapter = navigator.gpu ? await navigator.gpu.requestAdapter().catch(() => null) : null;
    if (!adapter && backend === "webgpu") {
      throw new Error("ep=webgpu was asked for, but this browser offers no WebGPU adapter");
    }
    backend = adapter ? "webgpu" : "wasm";
  }
  // The WebGPU build also runs the WASM (CPU) provider, for the nodes WebGPU does not take.
  const base = new URL("../ort/", import.meta.url).href;
  const ort = await import(`${base}${backend === "webgpu" ? "ort.webgpu.min.mjs" : "ort.wasm.min.mjs"}`);
  ort.env.wasm.wasmPaths = base; // served by apps.web from node_modules: nothing comes from another host
  ort.env.wasm.numThreads = settings.threads;
  ort.env.logLevel = "error";
  if (settings.threads > 1 && !crossOriginIsolated) {
    showMessage(`${settings.threads} threads asked for, but this page is not cross-origin isolated ` +
      "(the server sends no COOP/COEP headers), so onnxruntime-web runs on 1 thread", "note");
  }
  return { ort, backend };
}

/** Frames per second over the last `window` frames, and medians of the last 100 latencies (as LiveStats). */
class Stats {
  constructor() { this.reset(); }
  reset() { this.times = []; this.model = []; this.prep = []; this.processed = 0; this.predictions = 0; }
  record(modelMs, prepMs) {
    const keep = (list, v, n) => { list.push(v); if (list.length > n) list.shift(); };
    keep(this.times, performance.now(), 30);
    keep(this.model, modelMs, 100);
    keep(this.prep, prepMs, 100);
    this.processed += 1;
  }
  static median(list) {
    if (!list.length) return 0;
    const s = [...list].sort((a, b) => a - b), m = s.length >> 1;
    return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
  }
  get fps() {
    const t = this.times;
    return t.length < 2 ? 0 : (t.length - 1) / ((t[t.length - 1] - t[0]) / 1000);
  }
}

class App {
  constructor(settings, ort, backend, model) {
    Object.assign(this, { settings, ort, backend, model });
    this.smoother = new Smoother(model.labels, settings.smoothing);
    this.stats = new Stats();
    this.canvas = document.createElement("canvas");
    this.ctx = this.canvas.getContext("2d", { willReadFrequently: true });
    this.pre = null;
    this.generation = 0; // bumped when the source changes: the old loop stops
    this.facing = "environment";
    const side = model.sidecar;
    $("info").textContent = `${side.artifact} (${side.config.name}, ${side.precision ?? "fp32"}, ` +
      `${side.labels.length} classes, ${model.frames} frames) · onnxruntime-web ${this.ort.env.versions?.web ?? ""} ` +
      `${backend}${backend === "wasm" ? ` ×${settings.threads} thread${settings.threads > 1 ? "s" : ""}` : ""}` +
      ` · ${crossOriginIsolated ? "cross-origin isolated" : "not cross-origin isolated"}`;
  }

  /** A new source: fresh state, smoothing and figures. */
  restart() {
    this.generation += 1;
    this.model.reset();
    this.smoother.reset();
    this.stats.reset();
    this.decision = null;
    return this.generation;
  }

  /** One RGBA frame of `width` x `height` (drawn from `source`) through preprocessing, the step and smoothing. */
  async process(source, width, height) {
    if (this.canvas.width !== width || this.canvas.height !== height) {
      this.canvas.width = width;
      this.canvas.height = height;
      $("view").style.setProperty("--aspect", String(width / height));
    }
    this.ctx.drawImage(source, 0, 0, width, height);
    const rgba = this.ctx.getImageData(0, 0, width, height).data;
    if (!this.pre || this.pre.width !== width || this.pre.height !== height) { // a phone turned: new tables
      this.pre = makePreprocessor(width, height, this.model.preprocessing);
    }
    const mine = this.generation;
    const t0 = performance.now();
    const input = this.pre.run(rgba);
    const t1 = performance.now();
    const logits = await this.model.step(input);
    const t2 = performance.now();
    if (logits === null || mine !== this.generation) return null; // the source changed meanwhile
    this.stats.record(t2 - t1, t1 - t0);
    // As the Python runtime: no prediction until the window holds T frames.
    if (this.model.seen >= this.model.frames) {
      this.decision = this.smoother.update(softmax(logits));
      this.stats.predictions += 1;
    }
    this.draw(t2 - t1);
    return { logits, input };
  }

  draw(lastMs) {
    const d = this.decision, label = $("label");
    if (!d) {
      label.textContent = `warming up ${Math.min(this.model.seen, this.model.frames)}/${this.model.frames}`;
      label.className = "";
    } else if (d.label === NO_ACTION) {
      label.textContent = `${NO_ACTION} (${Math.round(d.confidence * 100)}%)`;
      label.className = "";
    } else {
      label.textContent = `${d.label} ${Math.round(d.confidence * 100)}%`;
      label.className = "action";
    }
    const s = this.stats, latency = Stats.median(s.model), prep = Stats.median(s.prep);
    $("stats").textContent = `${s.fps.toFixed(1)} fps · model ${latency.toFixed(1)} ms · ` +
      `preprocessing ${prep.toFixed(1)} ms`;
    xvit.stats = {
      processed: s.processed, predictions: s.predictions, fps: s.fps, latencyMs: latency, lastLatencyMs: lastMs,
      preprocessMs: prep, label: d?.label ?? null, index: d?.index ?? null, confidence: d?.confidence ?? null,
      backend: this.backend, threads: this.settings.threads, crossOriginIsolated,
    };
  }

  /** Process the newest frame of the playing <video> whenever one is shown; frames shown meanwhile are dropped. */
  async runVideo(video) {
    const mine = this.restart();
    $("still").hidden = true;
    $("message").hidden = true; // a new source runs: an earlier camera or file problem is over
    video.hidden = false;
    setStatus("running");
    xvit.state = "running";
    xvit.error = null;
    // requestVideoFrameCallback fires once per new frame shown. Without it (older browsers), animation frames
    // are polled and a frame whose time has not moved is skipped: the model must not see one frame twice.
    const nextFrame = () => new Promise((resolve) => {
      if (video.requestVideoFrameCallback) video.requestVideoFrameCallback(() => resolve(true));
      else requestAnimationFrame(() => resolve(video.currentTime !== this.lastTime));
    });
    while (mine === this.generation) {
      const fresh = await nextFrame();
      if (mine !== this.generation) break;
      if (!fresh || video.readyState < 2 || !video.videoWidth) continue;
      this.lastTime = video.currentTime;
      await this.process(video, video.videoWidth, video.videoHeight);
    }
  }

  async openCamera() {
    const video = $("video");
    if (!window.isSecureContext) {
      throw new Error("the camera needs a secure context: open this page on https:// or on http://localhost " +
        "(see docs/web.md for a phone), or pick a video file");
    }
    if (!navigator.mediaDevices?.getUserMedia) throw new Error("this browser has no camera API; pick a video file");
    let stream;
    try {
      stream = await navigator.mediaDevices.getUserMedia({
        audio: false, video: { facingMode: { ideal: this.facing }, width: { ideal: 640 }, height: { ideal: 480 } },
      });
    } catch (e) {
      const why = {
        NotAllowedError: "camera permission was denied: allow the camera in the browser's site settings and reload",
        SecurityError: "camera permission was denied: allow the camera in the browser's site settings and reload",
        NotFoundError: "no camera was found: connect one and reload",
        OverconstrainedError: "no camera was found that can be opened: connect one and reload",
        NotReadableError: "the camera could not be started (is another program using it?): free it and reload",
        AbortError: "the camera could not be started (is another program using it?): free it and reload",
      }[e.name];
      throw new Error(`${why ?? `cannot open the camera (${e.name}: ${e.message})`}; or pick a video file`);
    }
    this.restart();
    this.stopCamera();
    video.removeAttribute("src");
    video.srcObject = stream;
    video.loop = false;
    await video.play();
    this.runVideo(video);
  }

  stopCamera() {
    const video = $("video");
    if (video.srcObject) video.srcObject.getTracks().forEach((t) => t.stop());
    video.srcObject = null;
  }

  async openFile(file) {
    const video = $("video");
    this.restart(); // the previous source's loop stops
    this.stopCamera();
    if (video.src) URL.revokeObjectURL(video.src);
    video.src = URL.createObjectURL(file);
    video.loop = true;
    try {
      await video.play();
    } catch (e) {
      throw new Error(`cannot play ${file.name} (${e.message}); this browser may not decode its format`);
    }
    this.runVideo(video);
  }

  /** The parity entry point: every image of the list once, in order, each frame's logits kept. */
  async runFrames(listUrl) {
    this.restart();
    const still = $("still");
    $("video").hidden = true;
    still.hidden = false;
    const response = await fetch(listUrl);
    if (!response.ok) throw new Error(`cannot fetch the frame list ${listUrl}: HTTP ${response.status}`);
    const list = await response.json();
    setStatus(`running ${list.frames.length} frames`);
    for (const name of list.frames) {
      const url = new URL(name, new URL(listUrl, location.href)).href;
      const blob = await (await fetch(url)).blob();
      // The file's own bytes: no colour management, no premultiplied alpha.
      const image = await createImageBitmap(blob, { colorSpaceConversion: "none", premultiplyAlpha: "none" });
      still.width = image.width;
      still.height = image.height;
      still.getContext("2d").drawImage(image, 0, 0);
      const { logits, input } = await this.process(image, image.width, image.height);
      xvit.results.push({ frame: name, logits: Array.from(logits), input: Array.from(input),
        crop: Array.from(this.pre.bytes), decision: this.decision });
    }
    xvit.state = "done";
    setStatus(`done: ${list.frames.length} frames`);
  }
}

async function main() {
  let settings, runtime, model;
  try {
    settings = readSettings();
    new Smoother([], settings.smoothing); // refuse bad smoothing settings before any loading
    setStatus("loading onnxruntime-web");
    runtime = await loadRuntime(settings);
    const choices = runtime.backend === "webgpu" ? [["webgpu", "wasm"], ["wasm"]] : [["wasm"]];
    for (const [i, providers] of choices.entries()) {
      try {
        model = await StreamModel.load(runtime.ort, settings.model, providers, setStatus);
        break;
      } catch (e) {
        // WebGPU can refuse a graph that the CPU provider runs: fall back, but never past a model problem.
        if (i === choices.length - 1 || !(e instanceof ModelError) || !e.message.startsWith("onnxruntime-web")) throw e;
        runtime.backend = "wasm";
      }
    }
  } catch (e) {
    showMessage(e instanceof ModelError ? `model: ${e.message}` : e.message);
    return;
  }
  const app = new App(settings, runtime.ort, runtime.backend, model);
  xvit.app = app;
  const guard = (promise) => promise.catch((e) => showMessage(e.message));
  $("file").addEventListener("change", (e) => e.target.files[0] && guard(app.openFile(e.target.files[0])));
  $("camera").addEventListener("click", () => { $("message").hidden = true; guard(app.openCamera()); });
  $("flip").addEventListener("click", () => {
    app.facing = app.facing === "environment" ? "user" : "environment";
    $("message").hidden = true;
    guard(app.openCamera());
  });
  if (settings.frames) {
    await guard(app.runFrames(settings.frames));
  } else {
    setStatus("opening the camera");
    await guard(app.openCamera());
  }
}

main();
