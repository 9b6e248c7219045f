// Causal attention for prefill (M > 1 query rows), Q-tiled: a workgroup owns TQ query vectors of one KV head g (the
// flattened (row m, head) pairs f = m·G + j of the G = nH / kvH query heads h = g·G + j that share it, so grouped
// heads reuse every key and value a workgroup reads), walks the keys of its rows in tiles of TK staged once in
// workgroup memory, keeps an online softmax per query vector (running max and sum, Σ p·v of HD floats in
// registers) and writes its rows of out [M][nH·hd] itself: no split partials, no reduce pass.
// Row m sees keys 0 .. pos0 + m, and only the last `window` of them when window > 0 (key t with t + window >
// pos0 + m), as attention.wgsl. Cache layout [2][kvH][cap][hd]: key t of head g at kv[(g·cap + t)·hd], its value at
// kv[((kvH + g)·cap + t)·hd]. The grid [⌈M·G / TQ⌉, kvH] does not depend on pos0, which comes from the step uniform.
// Everything moves as vec4 (hd and the query stride are multiples of 4): a quarter of the loads, which on llvmpipe
// are per-lane gathers.
// Defines: HD (the head width), TQ and TK (the tiles, picked by attention.ts prefillTiles to fit the device's
// workgroup storage; TK divides 64), DL (lanes across a query vector's dims in Σ p·v: 16, fewer for narrow heads).
// Barriers are inline in the entry point, as in attention.wgsl.

#include attention-params

#include step

const HD: u32 = {{HD}}u;
const HD4: u32 = HD / 4u;
const TQ: u32 = {{TQ}}u;
const TK: u32 = {{TK}}u;
const DL: u32 = {{DL}}u;
const KS4: u32 = HD4 + 1u; // row stride of the key/value tile, padded so that lanes reading different keys differ in bank
const NEG: f32 = -3.0e38;
// Scores: lane t owns key t % TK of the tile and query vectors t / TK + S_SL·i.
const S_SL: u32 = 64u / TK;
const S_SPT: u32 = (TQ + S_SL - 1u) / S_SL;
// Σ p·v: lane t owns dims 4·(t % DL + DL·j) .. +3 of query vectors t / DL + V_SL·i.
const V_SL: u32 = 64u / DL;
const V_SPT: u32 = (TQ + V_SL - 1u) / V_SL;
const V_DPT: u32 = (HD4 + DL - 1u) / DL;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(5) var<uniform> st: Step;
@group(0) @binding(1) var<storage, read> q: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> kv: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> out: array<vec4<f32>>;

