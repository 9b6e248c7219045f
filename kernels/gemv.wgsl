// y[n] = Σ_k x[k] · W[n][k] (+ bias[n]): the M = 1 product of a decode step, written for memory bandwidth.
//
// Every weight format stores a row as whole blocks of 32 values (zero-padded past K), so a thread reads whole blocks
// with 16-byte loads and never checks K inside a block: q4 = one vec4<u32> of codes (+ one scale), q8 = two, f16 =
// four (packed pairs, unpack2x16float: no shader-f16 needed), f32 = eight vec4<f32>. A workgroup of ROWS·TPR threads
// owns ROWS output rows, TPR threads per row; the TPR threads of a row read adjacent blocks (coalesced) and stride
// by TPR blocks. The input row is staged once per workgroup in workgroup memory, XT values at a time (SwiGLU and the
// RMSNorm's gamma applied there, once, and the sum of squares gathered there), so no thread re-derives x per row.
// The row's TPR partial sums meet in a short reduction: subgroupShuffleXor when SUBGROUPS (TPR <= the subgroup
// size, checked by the dispatcher), else a tree in workgroup memory.
//
// Variants (defines): weights F32 | F16 | Q8 | Q4 (code - zp times the block's scale, MatMulNBits layout read as
// u32s; QUANT for either; SCALES_F16: the scales as f16 pairs), BIAS, ACCUMULATE (y += result), NORM (x·gamma·rsqrt(mean(x²)+eps)), SWIGLU (x = silu(a)·b of a [2K] input),
// SUBGROUPS. TPR, ROWS: powers of two; XT: the staged chunk of x, a multiple of 32; UNROLL: blocks a thread loads
// before it adds them up (straight-line code lets the compiler issue those loads together: a q4 block is a single
// 16-byte load, and one load in flight per thread is too few to cover DRAM latency).
#if SUBGROUPS
enable subgroups;
#endif

const TPR: u32 = {{TPR}}u;
const ROWS: u32 = {{ROWS}}u;
const WG: u32 = {{WG}}u; // ROWS * TPR
const XT: u32 = {{XT}}u;
const UNROLL: u32 = {{UNROLL}}u;

#include product-params

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
#if F32
@group(0) @binding(2) var<storage, read> w: array<vec4<f32>>;
#else
@group(0) @binding(2) var<storage, read> w: array<vec4<u32>>;
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

var<workgroup> xs: array<vec4<f32>, XT / 4u>;
var<workgroup> red: array<f32, WG>;
#if NORM
var<workgroup> red2: array<f32, WG>;
#endif

// x[k] as the product sees it (SwiGLU applied); 0 past K.
fn xval(k: u32) -> f32 {
  if (k >= p.K) { return 0.0; }
  let at = p.xOffset + k;
#if SWIGLU
  let a = x[at];
  return a / (1.0 + exp(-a)) * x[at + p.K];
#else
  return x[at];
#endif
}

// Σ over block b of row n of W·x, with the block's x at xs[i .. i+8).
fn blockDot(n: u32, b: u32, i: u32) -> f32 {
  let at = n * p.nBlocks + b;
#if F32
  var s = 0.0;
  for (var j = 0u; j < 8u; j++) { s += dot(w[8u * at + j], xs[i + j]); }
  return s;
#endif
#if F16
  var s = 0.0;
  for (var j = 0u; j < 4u; j++) {
    let q = w[4u * at + j]; // 8 halves
    s += dot(vec4<f32>(unpack2x16float(q.x), unpack2x16float(q.y)), xs[i + 2u * j]);
    s += dot(vec4<f32>(unpack2x16float(q.z), unpack2x16float(q.w)), xs[i + 2u * j + 1u]);
  }
  return s;
#endif
#if Q8
  var s = 0.0;
  for (var j = 0u; j < 2u; j++) {
    let q = w[2u * at + j]; // 16 codes, byte i of a word is element i
    for (var c = 0u; c < 4u; c++) {
      let v = vec4<f32>((vec4<u32>(q[c]) >> vec4<u32>(0u, 8u, 16u, 24u)) & vec4<u32>(0xffu)) - 128.0;
      s += dot(v, xs[i + 4u * j + c]);
    }
  }
  return s * scaleOf(at);
#endif
#if Q4
  let q = w[at]; // 32 codes: nibble i of a word is element i (low nibble first)
  var s = 0.0;
  for (var c = 0u; c < 4u; c++) {
    let lo = vec4<f32>((vec4<u32>(q[c]) >> vec4<u32>(0u, 4u, 8u, 12u)) & vec4<u32>(0xfu)) - 8.0;
    let hi = vec4<f32>((vec4<u32>(q[c]) >> vec4<u32>(16u, 20u, 24u, 28u)) & vec4<u32>(0xfu)) - 8.0;
    s += dot(lo, xs[i + 2u * c]) + dot(hi, xs[i + 2u * c + 1u]);
  }
  return s * scaleOf(at);
#endif
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) tid: u32
#if SUBGROUPS
  , @builtin(subgroup_invocation_id) sgLane: u32, @builtin(subgroup_size) sgSize: u32
