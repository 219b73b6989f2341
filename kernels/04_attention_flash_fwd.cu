// 04_attention_flash_fwd.cu: rung 4. Flash-attention forward: tiles of Q against tiles of K/V
// in shared memory with the online softmax; saves only O and the row log-sum-exp.
//
// What changes vs 03:
//   * a block of 256 threads owns 64 query rows of one head (the layout of tiles.cuh: thread
//     (ty, tx) owns rows ty*4..ty*4+3 and key columns tx, tx+16, ...). Q is loaded once; K and
//     V then stream through shared memory BN rows at a time, each element read from global
//     memory once per query tile instead of once per query row;
//   * per key tile: S = Q K^T for the 64 x BN tile in registers (16*TN products per thread per
//     step, see tile_dot), mask, then the online softmax: for each row keep the running max m
//     and sum l; when a new tile raises the max by delta, rescale l and the output accumulator
//     by exp(-delta). P goes through shared memory and O += P V (tile_pv);
//   * scores are kept in base-2 units (s * log2 e) so exp becomes one exp2f instruction;
//   * causal: key tiles entirely after the block's last query are skipped (about half the work
//     at Tq = Tk), and the blocks with the most work (the last query tiles) start first;
//   * one pass over K and V; the T x T matrices exist only a tile at a time.
// Output: O = (sum_j e_ij v_j) / l_i and lse_i = ln(l_i) + m_i (natural-log units of the
// scaled scores; +inf when the row sees no key, whose O row is 0).
// Attention dropout (GPT-1's attn_pdrop): O = (P * D) V with D_ij = 0 or 1/(1-p) from
// philox.cuh's counter-based hash of (seed, row, key), so the backward recomputes the same
// mask instead of storing it. Only the P that goes into P V is dropped: the running sum l
// (and so lse) is over the undropped probabilities, as softmax-then-dropout defines it.
// drop_threshold = 0 switches dropout off (no hash is computed).
//
// Prefetch (the flash_fwd_pf_hsN kernels, what minigpt's default variant runs): the next K and V
// tiles are copied into shared memory with cp.async (tiles.cuh) while the current tile is
// computed, instead of every thread waiting for its loads at the top of each tile. Same
// buffers (K is free once S is computed, V once P V is), so the same shared memory:
//     wait K(t); sync; S = Q K^T; softmax; wait V(t); sync; issue K(t+1); P V; sync; issue V(t+1)
// With only 2 blocks (16 warps) per SM there is little else to hide a load's latency behind.
//
// Launch shape: grid (BH, ceil(Tq / 64)), block 256, dynamic shared memory
//   ((64 + 2*BN) * (HS + 4) + 64 * (BN + 4)) * 4 bytes    (Q, K, V, P tiles)
// with BN = 64 for HS = 32 and 64, BN = 32 for HS = 128 (keeps 2 blocks per SM). The kernels
// are flash_fwd_hs32 / _hs64 / _hs128 (one instantiation per head size, HS a compile-time
// constant so every register array is indexed with constants).
// Memory: q, o (BH, Tq, HS), k, v (BH, Tk, HS), lse (BH, Tq), pad (B, Tk): row-major float32.
#include "philox.cuh"
#include "tiles.cuh"

