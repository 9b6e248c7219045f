// Included by the kernels that depend on the position (rope, attention, prefill-attention): what changes from one
// step to the next, in its own buffer so that the rest of a decode step's bindings are recorded once. The host side
// is gpu.ts stepValues.
struct Step {
  pos0: u32,
  pad0: u32,
  pad1: u32,
  pad2: u32,
}