var<workgroup> qs: array<vec4<f32>, TQ * HD4>;
var<workgroup> kvs: array<vec4<f32>, TK * KS4>; // the key tile, then the value tile
var<workgroup> ps: array<f32, TQ * TK>; // scores, then probabilities
var<workgroup> cs: array<f32, TQ>; // per query vector: the tile's rescale factor, at the end 1 / sum

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) tid: u32) {
  let g = wg.y;
  let G = p.nH / p.kvH;
  let f0 = wg.x * TQ;
  let fEnd = min(f0 + TQ, p.M * G);
  // the keys any of the workgroup's rows sees: [lo, hi)
  let mFirst = f0 / G;
  let hi = st.pos0 + (fEnd - 1u) / G + 1u;
  var lo = 0u;
  if (p.window > 0u && st.pos0 + mFirst + 1u > p.window) { lo = st.pos0 + mFirst + 1u - p.window; }
  let kBase = g * p.cap * HD4;
  let vBase = (p.kvH + g) * p.cap * HD4;

  for (var i = tid; i < TQ * HD4; i += 64u) {
    let f = f0 + i / HD4;
    var x = vec4<f32>(0.0);
    if (f < fEnd) { x = q[((f / G) * p.qStride + (g * G + f % G) * HD) / 4u + i % HD4]; }
    qs[i] = x;
  }

  let kl = tid % TK;
  let sl = tid / TK;
  let dl = tid % DL;
  let vl = tid / DL;
  var mx = NEG; // lane s < TQ: query vector s's running max and sum
  var sum = 0.0;
  var acc: array<vec4<f32>, V_SPT * V_DPT>;
  for (var i = 0u; i < V_SPT * V_DPT; i++) { acc[i] = vec4<f32>(0.0); }

  for (var t0 = lo; t0 < hi; t0 += TK) {
    for (var i = tid; i < TK * HD4; i += 64u) {
      let t = t0 + i / HD4;
      var x = vec4<f32>(0.0);
      if (t < hi) { x = kv[kBase + t * HD4 + i % HD4]; }
      kvs[(i / HD4) * KS4 + i % HD4] = x;
    }
    workgroupBarrier(); // keys staged (and, the first time, the queries)
    var dots: array<f32, S_SPT>;
    for (var i = 0u; i < S_SPT; i++) { dots[i] = 0.0; }
    for (var d = 0u; d < HD4; d++) {
      let k = kvs[kl * KS4 + d];
      for (var i = 0u; i < S_SPT; i++) { dots[i] += dot(qs[min(sl + S_SL * i, TQ - 1u) * HD4 + d], k); }
    }
    let t = t0 + kl;
    for (var i = 0u; i < S_SPT; i++) {
      let s = sl + S_SL * i;
      let f = f0 + s;
      let pos = st.pos0 + f / G;
      if (s < TQ) {
        var sc = NEG;
        if (f < fEnd && t <= pos && (p.window == 0u || t + p.window > pos)) { sc = dots[i] * p.scale; }
        ps[s * TK + kl] = sc;
      }
    }
    workgroupBarrier(); // scores written, keys no longer read
    if (tid < TQ) {
      var tmax = NEG;
      for (var k = 0u; k < TK; k++) { tmax = max(tmax, ps[tid * TK + k]); }
      let newMax = max(mx, tmax);
      let corr = exp(mx - newMax);
      var tsum = 0.0;
      for (var k = 0u; k < TK; k++) {
        let sc = ps[tid * TK + k];
        var e = 0.0;
        if (sc > 0.5 * NEG) { e = exp(sc - newMax); } // masked keys weigh 0 even while every key so far is masked
        ps[tid * TK + k] = e;
        tsum += e;
      }
      sum = sum * corr + tsum;
      mx = newMax;
      cs[tid] = corr;
    }
    for (var i = tid; i < TK * HD4; i += 64u) {
      let t = t0 + i / HD4;
      var x = vec4<f32>(0.0);
      if (t < hi) { x = kv[vBase + t * HD4 + i % HD4]; }
      kvs[(i / HD4) * KS4 + i % HD4] = x;
    }
    workgroupBarrier(); // probabilities, rescale factors and values in place
    for (var i = 0u; i < V_SPT; i++) {
      let c = cs[min(vl + V_SL * i, TQ - 1u)]; // lanes past TQ or HD compute a clamped copy they never write
      for (var j = 0u; j < V_DPT; j++) { acc[i * V_DPT + j] *= c; }
    }
    for (var k = 0u; k < TK; k++) {
      var pk: array<f32, V_SPT>;
      for (var i = 0u; i < V_SPT; i++) { pk[i] = ps[min(vl + V_SL * i, TQ - 1u) * TK + k]; }
      for (var j = 0u; j < V_DPT; j++) {
        let v = kvs[k * KS4 + min(dl + DL * j, HD4 - 1u)];
        for (var i = 0u; i < V_SPT; i++) { acc[i * V_DPT + j] += pk[i] * v; }
      }
    }
    workgroupBarrier(); // the tile consumed before the next one overwrites it
  }

  if (tid < TQ) { cs[tid] = 1.0 / sum; }
  workgroupBarrier();
  for (var i = 0u; i < V_SPT; i++) {
    let s = vl + V_SL * i;
    let f = f0 + s;
    if (s < TQ && f < fEnd) {
      let row = (f / G) * p.nH + g * G + f % G;
      for (var j = 0u; j < V_DPT; j++) {
        let d = dl + DL * j;
        if (d < HD4) { out[row * HD4 + d] = acc[i * V_DPT + j] * cs[s]; }
      }
    }
  }
}
