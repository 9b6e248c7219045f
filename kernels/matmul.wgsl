// y[m][n] = Σ_k x[m][k] · W[n][k] (+ bias[n]) for the Hugging Face Linear layout W [N][K]: GEMV when M = 1, a
// register-tiled GEMM otherwise. A workgroup owns TN output columns for TM rows; its 64 threads stride over K eight
// values at a time (one u32 of q4 codes, two of q8) and reduce in workgroup memory.
//
// The M = 1 product of a decode step runs gemv.wgsl instead, which is written for bandwidth; this is the prefill path.
// Weight rows are whole blocks of 32 values in every format (zero-padded past K; see matmul.ts).
//
// Variants (defines): weights F32 | F16 (packed pairs) | Q8 | Q4 (MatMulNBits blocks of 32: code - zp times the
// block's scale, f32 or f16 pairs with SCALES_F16; the byte layout read as little-endian u32s), BIAS, ACCUMULATE
// (y += result: the residual add fused into the producer), NORM (x is RMS-normalized on the fly: x·gamma·rsqrt(mean(x²)+eps), fused into the consumer), SWIGLU (x is
// silu(a)·b of an [M][2K] input, the SwiGLU activation fused into the down projection).

const TN: u32 = {{TN}}u;
const TM: u32 = {{TM}}u;
const WG: u32 = 64u;
const NACC: u32 = TM * TN;

#include product-params

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
#if F32
@group(0) @binding(2) var<storage, read> w: array<f32>;
#else
@group(0) @binding(2) var<storage, read> w: array<u32>;
#endif
#if QUANT
#if SCALES_F16
@group(0) @binding(3) var<storage, read> scales: array<u32>;
#else
@group(0) @binding(3) var<storage, read> scales: array<f32>;
#endif
// The scale of block `at` (f16 scales: two per u32, block 2j in the low half).
fn scaleOf(at: u32) -> f32 {
#if SCALES_F16
  let pair = unpack2x16float(scales[at >> 1u]);
  return select(pair.x, pair.y, (at & 1u) == 1u);
#else
  return scales[at];
#endif
}
#endif

#if BIAS
@group(0) @binding(4) var<storage, read> bias: array<f32>;
#endif
#if NORM
@group(0) @binding(5) var<storage, read> gamma: array<f32>;
#endif
@group(0) @binding(6) var<storage, read_write> y: array<f32>;

var<workgroup> red: array<f32, 1280>; // (NACC + TM) * WG, NACC + TM <= 20

fn xval(m: u32, k: u32) -> f32 {
  let at = p.xOffset + m * p.xStride + k;
#if SWIGLU
  let a = x[at];
  return a / (1.0 + exp(-a)) * x[at + p.K];
#else
  return x[at];
#endif
}

// The eight weights of row n at k = 8g .. 8g+7 (zero past K: the rows' padding).
fn w8(n: u32, g: u32) -> array<f32, 8> {
  var v: array<f32, 8>;
#if F32
  for (var i = 0u; i < 8u; i++) { v[i] = w[n * p.nBlocks * 32u + 8u * g + i]; }
#endif
#if F16
  for (var j = 0u; j < 4u; j++) {
    let h = unpack2x16float(w[n * p.nBlocks * 16u + 4u * g + j]);
    v[2u * j] = h.x;
    v[2u * j + 1u] = h.y;
  }
#endif
#if Q8
  let s = scaleOf(n * p.nBlocks + g / 4u);
  let base = n * p.nBlocks * 8u + 2u * g;
  let lo = w[base];
  let hi = w[base + 1u];
  for (var i = 0u; i < 4u; i++) {
    v[i] = (f32((lo >> (8u * i)) & 0xffu) - 128.0) * s;
    v[i + 4u] = (f32((hi >> (8u * i)) & 0xffu) - 128.0) * s;
  }
#endif
#if Q4
  let s = scaleOf(n * p.nBlocks + g / 4u);
  let word = w[n * p.nBlocks * 4u + g];
  for (var i = 0u; i < 8u; i++) {
    v[i] = (f32((word >> (4u * i)) & 0xfu) - 8.0) * s;
  }
#endif
  return v;
}

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) tid: u32) {
  let n0 = wg.x * TN;
  let m0 = wg.y * TM;
  var acc: array<f32, NACC>;
  var ss: array<f32, TM>;
  let groups = (p.K + 7u) / 8u;
  for (var g = tid; g < groups; g += WG) {
    var xs: array<f32, TM * 8u>;
    for (var m = 0u; m < TM; m++) {
      if (m0 + m >= p.M) { break; }
      for (var i = 0u; i < 8u; i++) {
        let k = 8u * g + i;
        if (k < p.K) {
          var v = xval(m0 + m, k);
#if NORM
          ss[m] += v * v;
          v *= gamma[k];
#endif
          xs[m * 8u + i] = v;
        }
      }
    }
    for (var t = 0u; t < TN; t++) {
      if (n0 + t >= p.N) { break; }
      let wv = w8(n0 + t, g);
      for (var m = 0u; m < TM; m++) {
        var d = 0.0;
        for (var i = 0u; i < 8u; i++) { d += xs[m * 8u + i] * wv[i]; }
        acc[m * TN + t] += d;
      }
    }
  }
  for (var j = 0u; j < NACC; j++) { red[j * WG + tid] = acc[j]; }
  for (var m = 0u; m < TM; m++) { red[(NACC + m) * WG + tid] = ss[m]; }
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (tid < s) {
      for (var j = 0u; j < NACC + TM; j++) { red[j * WG + tid] += red[j * WG + tid + s]; }
    }
    workgroupBarrier();
  }
  if (tid < NACC) {
    let m = tid / TN;
    let n = n0 + tid % TN;
    if (m0 + m < p.M && n < p.N) {
      var v = red[tid * WG];
#if NORM
      v *= inverseSqrt(red[(NACC + m) * WG] / f32(p.K) + p.eps);
#endif
#if BIAS
      v += bias[n];
#endif
      let at = (m0 + m) * p.yStride + p.yOffset + n;
#if ACCUMULATE
      y[at] += v;
#else
      y[at] = v;
#endif
    }
  }
}
