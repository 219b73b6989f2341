// 03_attention_naive.cu: rung 3. Masked scaled dot-product attention, forward and backward,
// one thread per row, no shared memory: the simple reference the flash kernels (04, 05) are
// checked against on the GPU, and the math they reorganise.
//
// What changes vs 02: a whole attention head instead of a softmax. The T x T score matrix is
// never stored: each thread recomputes the scores of its row from q and k when it needs them
// (three times in the forward), and the forward saves only O and the row log-sum-exp
//   lse_i = m_i + ln(sum_j exp(s_ij - m_i)),   s_ij = scale * q_i . k_j,
// from which the backward recomputes P exactly: p_ij = exp(s_ij - lse_i).
//
// Launch shape: 1-D blocks of 128 threads; one thread per (head, row):
//   attn_naive_fwd      thread = (bh, query i)   grid = ceil(BH*Tq / 128)
//   attn_naive_bwd_dq   thread = (bh, query i)   writes dq_i and D_i = dO_i . O_i
//   attn_naive_bwd_dkdv thread = (bh, key j)     reads D; launched after attn_naive_bwd_dq
// Every output row is written by exactly one thread, so no atomics: results are deterministic.
// Memory: q, o, do, dq are (BH, Tq, hs), k, v, dk, dv are (BH, Tk, hs), lse and D are (BH, Tq),
//   pad is (B, Tk) (read only when has_pad), all row-major float32. Neighbouring threads read
//   rows hs floats apart (uncoalesced) and re-read all of k and v: slow by design.
//
// Backward (g = dO):  dp_ij = g_i . v_j,   ds_ij = p_ij (dp_ij - D_i),   D_i = g_i . o_i
//   dq_i = scale * sum_j ds_ij k_j,  dk_j = scale * sum_i ds_ij q_i,  dv_j = sum_i p_ij g_i
#include "common.cuh"

__device__ __forceinline__ float dot_row(const float* __restrict__ a, const float* __restrict__ b,
                                         int hs) {
  float s = 0.0f;
  for (int d = 0; d < hs; ++d) s = fmaf(a[d], b[d], s);
  return s;
}

extern "C" __global__ void attn_naive_fwd(const float* __restrict__ q, const float* __restrict__ k,
                                          const float* __restrict__ v, const float* __restrict__ pad,
                                          float* __restrict__ o, float* __restrict__ lse, int BH,
                                          int nh, int Tq, int Tk, int hs, float scale, int causal,
                                          int has_pad) {
  const int t = blockIdx.x * blockDim.x + threadIdx.x;
  if (t >= BH * Tq) return;
  const int bh = t / Tq, i = t % Tq;
  const float* qi = q + (long long)t * hs;
  const float* kh = k + (long long)bh * Tk * hs;
  const float* vh = v + (long long)bh * Tk * hs;
  const float* pad_row = has_pad ? pad + (long long)(bh / nh) * Tk : nullptr;
  float* oi = o + (long long)t * hs;

  float m = -MG_INF;  // pass 1: max score
  for (int j = 0; j < Tk; ++j)
    if (mg_visible(i, j, Tq, Tk, causal, pad_row)) m = fmaxf(m, scale * dot_row(qi, kh + (long long)j * hs, hs));
  float l = 0.0f;     // pass 2: normaliser
  for (int j = 0; j < Tk; ++j)
    if (mg_visible(i, j, Tq, Tk, causal, pad_row)) l += expf(scale * dot_row(qi, kh + (long long)j * hs, hs) - m);
  for (int d = 0; d < hs; ++d) oi[d] = 0.0f;
  if (l > 0.0f) {     // pass 3: o_i = sum_j p_ij v_j  (accumulated in the output row itself)
    for (int j = 0; j < Tk; ++j) {
      if (!mg_visible(i, j, Tq, Tk, causal, pad_row)) continue;
      const float p = expf(scale * dot_row(qi, kh + (long long)j * hs, hs) - m) / l;
      for (int d = 0; d < hs; ++d) oi[d] = fmaf(p, vh[(long long)j * hs + d], oi[d]);
    }
  }
  lse[t] = l > 0.0f ? m + logf(l) : MG_INF;  // +inf: no visible key, every p_ij is 0
}

