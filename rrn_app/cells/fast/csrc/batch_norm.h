// Recurrent batch norm (rrn_app/cells/batch_norm.py) inside the loop: the U s_{t-1} columns (the first kH) of P
// normalized in place each step, and its backward pass per step. Any device: ATen ops.
#pragma once

#include <ATen/ATen.h>

#include <optional>

namespace rrn {

constexpr double BATCH_NORM_EPS = 1e-5;  // spec.py's BATCH_NORM_EPS

// Which sequences batch norm's statistics count at each step: weights [T, B, 1] (1 while a sequence runs, else 0;
// undefined without padding) and their number per step, counts [T] (>= 1): made once per call, read per step.
struct Running {
  at::Tensor keep, counts;
  Running() = default;
  Running(const at::Tensor& mask, int64_t T, int64_t B, const at::TensorOptions& options) {
    if (mask.defined()) {
      keep = mask.to(options.dtype());
      counts = keep.sum(at::IntArrayRef{1, 2}).clamp_min(1);
    } else {
      counts = at::full({T}, static_cast<double>(B), options);
    }
  }
  at::Tensor weights(int64_t t) const { return keep.defined() ? keep[t] : at::Tensor(); }
};

// P_u <- gamma * zhat with zhat = (z - mean_t) / std_t; training: mean_t, var_t of the sequences still running
// (weights: [B, 1] 0/1, or undefined for all), recorded in mean/var/inv; evaluation: the given mean_t and std_t
// (running estimates).
struct Norm {
  at::Tensor gamma, weights, count;       // count: the number of running sequences (>= 1), a 0-d tensor
  at::Tensor given_mean, given_std;       // evaluation: [T, kH] each
  at::Tensor zhat, mean, var, inv;        // [T, B, kH] / [T, kH]: what training records
  bool on() const { return gamma.defined(); }
  bool training() const { return !given_mean.defined(); }
};

inline void normalize(Norm& n, const at::Tensor& pre, int64_t kH, int64_t t) {
  auto z = pre.narrow(1, 0, kH);
  at::Tensor zhat;
  if (n.training()) {
    auto mean = (n.weights.defined() ? (n.weights * z).sum(0) : z.sum(0)) / n.count;
    auto diff = z - mean;
    auto var = (n.weights.defined() ? (n.weights * diff * diff).sum(0) : (diff * diff).sum(0)) / n.count;
    auto std = at::sqrt(var + BATCH_NORM_EPS);
    zhat = diff / std;
    n.mean[t].copy_(mean);
    n.var[t].copy_(var);
    n.inv[t].copy_(1 / std);
  } else {
    zhat = (z - n.given_mean[t]) / n.given_std[t];
  }
  if (n.zhat.defined()) n.zhat[t].copy_(zhat);
  z.copy_(n.gamma * zhat);
}

// Step t backwards: dL/dz of the U s_{t-1} columns from dL/d(gamma zhat) in dpre [B, R], into dz [B, R]
inline void normalize_backward(const at::Tensor& dpre, at::Tensor dz, const at::Tensor& gamma, const at::Tensor& zhat,
                               const at::Tensor& inv, const at::Tensor& weights, const at::Tensor& count,
                               bool training, int64_t kH) {
  auto dzhat = dpre.narrow(1, 0, kH) * gamma;
  auto out = dz.narrow(1, 0, kH);
  if (!training) {
    at::mul_out(out, dzhat, inv);
    return;
  }
  auto sum1 = (weights.defined() ? weights * dzhat : dzhat).sum(0);
  auto sum2 = (weights.defined() ? weights * dzhat * zhat : dzhat * zhat).sum(0);
  auto value = (dzhat - sum1 / count - zhat * (sum2 / count)) * inv;
  if (weights.defined()) value = value * weights;
  out.copy_(value);
}

}  // namespace rrn
