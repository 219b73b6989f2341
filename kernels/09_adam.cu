// 09_adam.cu: rung 9. GPT-1's Adam over EVERY parameter in two launches (plus one small read
// of the gradient norm), instead of ~10 array operations per parameter (~1500 launches for
// GPT-1's 148 parameter arrays).
//
// The math, exactly as minigpt.optim.Adam applies it, for each parameter p with gradient g:
//   g  = g * clip                              (global-norm clipping; only when clipping)
//   m  = b1 m + (1 - b1) g                     v = b2 v + (1 - b2) g^2
//   p -= lr_t * (m / (sqrt(v) + eps) + wd p)   wd = weight_decay for matrices, 0 otherwise,
//   lr_t = lr * schedule(t) * sqrt(1 - b2^t) / (1 - b1^t)   (computed on the host)
// Every operation is rounded to float32 in the order optim.adam_update's array expressions
// round it (left to right: (1 - b2) * g * g is ((1 - b2) g) g): __fmul_rn and __fadd_rn are
// never contracted into a fused multiply-add, and sqrt and division are IEEE (no fast math),
// so the update matches optim.adam_update on float32 arrays bit for bit, given the same clip.
// The clipped gradient is written back, as `p.grad *= clip` does on the CPU.
//
// What is new vs the earlier rungs: one launch serves many arrays of different sizes
// ("multi-tensor apply"). The host passes a table of device pointers, ptrs = [p_0 .. p_{n-1},
// g_0 .., m_0 .., v_0 ..], and a table of chunks: chunk k is (tensor t_k, first element s_k),
// at most `chunk` elements long; block k updates chunk k. The tables change only when the
// gradients' addresses do (ptrs: 4n pointers, uploaded once per step).
//
// Kernels:
//   adam_sumsq   block k: the sum of g^2 over chunk k -> partial[k] (a fixed tree: the same
//                bits every run). The host adds the partials in float64 in chunk order, takes
//                the square root (the global gradient norm) and decides the clip factor.
//   adam_update  block k: the update of chunk k.
// Launch shapes: block 256 threads, grid = number of chunks; adam_sumsq has dynamic smem of
//                8 floats (one per warp).
// Memory: ptrs: (4n,) float pointers; sizes: (n,) int32 elements per tensor; wd: (n,) float32;
//         chunks: (nchunks, 2) int32 (tensor, start); partial: (nchunks,) float32.
#include "common.cuh"

extern "C" __global__ void adam_sumsq(float* const* __restrict__ ptrs,
                                      const int* __restrict__ chunks,
                                      const int* __restrict__ sizes, float* __restrict__ partial,
                                      int n_tensors, int chunk) {
  MG_DYNAMIC_SMEM(red);  // [nwarps]
  const int t = chunks[2 * blockIdx.x], start = chunks[2 * blockIdx.x + 1];
  const int end = mg_min(sizes[t], start + chunk);
  const float* g = ptrs[n_tensors + t];
  float s = 0.0f;
  for (int i = start + threadIdx.x; i < end; i += blockDim.x) s += g[i] * g[i];
  s = warp_sum(s);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
  if (lane == 0) red[warp] = s;
  __syncthreads();
  if (threadIdx.x == 0) {
    float total = 0.0f;
    for (int k = 0; k < nwarps; ++k) total += red[k];
    partial[blockIdx.x] = total;
  }
}

extern "C" __global__ void adam_update(float* const* __restrict__ ptrs,
                                       const int* __restrict__ chunks,
                                       const int* __restrict__ sizes,
                                       const float* __restrict__ wd, int n_tensors, int chunk,
                                       float b1, float one_minus_b1, float b2, float one_minus_b2,
                                       float eps, float lr_t, float clip, int has_clip) {
  const int t = chunks[2 * blockIdx.x], start = chunks[2 * blockIdx.x + 1];
  const int end = mg_min(sizes[t], start + chunk);
  float* p = ptrs[t];
  float* g = ptrs[n_tensors + t];
  float* m = ptrs[2 * n_tensors + t];
  float* v = ptrs[3 * n_tensors + t];
  const float w = wd[t];
  for (int i = start + threadIdx.x; i < end; i += blockDim.x) {
    float gi = g[i];
    if (has_clip) {
      gi = __fmul_rn(gi, clip);
      g[i] = gi;
    }
    const float mi = __fadd_rn(__fmul_rn(m[i], b1), __fmul_rn(gi, one_minus_b1));
    const float vi = __fadd_rn(__fmul_rn(v[i], b2), __fmul_rn(__fmul_rn(one_minus_b2, gi), gi));
    const float pi = p[i];
    const float u = __fadd_rn(__fdiv_rn(mi, __fadd_rn(__fsqrt_rn(vi), eps)),  // m / (sqrt(v) + eps)
                              __fmul_rn(w, pi));                             //  + wd p
    p[i] = __fsub_rn(pi, __fmul_rn(lr_t, u));                               // p -= lr_t * update
    m[i] = mi;
    v[i] = vi;
  }
}
