// 07_bias_gelu.cu: rung 7. The MLP's bias add and GELU fused: y = gelu(x + b), and its backward
// dx = g * gelu'(x + b), db = sum over rows of dx, in one pass over memory each way.
//
// What changes vs the plain CuPy path: there, `h = x @ W + b` then GELU in the tanh form is a
// chain of elementwise launches (x + b, h^3, the polynomial, tanh, 1 + t, the products), each
// reading and writing the whole (N, 4C) activation, and the backward is as many again plus
// db = G.sum(axis=0). Here each pass reads its inputs once and writes its outputs once:
//   forward   bias_gelu_fwd:  one thread per 4 consecutive elements (a float4 of a row):
//             h = x + b,  u = sqrt(2/pi) (h + 0.044715 h^3),  t = tanh(u),  y = 0.5 h (1 + t).
//             Nothing but x (the matmul output, kept by the caller anyway) and b is needed for
//             the backward: it recomputes t (one exp) instead of storing a second (N, 4C) array.
//   backward  bias_gelu_bwd: dx = g * (0.5 (1 + t) + 0.5 h (1 - t^2) sqrt(2/pi) (1 + 3*0.044715 h^2))
//             and, in the same pass, the column sums of dx over a chunk of rows: block
//             (blockIdx.x, blockIdx.y) owns 64 columns x `rows_per_chunk` rows; thread (ty, tx)
//             (ty = threadIdx.x / 16, tx = threadIdx.x % 16) owns columns 4tx..4tx+3 of the strip
//             and rows ty, ty+16, ... of the chunk (a half-warp reads 256 contiguous bytes of one
//             row), then the 16 row lanes are added in shared memory in a fixed order and
//             written to dbpart[chunk][column].
//             bias_gelu_db_reduce: db[c] = sum over chunks of dbpart[chunk][c], in chunk order.
//             No atomics: every sum has a fixed order, so db is the same bit for bit every run.
// GELU in the tanh form, as GPT-1 (and minigpt.ops.gelu) define it, evaluated through the
// logistic function for float32 accuracy (see mg_gelu_parts).
// has_bias = 0: y = gelu(x) (the plain GELU op), b and dbpart are not read or written.
//
// Launch shapes (block 256 threads):
//   fwd:        grid ceil(N*C/4 / 256), no shared memory
//   bwd:        grid (ceil(C / 64), ceil(N / rows_per_chunk)), shared 16*64*4 = 4096 B
//   db_reduce:  grid ceil(C / 256), no shared memory
// Memory: x, y, g, dx (N, C) row-major float32 with C % 4 == 0 (the loader checks); b, db (C,);
//         dbpart (ceil(N / rows_per_chunk), C).
#include "common.cuh"

#define MG_GELU_THREADS 256
#define MG_SQRT_2_OVER_PI 0.7978845608028654f
#define MG_GELU_C 0.044715f

// GELU through the logistic function: 1 + tanh(u) = 2 s and 1 - tanh(u)^2 = 4 s (1 - s) with
// s = 1 / (1 + exp(-2u)). The same function as the tanh form, but without its float32
// cancellations: for h around -4, 1 + t and 1 - t^2 are differences of numbers near 1 that
// lose most of their digits (a relative error near 1e-3 in gelu'(h)); s and 1 - s here are
// computed from exp directly and keep full relative precision. (exp(-2u) overflows to inf for
// very negative u: then s = 0 and y = -0, gelu' = 0, as the limit says.)
struct MgGelu {
  float s, one_minus_s;  // s = sigmoid(2u) = (1 + tanh u) / 2, and 1 - s
};
__device__ __forceinline__ MgGelu mg_gelu_parts(float h) {
  const float u = MG_SQRT_2_OVER_PI * (h + MG_GELU_C * h * h * h);
  const float e = expf(-2.0f * u);
  const float s = 1.0f / (1.0f + e);
  // 1 - s = e s: exact when e is small (s near 1, where 1 - s would cancel); 1 - s otherwise
  // (s <= 1/2, no cancellation, and e s would be inf * 0 once e overflows)
  return MgGelu{s, e < 1.0f ? e * s : 1.0f - s};
}

