// The fused elementwise pass of one step on CPU: everything of a step but its GEMM, row by row, vectorised.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "spec.h"

namespace rrn {

#if defined(__x86_64__) && defined(__GNUC__) && defined(__linux__)  // target_clones needs ifunc (glibc)
#define RRN_VECTOR_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define RRN_VECTOR_CLONES
#endif

// tanh of float: the rational approximation Eigen uses (a few ulp from the exact value; std::tanh is not
// vectorised by the compiler). double: std::tanh.
inline float fast_tanh(float value) {
  const float x = std::min(7.90531110763549805f, std::max(-7.90531110763549805f, value));
  const float x2 = x * x;
  float p = x2 * -2.76076847742355e-16f + 2.00018790482477e-13f;
  p = x2 * p + -8.60467152213735e-11f;
  p = x2 * p + 5.12229709037114e-08f;
  p = x2 * p + 1.48572235717979e-05f;
  p = x2 * p + 6.37261928875436e-04f;
  p = x2 * p + 4.89352455891786e-03f;
  float q = x2 * 1.19825839466702e-06f + 1.18534705686654e-04f;
  q = x2 * q + 2.26843463243900e-03f;
  q = x2 * q + 4.89352518554385e-03f;
  return std::fabs(value) < 0.0004f ? value : x * p / q;
}
inline double fast_tanh(double value) { return std::tanh(value); }

// Rows [begin, end) of step t: from P (pre [B, R]), xp [B, kH] and s_{t-1} (s [B, H]) to s_t (next [B, H]),
// keeping a (acts) and g (gates) [B, H]; mask [B] (nullptr: every sequence runs). xp may be in a narrower type X
// (mixed precision: autocast's bfloat16 projection, widened here rather than copied to float32 first)
template <typename T, typename X = T>
RRN_VECTOR_CLONES void forward_rows(const Step& k, int64_t begin, int64_t end, const T* __restrict__ pre,
                                    const X* __restrict__ xp, const T* __restrict__ s, T* __restrict__ next,
                                    T* __restrict__ acts, T* __restrict__ gates, const bool* mask) {
  const int64_t H = k.H;
  const Spec& spec = k.spec;
  for (int64_t b = begin; b < end; ++b) {
    const T* p = pre + b * k.R;
    const X* x = xp + b * k.kH;
    const T* sb = s + b * H;
    T* a = acts + b * H;
    T* out = next + b * H;
    if (spec.activation == TANH) {
      for (int64_t j = 0; j < H; ++j) a[j] = fast_tanh(p[j] + T(x[j]));
    } else {
      for (int64_t j = 0; j < H; ++j) a[j] = std::max(p[j] + T(x[j]), T(0));
    }
    const T* base = spec.linear ? p + k.kH : sb;
    if (spec.gated) {
      T* g = gates + b * H;
      for (int64_t j = 0; j < H; ++j) g[j] = T(0.5) + T(0.5) * fast_tanh(T(0.5) * (p[H + j] + T(x[H + j])));
      for (int64_t j = 0; j < H; ++j) out[j] = base[j] + a[j] * g[j];
    } else {
      for (int64_t j = 0; j < H; ++j) out[j] = base[j] + a[j];
    }
    if (spec.output_activation == TANH) {
      for (int64_t j = 0; j < H; ++j) out[j] = fast_tanh(out[j]);
    }
    if (mask != nullptr && !mask[b]) {
      for (int64_t j = 0; j < H; ++j) out[j] = sb[j];
    }
  }
}

// dL/dP_t (dpre [B, R]) from dL/ds_t (= grad_t + carry, [B, H] each), and `passed` [B, H]: what dL/ds_{t-1}
// gets besides dP_t W. dpre may be stored in a narrower type D (mixed precision: the bfloat16 the GEMMs that read
// it take), computed in T all the same
template <typename T, typename D = T>
RRN_VECTOR_CLONES void backward_rows(const Step& k, int64_t begin, int64_t end, const T* __restrict__ grad,
                                     const T* __restrict__ carry, const T* __restrict__ next,
                                     const T* __restrict__ acts, const T* __restrict__ gates, const bool* mask,
                                     D* __restrict__ dpre, T* __restrict__ passed) {
  const int64_t H = k.H;
  const Spec& spec = k.spec;
  for (int64_t b = begin; b < end; ++b) {
    const T* gr = grad + b * H;
    const T* c = carry + b * H;
    const T* s1 = next + b * H;
    const T* a = acts + b * H;
    D* d = dpre + b * k.R;
    T* pass = passed + b * H;
    const bool running = mask == nullptr || mask[b];
    if (!running) {  // the sequence has ended: the state passed through untouched, nothing reaches P
      for (int64_t j = 0; j < H; ++j) pass[j] = gr[j] + c[j];
      for (int64_t j = 0; j < k.R; ++j) d[j] = D(T(0));
      continue;
    }
    T* dsum = pass;  // dL/dy, kept in `passed` until it is turned into what passes on
    if (spec.output_activation == TANH) {
      for (int64_t j = 0; j < H; ++j) dsum[j] = (gr[j] + c[j]) * (T(1) - s1[j] * s1[j]);
    } else {
      for (int64_t j = 0; j < H; ++j) dsum[j] = gr[j] + c[j];
    }
    if (spec.gated) {
      const T* g = gates + b * H;
      if (spec.activation == TANH) {
        for (int64_t j = 0; j < H; ++j) d[j] = D(dsum[j] * g[j] * (T(1) - a[j] * a[j]));
      } else {
        for (int64_t j = 0; j < H; ++j) d[j] = D(a[j] > T(0) ? dsum[j] * g[j] : T(0));
      }
      for (int64_t j = 0; j < H; ++j) d[H + j] = D(dsum[j] * a[j] * g[j] * (T(1) - g[j]));
    } else if (spec.activation == TANH) {
      for (int64_t j = 0; j < H; ++j) d[j] = D(dsum[j] * (T(1) - a[j] * a[j]));
    } else {
      for (int64_t j = 0; j < H; ++j) d[j] = D(a[j] > T(0) ? dsum[j] : T(0));
    }
    if (spec.linear) {  // y = W_im s_{t-1} + ...: dL/dy goes to P_im; nothing passes directly
      for (int64_t j = 0; j < H; ++j) d[k.kH + j] = D(dsum[j]);
      for (int64_t j = 0; j < H; ++j) pass[j] = T(0);
    }  // else y = s_{t-1} + ...: dL/dy passes on as it is (already in `passed`)
  }
}

}  // namespace rrn
