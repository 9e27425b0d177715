// Temporal smoothing of class scores and the "no action" threshold, as xvit_edge/streaming/smoothing.py's
// Smoother does it: `ema` (moving average of the probabilities, then the threshold on the smoothed winner),
// `vote` (the threshold on each prediction, then the most frequent answer of the last `window`; a tie goes
// to the answer given most recently), or `none`.

export const NO_ACTION = "no action";
export const METHODS = ["ema", "vote", "none"];

/** Softmax of the logits (as the runtime computes `probs` before smoothing). */
export function softmax(logits) {
  const max = Math.max(...logits);
  const e = Array.from(logits, (x) => Math.exp(x - max));
  const sum = e.reduce((a, b) => a + b, 0);
  return e.map((x) => x / sum);
}

export class Smoother {
  constructor(labels, { method = "ema", threshold = 0.5, alpha = 0.3, window = 5 } = {}) {
    if (!METHODS.includes(method)) throw new Error(`smoothing must be one of ${METHODS.join(", ")}, got ${method}`);
    if (!(threshold >= 0 && threshold <= 1)) throw new Error(`threshold must be in [0, 1], got ${threshold}`);
    if (method === "ema" && !(alpha > 0 && alpha <= 1)) throw new Error(`EMA alpha must be in (0, 1], got ${alpha}`);
    if (method === "vote" && !(Number.isInteger(window) && window >= 1)) {
      throw new Error(`vote window must be >= 1, got ${window}`);
    }
    Object.assign(this, { labels, method, threshold, alpha, window });
    this.reset();
  }

  reset() {
    this.ema = null;
    this.votes = [];
  }

  decide(probs) {
    let i = 0;
    for (let k = 1; k < probs.length; k++) if (probs[k] > probs[i]) i = k; // the first maximum, as np.argmax
    return [probs[i] >= this.threshold ? i : -1, probs[i]];
  }

  /** Probabilities in, `{label, index, confidence}` out (index -1: no action). */
  update(probs) {
    let index, confidence;
    if (this.method === "ema") {
      if (this.ema === null) this.ema = Array.from(probs);
      else this.ema = this.ema.map((s, k) => s * (1 - this.alpha) + this.alpha * probs[k]);
      [index, confidence] = this.decide(this.ema);
    } else if (this.method === "vote") {
      this.votes.push(this.decide(probs));
      if (this.votes.length > this.window) this.votes.shift();
      const counts = new Map();
      for (const [i] of this.votes) counts.set(i, (counts.get(i) || 0) + 1);
      const best = Math.max(...counts.values());
      index = [...this.votes].reverse().find(([i]) => counts.get(i) === best)[0];
      const mine = this.votes.filter(([i]) => i === index).map(([, c]) => c);
      confidence = mine.reduce((a, b) => a + b, 0) / mine.length;
    } else {
      [index, confidence] = this.decide(probs);
    }
    return { label: index >= 0 ? this.labels[index] : NO_ACTION, index, confidence };
  }
}