template <int HS, int BN, bool PF>
__device__ __forceinline__ void flash_fwd(const float* __restrict__ q, const float* __restrict__ k,
                                          const float* __restrict__ v, const float* __restrict__ pad,
                                          float* __restrict__ o, float* __restrict__ lse, int nh,
                                          int Tq, int Tk, unsigned seed, unsigned drop_threshold,
                                          float drop_scale, float scale, int causal, int has_pad) {
  constexpr int LD = HS + 4, LDP = BN + 4, TN = BN / 16, NO = HS / 16;
  MG_DYNAMIC_SMEM(smem);
  float* Qs = smem;              // [64][LD]
  float* Ks = Qs + MG_ROWS * LD;  // [BN][LD]
  float* Vs = Ks + BN * LD;       // [BN][LD]
  float* Ps = Vs + BN * LD;       // [64][LDP]

  const int tx = threadIdx.x & 15, ty = threadIdx.x >> 4;
  const int bh = blockIdx.x;
  const int q0 = (gridDim.y - 1 - blockIdx.y) * MG_ROWS;  // last (heaviest) query tiles first
  const float* pad_row = has_pad ? pad + (long long)(bh / nh) * Tk : nullptr;
  const float c = scale * MG_LOG2E;  // score -> base-2 exponent
  const int row0 = bh * Tq;          // dropout counter of query row qi: row0 + qi
  q += (long long)bh * Tq * HS;
  k += (long long)bh * Tk * HS;
  v += (long long)bh * Tk * HS;
  o += (long long)bh * Tq * HS;
  lse += (long long)bh * Tq;

  load_rows<MG_ROWS, HS>(Qs, q, q0, Tq);
  if (PF) {  // prefetch: K and V of the first tile, as two groups (see the loop)
    load_rows_async<BN, HS>(Ks, k, 0, Tk);
    mg_cp_async_commit();
    load_rows_async<BN, HS>(Vs, v, 0, Tk);
    mg_cp_async_commit();
  }

  float m[4], l[4], acc[4][NO];
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    m[i] = -MG_INF;
    l[i] = 0.0f;
#pragma unroll
    for (int e = 0; e < NO; ++e) acc[i][e] = 0.0f;
  }

  // causal: the block's last query row q0 + 63 sits at position q0 + 63 + (Tk - Tq)
  const int k_end = causal ? mg_min(Tk, q0 + MG_ROWS + (Tk - Tq)) : Tk;
  for (int k0 = 0; k0 < k_end; k0 += BN) {
    if (PF) {
      mg_cp_async_wait<1>();  // this tile's K has landed (its V may still be on the way)
    } else {
      load_rows<BN, HS>(Ks, k, k0, Tk);
      load_rows<BN, HS>(Vs, v, k0, Tk);
    }
    __syncthreads();  // Q (first time), K (and V without prefetch) visible to all

    float s[4][TN];
    tile_dot<HS, TN>(s, Qs, Ks, ty, tx);

#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int qi = q0 + ty * 4 + i;
      float mx = -MG_INF;
#pragma unroll
      for (int j = 0; j < TN; ++j) {
        s[i][j] = mg_visible(qi, k0 + tx + 16 * j, Tq, Tk, causal, pad_row) ? s[i][j] * c : -MG_INF;
        mx = fmaxf(mx, s[i][j]);
      }
      const float m_new = fmaxf(m[i], half_warp_max(mx));
      float alpha = 1.0f, rs = 0.0f;
      if (m_new != -MG_INF) {  // (else: nothing visible yet in this row; p stays 0)
        alpha = exp2f(m[i] - m_new);  // 0 the first time (m = -inf)
#pragma unroll
        for (int j = 0; j < TN; ++j) {
          s[i][j] = exp2f(s[i][j] - m_new);  // masked: exp2(-inf) = 0
          rs += s[i][j];
        }
      } else {
#pragma unroll
        for (int j = 0; j < TN; ++j) s[i][j] = 0.0f;
      }
      l[i] = l[i] * alpha + half_warp_sum(rs);
      m[i] = m_new;
#pragma unroll
      for (int e = 0; e < NO; ++e) acc[i][e] *= alpha;
#pragma unroll
      for (int j = 0; j < TN; ++j)  // P * D goes into P V; l above summed the undropped P
        Ps[(ty * 4 + i) * LDP + tx + 16 * j] =
            s[i][j] * mg_dropout_factor(seed, drop_threshold, drop_scale, row0 + qi, k0 + tx + 16 * j);
    }
    if (PF) mg_cp_async_wait<0>();  // this tile's V has landed too
    __syncthreads();  // P (and V) complete; every thread is done reading K
    const bool more = k0 + BN < k_end;
    if (PF) {  // the next K streams in while P V runs
      if (more) load_rows_async<BN, HS>(Ks, k, k0 + BN, Tk);
      mg_cp_async_commit();
    }

    tile_pv<HS, BN>(acc, Ps, Vs, ty, tx);
    __syncthreads();  // done reading V, P before the next tile overwrites them
    if (PF) {  // the next V streams in while the next S = Q K^T and softmax run
      if (more) load_rows_async<BN, HS>(Vs, v, k0 + BN, Tk);
      mg_cp_async_commit();
    }
  }

#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int qi = q0 + ty * 4 + i;
    if (qi < Tq) {
      store_cols<HS>(o + (long long)qi * HS, acc[i], l[i] > 0.0f ? 1.0f / l[i] : 0.0f, tx);
      if (tx == 0) lse[qi] = l[i] > 0.0f ? (m[i] + log2f(l[i])) * MG_LN2 : MG_INF;
    }
  }
}

#define MG_FLASH_FWD(HS, BN)                                                                       \
  extern "C" __global__ void __launch_bounds__(MG_THREADS, 2) flash_fwd_hs##HS(                       \
      const float* __restrict__ q, const float* __restrict__ k, const float* __restrict__ v,       \
      const float* __restrict__ pad, float* __restrict__ o, float* __restrict__ lse, int nh,      \
      int Tq, int Tk, int seed, int drop_threshold, float drop_scale, float scale, int causal,     \
      int has_pad) {                                                                               \
    flash_fwd<HS, BN, false>(q, k, v, pad, o, lse, nh, Tq, Tk, (unsigned)seed,                     \
                             (unsigned)drop_threshold, drop_scale, scale, causal, has_pad);        \
  }                                                                                                \
  extern "C" __global__ void __launch_bounds__(MG_THREADS, 2) flash_fwd_pf_hs##HS(                    \
      const float* __restrict__ q, const float* __restrict__ k, const float* __restrict__ v,       \
      const float* __restrict__ pad, float* __restrict__ o, float* __restrict__ lse, int nh,      \
      int Tq, int Tk, int seed, int drop_threshold, float drop_scale, float scale, int causal,     \
      int has_pad) {                                                                               \
    flash_fwd<HS, BN, true>(q, k, v, pad, o, lse, nh, Tq, Tk, (unsigned)seed,                      \
                            (unsigned)drop_threshold, drop_scale, scale, causal, has_pad);         \
  }

// (HS, BN) pairs: minigpt/kernels.py's FLASH_TILES must list the same (a CPU test checks).
MG_FLASH_FWD(32, 64)
MG_FLASH_FWD(64, 64)
MG_FLASH_FWD(128, 32)
