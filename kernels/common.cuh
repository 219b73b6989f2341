// common.cuh: small helpers shared by every kernel in this folder.
//
// How this file reaches the compiler: minigpt/kernels.py pastes it in place of each
// `#include "common.cuh"` before handing the source to NVRTC (CuPy's compile cache is keyed
// by the source text alone, so a header edited later would otherwise be missed), while
// tools/check_kernels.py compiles the .cu files with `nvcc -I kernels`. No other header is
// included anywhere: NVRTC sees no system headers, so nothing here may need one.
//
// Conventions used by all kernels:
//   * float32 everywhere; arrays are C-contiguous (the loader checks).
//   * attention tensors are (B, nh, T, hs) row-major, so head `bh = b * nh + h` is one
//     contiguous (T, hs) matrix starting at bh * T * hs.
//   * causal masking: query row i (of Tq) sits at absolute position i + (Tk - Tq) and sees
//     keys j <= that position (so Tq < Tk, cached decoding, works).
//   * key padding mask: float32 (B, Tk), 1 = real token, 0 = padding (never attended to).
//     A query row that sees no key at all outputs zeros; its log-sum-exp is stored as +inf so
//     that the backward's exp(s - lse) is exactly 0 there.
#pragma once

// Dynamic shared memory, sized by the launch (the loader passes the byte count explicitly).
// The CPU emulator used by the tests (tools/cuda_emu) defines its own version first.
#ifndef MG_DYNAMIC_SMEM
#define MG_DYNAMIC_SMEM(name) extern __shared__ __align__(16) float name[]
#endif

#define MG_INF __int_as_float(0x7f800000)
#define MG_LOG2E 1.4426950408889634f  // log2(e): exp(x) == exp2(x * log2(e))
#define MG_LN2 0.6931471805599453f    // ln(2):   ln(x)  == log2(x) * ln(2)

__device__ __forceinline__ int mg_min(int a, int b) { return a < b ? a : b; }
__device__ __forceinline__ int mg_max(int a, int b) { return a > b ? a : b; }

// Reductions over all 32 lanes of a warp (butterfly: every lane ends with the result).
__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// Reductions over the 16 lanes of a half-warp (lane ^ 8, 4, 2, 1 never leaves the half).
__device__ __forceinline__ float half_warp_max(float v) {
#pragma unroll
  for (int o = 8; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
__device__ __forceinline__ float half_warp_sum(float v) {
#pragma unroll
  for (int o = 8; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// May query row i see key j?  pad_row is the (Tk,) padding row of this batch entry, or null.
__device__ __forceinline__ bool mg_visible(int i, int j, int Tq, int Tk, int causal,
                                           const float* __restrict__ pad_row) {
  return i < Tq && j < Tk && (!causal || j <= i + (Tk - Tq)) &&
         (pad_row == nullptr || pad_row[j] != 0.0f);
}
