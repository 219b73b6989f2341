// 05_attention_flash_bwd.cu: rung 5. Flash-attention backward: recompute P tile by tile from
// the saved log-sum-exp, never storing a T x T matrix; dQ, dK, dV without atomics.
//
// What changes vs 03's backward: the same math (g = dO)
//     p_ij = exp(s_ij - lse_i),   dp_ij = g_i . v_j,   ds_ij = p_ij (dp_ij - D_i),
//     D_i = g_i . o_i  (= sum_j p_ij dp_ij, precomputed once per row),
//     dq_i = scale sum_j ds_ij k_j,   dk_j = scale sum_i ds_ij q_i,   dv_j = sum_i p_ij g_i,
// computed with the tiles of 04 (tiles.cuh) in three kernels:
//   flash_bwd_preprocess   D_i = dO_i . O_i, one warp per row (block 256 = 8 rows).
//   flash_bwd_dkdv_hsN     a block owns 64 KEY rows (K, V tiles stay in shared memory) and
//                          streams the query tiles that can see them (Q, dO, lse, D; BQ rows
//                          at a time): S^T = K Q^T, P^T, dP^T = V dO^T, dS^T, then
//                          dV += P^T dO and dK += dS^T Q in registers. Causal: query tiles
//                          entirely before the key tile are skipped.
//   flash_bwd_dq_hsN       a block owns 64 QUERY rows (Q, dO stay) and streams the visible key
//                          tiles: S = Q K^T, P, dP = dO V^T, dS, then dQ += dS K.
// Attention dropout (04's D, recomputed from the seed by philox.cuh, never stored):
//     dv_j = sum_i p_ij D_ij g_i,   dp_ij = D_ij (g_i . v_j),   D_i = g_i . o_i still equals
//     sum_j p_ij dp_ij because O = (P * D) V; nothing else changes.
// Why two kernels instead of one with atomicAdd into dQ (what FlashAttention-2 does): every
// output element is summed by one thread in a fixed order, so the result is bit-for-bit the
// same on every run (the tests check this), at the price of recomputing S and dP in the dQ
// kernel (7 tile products per pair of tiles instead of 5).
//
// Launch shapes (block 256 threads everywhere):
//   preprocess: grid ceil(BH*Tq / 8), no shared memory
//   dkdv:  grid (BH, ceil(Tk / 64)), shared ((128 + 2*BQ)*(HS+4) + 128*(BQ+4) + 2*BQ) * 4 B
//          (K, V, Q, dO, P^T, dS^T, lse, D)
//   dq:    grid (BH, ceil(Tq / 64)), shared ((128 + 2*BN)*(HS+4) + 64*(BN+4)) * 4 B
//          (Q, dO, K, V, dS)
//   with BQ = BN = 64 for HS = 32 and 64 and 32 for HS = 128.
// Memory: q, o, do, dq (BH, Tq, HS); k, v, dk, dv (BH, Tk, HS); lse, D (BH, Tq); pad (B, Tk).
#include "philox.cuh"
#include "tiles.cuh"

extern "C" __global__ void __launch_bounds__(MG_THREADS)
flash_bwd_preprocess(const float* __restrict__ o, const float* __restrict__ dout,
                     float* __restrict__ D, int rows, int hs) {
  const int lane = threadIdx.x & 31;
  const int r = blockIdx.x * (MG_THREADS / 32) + (threadIdx.x >> 5);
  if (r >= rows) return;  // whole warp
  const float* orow = o + (long long)r * hs;
  const float* grow = dout + (long long)r * hs;
  float s = 0.0f;
  for (int d = lane; d < hs; d += 32) s = fmaf(orow[d], grow[d], s);
  s = warp_sum(s);
  if (lane == 0) D[r] = s;
}