extern "C" __global__ void attn_naive_bwd_dq(const float* __restrict__ q, const float* __restrict__ k,
                                             const float* __restrict__ v, const float* __restrict__ o,
                                             const float* __restrict__ lse,
                                             const float* __restrict__ dout,
                                             const float* __restrict__ pad, float* __restrict__ dq,
                                             float* __restrict__ D, int BH, int nh, int Tq, int Tk,
                                             int hs, float scale, int causal, int has_pad) {
  const int t = blockIdx.x * blockDim.x + threadIdx.x;
  if (t >= BH * Tq) return;
  const int bh = t / Tq, i = t % Tq;
  const float* qi = q + (long long)t * hs;
  const float* gi = dout + (long long)t * hs;
  const float* kh = k + (long long)bh * Tk * hs;
  const float* vh = v + (long long)bh * Tk * hs;
  const float* pad_row = has_pad ? pad + (long long)(bh / nh) * Tk : nullptr;
  float* dqi = dq + (long long)t * hs;

  const float Di = dot_row(gi, o + (long long)t * hs, hs);  // = sum_j p_ij dp_ij
  D[t] = Di;
  const float li = lse[t];
  for (int d = 0; d < hs; ++d) dqi[d] = 0.0f;
  for (int j = 0; j < Tk; ++j) {
    if (!mg_visible(i, j, Tq, Tk, causal, pad_row)) continue;
    const float p = expf(scale * dot_row(qi, kh + (long long)j * hs, hs) - li);
    const float ds = p * (dot_row(gi, vh + (long long)j * hs, hs) - Di);
    for (int d = 0; d < hs; ++d) dqi[d] = fmaf(scale * ds, kh[(long long)j * hs + d], dqi[d]);
  }
}

extern "C" __global__ void attn_naive_bwd_dkdv(const float* __restrict__ q, const float* __restrict__ k,
                                               const float* __restrict__ v,
                                               const float* __restrict__ lse,
                                               const float* __restrict__ D,
                                               const float* __restrict__ dout,
                                               const float* __restrict__ pad, float* __restrict__ dk,
                                               float* __restrict__ dv, int BH, int nh, int Tq, int Tk,
                                               int hs, float scale, int causal, int has_pad) {
  const int t = blockIdx.x * blockDim.x + threadIdx.x;
  if (t >= BH * Tk) return;
  const int bh = t / Tk, j = t % Tk;
  const float* kj = k + (long long)t * hs;
  const float* vj = v + (long long)t * hs;
  const float* qh = q + (long long)bh * Tq * hs;
  const float* gh = dout + (long long)bh * Tq * hs;
  const float* pad_row = has_pad ? pad + (long long)(bh / nh) * Tk : nullptr;
  float* dkj = dk + (long long)t * hs;
  float* dvj = dv + (long long)t * hs;

  for (int d = 0; d < hs; ++d) { dkj[d] = 0.0f; dvj[d] = 0.0f; }
  for (int i = 0; i < Tq; ++i) {
    if (!mg_visible(i, j, Tq, Tk, causal, pad_row)) continue;
    const float* qi = qh + (long long)i * hs;
    const float* gi = gh + (long long)i * hs;
    const float p = expf(scale * dot_row(qi, kj, hs) - lse[(long long)bh * Tq + i]);
    const float ds = p * (dot_row(gi, vj, hs) - D[(long long)bh * Tq + i]);
    for (int d = 0; d < hs; ++d) {
      dvj[d] = fmaf(p, gi[d], dvj[d]);
      dkj[d] = fmaf(scale * ds, qi[d], dkj[d]);
    }
  }
}
