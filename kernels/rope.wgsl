// Rotary position embedding fused with the KV append. Input: rows of the fused projection [M][(nH + 2·kvH)·hd]
// (q heads, then k heads, then v heads). Query heads are rotated in place; key heads are rotated into the cache and
// value heads copied there, at positions pos0 + m. Cache layout: [2 (key, value)][kvH][cap][hd].
// "Rotate hh" pairing: (x[i], x[i + hd/2]) rotated by the angle whose cos/sin the tables hold for (position, i).
// One workgroup per (head slot, row). pos0 comes from the per-step uniform.

struct Params {
  nH: u32,
  kvH: u32,
  hd: u32,
  cap: u32,
  M: u32,
  freshOffset: u32, // FRESH: elements before this dispatch's [2·kvH][M][hd] block of `fresh`
  pad0: u32,
  pad1: u32,
}

#include step

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(5) var<uniform> st: Step;
#if FRESH
// The appended keys and values again, packed [2·kvH][M][hd] per layer: the host reads a step's new positions back
// for its mirror in one copy instead of one per (layer, head).
@group(0) @binding(6) var<storage, read_write> fresh: array<f32>;
#endif
@group(0) @binding(1) var<storage, read_write> qkv: array<f32>;
@group(0) @binding(2) var<storage, read> cosT: array<f32>;
@group(0) @binding(3) var<storage, read> sinT: array<f32>;
@group(0) @binding(4) var<storage, read_write> kv: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) tid: u32) {
  let slot = wg.x;
  let m = wg.y;
  let pos = st.pos0 + m;
  let hh = p.hd / 2u;
  let row = m * (p.nH + 2u * p.kvH) * p.hd;
  let src = row + slot * p.hd;
  if (slot < p.nH + p.kvH) {
    for (var i = tid; i < hh; i += 64u) {
      let c = cosT[pos * hh + i];
      let s = sinT[pos * hh + i];
      let x0 = qkv[src + i];
      let x1 = qkv[src + i + hh];
      let y0 = x0 * c - x1 * s;
      let y1 = x1 * c + x0 * s;
      if (slot < p.nH) {
        qkv[src + i] = y0;
        qkv[src + i + hh] = y1;
      } else {
        let dst = ((slot - p.nH) * p.cap + pos) * p.hd;
        kv[dst + i] = y0;
        kv[dst + i + hh] = y1;
#if FRESH
        let f = p.freshOffset + ((slot - p.nH) * p.M + m) * p.hd;
        fresh[f + i] = y0;
        fresh[f + i + hh] = y1;
#endif
      }
    }
  } else {
    let dst = ((slot - p.nH) * p.cap + pos) * p.hd; // value heads follow the key heads: (kvH + h) · cap
    for (var d = tid; d < p.hd; d += 64u) { kv[dst + d] = qkv[src + d]; }
#if FRESH
    let f = p.freshOffset + ((slot - p.nH) * p.M + m) * p.hd;
    for (var d = tid; d < p.hd; d += 64u) { fresh[f + d] = qkv[src + d]; }
#endif
  }
}
