// The stream-mode ONNX step in the page: the sidecar read and checked, an onnxruntime-web session, and the
// state tensors carried from call to call (each `*_out` fed back as the next frame's input of the same name,
// as the sidecar's `state` record says).

const FORMAT = "xvit_edge.sidecar";
const EXPORT_HINT = "python -m xvit_edge.export --target onnx --mode stream";

/** A problem with the model or its sidecar, shown on the page as it is. */
export class ModelError extends Error {}

async function fetchOk(url, what) {
  let response;
  try {
    response = await fetch(url);
  } catch (e) {
    throw new ModelError(`cannot fetch the ${what} ${url}: ${e.message}`);
  }
  if (!response.ok) {
    throw new ModelError(`cannot fetch the ${what} ${url}: HTTP ${response.status} ${response.statusText}`);
  }
  return response;
}

/** The sidecar's own checks (xvit_edge.export.sidecar.read_sidecar) and what this page needs of it. */
export function checkSidecar(side, url) {
  if (typeof side !== "object" || side === null || side.format !== FORMAT) {
    throw new ModelError(`${url} is not an xvit_edge sidecar (no "format": "${FORMAT}")`);
  }
  const missing = ["artifact", "target", "mode", "config", "labels", "preprocessing", "input", "output", "state_shapes"]
    .filter((k) => !(k in side));
  if (missing.length) throw new ModelError(`${url}: the sidecar lacks ${missing.join(", ")}; export the model again`);
  if (side.mode !== "stream") {
    throw new ModelError(`${side.artifact} is a ${side.mode}-mode export (T frames per call); this page runs the ` +
      `incremental step of a stream-mode export, one frame per call: ${EXPORT_HINT}`);
  }
  if (side.target !== "onnx") {
    throw new ModelError(`${side.artifact} is a ${side.target} artifact; this page runs ONNX: ${EXPORT_HINT}`);
  }
  const pre = side.preprocessing;
  const ok = (v) => Array.isArray(v) && v.length === 3 && v.every(Number.isFinite);
  if (!pre || !ok(pre.mean) || !ok(pre.std) || !(pre.crop_size > 0) || !(pre.resize_shorter >= pre.crop_size)) {
    throw new ModelError(`${url}: its preprocessing is not valid (${JSON.stringify(pre)})`);
  }
  if (!Array.isArray(side.labels) || side.labels.length !== side.config.num_classes) {
    throw new ModelError(`${url}: its labels are not ${side.config.num_classes} names, one per class of the ` +
      "model's output");
  }
  if (!side.state || !Array.isArray(side.state.inputs) || !Array.isArray(side.state.outputs)
      || side.state.inputs.length !== side.state.outputs.length
      || !side.state.inputs.every((n) => Array.isArray(side.state_shapes[n]))) {
    throw new ModelError(`${url}: its state record does not name the state tensors and their shapes; ` +
      "export the model again");
  }
}

