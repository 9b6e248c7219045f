// Top-k of one row of logits on the device, optionally restricted to an allowed-token bitset: the k best (logit, id)
// pairs, best first, ties to the lower id (the order of the host's argmax, so greedy decoding on the device picks the
// same token). A decode step then reads back k pairs (8 bytes for greedy) instead of the vocabulary's logits.
//
// Passes of workgroups over chunks of CH values. Each workgroup ranks its chunk in workgroup memory with bitonic
// networks cut down to top-k (sort runs of RUN = k rounded up to a power of two, then repeatedly fold two runs into
// one holding their best RUN and re-merge it), and writes its best RUN pairs, sorted, to scratch. `first` reads the
// row (and the mask); `merge` reads the previous pass's pairs, whose runs arrive sorted, so it only folds. The last
// pass has one workgroup and writes k pairs to `out`. Too few allowed tokens leave filler pairs (LOWEST, NONE).
// Every pass's values live in its own Params, so the dispatches can be recorded once and replayed.

const CH: u32 = 1024u; // values per workgroup (topk.ts CHUNK)
const WG: u32 = 256u;
const NONE: u32 = 0xffffffffu; // the filler's id: ranks after every token, even one whose logit is -inf
const LOWEST: f32 = -0x1.fffffep+127f; // the filler's logit, the lowest finite f32 (WGSL has no infinite constants)

struct Params {
  n: u32,      // values this pass reads: the row's length (first) or the previous pass's pairs (merge)
  offset: u32, // first: float offset of the row in x
  k: u32,      // pairs the last pass writes
  run: u32,    // k rounded up to a power of two: the sorted run each workgroup hands on
  src: u32,    // merge: pair index in scratch where this pass's input starts
  dst: u32,    // pair index in scratch where this pass's output starts (not last)
  last: u32,   // 1: a single workgroup whose k best go to out
  outAt: u32,  // u32 index in out of the first pair
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
#if MASK
// Bit (i & 31) of word (i >> 5) set: token i is allowed.
@group(0) @binding(2) var<storage, read> mask: array<u32>;
#endif
// (f32 bits, id) pairs, two halves that passes alternate between.
@group(0) @binding(3) var<storage, read_write> scratch: array<vec2<u32>>;
@group(0) @binding(4) var<storage, read_write> out: array<u32>;

var<workgroup> val: array<f32, CH>;
var<workgroup> ids: array<u32, CH>;

// a ranks before b: the larger logit, ties to the lower id, the filler last.
fn before(av: f32, ai: u32, bv: f32, bi: u32) -> bool {
  return ai != NONE && (bi == NONE || av > bv || (av == bv && ai < bi));
}

// Compare-exchange: the better of slots i < j ends at i.
fn order(i: u32, j: u32) {
  let vi = val[i];
  let vj = val[j];
  let ii = ids[i];
  let ij = ids[j];
  if (before(vj, ij, vi, ii)) {
    val[i] = vj;
    ids[i] = ij;
    val[j] = vi;
    ids[j] = ii;
  }
}

fn group(wg: vec3<u32>, nwg: vec3<u32>) -> u32 {
  return wg.x + wg.y * nwg.x;
}

// Sorts every run of p.run slots, best first (bitonic sort; each stage's first step compares mirrored slots, so no
// direction bits are needed).
fn sortRuns(tid: u32) {
  for (var s = 2u; s <= p.run; s <<= 1u) {
    let h = s >> 1u;
    for (var q = tid; q < CH / 2u; q += WG) {
      let base = (q / h) * s;
      let r = q % h;
      order(base + r, base + s - 1u - r);
    }
    workgroupBarrier();
    for (var d = s >> 2u; d > 0u; d >>= 1u) {
      for (var q = tid; q < CH / 2u; q += WG) {
        let i = (q / d) * 2u * d + q % d;
        order(i, i + d);
      }
      workgroupBarrier();
    }
  }
}

// Folds the sorted runs down to one, the chunk's best p.run, sorted, in slots 0 .. p.run. A fold keeps, slot by slot,
// the better of run a and run b reversed: the best p.run of both, as a bitonic sequence that half-cleaners sort. The
// kept run stays in place (runs sit `stride` apart), so no slot is read after another thread wrote it.
fn foldRuns(tid: u32) {
  let run = p.run;
  var stride = run;
  for (var count = CH / run; count > 1u; count >>= 1u) {
    for (var q = tid; q < (count / 2u) * run; q += WG) {
      let at = (q / run) * 2u * stride; // run a; run b follows at + stride
      let i = q % run;
      let a = at + i;
      let b = at + stride + run - 1u - i;
      if (before(val[b], ids[b], val[a], ids[a])) {
        val[a] = val[b];
        ids[a] = ids[b];
      }
    }
    workgroupBarrier();
    stride <<= 1u;
    let left = count / 2u;
    for (var d = run >> 1u; d > 0u; d >>= 1u) {
      for (var q = tid; q < left * (run / 2u); q += WG) {
        let w = q % (run / 2u);
        let i = (q / (run / 2u)) * stride + (w / d) * 2u * d + w % d;
        order(i, i + d);
      }
      workgroupBarrier();
    }
  }
}

fn store(tid: u32, g: u32) {
  if (p.last == 1u) {
    for (var i = tid; i < p.k; i += WG) {
      out[p.outAt + 2u * i] = bitcast<u32>(val[i]);
      out[p.outAt + 2u * i + 1u] = ids[i];
    }
  } else {
    for (var i = tid; i < p.run; i += WG) {
      scratch[p.dst + g * p.run + i] = vec2<u32>(bitcast<u32>(val[i]), ids[i]);
    }
  }
}

@compute @workgroup_size(WG)
fn first(@builtin(local_invocation_index) tid: u32, @builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let g = group(wg, nwg);
  if (g * CH >= p.n) { return; } // past the grid's last chunk (grid1d rounds up); uniform per workgroup
  for (var t = tid; t < CH; t += WG) {
    let i = g * CH + t;
    var v = LOWEST;
    var id = NONE;
    if (i < p.n) {
#if MASK
      let allowed = (mask[i >> 5u] & (1u << (i & 31u))) != 0u;
#else
      let allowed = true;
#endif
      if (allowed) {
        v = x[p.offset + i];
        id = i;
      }
    }
    val[t] = v;
    ids[t] = id;
  }
  workgroupBarrier();
  sortRuns(tid);
  foldRuns(tid);
  store(tid, g);
}

@compute @workgroup_size(WG)
fn merge(@builtin(local_invocation_index) tid: u32, @builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let g = group(wg, nwg);
  if (g * CH >= p.n) { return; }
  // The previous pass wrote sorted runs of p.run pairs and p.run divides CH, so every run arrives whole and sorted;
  // past the end, filler runs.
  for (var t = tid; t < CH; t += WG) {
    let i = g * CH + t;
    var pair = vec2<u32>(bitcast<u32>(LOWEST), NONE);
    if (i < p.n) { pair = scratch[p.src + i]; }
    val[t] = bitcast<f32>(pair.x);
    ids[t] = pair.y;
  }
  workgroupBarrier();
  foldRuns(tid);
  store(tid, g);
}
