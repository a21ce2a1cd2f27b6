// The time loop of res_rnn / gres_rnn (rrn_app/cells/fast.py), forward and back-propagation through time, in C++.
//
// ATen calls for the GEMMs (no pybind11, no CUDA code: it builds in seconds). On CPU the elementwise part of each
// step is one fused pass over the rows (below), the step's GEMM oneDNN's from hidden size 256 in float32
// (StepProduct), and with several threads each thread runs its own batch rows through all steps (split_by_rows);
// on other devices it is ATen ops. fast.py holds the same algorithm in Python (the fallback) and documents it.
//
//   P    = s_{t-1} W^T,  W = [U; (U_g;) (W_im)]               one GEMM per step
//   a    = act(P_c + xp_c)       g = sigmoid(P_g + xp_g)      (gated only)
//   s'   = f(base + a (* g))      base = P_im (projection=linear) or s_{t-1}
//   s_t  = s' where t < length, else s_{t-1}
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/ThreadLocalState.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/core/stack.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <optional>
#include <string>
#include <vector>

namespace {

constexpr int64_t TANH = 0;  // activation: 0 tanh, 1 relu; output_activation: 0 identity, 1 tanh

// --- the fused elementwise pass (CPU) ------------------------------------------------------------------------------

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

struct Step {  // one timestep's rows; every pointer is to a row-major [B, width] block
  int64_t B, H, R, kH;
  int64_t activation, output_activation;
  bool gated, linear;
};

template <typename T>
RRN_VECTOR_CLONES void forward_rows(const Step& k, int64_t begin, int64_t end, const T* __restrict__ pre,
                                    const T* __restrict__ xp, const T* __restrict__ s, T* __restrict__ next,
                                    T* __restrict__ acts, T* __restrict__ gates, const bool* mask) {
  const int64_t H = k.H;
  for (int64_t b = begin; b < end; ++b) {
    const T* p = pre + b * k.R;
    const T* x = xp + b * k.kH;
    const T* sb = s + b * H;
    T* a = acts + b * H;
    T* out = next + b * H;
    if (k.activation == TANH) {
      for (int64_t j = 0; j < H; ++j) a[j] = fast_tanh(p[j] + x[j]);
    } else {
      for (int64_t j = 0; j < H; ++j) a[j] = std::max(p[j] + x[j], T(0));
    }
    const T* base = k.linear ? p + k.kH : sb;
    if (k.gated) {
      T* g = gates + b * H;
      for (int64_t j = 0; j < H; ++j) g[j] = T(0.5) + T(0.5) * fast_tanh(T(0.5) * (p[H + j] + x[H + j]));
      for (int64_t j = 0; j < H; ++j) out[j] = base[j] + a[j] * g[j];
    } else {
      for (int64_t j = 0; j < H; ++j) out[j] = base[j] + a[j];
    }
    if (k.output_activation == 1) {
      for (int64_t j = 0; j < H; ++j) out[j] = fast_tanh(out[j]);
    }
    if (mask != nullptr && !mask[b]) {
      for (int64_t j = 0; j < H; ++j) out[j] = sb[j];
    }
  }
}

// dL/dP_t from dL/ds_t (= grad_t + carry), and `passed`: what dL/ds_{t-1} gets besides dP_t W
template <typename T>
RRN_VECTOR_CLONES void backward_rows(const Step& k, int64_t begin, int64_t end, const T* __restrict__ grad,
                                     const T* __restrict__ carry, const T* __restrict__ next,
                                     const T* __restrict__ acts, const T* __restrict__ gates, const bool* mask,
                                     T* __restrict__ dpre, T* __restrict__ passed) {
  const int64_t H = k.H;
  for (int64_t b = begin; b < end; ++b) {
    const T* gr = grad + b * H;
    const T* c = carry + b * H;
    const T* s1 = next + b * H;
    const T* a = acts + b * H;
    T* d = dpre + b * k.R;
    T* pass = passed + b * H;
    const bool running = mask == nullptr || mask[b];
    if (!running) {  // the sequence has ended: the state passed through untouched, nothing reaches P
      for (int64_t j = 0; j < H; ++j) pass[j] = gr[j] + c[j];
      for (int64_t j = 0; j < k.R; ++j) d[j] = T(0);
      continue;
    }
    T* dsum = pass;  // dL/dy, kept in `passed` until it is turned into what passes on
    if (k.output_activation == 1) {
      for (int64_t j = 0; j < H; ++j) dsum[j] = (gr[j] + c[j]) * (T(1) - s1[j] * s1[j]);
    } else {
      for (int64_t j = 0; j < H; ++j) dsum[j] = gr[j] + c[j];
    }
    if (k.gated) {
      const T* g = gates + b * H;
      if (k.activation == TANH) {
        for (int64_t j = 0; j < H; ++j) d[j] = dsum[j] * g[j] * (T(1) - a[j] * a[j]);
      } else {
        for (int64_t j = 0; j < H; ++j) d[j] = a[j] > T(0) ? dsum[j] * g[j] : T(0);
      }
      for (int64_t j = 0; j < H; ++j) d[H + j] = dsum[j] * a[j] * g[j] * (T(1) - g[j]);
    } else if (k.activation == TANH) {
      for (int64_t j = 0; j < H; ++j) d[j] = dsum[j] * (T(1) - a[j] * a[j]);
    } else {
      for (int64_t j = 0; j < H; ++j) d[j] = a[j] > T(0) ? dsum[j] : T(0);
    }
    if (k.linear) {  // y = W_im s_{t-1} + ...: dL/dy goes to P_im; nothing passes directly
      for (int64_t j = 0; j < H; ++j) d[k.kH + j] = dsum[j];
      for (int64_t j = 0; j < H; ++j) pass[j] = T(0);
    }  // else y = s_{t-1} + ...: dL/dy passes on as it is (already in `passed`)
  }
}

// rows per task: a step splits over threads only when it is large (each split is a fork and join per step)
int64_t grain(int64_t H) { return std::max<int64_t>(1, 131072 / std::max<int64_t>(H, 1)); }

// --- the per-step GEMM -----------------------------------------------------------------------------------------

// x weight^T for every step with one weight. Default: at::mm_out (MKL on CPU). Float32 on CPU with both sides of the
// weight >= 256: oneDNN's matmul (torch's mkldnn::_linear_pointwise) with the weight reordered into oneDNN's blocked
// layout once per call of the op — what torch.nn.LSTM's CPU kernel (oneDNN's RNN) gets. Measured at B=64, H=512:
// 1.3x MKL's GEMM with 2 threads, 1.2x with 1; at H=128 no faster. Reached through the dispatcher, so a torch
// built without oneDNN keeps at::mm_out. RRN_ONEDNN=0 turns it off.
struct OneDnnOps {
  std::optional<c10::OperatorHandle> linear = c10::Dispatcher::singleton().findOp({"mkldnn::_linear_pointwise", ""});
  std::optional<c10::OperatorHandle> reorder =
      c10::Dispatcher::singleton().findOp({"mkldnn::_reorder_linear_weight", ""});
};

const OneDnnOps& onednn_ops() {
  static const OneDnnOps ops;
  return ops;
}

// An on/off environment variable: unset gives `otherwise`; anything but 0 or 1 is an error naming it.
bool switch_on(const char* name, bool otherwise) {
  const char* setting = std::getenv(name);
  if (setting == nullptr || *setting == '\0') return otherwise;
  const std::string value(setting);
  TORCH_CHECK(value == "0" || value == "1", name, "='", value, "' is not a setting: 1 (on) or 0 (off)");
  return value == "1";
}

bool use_onednn(const at::Tensor& weight) {
  const auto& ops = onednn_ops();
  return switch_on("RRN_ONEDNN", true) && ops.linear.has_value() && ops.reorder.has_value() &&
         weight.device().is_cpu() && weight.scalar_type() == at::kFloat && weight.dim() == 2 &&
         std::min(weight.size(0), weight.size(1)) >= 256;
}

class StepProduct {
 public:
  StepProduct(const at::Tensor& weight, int64_t batch) : weight_t_(weight.t()) {
    if (!use_onednn(weight)) return;
    torch::jit::Stack stack{weight.contiguous(), c10::IValue(batch)};
    onednn_ops().reorder->callBoxed(&stack);
    packed_ = stack[0].toTensor();
  }
  // (addend +) x weight^T: into `out` (returned) with at::mm_out; a fresh tensor with oneDNN
  at::Tensor operator()(const at::Tensor& x, at::Tensor& out, const at::Tensor& addend = at::Tensor()) const {
    if (!onednn()) return addend.defined() ? at::addmm_out(out, addend, x, weight_t_) : at::mm_out(out, x, weight_t_);
    torch::jit::Stack stack{x, packed_, c10::IValue(), c10::IValue(std::string("none")),
                            c10::IValue(c10::List<std::optional<at::Scalar>>()), c10::IValue(std::string(""))};
    onednn_ops().linear->callBoxed(&stack);
    auto result = stack[0].toTensor();
    return addend.defined() ? result.add_(addend) : result;
  }
  bool onednn() const { return packed_.defined(); }

