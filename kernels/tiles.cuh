// tiles.cuh: the shared-memory tile machinery of the flash-attention kernels (04, 05).
//
// Every flash kernel runs 256 threads seen as a 16 x 16 grid:
//     ty = threadIdx.x / 16  (0..15)   owns the 4 consecutive tile ROWS ty*4 .. ty*4+3,
//     tx = threadIdx.x % 16  (0..15)   owns the tile COLUMNS tx, tx+16, tx+32, ...
// so a block works on 64 rows at a time (the rows are queries in 04 and in 05's dQ kernel,
// keys in 05's dK/dV kernel). The 16 threads that share ty form one half-warp, so a reduction
// along a row is 4 shuffles (half_warp_max / half_warp_sum) and needs no shared memory.
//
// Shared-memory layout: a tile of R rows of a (T, HS) matrix is stored row-major with a row
// stride of HS + 4 floats. The 4 extra floats shift each row by 4 banks, so the 8 threads of a
// quarter-warp reading 16-byte vectors from 8 different rows hit 32 different banks.
// Rows past the end of the matrix are stored as zeros (never garbage that could be NaN).
#pragma once
#include "common.cuh"

#define MG_THREADS 256  // threads of every flash block
#define MG_ROWS 64      // tile rows a flash block owns: 16 row groups x 4

__device__ __forceinline__ float f4_get(const float4& v, int c) {
  return c == 0 ? v.x : (c == 1 ? v.y : (c == 2 ? v.z : v.w));  // c is a compile-time constant
}

// dst[r][:] = src[row0 + r][:] for r < ROWS (zeros where row0 + r >= n).
// src: row-major (n, HS) in global memory; dst: [ROWS][HS + 4] in shared memory.
// Consecutive threads copy consecutive 16-byte pieces of a row: coalesced global reads.
template <int ROWS, int HS>
__device__ __forceinline__ void load_rows(float* __restrict__ dst, const float* __restrict__ src,
                                          int row0, int n) {
  constexpr int V4 = HS / 4;  // float4s per row
  constexpr int TOTAL = ROWS * V4;
  static_assert(TOTAL % MG_THREADS == 0, "a tile must split evenly over the block");
#pragma unroll
  for (int it = 0; it < TOTAL / MG_THREADS; ++it) {
    const int idx = it * MG_THREADS + threadIdx.x;
    const int r = idx / V4, c = (idx % V4) * 4;
    float4 val = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    if (row0 + r < n) val = *reinterpret_cast<const float4*>(src + (long long)(row0 + r) * HS + c);
    *reinterpret_cast<float4*>(dst + r * (HS + 4) + c) = val;
  }
}

// ---- asynchronous tile loads (cp.async, sm_80+) ---------------------------------------------
// load_rows_async is load_rows without the trip through registers: each 16-byte piece is
// copied global -> shared by the memory system while the threads go on computing. The copies
// a thread issued since its last mg_cp_async_commit() form one group; mg_cp_async_wait<N>()
// returns when all but the N most recent groups have landed (for this thread: a
// __syncthreads() after it makes every thread's copies visible to all). Rows past the end are
// zero-filled (source size 0, nothing is read). Without cp.async (the CPU emulator, or an
// architecture below sm_80) the copy happens at once, at the point of issue: the earliest
// moment the hardware could write, so a missing barrier before the issue is still a race there.
__device__ __forceinline__ void mg_cp_async16(float* dst_smem, const float* src, bool valid) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  unsigned s;
  asm volatile("{ .reg .u64 a; cvta.to.shared.u64 a, %1; cvt.u32.u64 %0, a; }"
               : "=r"(s) : "l"(dst_smem));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n"
               :: "r"(s), "l"(src), "r"(valid ? 16 : 0) : "memory");
#else
  *reinterpret_cast<float4*>(dst_smem) =
      valid ? *reinterpret_cast<const float4*>(src) : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
#endif
}

__device__ __forceinline__ void mg_cp_async_commit() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("cp.async.commit_group;\n" ::: "memory");
#endif
}

template <int N>
__device__ __forceinline__ void mg_cp_async_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("cp.async.wait_group %0;\n" :: "n"(N) : "memory");
#endif
}

