// Section-based binary (de)serialisation of flat arrays, with bounds checks on every read so that
// a truncated or corrupted file becomes a FormatError, never an out-of-bounds read.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <type_traits>
#include <vector>

#include "fastcurate/common.hpp"

namespace fastcurate {
namespace serial {

class Writer {
 public:
  template <class T>
  void pod(const T& v) {
    static_assert(std::is_trivially_copyable<T>::value, "POD only");
    raw(&v, sizeof(T));
  }
  template <class T, class A>
  void vec(const std::vector<T, A>& v) {
    static_assert(std::is_trivially_copyable<T>::value, "POD only");
    const uint64_t n = v.size();
    pod(n);
    raw(v.data(), n * sizeof(T));
  }
  std::vector<uint8_t>& buffer() { return buf_; }

 private:
  void raw(const void* p, size_t n) {
    const size_t at = buf_.size();
    const size_t padded = (n + 7) & ~size_t{7};  // keep every section 8-byte aligned
    buf_.resize(at + padded, 0);
    if (n) std::memcpy(buf_.data() + at, p, n);
  }
  std::vector<uint8_t> buf_;
};

class Reader {
 public:
  Reader(const uint8_t* p, size_t n, std::string what) : p_(p), n_(n), what_(std::move(what)) {}
  template <class T>
  T pod() {
    T v;
    raw(&v, sizeof(T));
    return v;
  }
  template <class T, class A = std::allocator<T>>
  std::vector<T, A> vec(uint64_t max_items) {
    const uint64_t n = pod<uint64_t>();
    if (n > max_items || n > (n_ - at_) / sizeof(T) + 1) fail("an array length is out of range");
    std::vector<T, A> v(static_cast<size_t>(n));
    raw(v.data(), static_cast<size_t>(n) * sizeof(T));
    return v;
  }
  bool at_end() const { return at_ == n_; }
  [[noreturn]] void fail(const std::string& why) const { throw FormatError(what_ + ": " + why); }

 private:
  void raw(void* dst, size_t n) {
    const size_t padded = (n + 7) & ~size_t{7};
    if (padded > n_ - at_) fail("the file is truncated");
    if (n) std::memcpy(dst, p_ + at_, n);
    at_ += padded;
  }
  const uint8_t* p_;
  size_t n_;
  size_t at_ = 0;
  std::string what_;
};

}  // namespace serial
}  // namespace fastcurate