async function sha256(buffer) {
  const digest = await crypto.subtle.digest("SHA-256", buffer);
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

function sameShape(have, want) {
  // onnxruntime-web reports symbolic dimensions as strings: they fit any size.
  return Array.isArray(have) && have.length === want.length
    && have.every((d, i) => typeof d !== "number" || d === want[i]);
}

export class StreamModel {
  /**
   * Load the sidecar at `sidecarUrl` and the artifact it names (beside it), check them against each other
   * and create the session. `ort` is the onnxruntime-web module, `providers` its execution providers.
   */
  static async load(ort, sidecarUrl, providers, onStatus = () => {}) {
    onStatus(`loading ${sidecarUrl}`);
    const text = await (await fetchOk(sidecarUrl, "sidecar")).text();
    let side;
    try {
      side = JSON.parse(text);
    } catch (e) {
      throw new ModelError(`${sidecarUrl}: not JSON (${e.message})`);
    }
    checkSidecar(side, sidecarUrl);
    const artifactUrl = new URL(side.artifact, new URL(sidecarUrl, location.href)).href;
    onStatus(`loading ${side.artifact}`);
    const bytes = await (await fetchOk(artifactUrl, "model")).arrayBuffer();
    if (side.artifact_sha256 && globalThis.crypto?.subtle) { // crypto.subtle exists in secure contexts only
      if (await sha256(bytes) !== side.artifact_sha256) {
        throw new ModelError(`${side.artifact}: its sidecar was written for another file (sha256 differs); ` +
          "use the sidecar exported with this artifact, or export it again");
      }
    }
    onStatus(`starting onnxruntime (${providers.join(", ")})`);
    let session;
    try {
      session = await ort.InferenceSession.create(new Uint8Array(bytes), { executionProviders: providers });
    } catch (e) {
      throw new ModelError(`onnxruntime-web cannot load ${side.artifact} with ${providers.join(", ")}: ` +
        `${e.message ?? e}`);
    }
    return new StreamModel(ort, session, side, providers);
  }

  constructor(ort, session, side, providers) {
    Object.assign(this, { ort, session, sidecar: side, providers });
    this.labels = side.labels;
    this.preprocessing = side.preprocessing;
    this.frames = side.frames ?? side.config.num_frames; // predictions start once the window is full
    this.inputName = side.input.name;
    this.outputName = side.output.name;
    this.stateIn = side.state.inputs;
    this.stateOut = side.state.outputs;
    this.inputShape = side.input.shape;
    this.checkGraph();
    this.reset();
  }

  /** The graph's inputs and outputs against the sidecar's: names, and shapes where the runtime reports them. */
  checkGraph() {
    const want = [this.inputName, ...this.stateIn], wantOut = [this.outputName, ...this.stateOut];
    const s = this.session;
    if (want.some((n) => !s.inputNames.includes(n)) || wantOut.some((n) => !s.outputNames.includes(n))) {
      throw new ModelError(`${this.sidecar.artifact} does not match its sidecar: the graph has inputs ` +
        `(${s.inputNames.join(", ")}) and outputs (${s.outputNames.join(", ")}), the sidecar says ` +
        `(${want.join(", ")}) -> (${wantOut.join(", ")}); export the model again`);
    }
    const shapes = { [this.inputName]: this.inputShape, ...this.sidecar.state_shapes };
    const meta = s.inputMetadata; // onnxruntime-web >= 1.22
    if (Array.isArray(meta)) {
      for (const m of meta) {
        if (m.isTensor && shapes[m.name] && !sameShape(m.shape, shapes[m.name])) {
          throw new ModelError(`${this.sidecar.artifact} does not match its sidecar: input ${m.name} is ` +
            `[${m.shape}], the sidecar says [${shapes[m.name]}]; export the model again`);
        }
      }
    }
  }

  /** A fresh stream: zero state, as at export ("initial": "zeros"). */
  reset() {
    this.state = this.stateIn.map((name) => {
      const shape = this.sidecar.state_shapes[name];
      return new this.ort.Tensor("float32", new Float32Array(shape.reduce((a, b) => a * b, 1)), shape);
    });
    this.seen = 0;
    this.epoch = (this.epoch ?? 0) + 1;
    this.queue ??= Promise.resolve();
  }

  /**
   * One preprocessed frame (Float32Array, 3 * S * S) through the step; returns its logits (Float32Array), or
   * null when the stream was reset while it ran (its state then belongs to no stream and is dropped).
   * Calls run one at a time, in order: a session runs one call at a time, and a new source can start
   * while the previous one's last call is still running.
   */
  step(frame) {
    const epoch = this.epoch;
    // A copy: the caller reuses its buffer for the next frame, possibly while this call waits its turn.
    const input = new this.ort.Tensor("float32", Float32Array.from(frame), this.inputShape);
    const run = this.queue.then(async () => {
      if (epoch !== this.epoch) return null;
      const feeds = { [this.inputName]: input };
      this.stateIn.forEach((name, i) => { feeds[name] = this.state[i]; });
      const out = await this.session.run(feeds);
      if (epoch !== this.epoch) return null;
      this.state = this.stateOut.map((name) => out[name]);
      this.seen += 1;
      return out[this.outputName].data;
    });
    this.queue = run.catch(() => {});
    return run;
  }
}
