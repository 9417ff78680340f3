#pragma once
// CPU kernels (internal; no torch types) for the places where LibTorch's per-operator cost
// dominates: small dense layers (batches of tens of rows through 128-wide layers, as in the
// rollouts of a RAM step) and the optimiser update over a flat parameter buffer. The best of
// AVX-512, AVX2+FMA and the baseline vector unit is chosen once at run time.
#include <cstdint>

namespace ramflow::kernels {

/// out[B, O] = in[B, I] · wt[I, O] + bias[O].  Row-major, contiguous; `wt` is the transposed weight
/// (the Linear weight W is [O, I]); `bias` may be null (zero).  `out` must not alias `in`.
void dense(const float* in, int64_t B, int64_t I, const float* wt, const float* bias, int64_t O,
           float* out);

/// out[R, O] = a[K, R]^T · b[K, O]  (e.g. a weight gradient h^T g), without materialising a^T.
void dense_tn(const float* a, int64_t K, int64_t R, const float* b, int64_t O, float* out);

/// out[C, R] = a[R, C]^T.
void transpose(const float* a, int64_t R, int64_t C, float* out);

/// out[O] = sum over the B rows of g[B, O].
void column_sum(const float* g, int64_t B, int64_t O, float* out);

/// a = silu(z) = z · sigmoid(z) = z / (1 + exp(-z)), elementwise over n values; `a` may alias `z`.
/// exp uses a degree-6 polynomial after range reduction (relative error < 2e-7).
void silu(const float* z, float* a, int64_t n);

/// dz = dh · silu'(z),  silu'(z) = s (1 + z (1 - s)),  s = sigmoid(z);  elementwise over n values.
void silu_backward(const float* dh, const float* z, float* dz, int64_t n);

/// a = gelu_tanh(x) = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), computed as x sigmoid(2 u)
/// with u the tanh's argument (the same function, without 1 + tanh u's cancellation), elementwise
/// over n values; `a` may alias `x`. Relative error < 1e-6 (1 + |2 u|) (float32's rounding of 2 u
/// carried through exp(-2 u)).
void gelu_tanh(const float* x, float* a, int64_t n);

/// dx = dh · gelu_tanh'(x), gelu_tanh' = s + x s (1 - s) 2 u',  s = sigmoid(2 u);  elementwise.
void gelu_tanh_backward(const float* dh, const float* x, float* dx, int64_t n);

/// One sample's attention projection x [n, heads, d] (row-major) rearranged into the [heads, T, d]
/// layout of scaled dot-product attention: row i of head h goes to out + h head_stride + i d
/// (head_stride = T d; out may point at a token offset within T), each row of d values multiplied
/// by rsqrt(mean of its squares + eps) w (RMSNorm, SD3.5's qk-norm), or copied when w is null.
void heads_rms_norm(const float* x, int64_t n, int64_t heads, int64_t d, const float* w, float eps,
                    float* out, int64_t head_stride);

/// out[r] = (x[r] - mean) rsqrt(var + eps) (1 + scale) + shift for each of `rows` rows of D values
/// (mean and biased variance over the row): a LayerNorm without affine parameters followed by
/// adaLN's modulation with one sample's scale and shift [D]. `out` must not alias `x`.
void layer_norm_modulate(const float* x, int64_t rows, int64_t D, const float* shift,
                         const float* scale, float eps, float* out);

/// One AdamW update's constants (see include/ramflow/adamw.h):
///   m <- b1 m + (1 - b1) g,  v <- b2 v + (1 - b2) g^2,  p <- p decay - step m / (sqrt(v) /
///   sqrt_bias2 + eps)
struct AdamWStep {
  float beta1, beta2, decay, step, sqrt_bias2, eps;
};
void adamw(float* p, float* m, float* v, const float* g, int64_t n, const AdamWStep& step);

/// sum of g[i]^2, accumulated in double.
double sum_of_squares(const float* g, int64_t n);

/// The instruction set the kernels dispatch to: "avx512", "avx2" or "baseline", the best the
/// processor has, capped by the environment variable RAMFLOW_ISA (avx2 or baseline) if set.
const char* isa();

}  // namespace ramflow::kernels
