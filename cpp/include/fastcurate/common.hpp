// Errors, cancellation and small utilities shared by every fastcurate kernel.
// This header (like the whole core) must not include Python headers: the core is a plain C++17
// library that the bindings, the C++ tests and the fuzz target all link against.
#pragma once

#include <atomic>
#include <cstdint>
#include <stdexcept>
#include <string>

namespace fastcurate {

// Base class of every error the core throws on purpose. The bindings map each subclass to the
// matching Python class of fastcurate.errors.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A caller-supplied value is invalid (bad row, bad entry, out-of-range argument).
class InputError : public Error {
 public:
  using Error::Error;
};

// A serialized file is truncated, corrupted, foreign or of an unsupported version.
class FormatError : public Error {
 public:
  using Error::Error;
};

// The work was cancelled through a CancelToken (e.g. Ctrl-C in Python).
class Cancelled : public Error {
 public:
  Cancelled() : Error("cancelled") {}
};

// Shared between the thread that waits (and watches for signals) and the workers, which poll it
// between blocks of work so that a cancel stops a long call within milliseconds.
struct CancelToken {
  std::atomic<bool> cancelled{false};
  void cancel() noexcept { cancelled.store(true, std::memory_order_relaxed); }
  bool is_cancelled() const noexcept { return cancelled.load(std::memory_order_relaxed); }
};

}  // namespace fastcurate