// load_rows, asynchronously (same layout, same zero rows past n); the caller commits and waits.
template <int ROWS, int HS>
__device__ __forceinline__ void load_rows_async(float* __restrict__ dst, const float* __restrict__ src,
                                                int row0, int n) {
  constexpr int V4 = HS / 4;
  constexpr int TOTAL = ROWS * V4;
  static_assert(TOTAL % MG_THREADS == 0, "a tile must split evenly over the block");
#pragma unroll
  for (int it = 0; it < TOTAL / MG_THREADS; ++it) {
    const int idx = it * MG_THREADS + threadIdx.x;
    const int r = idx / V4, c = (idx % V4) * 4;
    const bool valid = row0 + r < n;
    mg_cp_async16(dst + r * (HS + 4) + c, src + (valid ? (long long)(row0 + r) * HS + c : 0), valid);
  }
}

// acc[i][j] = sum_d A[ty*4 + i][d] * B[tx + 16*j][d]      (i < 4, j < TN)
// A: [64][HS + 4] and B: [16*TN][HS + 4] in shared memory: the "A @ B^T" tile product
// (S = Q K^T, dP = dO V^T, ...). Each step reads 4 float4 of A (the same address across the
// half-warp: a broadcast) and TN float4 of B (conflict-free, see the layout note above) and
// does 16*TN fused multiply-adds. The sum runs over d in increasing order in every kernel, so
// a score recomputed in the backward is bit-identical to the forward's.
template <int HS, int TN>
__device__ __forceinline__ void tile_dot(float (&acc)[4][TN], const float* __restrict__ A,
                                         const float* __restrict__ B, int ty, int tx) {
  constexpr int LD = HS + 4;
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < TN; ++j) acc[i][j] = 0.0f;
#pragma unroll 1
  for (int d = 0; d < HS; d += 4) {
    float4 a[4], b[TN];
#pragma unroll
    for (int i = 0; i < 4; ++i) a[i] = *reinterpret_cast<const float4*>(A + (ty * 4 + i) * LD + d);
#pragma unroll
    for (int j = 0; j < TN; ++j) b[j] = *reinterpret_cast<const float4*>(B + (tx + 16 * j) * LD + d);
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
      for (int j = 0; j < TN; ++j) {
        float s = acc[i][j];
        s = fmaf(a[i].x, b[j].x, s);
        s = fmaf(a[i].y, b[j].y, s);
        s = fmaf(a[i].z, b[j].z, s);
        s = fmaf(a[i].w, b[j].w, s);
        acc[i][j] = s;
      }
  }
}

// Which head-dim columns a thread owns in an output row: NO = HS/16 of them, as NO/VW vectors
// of VW consecutive floats: column(e) = (e / VW) * 16*VW + tx*VW + e % VW. For HS = 64 thread
// tx owns columns 4tx..4tx+3; for HS = 128 also 64+4tx..; for HS = 32 columns 2tx, 2tx+1.
// A half-warp thus reads or writes one contiguous run of 16*VW floats per vector.
template <int HS> struct OutCols {
  static constexpr int NO = HS / 16;            // columns per thread
  static constexpr int VW = HS >= 64 ? 4 : 2;   // vector width
  static constexpr int NV = NO / VW;            // vectors per thread
};

// Load this thread's NO columns of row `row` (row stride LD) into v.
template <int HS>
__device__ __forceinline__ void load_cols(float (&v)[HS / 16], const float* __restrict__ row, int tx) {
  using C = OutCols<HS>;
#pragma unroll
  for (int n = 0; n < C::NV; ++n) {
    const float* p = row + n * 16 * C::VW + tx * C::VW;
    if (C::VW == 4) {
      const float4 t = *reinterpret_cast<const float4*>(p);
      v[n * 4 + 0] = t.x; v[n * 4 + 1] = t.y; v[n * 4 + 2] = t.z; v[n * 4 + 3] = t.w;
    } else {
      const float2 t = *reinterpret_cast<const float2*>(p);
      v[n * C::VW + 0] = t.x; v[n * C::VW + 1] = t.y;
    }
  }
}

