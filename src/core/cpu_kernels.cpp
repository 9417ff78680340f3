// CPU kernels (see cpu_kernels.h). Written with GCC/Clang vector extensions: one
// template body, instantiated per instruction set with a register tile that fits it:
//   AVX-512: 14 rows x 32 columns over a long inner dimension (28 zmm accumulators + 2 weight
//   vectors),
//            else 8 x 32;  AVX2: 6 x 16 (12 ymm);  baseline (SSE or NEON): 6 x 8 (12 registers).
// Each tile keeps its accumulators over the whole inner dimension (the broadcast form
// acc[r][:] += in[r, i] * wt[i, :]), so a 32 x 128 x 128 layer runs in about 5 microseconds on one
// AVX-512 core, about 89% of its float32 multiply-add peak (which build/ramflow_bench measures).
#include "core/cpu_kernels.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#pragma GCC diagnostic ignored \
    "-Wpsabi"  // vectors wider than the baseline ABI stay inside this file

namespace ramflow::kernels {
namespace {

#define RAMFLOW_INLINE inline __attribute__((always_inline))

template <int W>
struct Vec {
  typedef float f __attribute__((vector_size(4 * W)));
  typedef int32_t i __attribute__((vector_size(4 * W)));
};

template <int W>
RAMFLOW_INLINE typename Vec<W>::f load(const float* p) {
  typename Vec<W>::f v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
template <int W>
RAMFLOW_INLINE void store(float* p, typename Vec<W>::f v) {
  std::memcpy(p, &v, sizeof v);
}

// One MR x (NV*W) tile of out = in · wt + bias; `in` points at the tile's first row, and its
// element (r, i) is in[r * rs + i * ks] (rs = I, ks = 1 for a row-major [B, I]; rs = 1, ks = B for
// the transpose of a row-major [I, B]).
template <int W, int MR, int NV>
RAMFLOW_INLINE void tile(const float* in, int64_t rs, int64_t ks, int64_t I, const float* wt,
                         int64_t O, const float* bias, float* out) {
  using V = typename Vec<W>::f;
  V acc[MR][NV];
  for (int j = 0; j < NV; ++j) {
    const V b = bias ? load<W>(bias + j * W) : V{};
    for (int r = 0; r < MR; ++r) acc[r][j] = b;
  }
  for (int64_t i = 0; i < I; ++i) {
    V w[NV];
    for (int j = 0; j < NV; ++j) w[j] = load<W>(wt + i * O + j * W);
    for (int r = 0; r < MR; ++r) {
      const float a = in[r * rs + i * ks];
      for (int j = 0; j < NV; ++j) acc[r][j] += a * w[j];
    }
  }
  for (int r = 0; r < MR; ++r)
    for (int j = 0; j < NV; ++j) store<W>(out + r * O + j * W, acc[r][j]);
}

// The sum of the W lanes of v, as a tree (halves added until four lanes are left): log2(W)
// dependent additions instead of W.
template <int W>
RAMFLOW_INLINE float lane_sum(typename Vec<W>::f v) {
  if constexpr (W <= 4) {
    float s = 0;
    for (int k = 0; k < W; ++k) s += v[k];
    return s;
  } else {
    typename Vec<W / 2>::f lo, hi;
    std::memcpy(&lo, &v, sizeof lo);
    std::memcpy(&hi, reinterpret_cast<const char*>(&v) + sizeof lo, sizeof hi);
    return lane_sum<W / 2>(lo + hi);
  }
}

// Sum of a[i] b[i] over n values, W lanes at a time.
template <int W>
RAMFLOW_INLINE float dot(const float* a, const float* b, int64_t n) {
  typename Vec<W>::f acc = {};
  int64_t i = 0;
  for (; i + W <= n; i += W) acc += load<W>(a + i) * load<W>(b + i);
  float s = lane_sum<W>(acc);
  for (; i < n; ++i) s += a[i] * b[i];
  return s;
}

// Columns o_begin..O-1 beyond the last full tile (e.g. the 2-wide output layer of a 2-D model):
// those columns of wt are copied out contiguously, then each output is one vectorised dot product.
template <int W>
RAMFLOW_INLINE void edge(const float* in, int64_t rs, int64_t ks, int64_t rows, int64_t I,
                         const float* wt, int64_t O, const float* bias, int64_t o_begin,
                         float* out) {
  if (o_begin >= O) return;
  if (ks != 1) {  // strided rows: plain loops
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t o = o_begin; o < O; ++o) {
        float sum = bias ? bias[o] : 0.0f;
        for (int64_t i = 0; i < I; ++i) sum += in[r * rs + i * ks] * wt[i * O + o];
        out[r * O + o] = sum;
      }
    return;
  }
  thread_local std::vector<float> cols;  // [O - o_begin, I], reused from call to call
  cols.resize(static_cast<size_t>((O - o_begin) * I));
  for (int64_t i = 0; i < I; ++i)
    for (int64_t o = o_begin; o < O; ++o) cols[(o - o_begin) * I + i] = wt[i * O + o];
  // Eight rows at a time: eight independent accumulation chains instead of one (a single dot
  // product waits on its own additions). Each row's sum is formed exactly as dot<W> forms it
  // (lanes, then the lane tree, then the scalar tail), so a row's output does not depend on the
  // rows beside it.
  constexpr int64_t R = 8;
  using V = typename Vec<W>::f;
  int64_t r = 0;
  for (; r + R <= rows; r += R)
    for (int64_t o = o_begin; o < O; ++o) {
      const float* col = cols.data() + (o - o_begin) * I;
      V acc[R] = {};
      int64_t i = 0;
      for (; i + W <= I; i += W) {
        const V c = load<W>(col + i);
        for (int64_t u = 0; u < R; ++u) acc[u] += load<W>(in + (r + u) * rs + i) * c;
      }
      for (int64_t u = 0; u < R; ++u) {
        float sum = lane_sum<W>(acc[u]);
        for (int64_t k = i; k < I; ++k) sum += in[(r + u) * rs + k] * col[k];
        out[(r + u) * O + o] = (bias ? bias[o] : 0.0f) + sum;
      }
    }
  for (; r < rows; ++r)
    for (int64_t o = o_begin; o < O; ++o)
      out[r * O + o] =
          (bias ? bias[o] : 0.0f) + dot<W>(in + r * rs, cols.data() + (o - o_begin) * I, I);
}

// The columns [o_begin, o_end) (a multiple of NV * W wide) of out = in · wt + bias, in MR x NV*W
// tiles.
template <int W, int MR, int NV>
RAMFLOW_INLINE void dense_columns(const float* in, int64_t rs, int64_t ks, int64_t B, int64_t I,
                                  const float* wt, const float* bias, int64_t O, int64_t o_begin,
                                  int64_t o_end, float* out) {
  constexpr int64_t NB = NV * W;
  int64_t b = 0;
  for (; b + MR <= B; b += MR)
    for (int64_t o = o_begin; o < o_end; o += NB)
      tile<W, MR, NV>(in + b * rs, rs, ks, I, wt + o, O, bias ? bias + o : nullptr,
                      out + b * O + o);
  if constexpr (MR > 4)  // leftover rows: four at a time, then one at a time
    for (; b + 4 <= B; b += 4)
      for (int64_t o = o_begin; o < o_end; o += NB)
        tile<W, 4, NV>(in + b * rs, rs, ks, I, wt + o, O, bias ? bias + o : nullptr,
                       out + b * O + o);
  for (; b < B; ++b)
    for (int64_t o = o_begin; o < o_end; o += NB)
      tile<W, 1, NV>(in + b * rs, rs, ks, I, wt + o, O, bias ? bias + o : nullptr, out + b * O + o);
}

// out[B, O] = in[B, I] · wt[I, O] + bias with in's element (b, i) at in[b * rs + i * ks]. Columns
// go in blocks of NV * W while they last (the widest tile), then of 2W and W (if NV > 2), then
// `edge`.
template <int W, int MR, int NV>
RAMFLOW_INLINE void dense_impl(const float* in, int64_t rs, int64_t ks, int64_t B, int64_t I,
                               const float* wt, const float* bias, int64_t O, float* out) {
  static_assert(NV == 2 || NV == 4, "column blocks of 2W or 4W");
  int64_t o = O - O % (NV * W);
  dense_columns<W, MR, NV>(in, rs, ks, B, I, wt, bias, O, 0, o, out);
  if (NV == 4 && O - o >= 2 * W) {
    dense_columns<W, MR, 2>(in, rs, ks, B, I, wt, bias, O, o, o + 2 * W, out);
    o += 2 * W;
  }
  if (O - o >= W) {
    dense_columns<W, MR, 1>(in, rs, ks, B, I, wt, bias, O, o, o + W, out);
    o += W;
  }
  edge<W>(in, rs, ks, B, I, wt, O, bias, o, out);
}

// out[R, O] = a[K, R]^T · b[K, O]. With fewer columns than one vector (O < W, e.g. the gradient of
// a 2-wide output layer) it computes out^T = b^T a instead, whose R columns fill tiles, and
// transposes.
template <int W, int MR, int NV>
RAMFLOW_INLINE void dense_tn_impl(const float* a, int64_t K, int64_t R, const float* b, int64_t O,
                                  float* out) {
  if (O < W && R >= W) {
    std::vector<float> out_t(static_cast<size_t>(O * R));  // [O, R]
    dense_impl<W, MR, NV>(b, 1, O, O, K, a, nullptr, R, out_t.data());
    for (int64_t o = 0; o < O; ++o)
      for (int64_t r = 0; r < R; ++r) out[r * O + o] = out_t[o * R + r];
    return;
  }
  dense_impl<W, MR, NV>(a, 1, R, R, K, b, nullptr, O, out);
}

// exp(x) = 2^n p(r),  n = round(x / ln 2),  r = x - n ln 2 in [-ln2/2, ln2/2]  (ln 2 split in two
// parts for exact reduction), p = the Cephes degree-6 minimax polynomial: n and p(r) of an already
// clamped x.
template <int W>
RAMFLOW_INLINE void exp_parts(typename Vec<W>::f x, typename Vec<W>::f& n, typename Vec<W>::f& p) {
  using V = typename Vec<W>::f;
  n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;  // round to nearest (1.5 * 2^23)
  const V r = x - n * 0.693359375f - n * -2.12194440e-4f;
  p = V{} + 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
}

// exp(x) with x clamped to [-87, 88], from exp_parts.
template <int W>
RAMFLOW_INLINE typename Vec<W>::f vexp(typename Vec<W>::f x) {
  using V = typename Vec<W>::f;
  using VI = typename Vec<W>::i;
  const V zero = {};
  x = x < -87.0f ? zero - 87.0f : x;
  x = x > 88.0f ? zero + 88.0f : x;
  V n, p;
  exp_parts<W>(x, n, p);
  const VI two_n = (__builtin_convertvector(n, VI) + 127) << 23;  // the float 2^n, as bits
  return p * (V)two_n;  // a vector cast reinterprets the bits
}

// sigmoid(v) = 1 / (1 + exp(-v)), W lanes; the instruction-set versions below replace the division.
template <int W>
struct SigmoidDivide {
  using V = typename Vec<W>::f;
  static RAMFLOW_INLINE V exp(V v) { return vexp<W>(v); }
  static RAMFLOW_INLINE V recip(V d) { return 1.0f / d; }
  static RAMFLOW_INLINE V apply(V v) { return recip(1.0f + exp(-v)); }
};

// Arguments of the sigmoid in a = x sigmoid(arg(x)), for a float or a vector of W floats.
// silu(z) = z sigmoid(z).
struct SiluArg {
  template <typename T>
  static RAMFLOW_INLINE T of(T z) {
    return z;
  }
};
// GELU with the tanh approximation, gelu(x) = 0.5 x (1 + tanh u), u = k (x + c x^3), k =
// sqrt(2/pi), c = 0.044715 (Hendrycks and Gimpel 2016; diffusers' GELU(approximate="tanh")). Since
// 0.5 (1 + tanh u) = sigmoid(2 u), gelu(x) = x sigmoid(2 u): no cancellation in 1 + tanh u where x
// is very negative.
constexpr float kGeluK2 = 2.0f * 0.7978845608028654f;  // 2 k
constexpr float kGeluC = 0.044715f;
struct GeluTanhArg {
  template <typename T>
  static RAMFLOW_INLINE T of(T x) {
    return kGeluK2 * (x + kGeluC * x * x * x);
  }
};

// a = x sigmoid(Arg::of(x)), with Sigmoid::apply on W lanes at a time. U independent vectors per
// iteration, so that the sigmoid's dependent chain of about 20 instructions overlaps across them
// and keeps both vector units busy: U = 8 with AVX-512's 32 registers, 4 with 16.
template <int W, int U, typename Sigmoid, typename Arg>
RAMFLOW_INLINE void x_sigmoid_impl(const float* x, float* a, int64_t n) {
  int64_t k = 0;
  for (; k + U * W <= n; k += U * W) {
    typename Vec<W>::f v[U], s[U];
    for (int u = 0; u < U; ++u) v[u] = load<W>(x + k + u * W);
    for (int u = 0; u < U; ++u) s[u] = Sigmoid::apply(Arg::of(v[u]));
    for (int u = 0; u < U; ++u) store<W>(a + k + u * W, v[u] * s[u]);
  }
  for (; k + W <= n; k += W) {
    const auto v = load<W>(x + k);
    store<W>(a + k, v * Sigmoid::apply(Arg::of(v)));
  }
  for (; k < n; ++k) a[k] = x[k] / (1.0f + std::exp(-Arg::of(x[k])));
}

// dx = dh gelu'(x):  d/dx [x s] = s + x s (1 - s) 2 u',  s = sigmoid(2 u),  2 u' = 2 k (1 + 3 c
// x^2), with 1 - s = e s, e = exp(-2 u) (1 - s from s itself would lose the digits that x 2 u'
// amplifies where x is large).
template <int W, typename Sigmoid>
RAMFLOW_INLINE typename Vec<W>::f gelu_tanh_grad(typename Vec<W>::f v, typename Vec<W>::f g) {
  using V = typename Vec<W>::f;
  const V e = Sigmoid::exp(-GeluTanhArg::of(v));
  const V s = Sigmoid::recip(1.0f + e);
  const V du2 = kGeluK2 * (1.0f + 3.0f * kGeluC * v * v);
  return g * (s + v * s * (e * s) * du2);
}

template <int W, int U, typename Sigmoid>
RAMFLOW_INLINE void gelu_tanh_backward_impl(const float* dh, const float* x, float* dx, int64_t n) {
  using V = typename Vec<W>::f;
  int64_t k = 0;
  for (; k + U * W <= n; k += U * W) {
    V v[U], g[U];
    for (int u = 0; u < U; ++u) v[u] = load<W>(x + k + u * W), g[u] = load<W>(dh + k + u * W);
    for (int u = 0; u < U; ++u) store<W>(dx + k + u * W, gelu_tanh_grad<W, Sigmoid>(v[u], g[u]));
  }
  for (; k + W <= n; k += W)
    store<W>(dx + k, gelu_tanh_grad<W, Sigmoid>(load<W>(x + k), load<W>(dh + k)));
  for (; k < n; ++k) {
    const float v = x[k];
    const float e = std::exp(std::min(88.0f, -GeluTanhArg::of(v)));
    const float s = 1.0f / (1.0f + e);
    dx[k] = dh[k] * (s + v * s * (e * s) * kGeluK2 * (1.0f + 3.0f * kGeluC * v * v));
  }
}

// One sample's projection x [n, heads, d] into out's [heads, ., d] layout (row i of head h at
// out + h head_stride + i d), each row of d times rsqrt(mean x^2 + eps) w (RMSNorm), or copied
// when w is null.
template <int W>
RAMFLOW_INLINE void heads_rms_norm_impl(const float* x, int64_t n, int64_t heads, int64_t d,
                                        const float* w, float eps, float* out,
                                        int64_t head_stride) {
  for (int64_t i = 0; i < n; ++i)
    for (int64_t h = 0; h < heads; ++h) {
      const float* row = x + (i * heads + h) * d;
      float* o = out + h * head_stride + i * d;
      if (!w) {
        std::memcpy(o, row, static_cast<size_t>(d) * sizeof(float));
        continue;
      }
      const float r = 1.0f / std::sqrt(dot<W>(row, row, d) / static_cast<float>(d) + eps);
      int64_t j = 0;
      for (; j + W <= d; j += W) store<W>(o + j, load<W>(row + j) * r * load<W>(w + j));
      for (; j < d; ++j) o[j] = row[j] * r * w[j];
    }
}

// rows of D values: out = (x - mean) rsqrt(var + eps) (1 + scale) + shift (a LayerNorm without
// affine parameters, then adaLN's modulation), the mean and the variance over the row in two passes
// over it (held in the first-level cache).
template <int W>
RAMFLOW_INLINE void layer_norm_modulate_impl(const float* x, int64_t rows, int64_t D,
                                             const float* shift, const float* scale, float eps,
                                             float* out) {
  using V = typename Vec<W>::f;
  for (int64_t r = 0; r < rows; ++r) {
    const float* row = x + r * D;
    float* o = out + r * D;
    V acc = {};
    int64_t j = 0;
    for (; j + W <= D; j += W) acc += load<W>(row + j);
    float sum = lane_sum<W>(acc);
    for (; j < D; ++j) sum += row[j];
    const float mean = sum / static_cast<float>(D);
    acc = V{};
    for (j = 0; j + W <= D; j += W) {
      const V c = load<W>(row + j) - mean;
      acc += c * c;
    }
    float sq = lane_sum<W>(acc);
    for (; j < D; ++j) sq += (row[j] - mean) * (row[j] - mean);
    const float rstd = 1.0f / std::sqrt(sq / static_cast<float>(D) + eps);
    for (j = 0; j + W <= D; j += W)
      store<W>(o + j,
               (load<W>(row + j) - mean) * rstd * (1.0f + load<W>(scale + j)) + load<W>(shift + j));
    for (; j < D; ++j) o[j] = (row[j] - mean) * rstd * (1.0f + scale[j]) + shift[j];
  }
}

// AdamW on flat float buffers (see include/ramflow/adamw.h for the update).
template <int W>
RAMFLOW_INLINE void adamw_impl(float* p, float* m, float* v, const float* g, int64_t n,
                               const AdamWStep& s) {
  int64_t i = 0;
  for (; i + W <= n; i += W) {
    const auto gi = load<W>(g + i);
    const auto mi = s.beta1 * load<W>(m + i) + (1.0f - s.beta1) * gi;
    const auto vi = s.beta2 * load<W>(v + i) + (1.0f - s.beta2) * gi * gi;
    typename Vec<W>::f root;
    for (int k = 0; k < W; ++k) root[k] = __builtin_sqrtf(vi[k]);  // vectorised: no errno here
    store<W>(m + i, mi);
    store<W>(v + i, vi);
    store<W>(p + i, load<W>(p + i) * s.decay - s.step * mi / (root / s.sqrt_bias2 + s.eps));
  }
  for (; i < n; ++i) {
    m[i] = s.beta1 * m[i] + (1.0f - s.beta1) * g[i];
    v[i] = s.beta2 * v[i] + (1.0f - s.beta2) * g[i] * g[i];
    p[i] = p[i] * s.decay - s.step * m[i] / (std::sqrt(v[i]) / s.sqrt_bias2 + s.eps);
  }
}

// dz = dh silu'(z), U independent vectors per iteration as in x_sigmoid_impl.
template <int W, int U, typename Sigmoid>
RAMFLOW_INLINE void silu_backward_impl(const float* dh, const float* z, float* dz, int64_t n) {
  int64_t k = 0;
  for (; k + U * W <= n; k += U * W) {
    typename Vec<W>::f v[U], s[U];
    for (int u = 0; u < U; ++u) v[u] = load<W>(z + k + u * W);
    for (int u = 0; u < U; ++u) s[u] = Sigmoid::apply(v[u]);
    for (int u = 0; u < U; ++u)
      store<W>(dz + k + u * W, load<W>(dh + k + u * W) * s[u] * (1.0f + v[u] * (1.0f - s[u])));
  }
  for (; k + W <= n; k += W) {
    const auto v = load<W>(z + k);
    const auto s = Sigmoid::apply(v);
    store<W>(dz + k, load<W>(dh + k) * s * (1.0f + v * (1.0f - s)));
  }
  for (; k < n; ++k) {
    const float s = 1.0f / (1.0f + std::exp(-z[k]));
    dz[k] = dh[k] * s * (1.0f + z[k] * (1.0f - s));
  }
}

using DenseFn = void (*)(const float*, int64_t, int64_t, const float*, const float*, int64_t,
                         float*);
using DenseTnFn = void (*)(const float*, int64_t, int64_t, const float*, int64_t, float*);
using SiluFn = void (*)(const float*, float*, int64_t);
using SiluBackwardFn = void (*)(const float*, const float*, float*, int64_t);
using AdamWFn = void (*)(float*, float*, float*, const float*, int64_t, const AdamWStep&);
using GeluFn = SiluFn;
using LayerNormModulateFn = void (*)(const float*, int64_t, int64_t, const float*, const float*,
                                     float, float*);
using HeadsRmsNormFn = void (*)(const float*, int64_t, int64_t, int64_t, const float*, float,
                                float*, int64_t);
using GeluBackwardFn = SiluBackwardFn;

void dense_sse(const float* in, int64_t B, int64_t I, const float* wt, const float* bias, int64_t O,
               float* out) {
  dense_impl<4, 6, 2>(in, I, 1, B, I, wt, bias, O, out);
}
void dense_tn_sse(const float* a, int64_t K, int64_t R, const float* b, int64_t O, float* out) {
  dense_tn_impl<4, 6, 2>(a, K, R, b, O, out);
}
void silu_sse(const float* z, float* a, int64_t n) {
  x_sigmoid_impl<4, 4, SigmoidDivide<4>, SiluArg>(z, a, n);
}
void silu_backward_sse(const float* dh, const float* z, float* dz, int64_t n) {
  silu_backward_impl<4, 4, SigmoidDivide<4>>(dh, z, dz, n);
}
void gelu_tanh_sse(const float* x, float* a, int64_t n) {
  x_sigmoid_impl<4, 4, SigmoidDivide<4>, GeluTanhArg>(x, a, n);
}
void gelu_tanh_backward_sse(const float* dh, const float* x, float* dx, int64_t n) {
  gelu_tanh_backward_impl<4, 4, SigmoidDivide<4>>(dh, x, dx, n);
}
void heads_rms_norm_sse(const float* x, int64_t n, int64_t heads, int64_t d, const float* w,
                        float eps, float* out, int64_t head_stride) {
  heads_rms_norm_impl<4>(x, n, heads, d, w, eps, out, head_stride);
}
void layer_norm_modulate_sse(const float* x, int64_t rows, int64_t D, const float* shift,
                             const float* scale, float eps, float* out) {
  layer_norm_modulate_impl<4>(x, rows, D, shift, scale, eps, out);
}
void adamw_sse(float* p, float* m, float* v, const float* g, int64_t n, const AdamWStep& s) {
  adamw_impl<4>(p, m, v, g, n, s);
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define RAMFLOW_AVX512 __attribute__((target("avx512f,avx512vl,avx2,fma")))
#define RAMFLOW_AVX2 __attribute__((target("avx2,fma")))
// Inlines the whole call tree into the instruction-set function, so that a Sigmoid policy compiled
// for that instruction set (which cannot be force-inlined into the generic template on its own) is
// inlined.
#define RAMFLOW_FLATTEN __attribute__((flatten))
RAMFLOW_AVX512 void dense_avx512(const float* in, int64_t B, int64_t I, const float* wt,
                                 const float* bias, int64_t O, float* out) {
  // 14 x 32 tiles (28 accumulators and 2 weight vectors: all 32 registers, no spill) pay off over a
  // long inner dimension; over a short one (the first layer's 2D + 2F inputs) 8 x 32 tiles are
  // faster.
  if (I >= 64)
    dense_impl<16, 14, 2>(in, I, 1, B, I, wt, bias, O, out);
  else
    dense_impl<16, 8, 2>(in, I, 1, B, I, wt, bias, O, out);
}
RAMFLOW_AVX512 void dense_tn_avx512(const float* a, int64_t K, int64_t R, const float* b, int64_t O,
                                    float* out) {
  dense_tn_impl<16, 14, 2>(a, K, R, b, O, out);
}
// vexp<16> in fewer instructions, with bit-identical results: the clamps as min and max (one
// instruction each instead of a compare and a blend), and 2^n applied by scalef instead of building
// the float 2^n from integer bits and multiplying (a scaling by a power of two is exact, and both
// round a subnormal result alike). The sigmoid is throughput-bound, so every instruction counts. A
// NaN input gives a finite exp here (min and max return their second operand), but silu and its
// derivative multiply by the input and stay NaN. Vector-extension and intrinsic types are the same
// vectors, so they convert freely; the maskz forms of the intrinsics avoid a GCC false
// uninitialised warning.
RAMFLOW_AVX512 inline Vec<16>::f vexp_avx512(Vec<16>::f x) {
  const Vec<16>::f zero = {};
  x = _mm512_maskz_max_ps(0xFFFF, _mm512_maskz_min_ps(0xFFFF, x, zero + 88.0f), zero - 87.0f);
  Vec<16>::f n, p;
  exp_parts<16>(x, n, p);
  return _mm512_maskz_scalef_ps(0xFFFF, p, n);
}
// sigmoid with the hardware reciprocal estimate refined by one Newton step, r <- r (2 - d r)
// (relative error ~1e-8), instead of a division, the slowest instruction here.
struct SigmoidAVX512 {
  RAMFLOW_AVX512 static Vec<16>::f exp(Vec<16>::f v) { return vexp_avx512(v); }
  RAMFLOW_AVX512 static Vec<16>::f recip(Vec<16>::f d) {
    const Vec<16>::f r =
        _mm512_maskz_rcp14_ps(0xFFFF, d);  // (the maskz form: no GCC false warning)
    return r * (2.0f - d * r);
  }
  RAMFLOW_AVX512 static Vec<16>::f apply(Vec<16>::f v) { return recip(1.0f + exp(-v)); }
};
RAMFLOW_AVX512 RAMFLOW_FLATTEN void silu_avx512(const float* z, float* a, int64_t n) {
  x_sigmoid_impl<16, 8, SigmoidAVX512, SiluArg>(z, a, n);
}
RAMFLOW_AVX512 RAMFLOW_FLATTEN void silu_backward_avx512(const float* dh, const float* z, float* dz,
                                                         int64_t n) {
  silu_backward_impl<16, 8, SigmoidAVX512>(dh, z, dz, n);
}
RAMFLOW_AVX512 RAMFLOW_FLATTEN void gelu_tanh_avx512(const float* x, float* a, int64_t n) {
  x_sigmoid_impl<16, 8, SigmoidAVX512, GeluTanhArg>(x, a, n);
}
RAMFLOW_AVX512 RAMFLOW_FLATTEN void gelu_tanh_backward_avx512(const float* dh, const float* x,
                                                              float* dx, int64_t n) {
  gelu_tanh_backward_impl<16, 8, SigmoidAVX512>(dh, x, dx, n);
}
RAMFLOW_AVX512 void heads_rms_norm_avx512(const float* x, int64_t n, int64_t heads, int64_t d,
                                          const float* w, float eps, float* out,
                                          int64_t head_stride) {
  heads_rms_norm_impl<16>(x, n, heads, d, w, eps, out, head_stride);
}
RAMFLOW_AVX512 void layer_norm_modulate_avx512(const float* x, int64_t rows, int64_t D,
                                               const float* shift, const float* scale, float eps,
                                               float* out) {
  layer_norm_modulate_impl<16>(x, rows, D, shift, scale, eps, out);
}
RAMFLOW_AVX512 void adamw_avx512(float* p, float* m, float* v, const float* g, int64_t n,
                                 const AdamWStep& s) {
  adamw_impl<16>(p, m, v, g, n, s);
}
RAMFLOW_AVX2 void dense_avx2(const float* in, int64_t B, int64_t I, const float* wt,
                             const float* bias, int64_t O, float* out) {
  dense_impl<8, 6, 2>(in, I, 1, B, I, wt, bias, O, out);
}
RAMFLOW_AVX2 void dense_tn_avx2(const float* a, int64_t K, int64_t R, const float* b, int64_t O,
                                float* out) {
  dense_tn_impl<8, 6, 2>(a, K, R, b, O, out);
}
struct SigmoidAVX2 {
  RAMFLOW_AVX2 static Vec<8>::f exp(Vec<8>::f v) { return vexp<8>(v); }
  RAMFLOW_AVX2 static Vec<8>::f recip(Vec<8>::f d) {
    const Vec<8>::f r = _mm256_rcp_ps(d);  // 12-bit estimate; after one Newton step ~1e-7
    return r * (2.0f - d * r);
  }
  RAMFLOW_AVX2 static Vec<8>::f apply(Vec<8>::f v) { return recip(1.0f + exp(-v)); }
};
RAMFLOW_AVX2 RAMFLOW_FLATTEN void silu_avx2(const float* z, float* a, int64_t n) {
  x_sigmoid_impl<8, 4, SigmoidAVX2, SiluArg>(z, a, n);
}
RAMFLOW_AVX2 RAMFLOW_FLATTEN void silu_backward_avx2(const float* dh, const float* z, float* dz,
                                                     int64_t n) {
  silu_backward_impl<8, 4, SigmoidAVX2>(dh, z, dz, n);
}
RAMFLOW_AVX2 RAMFLOW_FLATTEN void gelu_tanh_avx2(const float* x, float* a, int64_t n) {
  x_sigmoid_impl<8, 4, SigmoidAVX2, GeluTanhArg>(x, a, n);
}
RAMFLOW_AVX2 RAMFLOW_FLATTEN void gelu_tanh_backward_avx2(const float* dh, const float* x,
                                                          float* dx, int64_t n) {
  gelu_tanh_backward_impl<8, 4, SigmoidAVX2>(dh, x, dx, n);
}
RAMFLOW_AVX2 void heads_rms_norm_avx2(const float* x, int64_t n, int64_t heads, int64_t d,
                                      const float* w, float eps, float* out, int64_t head_stride) {
  heads_rms_norm_impl<8>(x, n, heads, d, w, eps, out, head_stride);
}
RAMFLOW_AVX2 void layer_norm_modulate_avx2(const float* x, int64_t rows, int64_t D,
                                           const float* shift, const float* scale, float eps,
                                           float* out) {
  layer_norm_modulate_impl<8>(x, rows, D, shift, scale, eps, out);
}
RAMFLOW_AVX2 void adamw_avx2(float* p, float* m, float* v, const float* g, int64_t n,
                             const AdamWStep& s) {
  adamw_impl<8>(p, m, v, g, n, s);
}
#endif

struct Dispatch {
  DenseFn dense = dense_sse;
  DenseTnFn dense_tn = dense_tn_sse;
  SiluFn silu = silu_sse;
  SiluBackwardFn silu_backward = silu_backward_sse;
  AdamWFn adamw = adamw_sse;
  GeluFn gelu_tanh = gelu_tanh_sse;
  GeluBackwardFn gelu_tanh_backward = gelu_tanh_backward_sse;
  HeadsRmsNormFn heads_rms_norm = heads_rms_norm_sse;
  LayerNormModulateFn layer_norm_modulate = layer_norm_modulate_sse;
  const char* isa = "baseline";
  Dispatch() {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    // RAMFLOW_ISA=avx2 or =baseline caps the choice (to test every path on one machine).
    const char* cap = std::getenv("RAMFLOW_ISA");
    const std::string limit = cap ? cap : "";
    __builtin_cpu_init();
    if (limit != "avx2" && limit != "baseline" && __builtin_cpu_supports("avx512f") &&
        __builtin_cpu_supports("avx512vl")) {
      dense = dense_avx512, dense_tn = dense_tn_avx512, silu = silu_avx512,
      silu_backward = silu_backward_avx512, adamw = adamw_avx512;
      gelu_tanh = gelu_tanh_avx512, gelu_tanh_backward = gelu_tanh_backward_avx512;
      heads_rms_norm = heads_rms_norm_avx512, layer_norm_modulate = layer_norm_modulate_avx512;
      isa = "avx512";
    } else if (limit != "baseline" && __builtin_cpu_supports("avx2") &&
               __builtin_cpu_supports("fma")) {
      dense = dense_avx2, dense_tn = dense_tn_avx2, silu = silu_avx2,
      silu_backward = silu_backward_avx2, adamw = adamw_avx2;
      gelu_tanh = gelu_tanh_avx2, gelu_tanh_backward = gelu_tanh_backward_avx2;
      heads_rms_norm = heads_rms_norm_avx2, layer_norm_modulate = layer_norm_modulate_avx2;
      isa = "avx2";
    }
#endif
  }
};

const Dispatch& dispatch() {
  static const Dispatch d;
  return d;
}

}  // namespace

void dense(const float* in, int64_t B, int64_t I, const float* wt, const float* bias, int64_t O,
           float* out) {
  dispatch().dense(in, B, I, wt, bias, O, out);
}

void dense_tn(const float* a, int64_t K, int64_t R, const float* b, int64_t O, float* out) {
  dispatch().dense_tn(a, K, R, b, O, out);
}

void silu(const float* z, float* a, int64_t n) { dispatch().silu(z, a, n); }

void silu_backward(const float* dh, const float* z, float* dz, int64_t n) {
  dispatch().silu_backward(dh, z, dz, n);
}

void gelu_tanh(const float* x, float* a, int64_t n) { dispatch().gelu_tanh(x, a, n); }

void gelu_tanh_backward(const float* dh, const float* x, float* dx, int64_t n) {
  dispatch().gelu_tanh_backward(dh, x, dx, n);
}

void heads_rms_norm(const float* x, int64_t n, int64_t heads, int64_t d, const float* w, float eps,
                    float* out, int64_t head_stride) {
  dispatch().heads_rms_norm(x, n, heads, d, w, eps, out, head_stride);
}

void layer_norm_modulate(const float* x, int64_t rows, int64_t D, const float* shift,
                         const float* scale, float eps, float* out) {
  dispatch().layer_norm_modulate(x, rows, D, shift, scale, eps, out);
}

void adamw(float* p, float* m, float* v, const float* g, int64_t n, const AdamWStep& step) {
  dispatch().adamw(p, m, v, g, n, step);
}

double sum_of_squares(const float* g, int64_t n) {
  double part[8] = {0, 0, 0, 0, 0, 0, 0, 0};  // independent partial sums: a vectorisable loop
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int k = 0; k < 8; ++k) part[k] += static_cast<double>(g[i + k]) * g[i + k];
  for (; i < n; ++i) part[0] += static_cast<double>(g[i]) * g[i];
  double sum = 0;
  for (double p : part) sum += p;
  return sum;
}

// Blocked, so that both the reads and the writes stay within a few cache lines per block.
void transpose(const float* a, int64_t R, int64_t C, float* out) {
  constexpr int64_t T = 16;
  for (int64_t r0 = 0; r0 < R; r0 += T)
    for (int64_t c0 = 0; c0 < C; c0 += T)
      for (int64_t r = r0; r < std::min(R, r0 + T); ++r)
        for (int64_t c = c0; c < std::min(C, c0 + T); ++c) out[c * R + r] = a[r * C + c];
}

void column_sum(const float* g, int64_t B, int64_t O, float* out) {
  std::fill(out, out + O, 0.0f);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t o = 0; o < O; ++o) out[o] += g[b * O + o];
}

const char* isa() { return dispatch().isa; }

}  // namespace ramflow::kernels
