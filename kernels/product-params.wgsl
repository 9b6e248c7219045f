// Included by matmul.wgsl and gemv.wgsl: the products' Params, packed by matmul.ts productParams for either kernel
// (the GEMV has M = 1 and ignores xStride).
struct Params {
  M: u32,
  N: u32,
  K: u32,
  xOffset: u32, // elements before row 0 of x
  xStride: u32, // elements between rows of x
  nBlocks: u32, // quantized blocks per weight row
  eps: f32,
  pad: u32,
  yOffset: u32, // elements before y's first row: a matrix split by rows writes its part's columns
  yStride: u32, // elements between rows of y (N unless split)
  pad1: u32,
  pad2: u32,
}