template <int HS, int BQ>
__device__ __forceinline__ void flash_bwd_dkdv(const float* __restrict__ q, const float* __restrict__ k,
                                               const float* __restrict__ v,
                                               const float* __restrict__ dout,
                                               const float* __restrict__ lse,
                                               const float* __restrict__ Dg,
                                               const float* __restrict__ pad, float* __restrict__ dk,
                                               float* __restrict__ dv, int nh, int Tq, int Tk,
                                               unsigned seed, unsigned drop_threshold,
                                               float drop_scale, float scale, int causal,
                                               int has_pad) {
  constexpr int LD = HS + 4, LDP = BQ + 4, TN = BQ / 16, NO = HS / 16;
  MG_DYNAMIC_SMEM(smem);
  float* Ks = smem;                // [64][LD]   keys of this block
  float* Vs = Ks + MG_ROWS * LD;   // [64][LD]
  float* Qs = Vs + MG_ROWS * LD;   // [BQ][LD]   the current query tile
  float* Gs = Qs + BQ * LD;        // [BQ][LD]   its dO rows
  float* Ps = Gs + BQ * LD;        // [64][LDP]  P^T  (key rows, query columns)
  float* Ss = Ps + MG_ROWS * LDP;  // [64][LDP]  dS^T
  float* Ls = Ss + MG_ROWS * LDP;  // [BQ]       lse of the query tile, in base-2 units
  float* Dsm = Ls + BQ;            // [BQ]       D of the query tile

  const int tx = threadIdx.x & 15, ty = threadIdx.x >> 4;
  const int bh = blockIdx.x;
  const int k0 = blockIdx.y * MG_ROWS;  // causal: the first key tiles see the most queries
  const float* pad_row = has_pad ? pad + (long long)(bh / nh) * Tk : nullptr;
  const float c = scale * MG_LOG2E;
  const int row0 = bh * Tq;  // dropout counter of query row qi: row0 + qi
  q += (long long)bh * Tq * HS;
  dout += (long long)bh * Tq * HS;
  lse += (long long)bh * Tq;
  Dg += (long long)bh * Tq;
  k += (long long)bh * Tk * HS;
  v += (long long)bh * Tk * HS;
  dk += (long long)bh * Tk * HS;
  dv += (long long)bh * Tk * HS;

  load_rows<MG_ROWS, HS>(Ks, k, k0, Tk);
  load_rows<MG_ROWS, HS>(Vs, v, k0, Tk);

  float dk_acc[4][NO], dv_acc[4][NO];
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int e = 0; e < NO; ++e) { dk_acc[i][e] = 0.0f; dv_acc[i][e] = 0.0f; }

  // causal: query i sees key k0 only if i >= k0 - (Tk - Tq); start at that query's tile
  const int q_begin = causal ? (mg_max(0, k0 - (Tk - Tq)) / BQ) * BQ : 0;
  for (int q0 = q_begin; q0 < Tq; q0 += BQ) {
    load_rows<BQ, HS>(Qs, q, q0, Tq);
    load_rows<BQ, HS>(Gs, dout, q0, Tq);
    if (threadIdx.x < BQ) {
      const int qi = q0 + threadIdx.x;
      Ls[threadIdx.x] = qi < Tq ? lse[qi] * MG_LOG2E : MG_INF;
      Dsm[threadIdx.x] = qi < Tq ? Dg[qi] : 0.0f;
    }
    __syncthreads();  // K, V (first time), Q, dO, lse, D visible

    float st[4][TN], dpt[4][TN];
    tile_dot<HS, TN>(st, Ks, Qs, ty, tx);   // S^T = K Q^T      (key rows, query cols)
    tile_dot<HS, TN>(dpt, Vs, Gs, ty, tx);  // dP^T = V dO^T
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int kj = k0 + ty * 4 + i;
#pragma unroll
      for (int j = 0; j < TN; ++j) {
        const int col = tx + 16 * j;
        const float p = mg_visible(q0 + col, kj, Tq, Tk, causal, pad_row)
                            ? exp2f(st[i][j] * c - Ls[col]) : 0.0f;
        const float d = mg_dropout_factor(seed, drop_threshold, drop_scale, row0 + q0 + col, kj);
        Ps[(ty * 4 + i) * LDP + col] = p * d;
        Ss[(ty * 4 + i) * LDP + col] = p * (dpt[i][j] * d - Dsm[col]);
      }
    }
    __syncthreads();  // P^T, dS^T complete

    tile_pv<HS, BQ>(dv_acc, Ps, Gs, ty, tx);  // dV += P^T dO
    tile_pv<HS, BQ>(dk_acc, Ss, Qs, ty, tx);  // dK += dS^T Q   (scale applied at the end)
    __syncthreads();  // done with this query tile's buffers
  }

#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int kj = k0 + ty * 4 + i;
    if (kj < Tk) {
      store_cols<HS>(dk + (long long)kj * HS, dk_acc[i], scale, tx);
      store_cols<HS>(dv + (long long)kj * HS, dv_acc[i], 1.0f, tx);
    }
  }
}

