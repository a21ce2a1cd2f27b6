// One call's tensors, forward and backward, shared by every loop (cpu_loop.h, device_loop.h): a new kernel (CUDA,
// ...) is a new loop over these, chosen in ops.cpp.
#pragma once

#include <ATen/ATen.h>

#include <vector>

#include "batch_norm.h"
#include "spec.h"

namespace rrn {

// The forward pass of one layer, one direction over T steps. Inputs: xp [T, B, kH] (W x_t + b), s0 [B, H],
// weight [R, H] = [U; (U_g;) (W_im)], mask [T, B, 1] bool (undefined: no padding); batch norm: gamma [kH] and in
// evaluation given_mean, given_std [T, kH]. Outputs: states [T+1, B, H] (s_0 first), a and g [T, B, H] when
// need_grad, else one step's scratch [B, H] (g undefined when not gated); with batch norm zhat [T, B, kH] (need_grad)
// and in training the batch's mean, var and inv = 1/std [T, kH].
struct ForwardState {
  Step k;
  int64_t T;
  bool need_grad;
  at::Tensor xp, weight, mask;
  at::Tensor states, acts, gates;
  at::Tensor pre_buffer, pre;  // P of the step: pre_buffer, or the step product's own tensor
  Norm norm;
  Running running;

  ForwardState(const Spec& spec, const at::Tensor& xp_, const at::Tensor& s0, const at::Tensor& weight_,
               const at::Tensor& mask_, bool need_grad_, const at::Tensor& gamma, const at::Tensor& given_mean,
               const at::Tensor& given_std)
      : k{xp_.size(1), s0.size(1), weight_.size(0), xp_.size(2), spec}, T(xp_.size(0)), need_grad(need_grad_),
        xp(xp_), weight(weight_), mask(mask_) {
    const int64_t B = k.B, H = k.H;
    const auto options = s0.options();
    states = at::empty({T + 1, B, H}, options);
    states[0].copy_(s0);
    acts = need_grad ? at::empty({T, B, H}, options) : at::empty({B, H}, options);
    if (spec.gated) gates = need_grad ? at::empty({T, B, H}, options) : at::empty({B, H}, options);
    pre_buffer = at::empty({B, k.R}, options);
    pre = pre_buffer;
    if (gamma.defined()) {
      norm.gamma = gamma;
      if (given_mean.defined()) {
        norm.given_mean = given_mean;
        norm.given_std = given_std;
      } else {
        norm.mean = at::empty({T, k.kH}, options);
        norm.var = at::empty({T, k.kH}, options);
        norm.inv = at::empty({T, k.kH}, options);
      }
      if (need_grad) norm.zhat = at::empty({T, B, k.kH}, options);
      running = Running(mask, T, B, options);
    }
  }
  bool masked() const { return mask.defined(); }
  // batch norm of step t's P (in `pre`), when on
  void step_norm(int64_t t) {
    if (!norm.on()) return;
    norm.weights = running.weights(t);
    norm.count = running.counts[t];
    normalize(norm, pre, k.kH, t);
  }
  std::vector<at::Tensor> results() const { return {states, acts, gates, norm.zhat, norm.mean, norm.var, norm.inv}; }
};

// Back-propagation through time. Inputs: grad = dL/d states[1:] [T, B, H], and what the forward pass kept (states,
// acts, gates, weight, mask; batch norm: gamma, zhat [T, B, kH], inv [T, kH], norm_training: the batch's
// statistics or the running estimates). The loop fills dpre_all = dL/dP [T, B, R] and carry = dL/ds_0;
// results() adds dL/dW and dL/dgamma, one GEMM / one reduction over all steps.
struct BackwardState {
  Step k;
  int64_t T;
  at::Tensor grad, states, acts, gates, weight, mask;
  bool normed, norm_training;
  at::Tensor gamma, zhat, inv, dz_all;  // dz_all: dL/dP behind batch norm's backward, what W's gradient reads
  Running running;
  at::Tensor dpre_all, carry, passed;  // carry: dL/ds_t through step t+1

  // low_dpre: keep dL/dP in the GEMMs' dtype (mixed precision on the CPU loop, without batch norm, whose backward
  // pass reads it: the per-step product, dL/dW and dL/dxp all take it in that dtype)
  BackwardState(const Spec& spec, const at::Tensor& grad_, const at::Tensor& states_, const at::Tensor& acts_,
                const at::Tensor& gates_, const at::Tensor& weight_, const at::Tensor& mask_, const at::Tensor& gamma_,
                const at::Tensor& zhat_, const at::Tensor& inv_, bool norm_training_, bool low_dpre = false)
      : k{grad_.size(1), grad_.size(2), weight_.size(0), weight_.size(0) - (spec.linear ? grad_.size(2) : 0), spec},
        T(grad_.size(0)), grad(grad_), states(states_), acts(acts_), gates(gates_), weight(weight_), mask(mask_),
        normed(gamma_.defined()), norm_training(norm_training_) {
    const auto options = grad.options();
    if (normed) {
      gamma = gamma_;
      zhat = zhat_;
      inv = inv_;
      dz_all = at::empty({T, k.B, k.R}, options);
      running = Running(mask, T, k.B, options);
    }
    dpre_all = at::empty({T, k.B, k.R}, low_dpre && !normed ? options.dtype(weight_.scalar_type()) : options);
    carry = at::zeros({k.B, k.H}, options);
    passed = at::empty({k.B, k.H}, options);
  }
  bool masked() const { return mask.defined(); }
  // dz for step t: dL/dP_t behind batch norm (written into dz_all[t]); without batch norm dpre itself
  at::Tensor through_norm(const at::Tensor& dpre, int64_t t) {
    if (!normed) return dpre;
    auto dz = dz_all[t];
    normalize_backward(dpre, dz, gamma, zhat[t], inv[t], running.weights(t), running.counts[t], norm_training, k.kH);
    if (k.R > k.kH) dz.narrow(1, k.kH, k.R - k.kH).copy_(dpre.narrow(1, k.kH, k.R - k.kH));
    return dz;
  }
  // {dL/dxp [T, B, kH], dL/ds_0 [B, H], dL/dW [R, H], dL/dgamma [kH] (undefined without batch norm)}
  std::vector<at::Tensor> results() const {
    const auto& dz_source = normed ? dz_all : dpre_all;
    const auto gemm = weight.scalar_type();  // the GEMMs' dtype (mixed precision: not the states'), dL/dW's too
    auto dweight = at::mm(dz_source.view({T * k.B, k.R}).t().to(gemm),
                          states.narrow(0, 0, T).reshape({T * k.B, k.H}).to(gemm));
    at::Tensor dgamma;
    if (normed) dgamma = (dpre_all.narrow(2, 0, k.kH) * zhat).sum(at::IntArrayRef{0, 1});
    return {dpre_all.narrow(2, 0, k.kH), carry, dweight, dgamma};
  }
};

}  // namespace rrn
