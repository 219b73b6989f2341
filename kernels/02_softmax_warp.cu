// 02_softmax_warp.cu: rung 2. The same scaled, optionally causal softmax as 01, forward and
// backward, with one warp per row.
//
// What changes vs 01:
//   * a warp (32 threads) shares a row: lane t reads columns t, t+32, t+64, ... so each load
//     instruction of the warp reads 32 consecutive floats (one coalesced 128-byte line);
//   * the max and the sum are found in ONE pass with the online-softmax update (each lane
//     keeps a running max m and a running sum d of exp(x - m), rescaling d whenever m grows),
//     then the 32 lanes' (m, d) pairs are merged with warp shuffles: no shared memory at all;
//   * the second pass writes y; the masked tail of a causal row is written as zeros.
// Launch shape: 1-D blocks of 128 threads = 4 warps = 4 rows; grid = ceil(rows / 4).
// Memory: as 01, (rows, L) row-major float32; row r is query r % Tq for causal use.
#include "common.cuh"

// Merge two online-softmax states (m_a, d_a) and (m_b, d_b): the max of the union, and the sum
// of exp(x - m) over the union re-expressed relative to that max.
__device__ __forceinline__ void online_merge(float& m, float& d, float m_b, float d_b) {
  const float m_new = fmaxf(m, m_b);
  if (m_new == -MG_INF) return;  // both empty so far: keep (-inf, 0)
  d = d * expf(m - m_new) + d_b * expf(m_b - m_new);
  m = m_new;
}

extern "C" __global__ void softmax_warp_fwd(const float* __restrict__ x, float* __restrict__ y,
                                            int rows, int L, int Tq, float scale, int causal) {
  const int lane = threadIdx.x & 31;
  const int r = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
  if (r >= rows) return;  // the whole warp leaves together
  const float* xr = x + (long long)r * L;
  float* yr = y + (long long)r * L;
  const int n = causal ? mg_min(L, r % Tq + (L - Tq) + 1) : L;

  // pass 1: each lane's running (max, sum) over its strided columns
  float m = -MG_INF, d = 0.0f;
  for (int j = lane; j < n; j += 32) {
    const float s = xr[j] * scale;
    if (s > m) {  // the max grows: rescale what was summed so far
      d = d * expf(m - s) + 1.0f;
      m = s;
    } else {
      d += expf(s - m);
    }
  }
  // merge the 32 lanes' states (butterfly: every lane gets the row's m and d)
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const float m_b = __shfl_xor_sync(0xffffffffu, m, o);
    const float d_b = __shfl_xor_sync(0xffffffffu, d, o);
    online_merge(m, d, m_b, d_b);
  }
  // pass 2: normalise (x is re-read, mostly from cache)
  for (int j = lane; j < n; j += 32) yr[j] = expf(xr[j] * scale - m) / d;
  for (int j = n + lane; j < L; j += 32) yr[j] = 0.0f;
}

extern "C" __global__ void softmax_warp_bwd(const float* __restrict__ y,
                                            const float* __restrict__ g,
                                            float* __restrict__ dx, int rows, int L, int Tq,
                                            float scale, int causal) {
  const int lane = threadIdx.x & 31;
  const int r = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
  if (r >= rows) return;
  const long long base = (long long)r * L;
  const int n = causal ? mg_min(L, r % Tq + (L - Tq) + 1) : L;

  float dot = 0.0f;
  for (int j = lane; j < n; j += 32) dot += g[base + j] * y[base + j];
  dot = warp_sum(dot);
  for (int j = lane; j < n; j += 32) dx[base + j] = scale * y[base + j] * (g[base + j] - dot);
  for (int j = n + lane; j < L; j += 32) dx[base + j] = 0.0f;
}
