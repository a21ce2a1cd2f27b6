// How the CPU loop uses several threads.
//
// Each thread takes its share of the batch rows through every step — their GEMM and their elementwise pass — in
// one parallel region: the rows of a batch are independent of each other (batch norm, which needs all of them each
// step, excepted), so nothing waits between steps; no loss down to 4 rows a thread. Not with oneDNN (H >= 256):
// its parallel GEMM beats several single-threaded ones. Otherwise each step's elementwise pass is split over
// threads only when it is large (`grain`). Choices measured with rrn-bench (docs/speed.md).
#pragma once

#include <ATen/Parallel.h>
#include <ATen/ThreadLocalState.h>

#include <algorithm>
#include <cstdint>

#include "step_gemm.h"

namespace rrn {

// rows per task of one step's elementwise pass: a step splits over threads only when it is large (each split is
// a fork and join per step)
inline int64_t grain(int64_t H) { return std::max<int64_t>(1, 131072 / std::max<int64_t>(H, 1)); }

inline bool split_by_rows(int64_t B, const StepProduct& product) {
  const int64_t threads = at::get_num_threads();
  return threads > 1 && B >= 4 * threads && !product.onednn();
}

// body(begin, end) on each thread's share of the B rows, with the caller's dispatch state (autograd off)
template <typename F>
void for_each_thread_rows(int64_t B, const F& body) {
  const int64_t threads = at::get_num_threads();
  const at::ThreadLocalState caller;  // worker threads start without it
  at::parallel_for(0, B, (B + threads - 1) / threads, [&](int64_t begin, int64_t end) {
    const at::ThreadLocalStateGuard same_state(caller);
    body(begin, end);
  });
}

// Whether at::parallel_for here runs on several threads: built with OpenMP (or torch's parallel backend is not
// OpenMP, whose at::parallel_for is not inlined from the headers)
inline bool parallel() {
#if defined(_OPENMP) || !AT_PARALLEL_OPENMP
  return true;
#else
  return false;
#endif
}

}  // namespace rrn
