// 01_softmax_naive.cu: rung 1 of the ladder. Scaled, optionally causal softmax over the last
// axis, forward and backward, written the way the NumPy code reads.
//
// What it is:   the textbook three passes over a row (max, sum of exponentials, normalise),
//               one GPU thread doing all of them for one row.
// Launch shape: 1-D grid of 1-D blocks (the loader uses 128 threads); thread r owns row r,
//               grid = ceil(rows / 128).
// Memory:       x, y, g, dx are (rows, L) row-major float32. For causal use the rows are
//               (..., Tq) flattened and L = Tk: row r is query i = r % Tq, which sees columns
//               j <= i + (L - Tq); the rest of its outputs are written as 0.
// Why it is slow: neighbouring threads read addresses L floats apart, so every load of a warp
//               touches 32 different cache lines (uncoalesced); 02 fixes that.
//
//   forward:  y_j  = exp(s*x_j - m) / sum_k exp(s*x_k - m),   m = max_k s*x_k  (visible k)
//   backward: dx_j = s * y_j * (g_j - sum_k g_k y_k)
#include "common.cuh"

extern "C" __global__ void softmax_naive_fwd(const float* __restrict__ x, float* __restrict__ y,
                                             int rows, int L, int Tq, float scale, int causal) {
  const int r = blockIdx.x * blockDim.x + threadIdx.x;
  if (r >= rows) return;
  const long long base = (long long)r * L;
  // number of visible columns of this row
  const int n = causal ? mg_min(L, r % Tq + (L - Tq) + 1) : L;

  float m = -MG_INF;  // pass 1: the row max (of the scaled scores)
  for (int j = 0; j < n; ++j) m = fmaxf(m, x[base + j] * scale);
  float sum = 0.0f;   // pass 2: the normaliser
  for (int j = 0; j < n; ++j) sum += expf(x[base + j] * scale - m);
  for (int j = 0; j < n; ++j) y[base + j] = expf(x[base + j] * scale - m) / sum;  // pass 3
  for (int j = n; j < L; ++j) y[base + j] = 0.0f;  // masked columns
}

extern "C" __global__ void softmax_naive_bwd(const float* __restrict__ y,
                                             const float* __restrict__ g,
                                             float* __restrict__ dx, int rows, int L, int Tq,
                                             float scale, int causal) {
  const int r = blockIdx.x * blockDim.x + threadIdx.x;
  if (r >= rows) return;
  const long long base = (long long)r * L;
  const int n = causal ? mg_min(L, r % Tq + (L - Tq) + 1) : L;

  float dot = 0.0f;  // sum_k g_k y_k
  for (int j = 0; j < n; ++j) dot += g[base + j] * y[base + j];
  for (int j = 0; j < n; ++j) dx[base + j] = scale * y[base + j] * (g[base + j] - dot);
  for (int j = n; j < L; ++j) dx[base + j] = 0.0f;
}
