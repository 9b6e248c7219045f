// Included by attention.wgsl and prefill-attention.wgsl: one Params, which attention.ts packs once for either kernel.
struct Params {
  M: u32,
  nH: u32,
  kvH: u32,
  hd: u32,
  cap: u32,
  window: u32,
  qStride: u32,
  scale: f32,
}
