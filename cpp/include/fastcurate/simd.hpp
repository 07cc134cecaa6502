// Run-time choice of the vectorised code paths.
//
// The SIMD paths use SSE2 only, which every x86-64 CPU has, so a wheel built without
// -march=native still runs them everywhere; other architectures use the scalar paths. Both paths
// give identical results, and set_enabled(false) forces the scalar one so that tests can compare
// them on the same machine.
#pragma once

#include <atomic>

namespace fastcurate {
namespace simd {

#if defined(__SSE2__) || defined(_M_X64)
constexpr bool kCompiled = true;
constexpr const char* kName = "sse2";
#else
constexpr bool kCompiled = false;
constexpr const char* kName = "scalar";
#endif

inline std::atomic<bool>& enabled_flag() {
  static std::atomic<bool> flag{kCompiled};
  return flag;
}
inline bool enabled() { return kCompiled && enabled_flag().load(std::memory_order_relaxed); }
inline void set_enabled(bool on) { enabled_flag().store(on && kCompiled, std::memory_order_relaxed); }
inline const char* active_name() { return enabled() ? kName : "scalar"; }

// The matcher screens caption pieces with its vocabulary filter where that measures as paying
// (docs/matcher.md); both ways give identical results. Tests force it: -1 measured (the
// default), 0 never, 1 always.
inline std::atomic<int>& vocab_filter_flag() {
  static std::atomic<int> flag{-1};
  return flag;
}
inline int vocab_filter() { return vocab_filter_flag().load(std::memory_order_relaxed); }
inline void force_vocab_filter(int mode) { vocab_filter_flag().store(mode < 0 ? -1 : mode > 0 ? 1 : 0, std::memory_order_relaxed); }

}  // namespace simd
}  // namespace fastcurate
