// 10_attention_flash_bwd_onepass.cu: rung 10. Flash-attention backward in ONE pass over the
// (query tile, key tile) pairs: dQ is computed in 05's dK/dV kernel too, as one partial sum per
// key tile, and the partials are added in a fixed order by a small second kernel. Still
// deterministic (no atomics), and 5 tile products per pair instead of 05's 7.
//
// What changes vs 05 (same math, same dropout, same masks; 05's flash_bwd_preprocess still
// computes D_i = dO_i . O_i first):
//   * flash_bwd_onepass_hsN is 05's dK/dV kernel plus, for every query tile it visits, the
//     partial dQ of that tile against this block's 64 keys:
//         dQpart[kt][i] = sum_{j in key tile kt} ds_ij k_j          (64 or 32 query rows)
//     read straight from the dS^T tile already in shared memory for dK (tile_ptv), stored to
//     global memory at once (coalesced float4 rows). 05 needed a whole second kernel that
//     recomputed S = Q K^T and dP = dO V^T just to get dS again for dQ += dS K.
//   * flash_bwd_dq_reduce: dq_i = scale * sum_kt dQpart[kt][i], summed over kt = 0, 1, ... in
//     that order, only over the key tiles whose block visited row i's query tile (causal: the
//     key tiles at or before it). Every output element is still summed by one thread in a
//     fixed order, so the result is the same bit for bit on every run.
// The price is memory: the partials are a (BH, ceil(Tk/64), Tq, HS) float32 buffer, 100 MB at
// B=8, nh=12, T=512, hs=64 (written and read once: about 1/20 of the time the two recomputed
// tile products cost). minigpt/cuda/attention.py falls back to 05 when the buffer would be
// larger than its limit (long sequences).
//
// Prefetch (the flash_bwd_onepass_pf_hsN kernels, what minigpt's default variant runs): once
// dV and dK of a query tile are done, a barrier frees the Q and dO buffers and the next query
// tile's Q and dO are copied in with cp.async (tiles.cuh) while the dQ product runs.
//
// Launch shapes (block 256 threads):
//   onepass: grid (BH, ceil(Tk / 64)), shared ((128 + 2*BQ)*(HS+4) + 128*(BQ+4) + 2*BQ) * 4 B
//            (K, V, Q, dO, P^T, dS^T, lse, D: the same layout as 05's dK/dV kernel)
//   reduce:  grid ceil(BH * Tq * HS/4 / 256), one thread per 4 consecutive floats of dq
//   BQ = 64 for HS = 32 and 64, 32 for HS = 128 (as 05).
// Memory: q, do, dq (BH, Tq, HS); k, v, dk, dv (BH, Tk, HS); lse, D (BH, Tq); pad (B, Tk);
//         dqpart (BH, ceil(Tk / 64), Tq, HS), row-major float32.
#include "philox.cuh"
#include "tiles.cuh"