template <int HS, int BN>
__device__ __forceinline__ void flash_bwd_dq(const float* __restrict__ q, const float* __restrict__ k,
                                             const float* __restrict__ v,
                                             const float* __restrict__ dout,
                                             const float* __restrict__ lse,
                                             const float* __restrict__ Dg,
                                             const float* __restrict__ pad, float* __restrict__ dq,
                                             int nh, int Tq, int Tk, unsigned seed,
                                             unsigned drop_threshold, float drop_scale,
                                             float scale, int causal, int has_pad) {
  constexpr int LD = HS + 4, LDP = BN + 4, TN = BN / 16, NO = HS / 16;
  MG_DYNAMIC_SMEM(smem);
  float* Qs = smem;               // [64][LD]  queries of this block
  float* Gs = Qs + MG_ROWS * LD;  // [64][LD]  their dO rows
  float* Ks = Gs + MG_ROWS * LD;  // [BN][LD]  the current key tile
  float* Vs = Ks + BN * LD;       // [BN][LD]
  float* Ss = Vs + BN * LD;       // [64][LDP] dS

  const int tx = threadIdx.x & 15, ty = threadIdx.x >> 4;
  const int bh = blockIdx.x;
  const int q0 = (gridDim.y - 1 - blockIdx.y) * MG_ROWS;  // heaviest query tiles first
  const float* pad_row = has_pad ? pad + (long long)(bh / nh) * Tk : nullptr;
  const float c = scale * MG_LOG2E;
  const int row0 = bh * Tq;  // dropout counter of query row qi: row0 + qi
  q += (long long)bh * Tq * HS;
  dout += (long long)bh * Tq * HS;
  dq += (long long)bh * Tq * HS;
  lse += (long long)bh * Tq;
  Dg += (long long)bh * Tq;
  k += (long long)bh * Tk * HS;
  v += (long long)bh * Tk * HS;

  load_rows<MG_ROWS, HS>(Qs, q, q0, Tq);
  load_rows<MG_ROWS, HS>(Gs, dout, q0, Tq);
  float l2[4], Di[4], acc[4][NO];
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int qi = q0 + ty * 4 + i;
    l2[i] = qi < Tq ? lse[qi] * MG_LOG2E : MG_INF;
    Di[i] = qi < Tq ? Dg[qi] : 0.0f;
#pragma unroll
    for (int e = 0; e < NO; ++e) acc[i][e] = 0.0f;
  }

  const int k_end = causal ? mg_min(Tk, q0 + MG_ROWS + (Tk - Tq)) : Tk;
  for (int k0 = 0; k0 < k_end; k0 += BN) {
    load_rows<BN, HS>(Ks, k, k0, Tk);
    load_rows<BN, HS>(Vs, v, k0, Tk);
    __syncthreads();

    float s[4][TN], dp[4][TN];
    tile_dot<HS, TN>(s, Qs, Ks, ty, tx);   // S = Q K^T
    tile_dot<HS, TN>(dp, Gs, Vs, ty, tx);  // dP = dO V^T
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int qi = q0 + ty * 4 + i;
#pragma unroll
      for (int j = 0; j < TN; ++j) {
        const int col = tx + 16 * j;
        const float p = mg_visible(qi, k0 + col, Tq, Tk, causal, pad_row)
                            ? exp2f(s[i][j] * c - l2[i]) : 0.0f;
        const float d = mg_dropout_factor(seed, drop_threshold, drop_scale, row0 + qi, k0 + col);
        Ss[(ty * 4 + i) * LDP + col] = p * (dp[i][j] * d - Di[i]);
      }
    }
    __syncthreads();

    tile_pv<HS, BN>(acc, Ss, Ks, ty, tx);  // dQ += dS K   (scale applied at the end)
    __syncthreads();
  }

#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int qi = q0 + ty * 4 + i;
    if (qi < Tq) store_cols<HS>(dq + (long long)qi * HS, acc[i], scale, tx);
  }
}

// MINB: the fewest blocks per SM the register budget must allow (1 lets ptxas use up to 255
// registers per thread; the HS = 128 dK/dV kernel needs that for its 2 x 32 accumulators
// without spilling, and its 120 KB of shared memory allows only one block per SM anyway).
#define MG_FLASH_BWD(HS, BN, MINB)                                                                 \
  extern "C" __global__ void __launch_bounds__(MG_THREADS, MINB) flash_bwd_dkdv_hs##HS(                  \
      const float* __restrict__ q, const float* __restrict__ k, const float* __restrict__ v,       \
      const float* __restrict__ dout, const float* __restrict__ lse, const float* __restrict__ D,  \
      const float* __restrict__ pad, float* __restrict__ dk, float* __restrict__ dv, int nh,      \
      int Tq, int Tk, int seed, int drop_threshold, float drop_scale, float scale, int causal,     \
      int has_pad) {                                                                               \
    flash_bwd_dkdv<HS, BN>(q, k, v, dout, lse, D, pad, dk, dv, nh, Tq, Tk, (unsigned)seed,         \
                           (unsigned)drop_threshold, drop_scale, scale, causal, has_pad);          \
  }                                                                                                \
  extern "C" __global__ void __launch_bounds__(MG_THREADS) flash_bwd_dq_hs##HS(                    \
      const float* __restrict__ q, const float* __restrict__ k, const float* __restrict__ v,       \
      const float* __restrict__ dout, const float* __restrict__ lse, const float* __restrict__ D,  \
      const float* __restrict__ pad, float* __restrict__ dq, int nh, int Tq, int Tk, int seed,     \
      int drop_threshold, float drop_scale, float scale, int causal, int has_pad) {                \
    flash_bwd_dq<HS, BN>(q, k, v, dout, lse, D, pad, dq, nh, Tq, Tk, (unsigned)seed,               \
                         (unsigned)drop_threshold, drop_scale, scale, causal, has_pad);            \
  }

// (HS, BN) pairs: minigpt/kernels.py's FLASH_TILES must list the same (a CPU test checks).
MG_FLASH_BWD(32, 64, 2)
MG_FLASH_BWD(64, 64, 2)
MG_FLASH_BWD(128, 32, 1)