// Store v * mul as this thread's NO columns of `row` (global memory, row-major (T, HS)).
template <int HS>
__device__ __forceinline__ void store_cols(float* __restrict__ row, const float (&v)[HS / 16],
                                           float mul, int tx) {
  using C = OutCols<HS>;
#pragma unroll
  for (int n = 0; n < C::NV; ++n) {
    float* p = row + n * 16 * C::VW + tx * C::VW;
    if (C::VW == 4) {
      *reinterpret_cast<float4*>(p) = make_float4(v[n * 4 + 0] * mul, v[n * 4 + 1] * mul,
                                                  v[n * 4 + 2] * mul, v[n * 4 + 3] * mul);
    } else {
      *reinterpret_cast<float2*>(p) = make_float2(v[n * C::VW + 0] * mul, v[n * C::VW + 1] * mul);
    }
  }
}

// acc[i][:] += sum_c P[ty*4 + i][c] * V[c][cols of tx]     (i < 4, c < BN)
// P: [64][BN + 4] and V: [BN][HS + 4] in shared memory: the "P @ V" tile product (O += P V,
// dV += P^T dO, dK += dS^T Q, dQ += dS K). Per 4 columns c: 4 float4 of P (broadcast across
// the half-warp) and 4 rows of V, each a contiguous 16*VW-float run across the half-warp.
template <int HS, int BN>
__device__ __forceinline__ void tile_pv(float (&acc)[4][HS / 16], const float* __restrict__ P,
                                        const float* __restrict__ V, int ty, int tx) {
  constexpr int LD = HS + 4, LDP = BN + 4, NO = HS / 16;
#pragma unroll 1
  for (int c = 0; c < BN; c += 4) {
    float4 p[4];
#pragma unroll
    for (int i = 0; i < 4; ++i) p[i] = *reinterpret_cast<const float4*>(P + (ty * 4 + i) * LDP + c);
#pragma unroll
    for (int cc = 0; cc < 4; ++cc) {
      float v[NO];
      load_cols<HS>(v, V + (c + cc) * LD, tx);
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const float pc = f4_get(p[i], cc);
#pragma unroll
        for (int e = 0; e < NO; ++e) acc[i][e] = fmaf(pc, v[e], acc[i][e]);
      }
    }
  }
}

// acc[i][:] = sum_c St[c][ty*R + i] * V[c][cols of tx]     (i < R, c < 64)
// St: [64][ldp] in shared memory holding a TRANSPOSED left factor (key rows, query columns:
// 05's dS^T tile), V: [64][HS + 4]. The product dS K of 10's dQ pass, read straight from the
// dS^T tile the dK product already used, so no transposed copy is needed. R = 4 (64 query
// columns) or 2 (32): thread ty owns query rows ty*R .. ty*R + R-1, and per key c reads one
// R-float vector of St (the same address across the half-warp: a broadcast) and one row of V
// (a contiguous run, as in tile_pv).
template <int HS, int R>
__device__ __forceinline__ void tile_ptv(float (&acc)[R][HS / 16], const float* __restrict__ St,
                                         int ldp, const float* __restrict__ V, int ty, int tx) {
  static_assert(R == 4 || R == 2, "tile_ptv: 2 or 4 rows per thread");
  constexpr int LD = HS + 4, NO = HS / 16;
#pragma unroll
  for (int i = 0; i < R; ++i)
#pragma unroll
    for (int e = 0; e < NO; ++e) acc[i][e] = 0.0f;
#pragma unroll 1
  for (int c = 0; c < MG_ROWS; c += 4) {
#pragma unroll
    for (int cc = 0; cc < 4; ++cc) {
      float p[R];
      if constexpr (R == 4) {
        const float4 t = *reinterpret_cast<const float4*>(St + (c + cc) * ldp + ty * 4);
        p[0] = t.x; p[1] = t.y; p[2] = t.z; p[3] = t.w;
      } else {
        const float2 t = *reinterpret_cast<const float2*>(St + (c + cc) * ldp + ty * 2);
        p[0] = t.x; p[1] = t.y;
      }
      float v[NO];
      load_cols<HS>(v, V + (c + cc) * LD, tx);
#pragma unroll
      for (int i = 0; i < R; ++i)
#pragma unroll
        for (int e = 0; e < NO; ++e) acc[i][e] = fmaf(p[i], v[e], acc[i][e]);
    }
  }
}
