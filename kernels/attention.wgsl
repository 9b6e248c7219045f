// Causal attention over the KV cache, flash-decoding style: the key positions are cut into splits of `splitLen`;
// `partial` runs one workgroup per (query head, query row, split) with an online softmax over blocks of 64 keys and
// writes (max, sum, Σ p·v) for its split; `reduce` rescales the splits to a common max and normalizes. Decode (one
// query row) spreads a long context over many workgroups; prefill runs the same kernels with a row per query, each
// seeing keys 0 .. pos0 + m (and only the last `window` of them when window > 0).
// Query head h reads KV head h / (nH / kvH) (grouped-query attention). Cache layout [2][kvH][cap][hd]; hd <= 256.
// The workgroup reductions are written inline: barriers inside a helper function called in the loop gave wrong
// results on Mesa llvmpipe (OpenGL ES).

#include attention-params

#include step

const NEG: f32 = -3.0e38;
const MAX_SPLITS: u32 = 32u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(5) var<uniform> st: Step;

// Keys per split (a multiple of 64, so that at most MAX_SPLITS cover every key) and the splits in use, for pos0 + M
// keys; attention.ts splitLength mirrors it. The grid may be larger (recorded once for the most keys a cache holds):
// workgroups past the live splits leave at once and the reduce reads only the live ones.
fn splitLen() -> u32 {
  let keys = st.pos0 + p.M;
  return 64u * max(1u, (keys + 64u * MAX_SPLITS - 1u) / (64u * MAX_SPLITS));
}

fn liveSplits() -> u32 {
  let keys = st.pos0 + p.M;
  let len = splitLen();
  return (keys + len - 1u) / len;
}
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> kv: array<f32>;
@group(0) @binding(3) var<storage, read_write> part: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

var<workgroup> qs: array<f32, 256>;
var<workgroup> pr: array<f32, 64>;
var<workgroup> red: array<f32, 64>;

@compute @workgroup_size(64)
fn partial(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) tid: u32) {
  let h = wg.x;
  let m = wg.y;
  let split = wg.z;
  let nSplits = liveSplits();
  if (split >= nSplits) { return; } // uniform per workgroup: before any barrier
  let len = splitLen();
  let kh = h / (p.nH / p.kvH);
  let T = st.pos0 + m + 1u; // keys visible to this row
  var first = 0u;
  if (p.window > 0u && T > p.window) { first = T - p.window; }
  let lo = max(first, split * len);
  let hi = min(T, (split + 1u) * len);
  for (var d = tid; d < p.hd; d += 64u) { qs[d] = q[m * p.qStride + h * p.hd + d]; }
  workgroupBarrier();
  let kBase = kh * p.cap * p.hd;
  let vBase = (p.kvH + kh) * p.cap * p.hd;
  var mx = NEG;
  var sum = 0.0;
  var acc: array<f32, 4>; // dims tid + 64j
  for (var t0 = lo; t0 < hi; t0 += 64u) {
    let t = t0 + tid;
    var s = NEG;
    if (t < hi) {
      var dot = 0.0;
      for (var d = 0u; d < p.hd; d++) { dot += qs[d] * kv[kBase + t * p.hd + d]; }
      s = dot * p.scale;
    }
    red[tid] = s;
    workgroupBarrier();
    for (var r = 32u; r > 0u; r >>= 1u) {
      if (tid < r) { red[tid] = max(red[tid], red[tid + r]); }
      workgroupBarrier();
    }
    let newMax = max(mx, red[0]);
    workgroupBarrier();
    let corr = exp(mx - newMax);
    var e = 0.0;
    if (t < hi) { e = exp(s - newMax); }
    pr[tid] = e;
    red[tid] = e;
    workgroupBarrier(); // also publishes pr
    for (var r = 32u; r > 0u; r >>= 1u) {
      if (tid < r) { red[tid] = red[tid] + red[tid + r]; }
      workgroupBarrier();
    }
    sum = sum * corr + red[0];
    let n = min(64u, hi - t0);
    for (var j = 0u; j < 4u; j++) {
      let d = tid + 64u * j;
      if (d < p.hd) {
        var a = acc[j] * corr;
        for (var tt = 0u; tt < n; tt++) { a += pr[tt] * kv[vBase + (t0 + tt) * p.hd + d]; }
        acc[j] = a;
      }
    }
    mx = newMax;
    workgroupBarrier();
  }
  let base = ((m * p.nH + h) * nSplits + split) * (p.hd + 2u);
  if (tid == 0u) {
    part[base] = mx;
    part[base + 1u] = sum;
  }
  for (var j = 0u; j < 4u; j++) {
    let d = tid + 64u * j;
    if (d < p.hd) { part[base + 2u + d] = acc[j]; }
  }
}

// out[m][h·hd + d] = Σ_s acc_s[d]·e^(max_s − M) / Σ_s sum_s·e^(max_s − M), M the largest max_s.
@compute @workgroup_size(64)
fn reduce(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) tid: u32) {
  let h = wg.x;
  let m = wg.y;
  let nSplits = liveSplits();
  let base = (m * p.nH + h) * nSplits;
  let stride = p.hd + 2u;
  var gmax = NEG;
  for (var s = 0u; s < nSplits; s++) { gmax = max(gmax, part[(base + s) * stride]); }
  var total = 0.0;
  for (var s = 0u; s < nSplits; s++) { total += part[(base + s) * stride + 1u] * exp(part[(base + s) * stride] - gmax); }
  for (var d = tid; d < p.hd; d += 64u) {
    var v = 0.0;
    for (var s = 0u; s < nSplits; s++) { v += part[(base + s) * stride + 2u + d] * exp(part[(base + s) * stride] - gmax); }
    out[(m * p.nH + h) * p.hd + d] = v / total;
  }
}
