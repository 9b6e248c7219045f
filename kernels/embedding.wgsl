// Embedding lookup: out[m][:] = table[tokens[m]][:], the table in f32 or as f16 pairs packed in u32 (F16; H even).
// A table larger than one storage binding is uploaded in row ranges (embedding.ts): each dispatch owns rows
// [r0, r0 + rows) and leaves the other tokens to the other parts' dispatches.

struct Params {
  M: u32,
  H: u32,
  V: u32,
  r0: u32,   // the part's first row
  rows: u32, // rows in this part
  pad0: u32,
  pad1: u32,
  pad2: u32,
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
  let id = min(tokens[m], p.V - 1u);
  if (id < p.r0 || id >= p.r0 + p.rows) { return; }
  let t = id - p.r0;
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
