// Greedy pick on the GPU: the index of the largest of x[offset .. offset + N) (lowest index on ties), so a step
// returns 4 bytes instead of a vocabulary of logits. One workgroup of 64 threads.

struct Params {
  N: u32,
  offset: u32,
  pad0: u32,
  pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<u32>;

var<workgroup> bestV: array<f32, 64>;
var<workgroup> bestI: array<u32, 64>;

@compute @workgroup_size(64)
fn main(@builtin(local_invocation_index) tid: u32) {
  var bv = -3.0e38;
  var bi = 0xffffffffu;
  for (var i = tid; i < p.N; i += 64u) {
    let v = x[p.offset + i];
    if (v > bv || bi == 0xffffffffu) { bv = v; bi = i; }
  }
  bestV[tid] = bv;
  bestI[tid] = bi;
  workgroupBarrier();
  for (var s = 32u; s > 0u; s >>= 1u) {
    if (tid < s) {
      let ov = bestV[tid + s];
      let oi = bestI[tid + s];
      if (oi != 0xffffffffu && (bestI[tid] == 0xffffffffu || ov > bestV[tid] || (ov == bestV[tid] && oi < bestI[tid]))) {
        bestV[tid] = ov;
        bestI[tid] = oi;
      }
    }
    workgroupBarrier();
  }
  if (tid == 0u) { out[0] = bestI[0]; }
}