#endif
) {
  let row = tid / TPR;
  let lane = tid % TPR;
  let n = (wg.y * nwg.x + wg.x) * ROWS + row; // the grid may spread over y past 65535 workgroups
  let live = n < p.N;
  var acc = 0.0;
  var ss = 0.0;
  for (var k0 = 0u; k0 < p.K; k0 += XT) {
    // stage x[k0 .. k0 + XT) once for the workgroup
    for (var i = tid; i < XT / 4u; i += WG) {
      let k = k0 + 4u * i;
      var v = vec4<f32>(xval(k), xval(k + 1u), xval(k + 2u), xval(k + 3u));
#if NORM
      ss += dot(v, v);
      let g = vec4<u32>(min(vec4<u32>(k) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(p.K - 1u)));
      v *= vec4<f32>(gamma[g.x], gamma[g.y], gamma[g.z], gamma[g.w]);
#endif
      xs[i] = v;
    }
    workgroupBarrier();
    if (live) {
      let b0 = k0 / 32u;
      let b1 = min(b0 + XT / 32u, p.nBlocks);
      var b = b0 + lane;
      for (; b + (UNROLL - 1u) * TPR < b1; b += UNROLL * TPR) {
        var part: array<f32, UNROLL>;
        for (var u = 0u; u < UNROLL; u++) { part[u] = blockDot(n, b + u * TPR, 8u * (b + u * TPR - b0)); }
        for (var u = 0u; u < UNROLL; u++) { acc += part[u]; }
      }
      for (; b < b1; b += TPR) { acc += blockDot(n, b, 8u * (b - b0)); }
    }
    workgroupBarrier();
  }

#if SUBGROUPS
  // the row's TPR lanes are adjacent in one subgroup (TPR <= subgroup size, rows aligned)
  for (var s = TPR / 2u; s > 0u; s >>= 1u) { acc += subgroupShuffleXor(acc, s); }
#if NORM
  // the sum of squares over the whole workgroup: per subgroup, then across the WG / sgSize subgroups
  let sgSum = subgroupAdd(ss);
  if (sgLane == 0u) { red[tid / sgSize] = sgSum; }
  workgroupBarrier();
  var total = 0.0;
  for (var j = 0u; j < max(WG / sgSize, 1u); j++) { total += red[j]; }
  ss = total;
#endif
#else
  red[tid] = acc;
#if NORM
  red2[tid] = ss;
#endif
  workgroupBarrier();
  // rows need log2(TPR) halvings; the sum of squares spans the workgroup, log2(WG)
#if NORM
  let top = WG / 2u;
#else
  let top = TPR / 2u;
#endif
  for (var s = top; s > 0u; s >>= 1u) {
    if (s < TPR && lane < s) { red[tid] += red[tid + s]; }
#if NORM
    if (tid < s) { red2[tid] += red2[tid + s]; }
#endif
    workgroupBarrier();
  }
  acc = red[tid];
#if NORM
  ss = red2[0];
#endif
#endif

  if (live && lane == 0u) {
    var v = acc;
#if NORM
    v *= inverseSqrt(ss / f32(p.K) + p.eps);
#endif
#if BIAS
    v += bias[n];
#endif
#if ACCUMULATE
    y[p.yOffset + n] += v;
#else
    y[p.yOffset + n] = v;
#endif
  }
}
