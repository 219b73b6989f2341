// philox.cuh: counter-based random numbers for attention dropout (kernels 04, 05, 10).
//
// Dropout inside a flash kernel cannot store its mask (that would be the (T, T) matrix the
// kernels exist to avoid), so the mask is a pure function of where an element is: a random
// 32-bit word computed from a counter (the element's position) and a key (the seed). The
// forward and both backward passes recompute the same word for the same element, whatever
// thread or tile it lands in, so the mask is the same in all of them and never stored.
//
// The function is Philox-2x32 with 10 rounds (Salmon, Moraes, Dror, Shaw, "Parallel random
// numbers: as easy as 1, 2, 3", SC 2011): a 64-bit counter (x0, x1) and a 32-bit key; each
// round multiplies x0 by a constant into a 64-bit product (hi, lo) and sets
//     x0 <- hi ^ key ^ x1,   x1 <- lo,   key <- key + 0x9E3779B9 (the golden ratio).
// One 64-bit multiply-add (IMAD.WIDE) and a 3-input XOR per round: about 30 integer
// instructions per element, against 2*HS fused multiply-adds of the tile products.
//
// The dropout rule (minigpt.cuda.attention.dropout_keep is its NumPy twin, bit for bit):
//   element (b, h, i, j) of the (B, nh, Tq, Tk) probability matrix, row = (b*nh + h)*Tq + i,
//   word = philox2x32_10(x0 = j, x1 = row, key = seed)[0],
//   kept  <=>  word >= threshold,   threshold = floor(p * 2^32)   (keep probability 1 - p),
//   a kept probability is multiplied by 1/(1-p) (`drop_scale`), a dropped one becomes 0.
// threshold = 0 means "no dropout": every word is >= 0, and the kernels skip the hash.
#pragma once

#define MG_PHILOX_M 0xD256D193u  // the round multiplier of Philox-2x32
#define MG_PHILOX_W 0x9E3779B9u  // the key increment (Weyl sequence)
#define MG_PHILOX_ROUNDS 10

// First output word of Philox-2x32-10 for counter (x0, x1) and key.
__device__ __forceinline__ unsigned mg_philox2x32(unsigned x0, unsigned x1, unsigned key) {
#pragma unroll
  for (int r = 0; r < MG_PHILOX_ROUNDS; ++r) {
    const unsigned long long prod = (unsigned long long)MG_PHILOX_M * x0;  // 32 x 32 -> 64 bits
    const unsigned hi = (unsigned)(prod >> 32), lo = (unsigned)prod;
    x0 = hi ^ key ^ x1;
    x1 = lo;
    key += MG_PHILOX_W;
  }
  return x0;
}

// The dropout multiplier of element (row, col): 1 without dropout (threshold 0), else
// drop_scale = 1/(1-p) for a kept element and 0 for a dropped one.
__device__ __forceinline__ float mg_dropout_factor(unsigned seed, unsigned threshold,
                                                   float drop_scale, int row, int col) {
  if (threshold == 0u) return 1.0f;
  return mg_philox2x32((unsigned)col, (unsigned)row, seed) >= threshold ? drop_scale : 0.0f;
}
