// The time loop on CPU: per step the GEMM (step_gemm.h) and one fused elementwise pass over the rows
// (elementwise.h); with several threads each thread its own rows through all the steps (threading.h) — except
// under mixed precision (a weight in the GEMMs' own dtype), whose per-step product is a whole-batch cast, GEMM and
// widening (step_gemm.h: mixed_product), split over threads by the GEMM itself.
#pragma once

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include "elementwise.h"
#include "recurrence.h"
#include "step_gemm.h"
#include "threading.h"

namespace rrn {

inline void cpu_forward(ForwardState& f, bool onednn_allowed) {
  const Step& k = f.k;
  const int64_t T = f.T, B = k.B, H = k.H, kH = k.kH;
  const bool masked = f.masked(), gated = k.spec.gated, need_grad = f.need_grad;
  const at::Tensor mask_bool = masked ? f.mask.to(at::kBool).contiguous() : at::Tensor();
  const StepProduct product(f.weight, B, onednn_allowed);
  const bool by_rows = split_by_rows(B, product) && !f.norm.on() && !product.mixed(f.states);
  const auto wt = f.weight.t();
  auto& states = f.states;
  auto& acts = f.acts;
  auto& gates = f.gates;
  const bool low_xp = f.xp.scalar_type() == at::kBFloat16 && states.scalar_type() != at::kBFloat16;  // mixed
  AT_DISPATCH_FLOATING_TYPES(states.scalar_type(), "rrn_fast_cells_forward", [&] {
    if (by_rows) {  // each thread its own rows through all the steps (see threading.h)
      const scalar_t* p = f.pre.data_ptr<scalar_t>();
      const scalar_t* x = f.xp.data_ptr<scalar_t>();
      scalar_t* s = states.data_ptr<scalar_t>();
      scalar_t* a = acts.data_ptr<scalar_t>();
      scalar_t* g = gated ? gates.data_ptr<scalar_t>() : nullptr;
      const bool* m = masked ? mask_bool.data_ptr<bool>() : nullptr;
      const int64_t kept = need_grad ? B * H : 0;  // acts and gates: every step's, or one step's scratch
      for_each_thread_rows(B, [&](int64_t begin, int64_t end) {
        auto rows = f.pre.narrow(0, begin, end - begin);
        for (int64_t t = 0; t < T; ++t) {
          at::mm_out(rows, states.select(0, t).narrow(0, begin, end - begin), wt);
          forward_rows<scalar_t>(k, begin, end, p, x + t * B * kH, s + t * B * H, s + (t + 1) * B * H,
                                 a + t * kept, g == nullptr ? nullptr : g + t * kept,
                                 m == nullptr ? nullptr : m + t * B);
        }
      });
      return;
    }
    for (int64_t t = 0; t < T; ++t) {
      f.pre = product(states[t], f.pre_buffer);
      f.step_norm(t);
      const scalar_t* p = f.pre.data_ptr<scalar_t>();
      const scalar_t* s = states[t].data_ptr<scalar_t>();
      scalar_t* next = states[t + 1].data_ptr<scalar_t>();
      scalar_t* a = (need_grad ? acts[t] : acts).data_ptr<scalar_t>();
      scalar_t* g = gated ? (need_grad ? gates[t] : gates).data_ptr<scalar_t>() : nullptr;
      const bool* m = masked ? mask_bool[t].data_ptr<bool>() : nullptr;
      if (low_xp) {
        const at::BFloat16* x = f.xp[t].data_ptr<at::BFloat16>();
        at::parallel_for(0, B, grain(H), [&](int64_t begin, int64_t end) {
          forward_rows<scalar_t, at::BFloat16>(k, begin, end, p, x, s, next, a, g, m);
        });
      } else {
        const scalar_t* x = f.xp[t].data_ptr<scalar_t>();
        at::parallel_for(0, B, grain(H), [&](int64_t begin, int64_t end) {
          forward_rows<scalar_t>(k, begin, end, p, x, s, next, a, g, m);
        });
      }
    }
  });
}

inline void cpu_backward(BackwardState& b, bool onednn_allowed) {
  const Step& k = b.k;
  const int64_t T = b.T, B = k.B, H = k.H, R = k.R;
  const bool masked = b.masked(), gated = k.spec.gated;
  const at::Tensor mask_bool = masked ? b.mask.to(at::kBool).contiguous() : at::Tensor();
  const StepProduct product(b.weight.t(), B, onednn_allowed);  // dz W
  auto product_buffer = at::empty({B, H}, b.grad.options());
  const bool by_rows = split_by_rows(B, product) && !b.normed && !product.mixed(b.grad);
  const auto& grad = b.grad;
  const auto& states = b.states;
  const auto& acts = b.acts;
  const auto& gates = b.gates;
  auto& dpre_all = b.dpre_all;
  const bool low_dpre = dpre_all.scalar_type() == at::kBFloat16 && grad.scalar_type() != at::kBFloat16;
  AT_DISPATCH_FLOATING_TYPES(grad.scalar_type(), "rrn_fast_cells_backward", [&] {
    if (by_rows) {  // each thread its own rows back through all the steps (see threading.h)
      const scalar_t* gr = grad.data_ptr<scalar_t>();
      const scalar_t* c = b.carry.data_ptr<scalar_t>();
      const scalar_t* s = states.data_ptr<scalar_t>();
      const scalar_t* a = acts.data_ptr<scalar_t>();
      const scalar_t* g = gated ? gates.data_ptr<scalar_t>() : nullptr;
      const bool* m = masked ? mask_bool.data_ptr<bool>() : nullptr;
      scalar_t* d = dpre_all.data_ptr<scalar_t>();
      scalar_t* pass = b.passed.data_ptr<scalar_t>();
      for_each_thread_rows(B, [&](int64_t begin, int64_t end) {
        auto carry_rows = b.carry.narrow(0, begin, end - begin);
        const auto passed_rows = b.passed.narrow(0, begin, end - begin);
        for (int64_t t = T - 1; t >= 0; --t) {
          backward_rows<scalar_t>(k, begin, end, gr + t * B * H, c, s + (t + 1) * B * H, a + t * B * H,
                                  g == nullptr ? nullptr : g + t * B * H, m == nullptr ? nullptr : m + t * B,
                                  d + t * B * R, pass);
          at::addmm_out(carry_rows, passed_rows, dpre_all.select(0, t).narrow(0, begin, end - begin), b.weight);
        }
      });
      return;
    }
    for (int64_t t = T - 1; t >= 0; --t) {
      const scalar_t* gr = grad[t].data_ptr<scalar_t>();
      const scalar_t* c = b.carry.data_ptr<scalar_t>();
      const scalar_t* next = states[t + 1].data_ptr<scalar_t>();
      const scalar_t* a = acts[t].data_ptr<scalar_t>();
      const scalar_t* g = gated ? gates[t].data_ptr<scalar_t>() : nullptr;
      const bool* m = masked ? mask_bool[t].data_ptr<bool>() : nullptr;
      scalar_t* pass = b.passed.data_ptr<scalar_t>();
      if (low_dpre) {  // mixed precision: dL/dP stored in bfloat16, what its GEMMs read (recurrence.h)
        at::BFloat16* d = dpre_all[t].data_ptr<at::BFloat16>();
        at::parallel_for(0, B, grain(H), [&](int64_t begin, int64_t end) {
          backward_rows<scalar_t, at::BFloat16>(k, begin, end, gr, c, next, a, g, m, d, pass);
        });
      } else {
        scalar_t* d = dpre_all[t].data_ptr<scalar_t>();
        at::parallel_for(0, B, grain(H), [&](int64_t begin, int64_t end) {
          backward_rows<scalar_t>(k, begin, end, gr, c, next, a, g, m, d, pass);
        });
      }
      b.carry = product(b.through_norm(dpre_all[t], t), product_buffer, b.passed);
    }
  });
}

}  // namespace rrn
