// A minimal parallel-for over blocks with exception propagation and cancellation.
//
// Why not OpenMP: the extension must work when loaded into any Python process (no libgomp
// conflicts) and an exception thrown in a worker must reach the caller. Workers take blocks from
// an atomic counter (dynamic scheduling, so a block of long captions does not stall one thread),
// store the first exception as std::exception_ptr, and every worker stops at its next block once
// an error or a cancel is seen. The caller rethrows after join.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

#include "fastcurate/common.hpp"

namespace fastcurate {

inline int resolve_threads(int threads) {
  if (threads > 0) return threads;
  unsigned hc = std::thread::hardware_concurrency();
  return hc == 0 ? 1 : static_cast<int>(hc);
}

// Calls fn(block) for every block in [0, n_blocks) on up to `threads` threads (0 = all cores).
template <class Fn>
void parallel_for_blocks(int64_t n_blocks, int threads, const CancelToken* cancel, Fn&& fn) {
  if (n_blocks <= 0) return;
  const int n_threads = static_cast<int>(std::min<int64_t>(resolve_threads(threads), n_blocks));
  std::atomic<int64_t> next{0};
  std::atomic<bool> failed{false};
  std::exception_ptr first_error;
  std::mutex error_mutex;

  auto worker = [&]() {
    for (;;) {
      if (failed.load(std::memory_order_relaxed)) return;
      if (cancel != nullptr && cancel->is_cancelled()) return;
      const int64_t b = next.fetch_add(1, std::memory_order_relaxed);
      if (b >= n_blocks) return;
      try {
        fn(b);
      } catch (...) {
        std::lock_guard<std::mutex> lock(error_mutex);
        if (!first_error) first_error = std::current_exception();
        failed.store(true, std::memory_order_relaxed);
        return;
      }
    }
  };

  if (n_threads == 1) {
    worker();
  } else {
    std::vector<std::thread> pool;
    pool.reserve(static_cast<size_t>(n_threads - 1));
    try {
      for (int t = 0; t + 1 < n_threads; ++t) pool.emplace_back(worker);
    } catch (...) {
      // Could not start a thread (resource limits): let the ones that started finish the work.
      failed.store(false);
    }
    worker();
    for (auto& th : pool) th.join();
  }
  if (first_error) std::rethrow_exception(first_error);
  if (cancel != nullptr && cancel->is_cancelled()) throw Cancelled();
}

}  // namespace fastcurate
