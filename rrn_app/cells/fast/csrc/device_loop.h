// The time loop on any device (CUDA, ...), of ATen ops: one GEMM and a few elementwise kernels per step.
// RRN_FAST_CELLS_DEVICE_LOOP=1 runs it on CPU too: how the tests check, without a GPU, the algorithm a GPU runs.
#pragma once

#include <ATen/ATen.h>

#include "recurrence.h"
#include "step_gemm.h"

namespace rrn {

inline void activate(at::Tensor out, const at::Tensor& in, int64_t activation) {
  if (activation == TANH) at::tanh_out(out, in);
  else at::clamp_min_out(out, in, 0);
}

inline void activate_backward(at::Tensor out, const at::Tensor& grad, const at::Tensor& value, int64_t activation) {
  if (activation == TANH) at::tanh_backward_out(out, grad, value);
  else at::threshold_backward_out(out, grad, value, 0);  // value = relu(z) > 0 exactly where z > 0
}

inline void device_forward(ForwardState& f) {
  const Step& k = f.k;
  const Spec& spec = k.spec;
  const int64_t H = k.H, kH = k.kH;
  const bool masked = f.masked();
  const auto wt = f.weight.t();
  auto& pre = f.pre;
  const bool mixed = wt.scalar_type() != f.states.scalar_type();  // mixed precision: see step_gemm.h
  auto fresh = at::empty({k.B, H}, f.states.options());
  for (int64_t t = 0; t < f.T; ++t) {
    const auto s = f.states[t];
    if (mixed) {
      mixed_product(s, wt, pre, at::Tensor());
      f.step_norm(t);
      pre.narrow(1, 0, kH).add_(f.xp[t]);
    } else if (spec.linear || f.norm.on()) {
      at::mm_out(pre, s, wt);
      f.step_norm(t);
      pre.narrow(1, 0, kH).add_(f.xp[t]);
    } else {
      at::addmm_out(pre, f.xp[t], s, wt);
    }
    auto a = f.need_grad ? f.acts[t] : f.acts;
    activate(a, pre.narrow(1, 0, H), spec.activation);
    const auto base = spec.linear ? pre.narrow(1, kH, H) : s;
    auto target = masked ? fresh : f.states[t + 1];
    if (spec.gated) {
      auto g = f.need_grad ? f.gates[t] : f.gates;
      at::sigmoid_out(g, pre.narrow(1, H, H));
      at::addcmul_out(target, base, a, g);
    } else {
      at::add_out(target, base, a);
    }
    if (spec.output_activation == TANH) target.tanh_();
    if (masked) {
      auto next = f.states[t + 1];
      at::where_out(next, f.mask[t], fresh, s);
    }
  }
}

inline void device_backward(BackwardState& b) {
  const Step& k = b.k;
  const Spec& spec = k.spec;
  const int64_t H = k.H, kH = k.kH;
  const bool masked = b.masked();
  const auto options = b.grad.options();
  at::Tensor keep, drop;
  if (masked) {
    keep = b.mask.to(b.grad.scalar_type());
    drop = 1 - keep;
  }
  auto& carry = b.carry;
  auto& passed = b.passed;
  const bool mixed = b.weight.scalar_type() != options.dtype();  // mixed precision: see step_gemm.h
  auto total = at::empty({k.B, H}, options), dy = at::empty({k.B, H}, options), scratch = at::empty({k.B, H}, options);
  for (int64_t t = b.T - 1; t >= 0; --t) {
    at::add_out(total, b.grad[t], carry);  // dL/ds_t
    at::Tensor dfresh = total;             // dL/ds' (zero where the sequence has ended)
    if (masked) {
      at::mul_out(dy, total, keep[t]);
      dfresh = dy;
    }
    at::Tensor dsum = dfresh;  // dL/dy, y = base + a (* g)
    if (spec.output_activation == TANH) {
      at::tanh_backward_out(dy, dfresh, b.states[t + 1]);  // s' = tanh(y) = states[t + 1] where it counts
      dsum = dy;
    }
    auto dpre = b.dpre_all[t];
    if (spec.gated) {
      at::mul_out(scratch, dsum, b.gates[t]);
      activate_backward(dpre.narrow(1, 0, H), scratch, b.acts[t], spec.activation);
      at::mul_out(scratch, dsum, b.acts[t]);
      auto dgate = dpre.narrow(1, H, H);
      at::sigmoid_backward_out(dgate, scratch, b.gates[t]);
    } else {
      activate_backward(dpre.narrow(1, 0, H), dsum, b.acts[t], spec.activation);
    }
    if (spec.linear) dpre.narrow(1, kH, H).copy_(dsum);
    const auto dz = b.through_norm(dpre, t);
    // dL/ds_{t-1} = dpre W + (the identity shortcut: dsum) + (ended sequences: the state passed through)
    if (masked) {
      at::mul_out(passed, total, drop[t]);
      if (!spec.linear) passed.add_(dsum);
      if (mixed) mixed_product(dz, b.weight, carry, passed);
      else at::addmm_out(carry, passed, dz, b.weight);
    } else if (mixed) {
      mixed_product(dz, b.weight, carry, spec.linear ? at::Tensor() : dsum);
    } else if (!spec.linear) {
      at::addmm_out(carry, dsum, dz, b.weight);
    } else {
      at::mm_out(carry, dz, b.weight);
    }
  }
}

}  // namespace rrn
