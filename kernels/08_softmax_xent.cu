// 08_softmax_xent.cu: rung 8. Softmax + cross-entropy over the vocabulary, fused: the logits
// go in, the per-row loss (and, in one pass, dlogits) come out; no (N, V) probability array.
//
// The math (a row z of V logits, target y; rows whose y == ignore_index are skipped):
//   lse = log sum_j exp(z_j),   loss_row = lse - z_y,   loss = sum of kept rows / n_kept
//   dz_j = coef * (exp(z_j - lse) - [j == y]),   coef = g / n_kept (0 for an ignored row),
//   g the upstream gradient of the mean loss (1 when the loss is what backward starts from).
// What is new vs 02 (the warp softmax): a row is GPT-1's whole vocabulary, V = 40478 floats
// (158 KB), so a BLOCK owns a row, not a warp. Each thread keeps an online (max, sum) pair over
// its strided columns (one read of the row; the sum is rescaled when the max grows), the 32
// lanes merge by shuffles and the 8 warps through shared memory, in a fixed order.
//
// Kernels:
//   xent_fwd     per-row loss and lse. write_grad = 1 also writes dz in the same launch, with
//                coef = grad_scale for every kept row (the one-pass form, llm.c style, for a
//                caller who knows g / n_kept before the forward); the row is then re-read from
//                L1/L2 for the exponentials, not from memory.
//   xent_reduce  one block: n_kept and the mean loss in a fixed order (deterministic), written
//                to stats = [mean loss, 1 / max(n_kept, 1), n_kept]. No host round trip.
//   xent_bwd     dz from the logits and the saved lse, coef = g[0] * stats[1] read on the GPU
//                (the deferred form autograd uses: one read of the logits in the forward, one
//                read and one write in the backward).
// Launch shapes: xent_fwd: block 256 threads, grid N (a block per row), dynamic smem 2 * 8
//                floats.  xent_bwd: the same grid and block, no shared memory.
//                xent_reduce: one block of 256 threads, dynamic smem 2 * 256 floats.
// Memory: logits, dz: (N, V) row-major float32; targets: (N,) int32; losses, lse: (N,);
//         g: (1,) (a device scalar), stats: (3,).
#include "common.cuh"

// Merge the online-softmax state (m_b, d_b) into (m, d): the max of both, and the sum of
// exp(z - max) over both re-expressed relative to that max.
__device__ __forceinline__ void xent_merge(float& m, float& d, float m_b, float d_b) {
  const float m_new = fmaxf(m, m_b);
  if (m_new == -MG_INF) return;  // both empty: keep (-inf, 0)
  d = d * expf(m - m_new) + d_b * expf(m_b - m_new);
  m = m_new;
}

// The row's log-sum-exp, known to every thread of the block on return.
__device__ float xent_row_lse(const float* __restrict__ z, int V, float* red) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
  float m = -MG_INF, d = 0.0f;
  for (int j = threadIdx.x; j < V; j += blockDim.x) {
    const float v = z[j];
    if (v > m) {  // the max grows: rescale what was summed so far
      d = d * expf(m - v) + 1.0f;
      m = v;
    } else {
      d += expf(v - m);
    }
  }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const float m_b = __shfl_xor_sync(0xffffffffu, m, o);
    const float d_b = __shfl_xor_sync(0xffffffffu, d, o);
    xent_merge(m, d, m_b, d_b);
  }
  if (lane == 0) {
    red[warp] = m;
    red[nwarps + warp] = d;
  }
  __syncthreads();
  float M = red[0], D = red[nwarps];  // every thread merges the warps in the same order
  for (int k = 1; k < nwarps; ++k) xent_merge(M, D, red[k], red[nwarps + k]);
  return M + logf(D);
}

extern "C" __global__ void xent_fwd(const float* __restrict__ logits,
                                    const int* __restrict__ targets, float* __restrict__ losses,
                                    float* __restrict__ lse_out, float* __restrict__ dz,
                                    int N, int V, int ignore_index, int write_grad,
                                    float grad_scale) {
  MG_DYNAMIC_SMEM(red);  // [2][nwarps]
  const int row = blockIdx.x;
  const float* z = logits + (long long)row * V;
  const float lse = xent_row_lse(z, V, red);
  const int y = targets[row];
  const bool keep = y != ignore_index;
  if (threadIdx.x == 0) {
    lse_out[row] = lse;
    losses[row] = keep ? lse - z[y] : 0.0f;
  }
  if (write_grad) {
    const float coef = keep ? grad_scale : 0.0f;
    float* dzr = dz + (long long)row * V;
    for (int j = threadIdx.x; j < V; j += blockDim.x)
      dzr[j] = coef * (expf(z[j] - lse) - (j == y ? 1.0f : 0.0f));
  }
}

extern "C" __global__ void xent_reduce(const float* __restrict__ losses,
                                       const int* __restrict__ targets, float* __restrict__ stats,
                                       int N, int ignore_index) {
  MG_DYNAMIC_SMEM(red);  // [2][blockDim.x]
  float s = 0.0f, n = 0.0f;
  for (int i = threadIdx.x; i < N; i += blockDim.x) {
    s += losses[i];  // 0 for ignored rows
    n += targets[i] != ignore_index ? 1.0f : 0.0f;
  }
  red[threadIdx.x] = s;
  red[blockDim.x + threadIdx.x] = n;
  __syncthreads();
  for (int half = blockDim.x >> 1; half > 0; half >>= 1) {  // a fixed tree: deterministic
    if (threadIdx.x < half) {
      red[threadIdx.x] += red[threadIdx.x + half];
      red[blockDim.x + threadIdx.x] += red[blockDim.x + threadIdx.x + half];
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    const float kept = red[blockDim.x];  // exact: counts below 2^24
    const float inv = 1.0f / fmaxf(kept, 1.0f);
    stats[0] = red[0] * inv;
    stats[1] = inv;
    stats[2] = kept;
  }
}

extern "C" __global__ void xent_bwd(const float* __restrict__ logits,
                                    const int* __restrict__ targets,
                                    const float* __restrict__ lse, const float* __restrict__ g,
                                    const float* __restrict__ stats, float* __restrict__ dz,
                                    int N, int V, int ignore_index) {
  const int row = blockIdx.x;
  const int y = targets[row];
  const float coef = y != ignore_index ? g[0] * stats[1] : 0.0f;
  const float l = lse[row];
  const float* z = logits + (long long)row * V;
  float* dzr = dz + (long long)row * V;
  for (int j = threadIdx.x; j < V; j += blockDim.x)
    dzr[j] = coef * (expf(z[j] - l) - (j == y ? 1.0f : 0.0f));
}