template <int HS, int BQ, bool PF>
__device__ __forceinline__ void flash_bwd_onepass(
    const float* __restrict__ q, const float* __restrict__ k, const float* __restrict__ v,
    const float* __restrict__ dout, const float* __restrict__ lse, const float* __restrict__ Dg,
    const float* __restrict__ pad, float* __restrict__ dk, float* __restrict__ dv,
    float* __restrict__ dqpart, int nh, int Tq, int Tk, unsigned seed, unsigned drop_threshold,
    float drop_scale, float scale, int causal, int has_pad) {
  constexpr int LD = HS + 4, LDP = BQ + 4, TN = BQ / 16, NO = HS / 16, R = BQ / 16;
  MG_DYNAMIC_SMEM(smem);
  float* Ks = smem;                // [64][LD]   keys of this block
  float* Vs = Ks + MG_ROWS * LD;   // [64][LD]
  float* Qs = Vs + MG_ROWS * LD;   // [BQ][LD]   the current query tile
  float* Gs = Qs + BQ * LD;        // [BQ][LD]   its dO rows
  float* Ps = Gs + BQ * LD;        // [64][LDP]  P^T * D  (key rows, query columns)
  float* Ss = Ps + MG_ROWS * LDP;  // [64][LDP]  dS^T
  float* Ls = Ss + MG_ROWS * LDP;  // [BQ]       lse of the query tile, in base-2 units
  float* Dsm = Ls + BQ;            // [BQ]       D of the query tile

  const int tx = threadIdx.x & 15, ty = threadIdx.x >> 4;
  const int bh = blockIdx.x, kt = blockIdx.y;
  const int k0 = kt * MG_ROWS;  // causal: the first key tiles see the most queries
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
  dqpart += ((long long)bh * gridDim.y + kt) * Tq * HS;  // this block's (Tq, HS) partial

  load_rows<MG_ROWS, HS>(Ks, k, k0, Tk);
  load_rows<MG_ROWS, HS>(Vs, v, k0, Tk);

  float dk_acc[4][NO], dv_acc[4][NO];
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int e = 0; e < NO; ++e) { dk_acc[i][e] = 0.0f; dv_acc[i][e] = 0.0f; }

  // causal: query i sees key k0 only if i >= k0 - (Tk - Tq); start at that query's tile
  // (flash_bwd_dq_reduce repeats this rule to know which partials exist)
  const int q_begin = causal ? (mg_max(0, k0 - (Tk - Tq)) / BQ) * BQ : 0;
  if (PF) {  // prefetch: the first query tile's Q and dO
    load_rows_async<BQ, HS>(Qs, q, q_begin, Tq);
    load_rows_async<BQ, HS>(Gs, dout, q_begin, Tq);
    mg_cp_async_commit();
  }
  for (int q0 = q_begin; q0 < Tq; q0 += BQ) {
    if (!PF) {
      load_rows<BQ, HS>(Qs, q, q0, Tq);
      load_rows<BQ, HS>(Gs, dout, q0, Tq);
    }
    if (threadIdx.x < BQ) {
      const int qi = q0 + threadIdx.x;
      Ls[threadIdx.x] = qi < Tq ? lse[qi] * MG_LOG2E : MG_INF;
      Dsm[threadIdx.x] = qi < Tq ? Dg[qi] : 0.0f;
    }
    if (PF) mg_cp_async_wait<0>();  // this query tile's Q and dO have landed
    __syncthreads();  // K, V (first time), Q, dO, lse, D visible

    float st[4][TN], dpt[4][TN];
    tile_dot<HS, TN>(st, Ks, Qs, ty, tx);   // S^T = K Q^T      (key rows, query cols)
    tile_dot<HS, TN>(dpt, Vs, Gs, ty, tx);  // dP^T = V dO^T    (before dropout)
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

    tile_pv<HS, BQ>(dv_acc, Ps, Gs, ty, tx);  // dV += (P D)^T dO
    tile_pv<HS, BQ>(dk_acc, Ss, Qs, ty, tx);  // dK += dS^T Q   (scale applied at the end)
    if (PF) {  // Q and dO are free: the next query tile's stream in while dS K runs
      __syncthreads();
      if (q0 + BQ < Tq) {
        load_rows_async<BQ, HS>(Qs, q, q0 + BQ, Tq);
        load_rows_async<BQ, HS>(Gs, dout, q0 + BQ, Tq);
      }
      mg_cp_async_commit();
    }
    {
      float dq_acc[R][NO];
      tile_ptv<HS, R>(dq_acc, Ss, LDP, Ks, ty, tx);  // dQpart = dS K for this query tile
#pragma unroll
      for (int i = 0; i < R; ++i) {
        const int qi = q0 + ty * R + i;
        if (qi < Tq) store_cols<HS>(dqpart + (long long)qi * HS, dq_acc[i], 1.0f, tx);
      }
    }
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

// dq[bh][i][:] = scale * sum over the key tiles kt that visited row i's query tile, in order.
// One thread per float4 of dq; nkt = ceil(Tk / 64) partials per row, bq = the query tile rows
// of the onepass kernel (its BQ), needed to repeat its causal start rule.
extern "C" __global__ void __launch_bounds__(MG_THREADS)
flash_bwd_dq_reduce(const float* __restrict__ dqpart, float* __restrict__ dq, int BH, int Tq,
                    int Tk, int hs, int nkt, int bq, float scale, int causal) {
  const int v4 = hs / 4;  // float4s per row
  const long long idx = (long long)blockIdx.x * MG_THREADS + threadIdx.x;
  if (idx >= (long long)BH * Tq * v4) return;
  const int c4 = (int)(idx % v4);
  const long long row = idx / v4;  // bh * Tq + qi
  const int qi = (int)(row % Tq);
  const long long bh = row / Tq;
  const int qtile = (qi / bq) * bq;
  float4 s = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
  for (int kt = 0; kt < nkt; ++kt) {
    // the onepass block of key tile kt starts at query tile (max(0, k0 - (Tk - Tq)) / bq) * bq
    if (causal && (mg_max(0, kt * MG_ROWS - (Tk - Tq)) / bq) * bq > qtile) break;
    const float4 p = *reinterpret_cast<const float4*>(
        dqpart + ((bh * nkt + kt) * Tq + qi) * hs + c4 * 4);
    s.x += p.x; s.y += p.y; s.z += p.z; s.w += p.w;
  }
  *reinterpret_cast<float4*>(dq + row * hs + c4 * 4) =
      make_float4(s.x * scale, s.y * scale, s.z * scale, s.w * scale);
}

// MINB as in 05: 2 blocks per SM for HS = 32, 64; 1 for HS = 128 (its 2 x 32 accumulators).
// flash_bwd_onepass_hsN, and flash_bwd_onepass_pf_hsN with the next query tile's Q and dO
// prefetched by cp.async while the dQ product runs (one more barrier per tile)
#define MG_FLASH_ONEPASS_ARGS                                                                      \
  const float* __restrict__ q, const float* __restrict__ k, const float* __restrict__ v,           \
      const float* __restrict__ dout, const float* __restrict__ lse, const float* __restrict__ D,  \
      const float* __restrict__ pad, float* __restrict__ dk, float* __restrict__ dv,              \
      float* __restrict__ dqpart, int nh, int Tq, int Tk, int seed, int drop_threshold,            \
      float drop_scale, float scale, int causal, int has_pad
#define MG_FLASH_ONEPASS_CALL(HS, BQ, PF)                                                          \
  flash_bwd_onepass<HS, BQ, PF>(q, k, v, dout, lse, D, pad, dk, dv, dqpart, nh, Tq, Tk,            \
                                (unsigned)seed, (unsigned)drop_threshold, drop_scale, scale,       \
                                causal, has_pad)
#define MG_FLASH_ONEPASS(HS, BQ, MINB)                                                             \
  extern "C" __global__ void __launch_bounds__(MG_THREADS, MINB) flash_bwd_onepass_hs##HS(         \
      MG_FLASH_ONEPASS_ARGS) {                                                                     \
    MG_FLASH_ONEPASS_CALL(HS, BQ, false);                                                          \
  }                                                                                                \
  extern "C" __global__ void __launch_bounds__(MG_THREADS, MINB) flash_bwd_onepass_pf_hs##HS(      \
      MG_FLASH_ONEPASS_ARGS) {                                                                     \
    MG_FLASH_ONEPASS_CALL(HS, BQ, true);                                                           \
  }

// (HS, BQ) pairs: the same tiles as 05 (minigpt/cuda/attention.py's FLASH_TILES; a CPU test checks).
MG_FLASH_ONEPASS(32, 64, 2)
MG_FLASH_ONEPASS(64, 64, 2)
MG_FLASH_ONEPASS(128, 32, 1)
