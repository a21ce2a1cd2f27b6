// What one layer, one direction computes (rrn_app/cells/fast/spec.py, RecurrenceSpec), as the ops receive it.
//
//   P    = s_{t-1} W^T,  W = [U; (U_g;) (W_im)]               one GEMM per step
//   a    = act(P_c + xp_c)       g = sigmoid(P_g + xp_g)      (gated only)
//   s'   = f(base + a (* g))      base = P_im (projection=linear) or s_{t-1}
//   s_t  = s' where t < length, else s_{t-1}
#pragma once

#include <cstdint>

namespace rrn {

// One numbering for both activations; spec.py's Activation must agree (ops.cpp's spec_codes() lets a test check).
enum Activation : int64_t { IDENTITY = 0, TANH = 1, RELU = 2 };

struct Spec {
  int64_t activation;         // of the residual function: TANH or RELU
  int64_t output_activation;  // f: IDENTITY or TANH
  bool gated;                 // gres_rnn's gate g
  bool linear;                // projection linear: base = P_im
};

// The shape of one step: B rows; P is [B, R]; xp's rows are kH wide (H, or 2H gated); states H wide
struct Step {
  int64_t B, H, R, kH;
  Spec spec;
};

}  // namespace rrn
