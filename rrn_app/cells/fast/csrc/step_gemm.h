// The per-step GEMM: x W^T for every step of a call with one weight W.
//
// Default: at::mm_out (MKL on CPU). Float32 on CPU with both sides of the weight >= 256, and bfloat16 (mixed
// precision) of any size: oneDNN's matmul (torch's mkldnn::_linear_pointwise) with the weight reordered into oneDNN's blocked layout
// once per call of the op — what torch.nn.LSTM's CPU kernel (oneDNN's RNN) gets; below 256 it is no faster
// (rrn-bench, docs/speed.md).
// Reached through the dispatcher, so a torch built without oneDNN keeps at::mm_out. RRN_ONEDNN=0 (read in
// backends.py, passed in as `allowed`) turns it off.
#pragma once

#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/core/stack.h>

#include <algorithm>
#include <optional>
#include <string>

namespace rrn {

struct OneDnnOps {
  std::optional<c10::OperatorHandle> linear = c10::Dispatcher::singleton().findOp({"mkldnn::_linear_pointwise", ""});
  std::optional<c10::OperatorHandle> reorder =
      c10::Dispatcher::singleton().findOp({"mkldnn::_reorder_linear_weight", ""});
};

inline const OneDnnOps& onednn_ops() {
  static const OneDnnOps ops;
  return ops;
}

// Whether oneDNN multiplies by this weight: `allowed` (RRN_ONEDNN), oneDNN present, a CPU weight, float32 with both
// sides >= 256, or bfloat16 (mixed precision) of any size: ATen's bfloat16 mm is oneDNN's matmul too, but sets it
// up afresh every call (measured: the packed weight's product takes 0.85-0.95 of its time from H=128 to 512)
inline bool use_onednn(const at::Tensor& weight, bool allowed) {
  const auto& ops = onednn_ops();
  const auto dtype = weight.scalar_type();
  if (!allowed || !ops.linear.has_value() || !ops.reorder.has_value() || !weight.device().is_cpu() ||
      weight.dim() != 2)
    return false;
  return dtype == at::kBFloat16 || (dtype == at::kFloat && std::min(weight.size(0), weight.size(1)) >= 256);
}

// (addend +) x W^T where x is in the states' dtype and W in the GEMMs' dtype. Mixed precision (a weight in another
// dtype than `out`, rrn_app/cells/fast/precision.py): x is rounded to W's dtype, the product comes back in it and is
// widened into `out`, so the loop around it stays in the states' dtype.
inline at::Tensor mixed_product(const at::Tensor& x, const at::Tensor& weight_t, at::Tensor& out,
                                const at::Tensor& addend) {
  const auto product = at::mm(x.to(weight_t.scalar_type()), weight_t);
  out.copy_(product);
  return addend.defined() ? out.add_(addend) : out;
}

class StepProduct {
 public:
  StepProduct(const at::Tensor& weight, int64_t batch, bool onednn_allowed) : weight_t_(weight.t()) {
    if (!use_onednn(weight, onednn_allowed)) return;
    torch::jit::Stack stack{weight.contiguous(), c10::IValue(batch)};
    onednn_ops().reorder->callBoxed(&stack);
    packed_ = stack[0].toTensor();
  }
  // (addend +) x weight^T: into `out` (returned) with at::mm_out; a fresh tensor with oneDNN
  // (mixed precision: in `out`, widened from the weight's dtype)
  at::Tensor operator()(const at::Tensor& x, at::Tensor& out, const at::Tensor& addend = at::Tensor()) const {
    const bool mixed = weight_t_.scalar_type() != out.scalar_type();
    if (!onednn()) {
      if (mixed) return mixed_product(x, weight_t_, out, addend);
      return addend.defined() ? at::addmm_out(out, addend, x, weight_t_) : at::mm_out(out, x, weight_t_);
    }
    torch::jit::Stack stack{mixed ? x.to(weight_t_.scalar_type()) : x, packed_, c10::IValue(),
                            c10::IValue(std::string("none")), c10::IValue(c10::List<std::optional<at::Scalar>>()),
                            c10::IValue(std::string(""))};
    onednn_ops().linear->callBoxed(&stack);
    auto result = stack[0].toTensor();
    if (mixed) result = out.copy_(result);
    return addend.defined() ? result.add_(addend) : result;
  }
  bool onednn() const { return packed_.defined(); }
  // the weight in another dtype than the states (mixed precision): each product is rounded and widened
  bool mixed(const at::Tensor& states) const { return weight_t_.scalar_type() != states.scalar_type(); }

 private:
  at::Tensor weight_t_, packed_;
};

}  // namespace rrn
