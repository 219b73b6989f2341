// 06_layernorm.cu: rung 6. LayerNorm over the last axis, forward and backward, optionally with
// the residual add fused in front: y = LN(x + r), GPT-1's post-LN "ln_1(x + attn(x))".
//
// The math (a row of C numbers; N rows):
//   s = x (+ r),  mean = sum(s) / C,  var = sum((s - mean)^2) / C  (biased, as GPT-1),
//   rstd = 1 / sqrt(var + eps),  xhat = (s - mean) * rstd,  y = xhat * w + b
//   backward, gh = g * w:   ds = rstd * (gh - mean(gh) - xhat * mean(gh * xhat))
//                           dw = sum over rows of g * xhat,   db = sum over rows of g
//   (with the residual fused, dx = dr = ds: the add passes its gradient to both inputs.)
//
// What is new vs the earlier rungs:
//   * the forward saves two floats per row (mean, rstd) beside its input s; the backward
//     recomputes xhat from them instead of keeping an (N, C) xhat array (the reference does);
//   * dw and db are sums over ALL rows, a reduction across blocks. No atomicAdd (the order in
//     which atomics land changes from run to run, and with it the float rounding): block b
//     writes its own rows' sums to partial[b, c], and a second kernel adds the partials of each
//     column in block order. Same input, same bits, every run.
//   * the mean and the variance are two passes over the row (the second re-reads it from L1),
//     which is what the float64 reference computes; a one-pass E[x^2] - mean^2 would cancel
//     catastrophically for rows with a large mean.
//   * does fusing the residual add pay? Measured on an H100 at GPT-1's size (4096 x 768,
//     tools/gpu_check.py): add+LN in one launch 0.046 ms, CuPy's add then this kernel 0.048 ms.
//     Both are memory-bound at ~1 TB/s and the add costs one launch, so no: the model keeps
//     ln(x + sublayer(x)) as two ops. The variant stays as the measured counter-example.
//
// Launch shapes (the loader, minigpt/cuda/layers.py, picks them):
//   layernorm_fwd         block 256 threads = 8 warps, a warp per row; grid ceil(N / 8).
//   layernorm_bwd         block 256 threads; block b owns rows [b*R, min(N, b*R + R)).
//                         phase 1, a warp per row: ds.  phase 2, a thread per column: the
//                         block's partial dw, db (phase 2 reads only inputs: no barrier).
//   layernorm_bwd_reduce  block 256 threads = 8 warps, 32 columns per block, grid ceil(C / 32);
//                         lane = column, warp w adds partials w, w+8, w+16, ... in order, then
//                         warp 0 adds the 8 warps' sums in order. Dynamic smem 2*256*4 bytes.
// Memory: x, r, s, y, g, dx: (N, C) row-major float32; w, b, dw, db: (C,); mean, rstd: (N,);
//         partial: (2, nblocks, C), [0] the dw partials, [1] the db partials.
#include "common.cuh"

// Forward. has_residual = 0: s is x itself (r and s_out are not touched).
//          has_residual = 1: s = x + r is written to s_out (the backward's input).
extern "C" __global__ void layernorm_fwd(const float* __restrict__ x, const float* __restrict__ r,
                                         const float* __restrict__ w, const float* __restrict__ b,
                                         float* __restrict__ y, float* __restrict__ s_out,
                                         float* __restrict__ mean, float* __restrict__ rstd,
                                         int N, int C, float eps, int has_residual) {
  const int lane = threadIdx.x & 31;
  const int row = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
  if (row >= N) return;  // the whole warp leaves together
  const long long base = (long long)row * C;
  const float* s = has_residual ? s_out + base : x + base;  // where the row's input will be

  float sum = 0.0f;
  for (int j = lane; j < C; j += 32) {
    float v = x[base + j];
    if (has_residual) {
      v += r[base + j];
      s_out[base + j] = v;  // read back below by this same lane: no barrier needed
    }
    sum += v;
  }
  const float mu = warp_sum(sum) / (float)C;
  float sq = 0.0f;
  for (int j = lane; j < C; j += 32) {
    const float d = s[j] - mu;
    sq += d * d;
  }
  const float rs = 1.0f / sqrtf(warp_sum(sq) / (float)C + eps);
  for (int j = lane; j < C; j += 32) y[base + j] = (s[j] - mu) * rs * w[j] + b[j];
  if (lane == 0) {
    mean[row] = mu;
    rstd[row] = rs;
  }
}

// Backward: ds (N, C) and the per-block partial sums of dw and db.
extern "C" __global__ void layernorm_bwd(const float* __restrict__ s, const float* __restrict__ w,
                                         const float* __restrict__ mean,
                                         const float* __restrict__ rstd,
                                         const float* __restrict__ g, float* __restrict__ ds,
                                         float* __restrict__ partial, int N, int C,
                                         int rows_per_block) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
  const int r0 = blockIdx.x * rows_per_block;
  const int r1 = mg_min(N, r0 + rows_per_block);
  const float inv_c = 1.0f / (float)C;

  // phase 1: a warp per row. mean(gh) and mean(gh * xhat) in one pass, then ds.
  for (int row = r0 + warp; row < r1; row += nwarps) {
    const long long base = (long long)row * C;
    const float mu = mean[row], rs = rstd[row];
    float a = 0.0f, c = 0.0f;
    for (int j = lane; j < C; j += 32) {
      const float gh = g[base + j] * w[j];
      a += gh;
      c += gh * ((s[base + j] - mu) * rs);
    }
    a = warp_sum(a) * inv_c;  // mean(gh)
    c = warp_sum(c) * inv_c;  // mean(gh * xhat)
    for (int j = lane; j < C; j += 32) {
      const float xh = (s[base + j] - mu) * rs;
      ds[base + j] = rs * (g[base + j] * w[j] - a - xh * c);
    }
  }

  // phase 2: a thread per column, summing this block's rows in order (coalesced over c)
  for (int col = threadIdx.x; col < C; col += blockDim.x) {
    float dw = 0.0f, db = 0.0f;
    for (int row = r0; row < r1; ++row) {
      const long long i = (long long)row * C + col;
      dw += g[i] * ((s[i] - mean[row]) * rstd[row]);
      db += g[i];
    }
    partial[(long long)blockIdx.x * C + col] = dw;
    partial[((long long)gridDim.x + blockIdx.x) * C + col] = db;
  }
}

// dw[c] = sum_b partial[0, b, c], db[c] = sum_b partial[1, b, c], always in the same order.
extern "C" __global__ void layernorm_bwd_reduce(const float* __restrict__ partial,
                                                float* __restrict__ dw, float* __restrict__ db,
                                                int nblocks, int C) {
  MG_DYNAMIC_SMEM(smem);  // [2][8 warps][32 columns]
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
  const int col = blockIdx.x * 32 + lane;
  float a = 0.0f, c = 0.0f;
  if (col < C) {
    for (int k = warp; k < nblocks; k += nwarps) {
      a += partial[(long long)k * C + col];
      c += partial[((long long)nblocks + k) * C + col];
    }
  }
  smem[warp * 32 + lane] = a;
  smem[(nwarps + warp) * 32 + lane] = c;
  __syncthreads();
  if (warp == 0 && col < C) {
    float ta = 0.0f, tc = 0.0f;
    for (int k = 0; k < nwarps; ++k) {
      ta += smem[k * 32 + lane];
      tc += smem[(nwarps + k) * 32 + lane];
    }
    dw[col] = ta;
    db[col] = tc;
  }
}
