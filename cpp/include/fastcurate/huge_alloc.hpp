// An allocator for the automaton's large tables that asks the kernel for transparent huge pages.
//
// Why: the vocabulary, state and transition tables of a 500k-entry matcher span tens of MB and
// are read at random. With 4 KiB pages nearly every such read also misses the TLB (a few
// thousand entries cover ~8 MB); with 2 MiB pages the whole automaton stays TLB-resident. Many
// distributions set THP to "madvise", so the pages must be asked for explicitly. Small tables,
// and platforms without madvise, fall back to the ordinary allocator.
#pragma once

#include <cstddef>
#include <cstdlib>
#include <memory>
#include <new>
#include <utility>
#include <vector>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace fastcurate {

template <class T>
struct HugePageAllocator {
  using value_type = T;
  static constexpr size_t kHuge = size_t{2} << 20;

  HugePageAllocator() noexcept = default;
  template <class U>
  HugePageAllocator(const HugePageAllocator<U>&) noexcept {}

  T* allocate(size_t n) {
    const size_t bytes = n * sizeof(T);
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    if (bytes >= kHuge) {
      const size_t rounded = (bytes + kHuge - 1) / kHuge * kHuge;
      void* p = std::aligned_alloc(kHuge, rounded);
      if (p == nullptr) throw std::bad_alloc();
      madvise(p, rounded, MADV_HUGEPAGE);  // advisory: failure only costs speed
      return static_cast<T*>(p);
    }
#endif
    // Cache-line aligned, so that a 64-byte block of a table is one line.
    void* p = std::aligned_alloc(64, (bytes + 63) / 64 * 64 + (bytes == 0 ? 64 : 0));
    if (p == nullptr) throw std::bad_alloc();
    return static_cast<T*>(p);
  }
  void deallocate(T* p, size_t) noexcept { std::free(p); }

  template <class U>
  bool operator==(const HugePageAllocator<U>&) const noexcept {
    return true;
  }
  template <class U>
  bool operator!=(const HugePageAllocator<U>&) const noexcept {
    return false;
  }
};

template <class T>
using big_vector = std::vector<T, HugePageAllocator<T>>;

// An allocator whose resize() leaves new elements uninitialised (for trivial T): for large
// results that a parallel pass fills right away, so that no thread zeroes memory first (zeroing
// a 40 MB result serially, page faults included, cost as much as a sixth of a match call).
// Ordinary pages: a fault on a huge page may compact memory synchronously (THP defrag
// "madvise"), which took hundreds of milliseconds here; 4 KiB faults are spread over the threads.
template <class T>
struct UninitAllocator : std::allocator<T> {
  using value_type = T;
  template <class U>
  struct rebind {
    using other = UninitAllocator<U>;
  };
  UninitAllocator() noexcept = default;
  template <class U>
  UninitAllocator(const UninitAllocator<U>&) noexcept {}
  template <class U>
  void construct(U* p) noexcept {
    ::new (static_cast<void*>(p)) U;
  }
  template <class U, class... Args>
  void construct(U* p, Args&&... args) {
    ::new (static_cast<void*>(p)) U(std::forward<Args>(args)...);
  }
};

template <class T>
using result_vector = std::vector<T, UninitAllocator<T>>;

}  // namespace fastcurate
