// The ops of the rrn_fast_cells library (torch.ops.rrn_fast_cells.*): the time loop of res_rnn / gres_rnn, forward
// and back-propagation through time, for rrn_app/cells/fast (function.py calls them; loop.py is the same algorithm
// in Python and documents it). ATen calls only (no pybind11): it builds in seconds.
//
// Every op takes the spec first, as spec.py's RecurrenceSpec.codes: (activation, output_activation, gated,
// linear), then the switches backends.py read (RRN_ONEDNN, RRN_FAST_CELLS_DEVICE_LOOP). The loop: cpu_loop.h on
// CPU, device_loop.h elsewhere (or on CPU with device_loop); another kernel is one more header and one more branch.
#include <ATen/ATen.h>
#include <torch/library.h>

#include <optional>
#include <string>
#include <vector>

#include "cpu_loop.h"
#include "device_loop.h"
#include "recurrence.h"
#include "spec.h"
#include "step_gemm.h"
#include "threading.h"

namespace {

using rrn::Spec;

at::Tensor given(const std::optional<at::Tensor>& tensor) { return tensor.has_value() ? *tensor : at::Tensor(); }

bool cpu_kernels(const at::Tensor& tensor, bool device_loop) { return tensor.device().is_cpu() && !device_loop; }

// {states, acts, gates, zhat, mean, var, inv}: see ForwardState (recurrence.h)
std::vector<at::Tensor> forward(int64_t activation, int64_t output_activation, bool gated, bool linear, bool onednn,
                                bool device_loop, const at::Tensor& xp, const at::Tensor& s0, const at::Tensor& weight,
                                const std::optional<at::Tensor>& mask, bool need_grad,
                                const std::optional<at::Tensor>& gamma, const std::optional<at::Tensor>& given_mean,
                                const std::optional<at::Tensor>& given_std) {
  rrn::ForwardState f(Spec{activation, output_activation, gated, linear}, xp, s0, weight, given(mask), need_grad,
                      given(gamma), given(given_mean), given(given_std));
  if (cpu_kernels(xp, device_loop)) rrn::cpu_forward(f, onednn);
  else rrn::device_forward(f);
  return f.results();
}

// {dL/dxp, dL/ds_0, dL/dW, dL/dgamma}: see BackwardState (recurrence.h)
std::vector<at::Tensor> backward(int64_t activation, int64_t output_activation, bool gated, bool linear, bool onednn,
                                 bool device_loop, const at::Tensor& grad, const at::Tensor& states,
                                 const at::Tensor& acts, const std::optional<at::Tensor>& gates,
                                 const at::Tensor& weight, const std::optional<at::Tensor>& mask,
                                 const std::optional<at::Tensor>& gamma, const std::optional<at::Tensor>& zhat,
                                 const std::optional<at::Tensor>& inv, bool norm_training) {
  const bool low_dpre = cpu_kernels(grad, device_loop) && weight.scalar_type() == at::kBFloat16 &&
                        grad.scalar_type() != at::kBFloat16;  // mixed precision (recurrence.h)
  rrn::BackwardState b(Spec{activation, output_activation, gated, linear}, grad, states, acts, given(gates), weight,
                       given(mask), given(gamma), given(zhat), given(inv), norm_training, low_dpre);
  if (cpu_kernels(grad, device_loop)) rrn::cpu_backward(b, onednn);
  else rrn::device_backward(b);
  return b.results();
}

// What multiplies by this weight each step: "oneDNN" or "ATen" (MKL on CPU)
std::string step_gemm(const at::Tensor& weight, bool onednn) {
  return rrn::use_onednn(weight, onednn) ? "oneDNN" : "ATen";
}

bool parallel() { return rrn::parallel(); }

// spec.h's codes of identity, tanh, relu: spec.py's Activation must equal them
std::vector<int64_t> spec_codes() { return {rrn::IDENTITY, rrn::TANH, rrn::RELU}; }

}  // namespace

TORCH_LIBRARY(rrn_fast_cells, m) {
  m.def("forward(int activation, int output_activation, bool gated, bool linear, bool onednn, bool device_loop, "
        "Tensor xp, Tensor s0, Tensor weight, Tensor? mask, bool need_grad, Tensor? gamma, Tensor? given_mean, "
        "Tensor? given_std) -> Tensor[]");
  m.def("backward(int activation, int output_activation, bool gated, bool linear, bool onednn, bool device_loop, "
        "Tensor grad, Tensor states, Tensor acts, Tensor? gates, Tensor weight, Tensor? mask, Tensor? gamma, "
        "Tensor? zhat, Tensor? inv, bool norm_training) -> Tensor[]");
  m.def("step_gemm(Tensor weight, bool onednn) -> str");
  m.def("parallel() -> bool");
  m.def("spec_codes() -> int[]");
  m.impl("forward", c10::DispatchKey::CompositeExplicitAutograd, &forward);
  m.impl("backward", c10::DispatchKey::CompositeExplicitAutograd, &backward);
  m.impl("step_gemm", c10::DispatchKey::CompositeExplicitAutograd, &step_gemm);
  m.impl("parallel", c10::DispatchKey::CompositeExplicitAutograd, &parallel);
  m.impl("spec_codes", c10::DispatchKey::CompositeExplicitAutograd, &spec_codes);
}
