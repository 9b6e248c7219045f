// Embedding lookup: out[m][:] = table[tokens[m]][:], the table in f32 or as f16 pairs packed in u32 (F16; H even).

struct Params {
  M: u32,
  H: u32,
  V: u32,
  pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> tokens: array<u32>;
#if F16
@group(0) @binding(2) var<storage, read> table: array<u32>;
#else
@group(0) @binding(2) var<storage, read> table: array<f32>;
#endif
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) tid: u32) {
  let m = wg.x;
  let t = min(tokens[m], p.V - 1u);
#if F16
  for (var j = tid; j < p.H / 2u; j += 64u) {
    let v = unpack2x16float(table[t * (p.H / 2u) + j]);
    out[m * p.H + 2u * j] = v.x;
    out[m * p.H + 2u * j + 1u] = v.y;
  }
#else
  for (var d = tid; d < p.H; d += 64u) { out[m * p.H + d] = table[t * p.H + d]; }
#endif
}