 private:
  at::Tensor weight_t_, packed_;
};

// With several threads, each thread takes its share of the batch rows through every step — their GEMM and their
// elementwise pass — in one parallel region: the rows of a batch are independent of each other (batch norm, which
// needs all of them each step, excepted), so nothing waits between steps. Measured against one parallel GEMM and
// an elementwise pass per step (2 threads, H=128, gres_rnn): inference 1.25x -> 1.47x of nn.LSTM at B=64 and
// 1.18x -> 1.25x at B=16, training 1.40x -> 1.63x at B=16; no loss down to 4 rows a thread. Not with oneDNN
// (H >= 256): its parallel GEMM is faster than two single-threaded ones.
bool split_by_rows(int64_t B, const StepProduct& product) {
  const int64_t threads = at::get_num_threads();
  return threads > 1 && B >= 4 * threads && !product.onednn();
}

template <typename F>
void for_each_thread_rows(int64_t B, const F& body) {
  const int64_t threads = at::get_num_threads();
  const at::ThreadLocalState caller;  // this op's dispatch state (autograd off): worker threads start without it
  at::parallel_for(0, B, (B + threads - 1) / threads, [&](int64_t begin, int64_t end) {
    const at::ThreadLocalStateGuard same_state(caller);
    body(begin, end);
  });
}

// The CPU loops above, or (any other device) the loops below of ATen ops. RRN_FAST_CELLS_DEVICE_LOOP=1 runs the
// latter on CPU too: how the tests check, without a GPU, the algorithm a GPU runs.
bool cpu_kernels(const at::Tensor& tensor) {
  return tensor.device().is_cpu() && !switch_on("RRN_FAST_CELLS_DEVICE_LOOP", false);
}

// --- the same on any device, with ATen ops -------------------------------------------------------------------------

void activate(at::Tensor out, const at::Tensor& in, int64_t activation) {
  if (activation == TANH) at::tanh_out(out, in);
  else at::clamp_min_out(out, in, 0);
}

void activate_backward(at::Tensor out, const at::Tensor& grad, const at::Tensor& value, int64_t activation) {
  if (activation == TANH) at::tanh_backward_out(out, grad, value);
  else at::threshold_backward_out(out, grad, value, 0);  // value = relu(z) > 0 exactly where z > 0
}

// Which sequences batch norm's statistics count at each step: weights [T, B, 1] (1 while a sequence runs, else 0;
// undefined without padding) and their number per step, counts [T] (>= 1): made once per call, read per step.
struct Running {
  at::Tensor keep, counts;
  Running() = default;
  Running(const std::optional<at::Tensor>& mask, int64_t T, int64_t B, const at::TensorOptions& options) {
    if (mask.has_value() && mask->defined()) {
      keep = mask->to(options.dtype());
      counts = keep.sum(at::IntArrayRef{1, 2}).clamp_min(1);
    } else {
      counts = at::full({T}, static_cast<double>(B), options);
    }
  }
  at::Tensor weights(int64_t t) const { return keep.defined() ? keep[t] : at::Tensor(); }
};

// Recurrent batch norm of the U s_{t-1} columns (the first k*H) of P, in place: P_u <- gamma * zhat with
// zhat = (z - mean_t) / std_t; training: mean_t, var_t of the sequences still running (weights: [B, 1] 0/1, or
// undefined for all), recorded in mean/var/inv; evaluation: the given mean_t and std_t (running estimates).
struct Norm {
  at::Tensor gamma, weights, count;       // count: the number of running sequences (>= 1), a 0-d tensor
  at::Tensor given_mean, given_std;       // evaluation: [T, kH] each
  at::Tensor zhat, mean, var, inv;        // [T, B, kH] / [T, kH]: what training records
  bool on() const { return gamma.defined(); }
  bool training() const { return !given_mean.defined(); }
};

void normalize(Norm& n, const at::Tensor& pre, int64_t kH, int64_t t) {
  auto z = pre.narrow(1, 0, kH);
  at::Tensor zhat;
  if (n.training()) {
    auto mean = (n.weights.defined() ? (n.weights * z).sum(0) : z.sum(0)) / n.count;
    auto diff = z - mean;
    auto var = (n.weights.defined() ? (n.weights * diff * diff).sum(0) : (diff * diff).sum(0)) / n.count;
    auto std = at::sqrt(var + 1e-5);
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

// Returns {states [T+1, B, H] (s_0 first), activations a, gates g, zhat, mean, var, inv}; a and g are [T, B, H]
// when need_grad, else one step's scratch (g undefined when not gated); the last four only with batch norm.
std::vector<at::Tensor> forward(const at::Tensor& xp, const at::Tensor& s0, const at::Tensor& weight,
                                const std::optional<at::Tensor>& mask, int64_t activation, int64_t output_activation,
                                bool gated, bool linear, bool need_grad, const std::optional<at::Tensor>& gamma,
                                const std::optional<at::Tensor>& given_mean, const std::optional<at::Tensor>& given_std) {
  const int64_t T = xp.size(0), B = xp.size(1), H = s0.size(1), R = weight.size(0), kH = xp.size(2);
  const auto options = s0.options();
  auto states = at::empty({T + 1, B, H}, options);
  states[0].copy_(s0);
  auto acts = need_grad ? at::empty({T, B, H}, options) : at::empty({B, H}, options);
  at::Tensor gates;
  if (gated) gates = need_grad ? at::empty({T, B, H}, options) : at::empty({B, H}, options);
  auto pre_buffer = at::empty({B, R}, options);
  auto pre = pre_buffer;  // P of the step: pre_buffer, or the product's own tensor
  const bool masked = mask.has_value() && mask->defined();
  const auto wt = weight.t();
  Norm norm;
  if (gamma.has_value() && gamma->defined()) {
    norm.gamma = *gamma;
    if (given_mean.has_value() && given_mean->defined()) {
      norm.given_mean = *given_mean;
      norm.given_std = *given_std;
    } else {
      norm.mean = at::empty({T, kH}, options);
      norm.var = at::empty({T, kH}, options);
      norm.inv = at::empty({T, kH}, options);
    }
    if (need_grad) norm.zhat = at::empty({T, B, kH}, options);
  }
  const Running running = norm.on() ? Running(mask, T, B, options) : Running();
  auto step_norm = [&](int64_t t) {
    if (!norm.on()) return;
    norm.weights = running.weights(t);
    norm.count = running.counts[t];
    normalize(norm, pre, kH, t);
  };
  auto results = [&]() -> std::vector<at::Tensor> {
    return {states, acts, gates, norm.zhat, norm.mean, norm.var, norm.inv};
  };
  if (cpu_kernels(xp)) {
    const Step k{B, H, R, kH, activation, output_activation, gated, linear};
    const at::Tensor mask_bool = masked ? mask->to(at::kBool).contiguous() : at::Tensor();
    const StepProduct product(weight, B);
    const bool by_rows = split_by_rows(B, product) && !norm.on();
    AT_DISPATCH_FLOATING_TYPES(xp.scalar_type(), "rrn_fast_cells_forward", [&] {
      if (by_rows) {  // each thread its own rows through all the steps (see split_by_rows)
        const scalar_t* p = pre.data_ptr<scalar_t>();
        const scalar_t* x = xp.data_ptr<scalar_t>();
        scalar_t* s = states.data_ptr<scalar_t>();
        scalar_t* a = acts.data_ptr<scalar_t>();
        scalar_t* g = gated ? gates.data_ptr<scalar_t>() : nullptr;
        const bool* m = masked ? mask_bool.data_ptr<bool>() : nullptr;
        const int64_t kept = need_grad ? B * H : 0;  // acts and gates: every step's, or one step's scratch
        for_each_thread_rows(B, [&](int64_t begin, int64_t end) {
          auto rows = pre.narrow(0, begin, end - begin);
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
        pre = product(states[t], pre_buffer);
        step_norm(t);
        const scalar_t* p = pre.data_ptr<scalar_t>();
        const scalar_t* x = xp[t].data_ptr<scalar_t>();
        const scalar_t* s = states[t].data_ptr<scalar_t>();
        scalar_t* next = states[t + 1].data_ptr<scalar_t>();
        scalar_t* a = (need_grad ? acts[t] : acts).data_ptr<scalar_t>();
        scalar_t* g = gated ? (need_grad ? gates[t] : gates).data_ptr<scalar_t>() : nullptr;
        const bool* m = masked ? mask_bool[t].data_ptr<bool>() : nullptr;
        at::parallel_for(0, B, grain(H), [&](int64_t begin, int64_t end) {
          forward_rows<scalar_t>(k, begin, end, p, x, s, next, a, g, m);
        });
      }
    });
    return results();
  }
  auto fresh = at::empty({B, H}, options);
  for (int64_t t = 0; t < T; ++t) {
    const auto s = states[t];
    if (linear || norm.on()) {
      at::mm_out(pre, s, wt);
      step_norm(t);
      pre.narrow(1, 0, kH).add_(xp[t]);
    } else {
      at::addmm_out(pre, xp[t], s, wt);
    }
    auto a = need_grad ? acts[t] : acts;
    activate(a, pre.narrow(1, 0, H), activation);
    const auto base = linear ? pre.narrow(1, kH, H) : s;
    auto target = masked ? fresh : states[t + 1];
    if (gated) {
      auto g = need_grad ? gates[t] : gates;
      at::sigmoid_out(g, pre.narrow(1, H, H));
      at::addcmul_out(target, base, a, g);
    } else {
      at::add_out(target, base, a);
    }
    if (output_activation == 1) target.tanh_();
    if (masked) {
      auto next = states[t + 1];
      at::where_out(next, (*mask)[t], fresh, s);
    }
  }
  return results();
}

// Batch norm's backward pass for step t: dL/dz of the U s_{t-1} columns from dL/d(gamma zhat) in dpre, into dz.
void normalize_backward(const at::Tensor& dpre, at::Tensor dz, const at::Tensor& gamma, const at::Tensor& zhat,
                        const at::Tensor& inv, const at::Tensor& weights, const at::Tensor& count, bool training,
                        int64_t kH) {
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

// grad: dL/d states[1:] ([T, B, H]). Returns {dL/dxp [T, B, kH], dL/ds_0, dL/dW, dL/dgamma}; dL/dW and dL/dgamma
// are one GEMM / one reduction after the loop. Batch norm: zhat [T, B, kH], inv [T, kH] (training: the batch's,
// evaluation: of the running estimates), training.
std::vector<at::Tensor> backward(const at::Tensor& grad, const at::Tensor& states, const at::Tensor& acts,
                                 const std::optional<at::Tensor>& gates_, const at::Tensor& weight,
                                 const std::optional<at::Tensor>& mask, int64_t activation, int64_t output_activation,
                                 bool gated, bool linear, int64_t kH, const std::optional<at::Tensor>& gamma_,
                                 const std::optional<at::Tensor>& zhat_, const std::optional<at::Tensor>& inv_,
                                 bool norm_training) {
  const int64_t T = grad.size(0), B = grad.size(1), H = grad.size(2), R = weight.size(0);
  const auto options = grad.options();
  const bool masked = mask.has_value() && mask->defined();
  const at::Tensor gates = gates_.has_value() ? *gates_ : at::Tensor();
  const bool normed = gamma_.has_value() && gamma_->defined();
  at::Tensor gamma, zhat, inv, dz_all;
  Running running;
  if (normed) {
    gamma = *gamma_;
    zhat = *zhat_;
    inv = *inv_;
    dz_all = at::empty({T, B, R}, options);  // dL/dP with batch norm's backward applied: what W's gradient reads
    running = Running(mask, T, B, options);
  }
  // dz for step t: dL/dP_t behind batch norm (written into dz_all[t]); without batch norm dpre_all[t] itself
  auto through_norm = [&](const at::Tensor& dpre, int64_t t) -> at::Tensor {
    if (!normed) return dpre;
    auto dz = dz_all[t];
    normalize_backward(dpre, dz, gamma, zhat[t], inv[t], running.weights(t), running.counts[t], norm_training, kH);
    if (R > kH) dz.narrow(1, kH, R - kH).copy_(dpre.narrow(1, kH, R - kH));
    return dz;
  };
  auto dpre_all = at::empty({T, B, R}, options);
  auto carry = at::zeros({B, H}, options);  // dL/ds_t through step t+1
  auto passed = at::empty({B, H}, options);
  if (cpu_kernels(grad)) {
    const Step k{B, H, R, kH, activation, output_activation, gated, linear};
    const at::Tensor mask_bool = masked ? mask->to(at::kBool).contiguous() : at::Tensor();
    const StepProduct product(weight.t(), B);  // dz W
    auto product_buffer = at::empty({B, H}, options);
    const bool by_rows = split_by_rows(B, product) && !normed;
    AT_DISPATCH_FLOATING_TYPES(grad.scalar_type(), "rrn_fast_cells_backward", [&] {
      if (by_rows) {  // each thread its own rows back through all the steps (see split_by_rows)
        const scalar_t* gr = grad.data_ptr<scalar_t>();
        const scalar_t* c = carry.data_ptr<scalar_t>();
        const scalar_t* s = states.data_ptr<scalar_t>();
        const scalar_t* a = acts.data_ptr<scalar_t>();
        const scalar_t* g = gated ? gates.data_ptr<scalar_t>() : nullptr;
        const bool* m = masked ? mask_bool.data_ptr<bool>() : nullptr;
        scalar_t* d = dpre_all.data_ptr<scalar_t>();
        scalar_t* pass = passed.data_ptr<scalar_t>();
        for_each_thread_rows(B, [&](int64_t begin, int64_t end) {
          auto carry_rows = carry.narrow(0, begin, end - begin);
          const auto passed_rows = passed.narrow(0, begin, end - begin);
          for (int64_t t = T - 1; t >= 0; --t) {
            backward_rows<scalar_t>(k, begin, end, gr + t * B * H, c, s + (t + 1) * B * H, a + t * B * H,
                                    g == nullptr ? nullptr : g + t * B * H, m == nullptr ? nullptr : m + t * B,
                                    d + t * B * R, pass);
            at::addmm_out(carry_rows, passed_rows, dpre_all.select(0, t).narrow(0, begin, end - begin), weight);
          }
        });
        return;
      }
      for (int64_t t = T - 1; t >= 0; --t) {
        const scalar_t* gr = grad[t].data_ptr<scalar_t>();
        const scalar_t* c = carry.data_ptr<scalar_t>();
        const scalar_t* next = states[t + 1].data_ptr<scalar_t>();
        const scalar_t* a = acts[t].data_ptr<scalar_t>();
        const scalar_t* g = gated ? gates[t].data_ptr<scalar_t>() : nullptr;
        const bool* m = masked ? mask_bool[t].data_ptr<bool>() : nullptr;
        scalar_t* d = dpre_all[t].data_ptr<scalar_t>();
        scalar_t* pass = passed.data_ptr<scalar_t>();
        at::parallel_for(0, B, grain(H), [&](int64_t begin, int64_t end) {
          backward_rows<scalar_t>(k, begin, end, gr, c, next, a, g, m, d, pass);
        });
        carry = product(through_norm(dpre_all[t], t), product_buffer, passed);
      }
    });
  } else {
    at::Tensor keep, drop;
    if (masked) {
      keep = mask->to(grad.scalar_type());
      drop = 1 - keep;
    }
    auto total = at::empty({B, H}, options), dy = at::empty({B, H}, options), scratch = at::empty({B, H}, options);
    for (int64_t t = T - 1; t >= 0; --t) {
      at::add_out(total, grad[t], carry);  // dL/ds_t
      at::Tensor dfresh = total;           // dL/ds' (zero where the sequence has ended)
      if (masked) {
        at::mul_out(dy, total, keep[t]);
        dfresh = dy;
      }
      at::Tensor dsum = dfresh;  // dL/dy, y = base + a (* g)
      if (output_activation == 1) {
        at::tanh_backward_out(dy, dfresh, states[t + 1]);  // s' = tanh(y) = states[t + 1] where it counts
        dsum = dy;
      }
      auto dpre = dpre_all[t];
      if (gated) {
        at::mul_out(scratch, dsum, gates[t]);
        activate_backward(dpre.narrow(1, 0, H), scratch, acts[t], activation);
        at::mul_out(scratch, dsum, acts[t]);
        auto dgate = dpre.narrow(1, H, H);
        at::sigmoid_backward_out(dgate, scratch, gates[t]);
      } else {
        activate_backward(dpre.narrow(1, 0, H), dsum, acts[t], activation);
      }
      if (linear) dpre.narrow(1, kH, H).copy_(dsum);
      const auto dz = through_norm(dpre, t);
      // dL/ds_{t-1} = dpre W + (the identity shortcut: dsum) + (ended sequences: the state passed through)
      if (masked) {
        at::mul_out(passed, total, drop[t]);
        if (!linear) passed.add_(dsum);
        at::addmm_out(carry, passed, dz, weight);
      } else if (!linear) {
        at::addmm_out(carry, dsum, dz, weight);
      } else {
        at::mm_out(carry, dz, weight);
      }
    }
  }
  const auto& dz_source = normed ? dz_all : dpre_all;
  auto dweight = at::mm(dz_source.view({T * B, R}).t(), states.narrow(0, 0, T).reshape({T * B, H}));
  at::Tensor dgamma;
  if (normed) dgamma = (dpre_all.narrow(2, 0, kH) * zhat).sum(at::IntArrayRef{0, 1});
  return {dpre_all.narrow(2, 0, kH), carry, dweight, dgamma};
}

// What multiplies by this weight each step: "oneDNN" or "ATen" (MKL on CPU)
std::string step_gemm(const at::Tensor& weight) { return use_onednn(weight) ? "oneDNN" : "ATen"; }

// Whether at::parallel_for here runs on several threads: built with OpenMP (or torch's parallel backend is not
// OpenMP, whose at::parallel_for is not inlined from the headers)
bool parallel() {
#if defined(_OPENMP) || !AT_PARALLEL_OPENMP
  return true;
#else
  return false;
#endif
}

}  // namespace

TORCH_LIBRARY(rrn_fast_cells, m) {
  m.def("forward(Tensor xp, Tensor s0, Tensor weight, Tensor? mask, int activation, int output_activation, "
        "bool gated, bool linear, bool need_grad, Tensor? gamma, Tensor? given_mean, Tensor? given_std) -> Tensor[]");
  m.def("backward(Tensor grad, Tensor states, Tensor acts, Tensor? gates, Tensor weight, Tensor? mask, "
        "int activation, int output_activation, bool gated, bool linear, int kH, Tensor? gamma, Tensor? zhat, "
        "Tensor? inv, bool norm_training) -> Tensor[]");
  m.def("step_gemm(Tensor weight) -> str");
  m.def("parallel() -> bool");
  m.impl("forward", c10::DispatchKey::CompositeExplicitAutograd, &forward);
  m.impl("step_gemm", c10::DispatchKey::CompositeExplicitAutograd, &step_gemm);
  m.impl("parallel", c10::DispatchKey::CompositeExplicitAutograd, &parallel);
  m.impl("backward", c10::DispatchKey::CompositeExplicitAutograd, &backward);
}
