// One frame -> the model's input, as xvit_edge.data.transforms.preprocess_frame computes it: the shorter side
// resized to `resize_shorter` (OpenCV INTER_AREA when shrinking, INTER_LINEAR when enlarging), the centre
// `crop_size` square cut out, scaled to [0, 1] and normalised with mean/std. Every size and statistic comes
// from the sidecar's `preprocessing`.
//
// OpenCV's arithmetic is reproduced step by step (float32 where it uses float, its fixed-point weights, its
// rounding and its integer fast paths), because a resize that is merely "bilinear" or "area" differs from
// cv2.resize by a grey level here and there, and the model was trained on cv2's pixels. Checked bit for bit
// against cv2 (opencv-python-headless 5.0) on frames that shrink by integer and fractional factors and that
// enlarge (tests/test_web.py); the vertical INTER_LINEAR rounding is that of OpenCV's vector code path.
//
// Only the output pixels inside the crop are computed: each depends on its own source window alone.

const f32 = Math.fround;

/** Python's round(): halves to even (crop offsets, and the resized size, use it). */
export function roundHalfEven(x) {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** OpenCV's cvRound + saturate_cast<uchar>: halves to even, clamped to 0..255. */
function toByte(x) {
  const r = roundHalfEven(x);
  return r < 0 ? 0 : r > 255 ? 255 : r;
}

/** (width, height) after the shorter-side resize, as transforms._resize_shorter computes it. */
export function resizedSize(width, height, shorter) {
  const scale = shorter / Math.min(width, height);
  if (scale === 1) return [width, height];
  return [Math.max(shorter, roundHalfEven(width * scale)), Math.max(shorter, roundHalfEven(height * scale))];
}

// OpenCV's computeResizeAreaTab, for the output indices first .. first + count - 1: each one's source indices
// and float32 weights, in OpenCV's order, flat (taps of output k: start[k] .. start[k + 1] - 1).
function areaTable(ssize, dsize, scale, first, count) {
  const src = [], weight = [], start = [0];
  for (let d = first; d < first + count; d++) {
    const f1 = d * scale, f2 = f1 + scale;
    const cell = Math.min(scale, ssize - f1);
    const s2 = Math.min(Math.floor(f2), ssize - 1);
    const s1 = Math.min(Math.ceil(f1), s2);
    if (s1 - f1 > 1e-3) { src.push(s1 - 1); weight.push(f32((s1 - f1) / cell)); }
    for (let s = s1; s < s2; s++) { src.push(s); weight.push(f32(1.0 / cell)); }
    if (f2 - s2 > 1e-3) { src.push(s2); weight.push(f32(Math.min(Math.min(f2 - s2, 1), cell) / cell)); }
    start.push(src.length);
  }
  return { src: Int32Array.from(src), weight: Float32Array.from(weight), start: Int32Array.from(start) };
}

// OpenCV's INTER_LINEAR coefficients for uint8: source index and two 11-bit fixed-point weights.
function linearTable(ssize, dsize, first, count) {
  const scale = 1 / (dsize / ssize);
  const out = [];
  for (let d = first; d < first + count; d++) {
    let fx = f32((d + 0.5) * scale - 0.5);
    let sx = Math.floor(fx);
    fx = f32(fx - sx);
    if (sx < 0) { fx = 0; sx = 0; }
    if (sx >= ssize - 1) { fx = 0; sx = ssize - 1; }
    const next = Math.min(sx + 1, ssize - 1);
    out.push([sx, next, roundHalfEven(f32(f32(1 - fx) * 2048)), roundHalfEven(f32(fx * 2048))]);
  }
  return out;
}

/**
 * A preprocessor for frames of one size: `run(rgba)` takes the canvas's RGBA bytes (width * height * 4) and
 * returns the (3, S, S) float32 input, channel-major. The tables are built once per frame size.
 */
export function makePreprocessor(width, height, pre) {
  const S = pre.crop_size;
  if (S > pre.resize_shorter) throw new Error(`crop_size ${S} is larger than resize_shorter ${pre.resize_shorter}`);
  const [rw, rh] = resizedSize(width, height, pre.resize_shorter);
  // transforms._crop with offset 0.5: Python's round of half the margin.
  const top = roundHalfEven((rh - S) * 0.5), left = roundHalfEven((rw - S) * 0.5);
  const mean = pre.mean.map(f32), std = pre.std.map(f32);
  const bytes = new Uint8Array(S * S * 3); // the resized, cropped frame, HWC
  let resize;
  if (rw === width && rh === height) {
    resize = (src) => {
      for (let y = 0; y < S; y++) for (let x = 0; x < S; x++) {
        const i = ((y + top) * width + x + left) * 4, o = (y * S + x) * 3;
        bytes[o] = src[i]; bytes[o + 1] = src[i + 1]; bytes[o + 2] = src[i + 2];
      }
    };
  } else if (rw <= width && rh <= height) {
    resize = areaResize(width, height, rw, rh, top, left, S, bytes);
  } else {
    resize = linearResize(width, height, rw, rh, top, left, S, bytes);
  }
  const out = new Float32Array(3 * S * S);
  return {
    width, height, resized: [rw, rh], crop: [top, left],
    /** The resized and cropped frame (S, S, 3) uint8 of the last run, for checks. */
    bytes,
    run(rgba) {
      resize(rgba);
      // normalise(): x / 255, then (x - mean) / std, each step rounded to float32 as torch computes it.
      for (let c = 0; c < 3; c++) {
        const m = mean[c], s = std[c], base = c * S * S;
        for (let p = 0; p < S * S; p++) out[base + p] = f32(f32(f32(bytes[p * 3 + c] / 255) - m) / s);
      }
      return out;
    },
  };
}

function areaResize(width, height, rw, rh, top, left, S, bytes) {
  // cv::resize's own arithmetic: scale = 1 / (dsize / ssize) in double, and its integer-scale fast path.
  const sx = 1 / (rw / width), sy = 1 / (rh / height);
  const ix = roundHalfEven(sx), iy = roundHalfEven(sy);
  if (Math.abs(sx - ix) < Number.EPSILON && Math.abs(sy - iy) < Number.EPSILON) {
    const area = ix * iy, inv = f32(1 / area);
    return (src) => {
      for (let y = 0; y < S; y++) for (let x = 0; x < S; x++) for (let c = 0; c < 3; c++) {
        let sum = 0;
        for (let dy = 0; dy < iy; dy++) for (let dx = 0; dx < ix; dx++) {
          sum += src[(((y + top) * iy + dy) * width + (x + left) * ix + dx) * 4 + c];
        }
        // 2x2 is OpenCV's vector path, (sum + 2) >> 2; other integer scales multiply by 1/area in float.
        bytes[(y * S + x) * 3 + c] = ix === 2 && iy === 2 ? (sum + 2) >> 2 : toByte(f32(sum * inv));
      }
    };
  }
  const xt = areaTable(width, rw, sx, left, S), yt = areaTable(height, rh, sy, top, S);
  const buf = new Float32Array(S * 3), sum = new Float32Array(S * 3);
  return (src) => {
    for (let y = 0; y < S; y++) {
      sum.fill(0);
      for (let j = yt.start[y]; j < yt.start[y + 1]; j++) {
        const row = yt.src[j] * width * 4, beta = yt.weight[j];
        buf.fill(0);
        for (let x = 0; x < S; x++) {
          let b0 = 0, b1 = 0, b2 = 0; // float32 running sums, as OpenCV's buffer row
          for (let k = xt.start[x]; k < xt.start[x + 1]; k++) {
            const i = row + xt.src[k] * 4, alpha = xt.weight[k];
            b0 = f32(b0 + f32(src[i] * alpha));
            b1 = f32(b1 + f32(src[i + 1] * alpha));
            b2 = f32(b2 + f32(src[i + 2] * alpha));
          }
          buf[x * 3] = b0; buf[x * 3 + 1] = b1; buf[x * 3 + 2] = b2;
        }
        for (let k = 0; k < S * 3; k++) sum[k] += f32(beta * buf[k]); // the store rounds the sum to float32
      }
      for (let k = 0; k < S * 3; k++) bytes[y * S * 3 + k] = toByte(sum[k]);
    }
  };
}

function linearResize(width, height, rw, rh, top, left, S, bytes) {
  const xtab = linearTable(width, rw, left, S), ytab = linearTable(height, rh, top, S);
  const r0 = new Int32Array(S * 3), r1 = new Int32Array(S * 3);
  const hline = (src, sy, dst) => {
    for (let x = 0; x < S; x++) {
      const [a, b, wa, wb] = xtab[x];
      const pa = (sy * width + a) * 4, pb = (sy * width + b) * 4;
      for (let c = 0; c < 3; c++) dst[x * 3 + c] = src[pa + c] * wa + src[pb + c] * wb;
    }
  };
  return (src) => {
    for (let y = 0; y < S; y++) {
      const [a, b, wa, wb] = ytab[y];
      hline(src, a, r0);
      hline(src, b, r1);
      for (let k = 0; k < S * 3; k++) {
        // OpenCV's vector rounding of the vertical pass (the closest of the variants measured against cv2).
        const v = ((((r0[k] >> 4) * wa) >> 16) + (((r1[k] >> 4) * wb) >> 16) + 2) >> 2;
        bytes[y * S * 3 + k] = v < 0 ? 0 : v > 255 ? 255 : v;
      }
    }
  };
}
