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

// How many workers parallel_for_blocks runs for n_blocks blocks.
inline int worker_count(int64_t n_blocks, int threads) {
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(resolve_threads(threads), n_blocks)));
}

// Calls fn(block, worker) for every block in [0, n_blocks) on worker_count(n_blocks, threads)
// threads (threads = 0: all cores); worker is the caller's index in [0, worker_count), so that
// each worker can own scratch memory and output buffers reused across its blocks.
// front_back: worker 0 takes blocks 0, 1, 2, ... in order and the others take blocks from the
// end (n-1, n-2, ...) until they meet, so that worker 0's output is the result's prefix in
// order (the caller can then keep it in place instead of copying it).
template <class Fn>
void parallel_for_blocks_indexed(int64_t n_blocks, int threads, const CancelToken* cancel, Fn&& fn,
                                 bool front_back = false) {
  if (n_blocks <= 0) return;
  const int n_threads = worker_count(n_blocks, threads);
  std::atomic<int64_t> next{0};   // blocks claimed so far
  std::atomic<int64_t> back{0};   // front_back: blocks claimed from the end
  int64_t front = 0;              // front_back: blocks claimed by worker 0 (only it touches this)
  std::atomic<bool> failed{false};
  std::exception_ptr first_error;
  std::mutex error_mutex;

  auto worker = [&](int index) {
    for (;;) {
      if (failed.load(std::memory_order_relaxed)) return;
      if (cancel != nullptr && cancel->is_cancelled()) return;
      // A claim is valid while fewer than n_blocks were claimed in all; with front_back, the
      // front claims are 0..F-1 and the back claims n-1..n-B with F + B <= n: disjoint.
      int64_t b = next.fetch_add(1, std::memory_order_relaxed);
      if (b >= n_blocks) return;
      if (front_back) b = index == 0 ? front++ : n_blocks - 1 - back.fetch_add(1, std::memory_order_relaxed);
      try {
        fn(b, index);
      } catch (...) {
        std::lock_guard<std::mutex> lock(error_mutex);
        if (!first_error) first_error = std::current_exception();
        failed.store(true, std::memory_order_relaxed);
        return;
      }
    }
  };

  if (n_threads == 1) {
    worker(0);
  } else {
    std::vector<std::thread> pool;
    pool.reserve(static_cast<size_t>(n_threads - 1));
    try {
      for (int t = 1; t < n_threads; ++t) pool.emplace_back(worker, t);
    } catch (...) {
      // Could not start a thread (resource limits): let the ones that started finish the work.
      failed.store(false);
    }
    worker(0);
    for (auto& th : pool) th.join();
  }
  if (first_error) std::rethrow_exception(first_error);
  if (cancel != nullptr && cancel->is_cancelled()) throw Cancelled();
}

// Calls fn(block) for every block in [0, n_blocks) on up to `threads` threads (0 = all cores).
template <class Fn>
void parallel_for_blocks(int64_t n_blocks, int threads, const CancelToken* cancel, Fn&& fn) {
  parallel_for_blocks_indexed(n_blocks, threads, cancel, [&](int64_t b, int) { fn(b); });
}

}  // namespace fastcurate