__device__ __forceinline__ float mg_gelu(float h) {  // 0.5 h (1 + tanh u) = h s
  return h * mg_gelu_parts(h).s;
}

// d gelu(h) / dh = 0.5 (1 + t) + 0.5 h (1 - t^2) du/dh = s + 2 h s (1 - s) du/dh
__device__ __forceinline__ float mg_gelu_grad(float h) {
  const MgGelu g = mg_gelu_parts(h);
  const float du = MG_SQRT_2_OVER_PI * (1.0f + 3.0f * MG_GELU_C * h * h);
  return g.s * (1.0f + 2.0f * h * g.one_minus_s * du);
}

extern "C" __global__ void __launch_bounds__(MG_GELU_THREADS)
bias_gelu_fwd(const float* __restrict__ x, const float* __restrict__ b, float* __restrict__ y,
              int N, int C, int has_bias) {
  const long long i4 = (long long)blockIdx.x * MG_GELU_THREADS + threadIdx.x;  // float4 index
  if (i4 >= (long long)N * (C / 4)) return;
  const float4 xv = reinterpret_cast<const float4*>(x)[i4];
  float4 bv = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
  if (has_bias) bv = reinterpret_cast<const float4*>(b)[i4 % (C / 4)];
  reinterpret_cast<float4*>(y)[i4] = make_float4(mg_gelu(xv.x + bv.x), mg_gelu(xv.y + bv.y),
                                                 mg_gelu(xv.z + bv.z), mg_gelu(xv.w + bv.w));
}

extern "C" __global__ void __launch_bounds__(MG_GELU_THREADS)
bias_gelu_bwd(const float* __restrict__ g, const float* __restrict__ x,
              const float* __restrict__ b, float* __restrict__ dx, float* __restrict__ dbpart,
              int N, int C, int has_bias, int rows_per_chunk) {
  MG_DYNAMIC_SMEM(red);  // [16][64]: each row lane's column sums
  const int tx = threadIdx.x & 15, ty = threadIdx.x >> 4;
  const int c = blockIdx.x * 64 + tx * 4;  // this thread's 4 columns
  const int r0 = blockIdx.y * rows_per_chunk;
  const int r1 = mg_min(N, r0 + rows_per_chunk);
  float4 acc = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
  if (c < C) {
    float4 bv = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    if (has_bias) bv = *reinterpret_cast<const float4*>(b + c);
    for (int r = r0 + ty; r < r1; r += 16) {
      const long long off = (long long)r * C + c;
      const float4 gv = *reinterpret_cast<const float4*>(g + off);
      const float4 xv = *reinterpret_cast<const float4*>(x + off);
      const float4 d = make_float4(gv.x * mg_gelu_grad(xv.x + bv.x), gv.y * mg_gelu_grad(xv.y + bv.y),
                                   gv.z * mg_gelu_grad(xv.z + bv.z), gv.w * mg_gelu_grad(xv.w + bv.w));
      *reinterpret_cast<float4*>(dx + off) = d;
      acc.x += d.x; acc.y += d.y; acc.z += d.z; acc.w += d.w;
    }
  }
  if (!has_bias) return;  // (uniform across the block)
  *reinterpret_cast<float4*>(red + ty * 64 + tx * 4) = acc;
  __syncthreads();
  if (threadIdx.x < 64) {  // one thread per column of the strip: the 16 lanes in order
    const int col = blockIdx.x * 64 + threadIdx.x;
    float s = 0.0f;
#pragma unroll
    for (int l = 0; l < 16; ++l) s += red[l * 64 + threadIdx.x];
    if (col < C) dbpart[(long long)blockIdx.y * C + col] = s;
  }
}

extern "C" __global__ void __launch_bounds__(MG_GELU_THREADS)
bias_gelu_db_reduce(const float* __restrict__ dbpart, float* __restrict__ db, int C, int chunks) {
  const int c = blockIdx.x * MG_GELU_THREADS + threadIdx.x;
  if (c >= C) return;
  float s = 0.0f;
  for (int k = 0; k < chunks; ++k) s += dbpart[(long long)k * C + c];
  db[c] = s;
}
