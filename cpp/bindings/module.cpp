// The one bindings file: converts and validates Python inputs, releases the GIL for the work,
// keeps Ctrl-C responsive, and maps core errors onto fastcurate.errors. No logic lives here.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "fastcurate/balance.hpp"
#include "fastcurate/clip_bpe.hpp"
#include "fastcurate/common.hpp"
#include "fastcurate/langid.hpp"
#include "fastcurate/hamming.hpp"
#include "fastcurate/hex_uid.hpp"
#include "fastcurate/image_size.hpp"
#include "fastcurate/matcher.hpp"
#include "fastcurate/pairs.hpp"
#include "fastcurate/phash.hpp"
#include "fastcurate/embeddings.hpp"
#include "fastcurate/semdedup.hpp"
#include "fastcurate/silhouette.hpp"
#include "fastcurate/simd.hpp"
#include "fastcurate/text_rules.hpp"
#include "fastcurate/unicode_class.hpp"

namespace py = pybind11;
using namespace fastcurate;

namespace {

// ---------------------------------------------------------------------------------------------
// Results cross into numpy without a copy: the vector moves to the heap and a capsule frees it.
template <class T, class A>
py::array_t<T> to_numpy(std::vector<T, A>&& v) {
  auto* heap = new std::vector<T, A>(std::move(v));
  py::capsule owner(heap, [](void* p) { delete static_cast<std::vector<T, A>*>(p); });
  return py::array_t<T>({static_cast<py::ssize_t>(heap->size())}, {static_cast<py::ssize_t>(sizeof(T))}, heap->data(), owner);
}

// ---------------------------------------------------------------------------------------------
// Runs `work(cancel)` with the GIL released. Long calls run on a worker thread while this thread
// wakes every 50 ms to let Python handle signals: Ctrl-C sets the cancel token, the workers stop at
// their next block, and KeyboardInterrupt is raised here.
template <class F>
auto run_released(int64_t rows, F&& work) -> decltype(work(static_cast<const CancelToken*>(nullptr))) {
  using R = decltype(work(static_cast<const CancelToken*>(nullptr)));
  constexpr int64_t kInlineRows = 16384;  // below this a thread costs more than it saves
  if (rows < kInlineRows) {
    py::gil_scoped_release release;
    return work(nullptr);
  }
  CancelToken cancel;
  std::optional<R> result;
  std::exception_ptr error;
  bool interrupted = false;
  {
    py::gil_scoped_release release;
    std::mutex m;
    std::condition_variable cv;
    bool done = false;
    std::thread th([&]() {
      try {
        result.emplace(work(&cancel));
      } catch (...) {
        error = std::current_exception();
      }
      std::lock_guard<std::mutex> lock(m);
      done = true;
      cv.notify_all();
    });
    for (;;) {
      std::unique_lock<std::mutex> lock(m);
      if (cv.wait_for(lock, std::chrono::milliseconds(50), [&] { return done; })) break;
      lock.unlock();
      if (!interrupted) {
        py::gil_scoped_acquire acquire;
        if (PyErr_CheckSignals() != 0) {  // the error (e.g. KeyboardInterrupt) stays set
          interrupted = true;
          cancel.cancel();
        }
      }
    }
    th.join();
  }
  if (interrupted) throw py::error_already_set();
  if (error) std::rethrow_exception(error);
  return std::move(*result);
}

// ---------------------------------------------------------------------------------------------
// Text inputs.

// Strings of a Python sequence, viewed in place: the tuple keeps every str (and its cached UTF-8)
// alive for the duration of the call, even if the caller mutates their list from another thread.
struct PyStrings {
  py::tuple keep;
  std::vector<std::string_view> views;
  std::vector<uint8_t> valid;
  bool any_null = false;
};

PyStrings view_strings(const py::handle& seq, const char* what, bool allow_null) {
  PyStrings s;
  PyObject* t = PySequence_Tuple(seq.ptr());
  if (t == nullptr) throw py::error_already_set();
  s.keep = py::reinterpret_steal<py::tuple>(t);
  const size_t n = s.keep.size();
  s.views.resize(n);
  s.valid.assign(n, 1);
  for (size_t i = 0; i < n; ++i) {
    PyObject* o = PyTuple_GET_ITEM(t, static_cast<py::ssize_t>(i));
    if (PyUnicode_Check(o)) {
      Py_ssize_t len = 0;
      const char* p = PyUnicode_AsUTF8AndSize(o, &len);
      if (p == nullptr) {
        PyErr_Clear();
        throw InputError(std::string(what) + "[" + std::to_string(i) +
                         "] cannot be encoded as UTF-8 (it holds a lone surrogate); clean it with "
                         "s.encode('utf-8', 'replace').decode()");
      }
      s.views[i] = std::string_view(p, static_cast<size_t>(len));
    } else if (PyBytes_Check(o)) {
      s.views[i] = std::string_view(PyBytes_AS_STRING(o), static_cast<size_t>(PyBytes_GET_SIZE(o)));
    } else if (o == Py_None && allow_null) {
      s.valid[i] = 0;
      s.any_null = true;
    } else {
      std::string tname = Py_TYPE(o)->tp_name;
      throw std::invalid_argument(std::string(what) + "[" + std::to_string(i) + "] is a " + tname +
                                  ", expected str" + (allow_null ? " or None" : "") +
                                  "; convert the items with str() or drop them");
    }
  }
  return s;
}

// An Arrow string array given as (validity, offsets, data, offset, length, large): the buffers
// are pyarrow Buffers (buffer protocol) that stay referenced by the caller's tuple.
struct ArrowChunk {
  py::buffer_info validity, offsets, data;
  bool has_validity = false, has_data = false;
  TextColumn col;
};

void view_arrow(const py::tuple& spec, ArrowChunk& c) {
  if (spec.size() != 6) throw std::invalid_argument("arrow chunk spec must have 6 items");
  const int64_t offset = spec[3].cast<int64_t>();
  const int64_t length = spec[4].cast<int64_t>();
  const bool large = spec[5].cast<bool>();
  if (offset < 0 || length < 0) throw InputError("arrow chunk has a negative offset or length");
  const int64_t width = large ? 8 : 4;
  c.offsets = py::reinterpret_borrow<py::buffer>(spec[1]).request();
  if (c.offsets.size * c.offsets.itemsize < (offset + length + 1) * width && length > 0) {
    throw InputError("arrow string array's offsets buffer is too short for its length; the array is malformed");
  }
  if (!spec[0].is_none()) {
    c.validity = py::reinterpret_borrow<py::buffer>(spec[0]).request();
    c.has_validity = true;
    if (c.validity.size * c.validity.itemsize * 8 < offset + length) {
      throw InputError("arrow string array's validity bitmap is too short; the array is malformed");
    }
    c.col.validity = static_cast<const uint8_t*>(c.validity.ptr);
  }
  if (!spec[2].is_none()) {
    c.data = py::reinterpret_borrow<py::buffer>(spec[2]).request();
    c.has_data = true;
    c.col.data = static_cast<const uint8_t*>(c.data.ptr);
    c.col.data_size = c.data.size * c.data.itemsize;
  }
  if (length > 0) {
    if (large) {
      c.col.offsets64 = static_cast<const int64_t*>(c.offsets.ptr);
    } else {
      c.col.offsets32 = static_cast<const int32_t*>(c.offsets.ptr);
    }
  }
  c.col.offset = offset;
  c.col.length = length;
}

struct Columns {
  std::vector<std::unique_ptr<ArrowChunk>> arrow;
  std::unique_ptr<PyStrings> strings;
  std::vector<TextColumn> cols;
  int64_t rows = 0;
};

// `texts` is either a list of arrow chunk specs (tuples) tagged by kind == "arrow", or a sequence
// of str / bytes / None when kind == "list". The Python wrapper decides which.
Columns make_columns(const std::string& kind, const py::handle& texts) {
  Columns c;
  if (kind == "arrow") {
    for (const py::handle h : py::reinterpret_borrow<py::list>(texts)) {
      c.arrow.emplace_back(new ArrowChunk);
      view_arrow(py::reinterpret_borrow<py::tuple>(h), *c.arrow.back());
      c.cols.push_back(c.arrow.back()->col);
      c.rows += c.cols.back().length;
    }
  } else if (kind == "list") {
    c.strings.reset(new PyStrings(view_strings(texts, "texts", true)));
    TextColumn col;
    col.views = c.strings->views.data();
    col.view_valid = c.strings->any_null ? c.strings->valid.data() : nullptr;
    col.length = static_cast<int64_t>(c.strings->views.size());
    c.cols.push_back(col);
    c.rows = col.length;
  } else {
    throw std::invalid_argument("kind must be 'arrow' or 'list'");
  }
  return c;
}

int check_threads(int threads) {
  if (threads < 0) throw InputError("threads must be >= 0 (0 or None = all cores), got " + std::to_string(threads));
  return threads;
}

// ---------------------------------------------------------------------------------------------

void bind_matcher(py::module_& m) {
  py::class_<Matcher>(m, "Matcher", R"doc(The C++ matcher. Use fastcurate.Matcher, which wraps it.

Thread safety: immutable after construction; match() may run from many threads at once.)doc")
      .def(py::init([](const py::handle& entries, const std::string& mode, bool case_sensitive) {
             MatcherOptions opt;
             if (mode == "metaclip") {
               opt.mode = MatchMode::MetaClip;
             } else if (mode == "substring") {
               opt.mode = MatchMode::Substring;
             } else {
               throw InputError("mode must be 'metaclip' or 'substring', got '" + mode + "'");
             }
             opt.case_sensitive = case_sensitive;
             PyStrings s = view_strings(entries, "entries", false);
             py::gil_scoped_release release;
             return new Matcher(s.views, opt);
           }),
           py::arg("entries"), py::arg("mode") = "metaclip", py::arg("case_sensitive") = true)
      .def(
          "match",
          [](const Matcher& self, const std::string& kind, const py::handle& texts, int threads) {
            Columns c = make_columns(kind, texts);
            MatchResult r = run_released(c.rows, [&](const CancelToken* cancel) {
              return self.match(c.cols, check_threads(threads), cancel);
            });
            return py::make_tuple(to_numpy(std::move(r.offsets)), to_numpy(std::move(r.ids)));
          },
          py::arg("kind"), py::arg("texts"), py::arg("threads") = 0)
      .def(
          "find_all",
          [](const Matcher& self, const std::string& kind, const py::handle& texts, int threads) {
            Columns c = make_columns(kind, texts);
            SpanResult r = run_released(c.rows, [&](const CancelToken* cancel) {
              return self.find_all(c.cols, check_threads(threads), cancel);
            });
            return py::make_tuple(to_numpy(std::move(r.offsets)), to_numpy(std::move(r.ids)),
                                  to_numpy(std::move(r.starts)), to_numpy(std::move(r.ends)));
          },
          py::arg("kind"), py::arg("texts"), py::arg("threads") = 0)
      .def("to_bytes",
           [](const Matcher& self) {
             std::vector<uint8_t> b;
             {
               py::gil_scoped_release release;
               b = self.to_bytes();
             }
             return to_numpy(std::move(b));
           })
      .def_static(
          "from_buffer",
          [](const py::buffer& buf) {
            py::buffer_info info = buf.request();
            const auto* p = static_cast<const uint8_t*>(info.ptr);
            const size_t n = static_cast<size_t>(info.size * info.itemsize);
            py::gil_scoped_release release;
            return new Matcher(Matcher::from_bytes(p, n));
          },
          py::arg("buffer"))
      .def("__len__", &Matcher::size)
      .def("entry", [](const Matcher& self, int64_t i) {
        std::string_view e = self.entry(i);
        return py::str(e.data(), e.size());
      })
      .def("entries",
           [](const Matcher& self) {
             py::list out(static_cast<size_t>(self.size()));
             for (int64_t i = 0; i < self.size(); ++i) {
               std::string_view e = self.entry(i);
               PyObject* s = PyUnicode_DecodeUTF8(e.data(), static_cast<Py_ssize_t>(e.size()), "surrogateescape");
               if (s == nullptr) throw py::error_already_set();
               PyList_SET_ITEM(out.ptr(), static_cast<Py_ssize_t>(i), s);
             }
             return out;
           })
      .def_property_readonly("mode",
                             [](const Matcher& self) {
                               return self.options().mode == MatchMode::MetaClip ? "metaclip" : "substring";
                             })
      .def_property_readonly("case_sensitive", [](const Matcher& self) { return self.options().case_sensitive; })
      .def_property_readonly("memory_bytes", &Matcher::memory_bytes)
      .def_property_readonly("report", [](const Matcher& self) {
        const BuildReport& r = self.report();
        py::dict d;
        d["never_match"] = r.never_match;
        d["first_never_match"] = r.first_never_match;
        d["shadowed"] = r.shadowed;
        d["first_shadowed"] = r.first_shadowed;
        return d;
      });
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Counting and balancing kernels (fastcurate/balance.hpp). Every function checks dtype, ndim and
// contiguity and says how to fix a bad array instead of copying or casting; the GIL is released
// for the work.
namespace fc_balance_bind {
namespace py = pybind11;

// Expected numpy kind / itemsize for a C++ element type.
template <typename T> struct dt;
template <> struct dt<std::int64_t> { static constexpr char kind = 'i'; static constexpr const char* name = "int64"; };
template <> struct dt<std::int32_t> { static constexpr char kind = 'i'; static constexpr const char* name = "int32"; };
template <> struct dt<std::uint64_t> { static constexpr char kind = 'u'; static constexpr const char* name = "uint64"; };
template <> struct dt<std::uint8_t> { static constexpr char kind = 'u'; static constexpr const char* name = "uint8"; };
template <> struct dt<double> { static constexpr char kind = 'f'; static constexpr const char* name = "float64"; };

// Returns a typed view of `a` after checking it is a 1-D, C-contiguous, native-endian array of T.
template <typename T>
const T* checked(const py::array& a, const char* what, bool writable = false) {
    const std::string w = what;
    if (a.ndim() != 1)
        throw fastcurate::InputError(w + " must be 1-D, got ndim=" + std::to_string(a.ndim()) + "; pass a flat array");
    const auto d = a.dtype();
    if (d.kind() != dt<T>::kind || d.itemsize() != static_cast<py::ssize_t>(sizeof(T)) ||
        d.attr("byteorder").cast<std::string>() == ">") {
        throw fastcurate::InputError(w + " must have dtype " + dt<T>::name + ", got " +
                              py::str(d).cast<std::string>() + "; convert it with np.ascontiguousarray(" + w +
                              ", dtype=np." + dt<T>::name + ")");
    }
    if (!(a.flags() & py::array::c_style))
        throw fastcurate::InputError(w + " must be C-contiguous; pass np.ascontiguousarray(" + w + ")");
    if (writable && !a.writeable()) throw fastcurate::InputError(w + " must be writable");
    return static_cast<const T*>(a.data());
}

struct Csr {
    fastcurate::CsrView view;
    std::size_t ids_len = 0;
};

Csr csr_of(const py::array& offsets, const py::array& ids) {
    Csr c;
    c.view.offsets = checked<std::int64_t>(offsets, "offsets");
    c.view.ids = checked<std::int32_t>(ids, "ids");
    if (offsets.shape(0) < 1) throw fastcurate::InputError("offsets must hold at least one value (len(texts) + 1)");
    c.view.n_texts = static_cast<std::size_t>(offsets.shape(0) - 1);
    c.ids_len = static_cast<std::size_t>(ids.shape(0));
    const std::int64_t last = c.view.offsets[c.view.n_texts];
    if (last < 0 || static_cast<std::uint64_t>(last) > c.ids_len)
        throw fastcurate::InputError("offsets[-1]=" + std::to_string(last) + " does not fit len(ids)=" + std::to_string(c.ids_len));
    return c;
}

template <typename Fn>
auto translate(Fn&& fn) -> decltype(fn()) {
    try {
        return fn();
    } catch (const fastcurate::BalanceError& e) {
        throw fastcurate::InputError(e.what());
    }
}

// The optional keep mask of a kernel call: null when `keep` is None, else its uint8 values
// (`holder` keeps the array alive), which must be one per item.
const std::uint8_t* optional_mask(const py::object& keep, py::array& holder, std::size_t n, const char* per) {
    if (keep.is_none()) return nullptr;
    holder = keep.cast<py::array>();
    const auto* k = checked<std::uint8_t>(holder, "keep");
    if (static_cast<std::size_t>(holder.shape(0)) != n)
        throw fastcurate::InputError("keep has " + std::to_string(holder.shape(0)) + " values for " + std::to_string(n) +
                                     " " + per);
    return k;
}

// Arrow-layout string offsets (int32 or int64) into a data buffer of `dlen` bytes: checks their
// shape and that the first and last lie in the buffer (the kernels check that they never
// decrease), then calls fn(offsets pointer, number of strings).
template <typename Fn>
void with_string_offsets(const py::array& offsets, std::uint64_t dlen, Fn&& fn) {
    if (offsets.ndim() != 1 || offsets.shape(0) < 1)
        throw fastcurate::InputError("offsets must be 1-D with at least one value");
    const auto n = static_cast<std::size_t>(offsets.shape(0) - 1);
    auto run = [&](const auto* off) {
        if (off[0] < 0 || static_cast<std::uint64_t>(off[n]) > dlen)
            throw fastcurate::InputError("string offsets out of range of the data buffer");
        fn(off, n);
    };
    if (offsets.dtype().itemsize() == 4) {
        run(checked<std::int32_t>(offsets, "offsets"));
    } else {
        run(checked<std::int64_t>(offsets, "offsets"));
    }
}

}  // namespace fc_balance_bind

inline void bind_balance(pybind11::module_& m) {
    namespace py = pybind11;
    using namespace fc_balance_bind;

    m.def(
        "count_entries_into",
        [](const py::array& offsets, const py::array& ids, py::array counts, const py::object& keep) {
            Csr c = csr_of(offsets, ids);
            auto* out = const_cast<std::uint64_t*>(checked<std::uint64_t>(counts, "counts", true));
            const auto n = static_cast<std::size_t>(counts.shape(0));
            py::array keep_arr;
            const std::uint8_t* k = optional_mask(keep, keep_arr, c.view.n_texts, "texts");
            py::gil_scoped_release release;
            translate([&] { fastcurate::count_entries(c.view, out, n, k); return 0; });
        },
        py::arg("offsets"), py::arg("ids"), py::arg("counts"), py::arg("keep") = py::none(),
        "Add, for every entry, the number of texts matching it to `counts` (uint64, in place); with "
        "`keep` (uint8, one per text), only the texts whose value is non-zero.");

    m.def(
        "t_to_p",
        [](const py::array& counts, double t) {
            const auto* c = checked<std::uint64_t>(counts, "counts");
            const auto n = static_cast<std::size_t>(counts.shape(0));
            py::gil_scoped_release release;
            return translate([&] { return fastcurate::t_to_p(c, n, t); });
        },
        py::arg("counts"), py::arg("t"));

    m.def(
        "p_to_t",
        [](const py::array& counts, double p) {
            const auto* c = checked<std::uint64_t>(counts, "counts");
            const auto n = static_cast<std::size_t>(counts.shape(0));
            py::gil_scoped_release release;
            return translate([&] { return fastcurate::p_to_t(c, n, p); });
        },
        py::arg("counts"), py::arg("p"));

    m.def(
        "entry_probs",
        [](const py::array& counts, double t) {
            const auto* c = checked<std::uint64_t>(counts, "counts");
            const auto n = static_cast<std::size_t>(counts.shape(0));
            py::array_t<double> out(static_cast<py::ssize_t>(n));
            double* o = out.mutable_data();
            {
                py::gil_scoped_release release;
                translate([&] { fastcurate::entry_probs(c, n, t, o); return 0; });
            }
            return out;
        },
        py::arg("counts"), py::arg("t"));

    m.def(
        "hash_string_keys",
        [](const py::array& offsets, const py::array& data) {
            const auto* d = checked<std::uint8_t>(data, "data");
            py::array_t<std::uint64_t> out;
            with_string_offsets(offsets, static_cast<std::uint64_t>(data.shape(0)), [&](const auto* off, std::size_t n) {
                out = py::array_t<std::uint64_t>(static_cast<py::ssize_t>(n));
                std::uint64_t* o = out.mutable_data();
                py::gil_scoped_release release;
                translate([&] { fastcurate::hash_strings(off, d, n, o); return 0; });
            });
            return out;
        },
        py::arg("offsets"), py::arg("data"),
        "64-bit hashes of Arrow-layout strings (int32 or int64 offsets into a uint8 data buffer).");

    m.def(
        "hex128_pairs",
        [](const py::array& offsets, const py::array& data, const py::object& keep) {
            const auto* d = checked<std::uint8_t>(data, "data");
            py::array_t<std::uint64_t> out;
            with_string_offsets(offsets, static_cast<std::uint64_t>(data.shape(0)), [&](const auto* off, std::size_t n) {
                py::array keep_arr;
                const std::uint8_t* k = optional_mask(keep, keep_arr, n, "strings");
                std::size_t rows = n;
                if (k != nullptr) {
                    rows = 0;
                    for (std::size_t i = 0; i < n; ++i) rows += k[i] != 0;
                }
                out = py::array_t<std::uint64_t>({static_cast<py::ssize_t>(rows), static_cast<py::ssize_t>(2)});
                std::uint64_t* o = out.mutable_data();
                py::gil_scoped_release release;
                try {
                    fastcurate::hex128_pairs(off, d, n, k, o);
                } catch (const fastcurate::HexUidError& e) {
                    throw fastcurate::InputError(e.what());
                }
            });
            return out;
        },
        py::arg("offsets"), py::arg("data"), py::arg("keep") = py::none(),
        "DataComp's (hi, lo) uint64 halves of 32-hex-digit Arrow-layout strings, shape (rows, 2); with "
        "`keep` (uint8, one per string), of the strings whose value is non-zero. InputError names the "
        "first string that is not 32 hex digits.");

    m.def(
        "merge_pair_runs",
        [](const py::list& runs, const py::array& out, const py::array& scratch, int threads) {
            // (rows, 2) C-contiguous native uint64, as hex128_pairs returns and the subset file holds
            auto pairs = [](const py::array& a, const std::string& what, bool writable) -> std::pair<std::uint64_t*, std::size_t> {
                const auto d = a.dtype();
                if (a.ndim() != 2 || a.shape(1) != 2 || d.kind() != 'u' || d.itemsize() != 8 ||
                    d.attr("byteorder").cast<std::string>() == ">" || !(a.flags() & py::array::c_style)) {
                    std::string shape;
                    for (py::ssize_t i = 0; i < a.ndim(); ++i) shape += (i ? ", " : "") + std::to_string(a.shape(i));
                    throw fastcurate::InputError(what + " must be a C-contiguous (rows, 2) uint64 array, got shape (" + shape +
                                                 ") of " + py::str(d).cast<std::string>());
                }
                if (writable && !a.writeable()) throw fastcurate::InputError(what + " must be writable");
                return {static_cast<std::uint64_t*>(const_cast<void*>(a.data())), static_cast<std::size_t>(a.shape(0))};
            };
            // whether rows [a, a + an) and [b, b + bn) of (rows, 2) uint64 arrays share memory
            auto overlap = [](const std::uint64_t* a, std::size_t an, const std::uint64_t* b, std::size_t bn) {
                return an != 0 && bn != 0 && a < b + 2 * bn && b < a + 2 * an;
            };
            const auto o = pairs(out, "out", true);
            const auto sc = pairs(scratch, "scratch", true);
            std::vector<py::array> keep;  // the runs stay referenced while the GIL is released
            std::vector<fastcurate::PairRun> rs;
            std::size_t total = 0;
            for (std::size_t i = 0; i < runs.size(); ++i) {
                keep.push_back(py::cast<py::array>(runs[i]));
                const auto r = pairs(keep.back(), "runs[" + std::to_string(i) + "]", false);
                if (overlap(r.first, r.second, o.first, o.second) || overlap(r.first, r.second, sc.first, sc.second))
                    throw fastcurate::InputError("runs[" + std::to_string(i) + "] overlaps out or scratch");
                rs.push_back({r.first, r.second});
                total += r.second;
            }
            if (o.second < total || sc.second < total) {
                throw fastcurate::InputError("out and scratch need room for " + std::to_string(total) + " pairs, have " +
                                             std::to_string(o.second) + " and " + std::to_string(sc.second));
            }
            if (overlap(o.first, total, sc.first, total)) throw fastcurate::InputError("out and scratch overlap");
            py::gil_scoped_release release;
            try {
                return fastcurate::merge_pair_runs(rs.data(), rs.size(), o.first, sc.first, threads);
            } catch (const fastcurate::UnsortedRunError& e) {
                throw fastcurate::Error(e.what());
            }
        },
        py::arg("runs"), py::arg("out"), py::arg("scratch"), py::arg("threads") = 0,
        "Merges runs (a list of (rows, 2) uint64 arrays, each sorted by (hi, lo)) into out[:total] in "
        "(hi, lo) order, on `threads` threads (0: all cores); scratch has room for total pairs too. "
        "Returns total. FastcurateError if a run was not sorted.");

    m.def(
        "hash_int_keys",
        [](const py::array& values) {
            const auto* v = checked<std::int64_t>(values, "values");
            const auto n = static_cast<std::size_t>(values.shape(0));
            py::array_t<std::uint64_t> out(static_cast<py::ssize_t>(n));
            std::uint64_t* o = out.mutable_data();
            py::gil_scoped_release release;
            for (std::size_t i = 0; i < n; ++i) o[i] = fastcurate::hash_int64(v[i]);
            return out;
        },
        py::arg("values"), "64-bit hashes of int64 keys.");

    m.def(
        "uniform_draws",
        [](const py::array& key_hashes, std::uint64_t seed) {
            const auto* h = checked<std::uint64_t>(key_hashes, "key_hashes");
            const auto n = static_cast<std::size_t>(key_hashes.shape(0));
            py::array_t<double> out(static_cast<py::ssize_t>(n));
            double* o = out.mutable_data();
            py::gil_scoped_release release;
            for (std::size_t i = 0; i < n; ++i) o[i] = fastcurate::uniform_draw(seed, h[i]);
            return out;
        },
        py::arg("key_hashes"), py::arg("seed"), "The uniform draw in [0, 1) of each key for a seed.");

    m.def(
        "balance",
        [](const py::array& offsets, const py::array& ids, const py::array& probs, const py::array& key_hashes,
           std::uint64_t seed, unsigned threads) {
            Csr c = csr_of(offsets, ids);
            const auto* p = checked<double>(probs, "probs");
            const auto* h = checked<std::uint64_t>(key_hashes, "key_hashes");
            if (static_cast<std::size_t>(key_hashes.shape(0)) != c.view.n_texts)
                throw fastcurate::InputError("len(keys)=" + std::to_string(key_hashes.shape(0)) +
                                      " differs from the number of texts " + std::to_string(c.view.n_texts));
            const auto n_entries = static_cast<std::size_t>(probs.shape(0));
            py::array_t<std::uint8_t> keep(static_cast<py::ssize_t>(c.view.n_texts));
            std::uint8_t* k = keep.mutable_data();
            std::size_t kept = 0;
            {
                py::gil_scoped_release release;
                kept = translate([&] { return fastcurate::balance(c.view, p, n_entries, h, seed, k, threads); });
            }
            return py::make_tuple(keep, kept);
        },
        py::arg("offsets"), py::arg("ids"), py::arg("probs"), py::arg("key_hashes"), py::arg("seed"),
        py::arg("threads") = 0u, "Keep mask (uint8) and kept count of the balanced draw.");

    m.def(
        "expected_size",
        [](const py::array& offsets, const py::array& ids, const py::array& probs, unsigned threads) {
            Csr c = csr_of(offsets, ids);
            const auto* p = checked<double>(probs, "probs");
            const auto n_entries = static_cast<std::size_t>(probs.shape(0));
            py::gil_scoped_release release;
            return translate([&] { return fastcurate::expected_size(c.view, p, n_entries, threads); });
        },
        py::arg("offsets"), py::arg("ids"), py::arg("probs"), py::arg("threads") = 0u);

    m.def(
        "expected_size_for_t",
        [](const py::array& offsets, const py::array& ids, const py::array& counts, double t, unsigned threads) {
            Csr c = csr_of(offsets, ids);
            const auto* cn = checked<std::uint64_t>(counts, "counts");
            const auto n_entries = static_cast<std::size_t>(counts.shape(0));
            py::gil_scoped_release release;
            return translate([&] { return fastcurate::expected_size_for_t(c.view, cn, n_entries, t, threads); });
        },
        py::arg("offsets"), py::arg("ids"), py::arg("counts"), py::arg("t"), py::arg("threads") = 0u);
}


// ---------------------------------------------------------------------------------------------
// Text filters (fastcurate/text_rules.hpp, fastcurate/langid.hpp): DataComp's caption counts, the
// bad-alt-text rules and fastText language ID. Texts come through make_columns like the matcher's.
namespace fc_text_bind {
namespace py = pybind11;

std::vector<std::string> str_list(const py::handle& h, const char* what) {
  std::vector<std::string> out;
  for (const py::handle item : py::reinterpret_borrow<py::iterable>(h)) {
    if (!PyUnicode_Check(item.ptr())) {
      throw fastcurate::InputError(std::string(what) + " must be a list of str, got an item of type " +
                                   Py_TYPE(item.ptr())->tp_name);
    }
    out.push_back(item.cast<std::string>());
  }
  return out;
}

// A 1-D C-contiguous array of one-byte items (uint8 or bool) of the given length.
const uint8_t* byte_mask(const py::handle& h, int64_t rows, const char* what) {
  if (h.is_none()) return nullptr;
  py::array a = py::reinterpret_borrow<py::array>(h);
  const auto d = a.dtype();
  if (a.ndim() != 1 || d.itemsize() != 1 || (d.kind() != 'u' && d.kind() != 'b')) {
    throw fastcurate::InputError(std::string(what) + " must be a 1-D uint8 or bool array; convert it with np.asarray(" +
                                 what + ", dtype=np.uint8)");
  }
  if (!(a.flags() & py::array::c_style)) {
    throw fastcurate::InputError(std::string(what) + " must be C-contiguous; pass np.ascontiguousarray(" + what + ")");
  }
  if (a.shape(0) != rows) {
    throw fastcurate::InputError(std::string(what) + " has " + std::to_string(a.shape(0)) + " items for " +
                                 std::to_string(rows) + " texts; they must be equally long");
  }
  return static_cast<const uint8_t*>(a.data());
}

}  // namespace fc_text_bind

inline void bind_text_filters(pybind11::module_& m) {
  namespace py = pybind11;
  using namespace fc_text_bind;

  py::class_<TextRules>(m, "TextRules", R"doc(The C++ caption-rules kernel. Use fastcurate.kernels.text_rules.

Thread safety: immutable after construction; run() may be called from many threads at once.)doc")
      .def(py::init([](int rules, int64_t url_min_other_words, double min_letter_share, int64_t repeat_min_tokens,
                       double repeat_min_dup_share, int64_t repeat_min_tokens_distinct, const py::handle& extensions,
                       const py::handle& camera_prefixes, const py::handle& camera_fillers,
                       const py::handle& boilerplate_phrases, const py::handle& boilerplate_prefixes,
                       const py::handle& stopwords) {
             if (rules < 0 || rules > kAllRules) throw InputError("rules mask out of range: " + std::to_string(rules));
             TextRulesConfig c;
             c.rules = static_cast<uint8_t>(rules);
             c.url_min_other_words = url_min_other_words;
             c.min_letter_share = min_letter_share;
             c.repeat_min_tokens = repeat_min_tokens;
             c.repeat_min_dup_share = repeat_min_dup_share;
             c.repeat_min_tokens_distinct = repeat_min_tokens_distinct;
             c.extensions = str_list(extensions, "extensions");
             c.camera_prefixes = str_list(camera_prefixes, "camera_prefixes");
             c.camera_fillers = str_list(camera_fillers, "camera_fillers");
             c.boilerplate_phrases = str_list(boilerplate_phrases, "boilerplate_phrases");
             c.boilerplate_prefixes = str_list(boilerplate_prefixes, "boilerplate_prefixes");
             c.stopwords = str_list(stopwords, "stopwords");
             py::gil_scoped_release release;
             return new TextRules(std::move(c));
           }),
           py::arg("rules"), py::arg("url_min_other_words"), py::arg("min_letter_share"), py::arg("repeat_min_tokens"),
           py::arg("repeat_min_dup_share"), py::arg("repeat_min_tokens_distinct"), py::arg("extensions"),
           py::arg("camera_prefixes"), py::arg("camera_fillers"), py::arg("boilerplate_phrases"),
           py::arg("boilerplate_prefixes"), py::arg("stopwords"))
      .def(
          "run",
          [](const TextRules& self, const std::string& kind, const py::handle& texts, bool want_counts, int threads) {
            Columns c = make_columns(kind, texts);
            TextStats r = run_released(c.rows, [&](const CancelToken* cancel) {
              return self.run(c.cols, want_counts, check_threads(threads), cancel);
            });
            py::object words = py::none(), chars = py::none();
            if (want_counts) {
              words = to_numpy(std::move(r.words));
              chars = to_numpy(std::move(r.chars));
            }
            return py::make_tuple(words, chars, to_numpy(std::move(r.flags)));
          },
          py::arg("kind"), py::arg("texts"), py::arg("want_counts") = true, py::arg("threads") = 0);

  py::class_<FastTextModel>(m, "FastTextModel", R"doc(fastText supervised-model inference (top-1). Use fastcurate.kernels.langid.

Thread safety: immutable after construction; predict() may be called from many threads at once.)doc")
      .def_static(
          "from_buffer",
          [](const py::buffer& buf) {
            py::buffer_info info = buf.request();
            const auto* p = static_cast<const uint8_t*>(info.ptr);
            const auto n = static_cast<size_t>(info.size * info.itemsize);
            py::gil_scoped_release release;
            return new FastTextModel(FastTextModel::from_bytes(p, n));
          },
          py::arg("buffer"))
      .def(
          "predict",
          [](const FastTextModel& self, const std::string& kind, const py::handle& texts, const py::handle& skip,
             int threads) {
            Columns c = make_columns(kind, texts);
            const uint8_t* sk = byte_mask(skip, c.rows, "skip");
            LangPredictions r = run_released(c.rows, [&](const CancelToken* cancel) {
              return self.predict(c.cols, sk, check_threads(threads), cancel);
            });
            return py::make_tuple(to_numpy(std::move(r.label)), to_numpy(std::move(r.prob)));
          },
          py::arg("kind"), py::arg("texts"), py::arg("skip") = py::none(), py::arg("threads") = 0)
      .def_property_readonly("labels",
                             [](const FastTextModel& self) {
                               py::list out;
                               for (const std::string& l : self.labels()) {
                                 PyObject* s = PyUnicode_DecodeUTF8(l.data(), static_cast<Py_ssize_t>(l.size()), "replace");
                                 if (s == nullptr) throw py::error_already_set();
                                 out.append(py::reinterpret_steal<py::object>(s));
                               }
                               return out;
                             })
      .def_property_readonly("dim", &FastTextModel::dim)
      .def_property_readonly("words", &FastTextModel::words)
      .def_property_readonly("quantized", &FastTextModel::quantized)
      .def_property_readonly("memory_bytes", &FastTextModel::memory_bytes);

  m.def("unicode_version", []() { return std::string(unicode::kUnicodeVersion); },
        "The Unicode version of the code-point classes the text kernels were generated from.");
  m.def(
      "unicode_class",
      [](uint32_t cp) { return unicode::cp_class(cp); }, py::arg("cp"),
      "Class bits of a code point (1 space, 2 alpha, 4 other alphanumeric, 8 combining mark); for tests.");
}

// ---------------------------------------------------------------------------------------------
// Image kernels (fastcurate/image_size.hpp, phash.hpp, hamming.hpp): header sizes, perceptual
// hashes of decoded grayscale images, the Hamming-radius pair search and duplicate grouping.
// fastcurate.kernels.images and fastcurate.kernels.dedup wrap them.
namespace fc_image_bind {
namespace py = pybind11;
using fc_balance_bind::checked;

// Encoded images as a Python sequence: bytes (viewed in place; the tuple keeps them alive and
// bytes are immutable, so the GIL can be released) or None (a null row).
Columns blob_columns(const std::string& kind, const py::handle& blobs) {
  if (kind == "arrow") return make_columns(kind, blobs);
  if (kind != "list") throw std::invalid_argument("kind must be 'arrow' or 'list'");
  Columns c;
  c.strings.reset(new PyStrings);
  PyStrings& s = *c.strings;
  PyObject* t = PySequence_Tuple(blobs.ptr());
  if (t == nullptr) throw py::error_already_set();
  s.keep = py::reinterpret_steal<py::tuple>(t);
  const size_t n = s.keep.size();
  s.views.resize(n);
  s.valid.assign(n, 1);
  for (size_t i = 0; i < n; ++i) {
    PyObject* o = PyTuple_GET_ITEM(t, static_cast<py::ssize_t>(i));
    if (PyBytes_Check(o)) {
      s.views[i] = std::string_view(PyBytes_AS_STRING(o), static_cast<size_t>(PyBytes_GET_SIZE(o)));
    } else if (o == Py_None) {
      s.valid[i] = 0;
      s.any_null = true;
    } else if (PyUnicode_Check(o)) {
      throw std::invalid_argument("blobs[" + std::to_string(i) +
                                  "] is a str, expected bytes (the encoded image file); to read files pass "
                                  "Path(p).read_bytes(), not the path");
    } else {
      throw std::invalid_argument("blobs[" + std::to_string(i) + "] is a " + std::string(Py_TYPE(o)->tp_name) +
                                  ", expected bytes or None; convert it with bytes(x)");
    }
  }
  TextColumn col;
  col.views = s.views.data();
  col.view_valid = s.any_null ? s.valid.data() : nullptr;
  col.length = static_cast<int64_t>(n);
  c.cols.push_back(col);
  c.rows = col.length;
  return c;
}

// A 2-D uint8 array as a GrayImage (rows may be strided, pixels within a row must be adjacent).
GrayImage gray_view(const py::array& a, size_t i) {
  const std::string w = "images[" + std::to_string(i) + "]";
  if (a.ndim() != 2) {
    throw InputError(w + " must be a 2-D (height, width) grayscale array, got ndim=" + std::to_string(a.ndim()) +
                     "; convert colour images with PIL's Image.convert('L')");
  }
  const auto d = a.dtype();
  if (d.kind() != 'u' || d.itemsize() != 1) {
    throw InputError(w + " must have dtype uint8, got " + py::str(d).cast<std::string>() +
                     "; 8-bit grayscale is what the hash is defined on");
  }
  // Empty images are rejected by the kernel (with the row); one-row images have no row stride.
  const bool empty = a.shape(0) == 0 || a.shape(1) == 0;
  if (!empty && (a.strides(1) != 1 || (a.shape(0) > 1 && a.strides(0) < a.shape(1)))) {
    throw InputError(w + " must have contiguous rows; pass np.ascontiguousarray(" + w + ")");
  }
  GrayImage g;
  g.data = static_cast<const uint8_t*>(a.data());
  g.height = a.shape(0);
  g.width = a.shape(1);
  g.stride = a.shape(0) > 1 ? a.strides(0) : a.shape(1);
  return g;
}

py::object hamming_call(const py::array& hashes, int radius, const py::object& second, int radius2,
                        int64_t max_pairs, int threads, bool brute, int blocks) {
  HammingQuery q;
  q.blocks = blocks;
  q.hashes = checked<std::uint64_t>(hashes, "hashes");
  q.n = hashes.shape(0);
  q.radius = radius;
  q.radius2 = radius2;
  q.max_pairs = max_pairs;
  py::array second_arr;
  if (!second.is_none()) {
    second_arr = py::reinterpret_borrow<py::array>(second);
    q.second = checked<std::uint64_t>(second_arr, "second");
    if (second_arr.shape(0) != q.n) {
      throw InputError("second has " + std::to_string(second_arr.shape(0)) + " hashes but hashes has " +
                       std::to_string(q.n) + "; pass one second hash per row");
    }
  }
  check_threads(threads);
  HammingPairs r = run_released(q.n, [&](const CancelToken* cancel) {
    return brute ? hamming_pairs_brute(q, threads, cancel) : hamming_pairs(q, threads, cancel);
  });
  py::object d2 = py::none();
  if (q.second != nullptr) d2 = to_numpy(std::move(r.dist2));
  return py::make_tuple(to_numpy(std::move(r.i)), to_numpy(std::move(r.j)), to_numpy(std::move(r.dist)), d2);
}

}  // namespace fc_image_bind

inline void bind_images(pybind11::module_& m) {
  namespace py = pybind11;
  using namespace fc_image_bind;

  m.def(
      "image_sizes",
      [](const std::string& kind, const py::handle& blobs, int threads) {
        Columns c = blob_columns(kind, blobs);
        check_threads(threads);
        ImageSizeResult r = run_released(c.rows, [&](const CancelToken* cancel) {
          return fastcurate::image_sizes(c.cols, threads, cancel);
        });
        return py::make_tuple(to_numpy(std::move(r.width)), to_numpy(std::move(r.height)),
                              to_numpy(std::move(r.status)), to_numpy(std::move(r.format)));
      },
      py::arg("kind"), py::arg("blobs"), py::arg("threads") = 0,
      "(width int32, height int32, status uint8, format uint8) of every encoded image, from its header.");

  m.def(
      "gray_hashes",
      [](const py::handle& images, int threads) {
        PyObject* t = PySequence_Tuple(images.ptr());
        if (t == nullptr) throw py::error_already_set();
        py::tuple keep = py::reinterpret_steal<py::tuple>(t);  // keeps every array alive
        std::vector<GrayImage> views(keep.size());
        for (size_t i = 0; i < keep.size(); ++i) {
          if (!py::isinstance<py::array>(keep[i])) {
            throw std::invalid_argument("images[" + std::to_string(i) + "] is a " +
                                        std::string(Py_TYPE(keep[i].ptr())->tp_name) + ", expected a numpy uint8 array");
          }
          views[i] = gray_view(py::reinterpret_borrow<py::array>(keep[i]), i);
        }
        check_threads(threads);
        const int64_t n = static_cast<int64_t>(views.size());
        std::vector<uint64_t> ph(views.size()), dh(views.size());
        run_released(n, [&](const CancelToken* cancel) {
          perceptual_hashes(views.data(), n, ph.data(), dh.data(), threads, cancel);
          return 0;
        });
        return py::make_tuple(to_numpy(std::move(ph)), to_numpy(std::move(dh)));
      },
      py::arg("images"), py::arg("threads") = 0,
      "(phash uint64, dhash uint64) of 2-D uint8 grayscale arrays (definitions in docs/dedup.md).");

  m.def(
      "box_sums",
      [](const py::array& image, int rows, int cols) {
        if (rows < 1 || cols < 1 || rows > 4096 || cols > 4096) throw InputError("rows and cols must be in [1, 4096]");
        GrayImage g = gray_view(image, 0);
        std::vector<int64_t> s;
        {
          py::gil_scoped_release release;
          s = fastcurate::box_sums(g, rows, cols);
        }
        return to_numpy(std::move(s)).reshape({rows, cols});
      },
      py::arg("image"), py::arg("rows"), py::arg("cols"),
      "Exact box-filter sums (int64, rows x cols) of a grayscale image: each cell is the area mean times H*W.");

  m.def("phash_dct_table", []() {
    py::array_t<int32_t> t({8, 32});
    std::memcpy(t.mutable_data(), kPhashDct, sizeof(kPhashDct));
    return t;
  }, "The 8x32 integer DCT-II table of phash: round(4096 * cos(pi*u*(2x+1)/64)).");

  m.def(
      "hamming_pairs",
      [](const py::array& hashes, int radius, const py::object& second, int radius2, int64_t max_pairs, int threads,
         const std::string& method, int blocks) {
        if (method != "mih" && method != "brute") throw InputError("method must be 'mih' or 'brute', got '" + method + "'");
        return hamming_call(hashes, radius, second, radius2, max_pairs, threads, method == "brute", blocks);
      },
      py::arg("hashes"), py::arg("radius"), py::arg("second") = py::none(), py::arg("radius2") = 64,
      py::arg("max_pairs") = int64_t{1} << 31, py::arg("threads") = 0, py::arg("method") = "mih", py::arg("blocks") = 0,
      "All pairs (i < j) within the Hamming radius: (i int64, j int64, dist uint8, dist2 uint8 or None), sorted.");

  m.def(
      "plan_search",
      [](int64_t n, int radius, int blocks) {
        const SearchPlan p = fastcurate::plan_search(n, radius, blocks);
        py::dict d;
        py::list bits, shift, rad;
        for (int k = 0; k < p.blocks; ++k) {
          bits.append(p.bits[k]);
          shift.append(p.shift[k]);
          rad.append(p.radius[k]);
        }
        d["blocks"] = p.blocks;
        d["bits"] = bits;
        d["shift"] = shift;
        d["radius"] = rad;
        d["est_candidates"] = p.est_candidates;
        d["est_probes"] = p.est_probes;
        return d;
      },
      py::arg("n"), py::arg("radius"), py::arg("blocks") = 0,
      "The block split hamming_pairs uses for n hashes at a radius (blocks=0: the cost model's choice).");

  m.def(
      "connected_components",
      [](int64_t n, const py::array& a, const py::array& b) {
        const auto* pa = checked<std::int64_t>(a, "a");
        const auto* pb = checked<std::int64_t>(b, "b");
        if (a.shape(0) != b.shape(0)) throw InputError("a and b must have the same length");
        const int64_t m = a.shape(0);
        std::vector<int64_t> labels;
        {
          py::gil_scoped_release release;
          labels = fastcurate::connected_components(n, pa, pb, m);
        }
        return to_numpy(std::move(labels));
      },
      py::arg("n"), py::arg("a"), py::arg("b"),
      "Union-find over n rows and the edges (a[k], b[k]): each row's label is the smallest row of its group.");

  m.def(
      "best_of_groups",
      [](const py::array& labels, const py::array& rank) {
        const auto* pl = checked<std::int64_t>(labels, "labels");
        const auto* pr = checked<std::int64_t>(rank, "rank");
        if (labels.shape(0) != rank.shape(0)) throw InputError("labels and rank must have the same length");
        const int64_t n = labels.shape(0);
        std::vector<int64_t> twin;
        {
          py::gil_scoped_release release;
          twin = fastcurate::best_of_groups(n, pl, pr);
        }
        return to_numpy(std::move(twin));
      },
      py::arg("labels"), py::arg("rank"),
      "For each row, the row its group keeps: smallest rank, then smallest row index.");
}
// CLIP BPE tokeniser (fastcurate/clip_bpe.hpp). fastcurate.models.tokenizer.ClipTokenizer wraps it
// and does, in Python, the cleaning of the rows this kernel reports as needing it.
namespace fc_clip_bind {
namespace py = pybind11;

// A Python list of str viewed in place. Unlike view_strings, only str is accepted (open_clip
// tokenises str alone), and a str with a lone surrogate (no UTF-8 form) is not an error: ftfy
// repairs those, so the row is marked for the Python path instead.
struct StrList {
  PyStrings s;
  std::vector<int64_t> surrogate_rows;
};

StrList view_str_list(const py::handle& seq) {
  StrList out;
  PyObject* t = PySequence_Tuple(seq.ptr());
  if (t == nullptr) throw py::error_already_set();
  out.s.keep = py::reinterpret_steal<py::tuple>(t);
  const size_t n = out.s.keep.size();
  out.s.views.resize(n);
  for (size_t i = 0; i < n; ++i) {
    PyObject* o = PyTuple_GET_ITEM(t, static_cast<py::ssize_t>(i));
    if (!PyUnicode_Check(o)) {
      throw std::invalid_argument("texts[" + std::to_string(i) + "] is " + Py_TYPE(o)->tp_name +
                                  ", not str; convert or drop it (None captions: use '')");
    }
    Py_ssize_t len = 0;
    const char* p = PyUnicode_AsUTF8AndSize(o, &len);
    if (p == nullptr) {
      PyErr_Clear();
      out.surrogate_rows.push_back(static_cast<int64_t>(i));
      out.s.views[i] = std::string_view();
    } else {
      out.s.views[i] = std::string_view(p, static_cast<size_t>(len));
    }
  }
  return out;
}

template <typename T>
const T* checked_1d(const py::array& a, const char* what, py::ssize_t n) {
  if (a.ndim() != 1 || a.shape(0) != n || a.dtype().itemsize() != static_cast<py::ssize_t>(sizeof(T)) ||
      !(a.flags() & py::array::c_style)) {
    throw InputError(std::string(what) + " must be a C-contiguous 1-D array of " + std::to_string(n) + " " +
                     std::to_string(8 * sizeof(T)) + "-bit integers");
  }
  return static_cast<const T*>(a.data());
}

void bind(py::module_& m) {
  py::class_<ClipBpe>(m, "ClipBpe", R"doc(CLIP byte-level BPE with open_clip's exact semantics, for the rows that
need no ftfy. Use fastcurate.models.ClipTokenizer, which wraps it.

Thread safety: calls lock an internal mutex (the word cache is shared), so one object may be used
from several threads; the calls are serialised.)doc")
      .def(py::init([](const py::array& byte_ids, const py::array& byte_end_ids, const py::array& merges,
                       int32_t sot_id, int32_t eot_id, int32_t vocab_size, size_t max_cache_words) {
             ClipBpeTables t;
             const auto* b = checked_1d<int32_t>(byte_ids, "byte_ids", 256);
             const auto* e = checked_1d<int32_t>(byte_end_ids, "byte_end_ids", 256);
             std::memcpy(t.byte_id, b, sizeof(t.byte_id));
             std::memcpy(t.byte_end_id, e, sizeof(t.byte_end_id));
             if (merges.ndim() != 2 || merges.shape(1) != 3 || merges.dtype().itemsize() != 4 ||
                 merges.dtype().kind() != 'i' || !(merges.flags() & py::array::c_style)) {
               throw InputError("merges must be a C-contiguous int32 array of shape (n_merges, 3): left, right, result");
             }
             const auto* mp = static_cast<const int32_t*>(merges.data());
             const auto nm = static_cast<size_t>(merges.shape(0));
             t.merge_left.resize(nm);
             t.merge_right.resize(nm);
             t.merge_result.resize(nm);
             for (size_t i = 0; i < nm; ++i) {
               t.merge_left[i] = mp[3 * i];
               t.merge_right[i] = mp[3 * i + 1];
               t.merge_result[i] = mp[3 * i + 2];
             }
             t.sot_id = sot_id;
             t.eot_id = eot_id;
             t.vocab_size = vocab_size;
             py::gil_scoped_release release;
             return new ClipBpe(t, max_cache_words);
           }),
           py::arg("byte_ids"), py::arg("byte_end_ids"), py::arg("merges"), py::arg("sot_id"), py::arg("eot_id"),
           py::arg("vocab_size"), py::arg("max_cache_words") = 0)
      .def(
          "tokenize",
          [](ClipBpe& self, const std::string& kind, const py::handle& texts, py::array out, bool precleaned) {
            Columns c;
            StrList list;
            if (kind == "list") {
              list = view_str_list(texts);
              TextColumn col;
              col.views = list.s.views.data();
              col.length = static_cast<int64_t>(list.s.views.size());
              c.cols.push_back(col);
              c.rows = col.length;
            } else {
              c = make_columns(kind, texts);
            }
            if (out.ndim() != 2 || out.shape(0) != c.rows || out.dtype().kind() != 'i' || out.dtype().itemsize() != 8 ||
                !(out.flags() & py::array::c_style) || !out.writeable()) {
              throw InputError("out must be a writable, C-contiguous int64 array of shape (" + std::to_string(c.rows) +
                               ", context_length), zero-filled");
            }
            const int64_t ctx = out.shape(1);
            auto* o = static_cast<int64_t*>(out.mutable_data());
            py::array_t<int32_t> lengths(static_cast<py::ssize_t>(c.rows));
            py::array_t<uint8_t> status(static_cast<py::ssize_t>(c.rows));
            int32_t* lp = lengths.mutable_data();
            uint8_t* sp = status.mutable_data();
            run_released(c.rows, [&](const CancelToken* cancel) {
              return self.tokenize(c.cols, ctx, precleaned, o, lp, sp, cancel);
            });
            for (int64_t r : list.surrogate_rows) {
              // The empty view was tokenised as ""; the row is the Python path's to redo.
              sp[r] = kRowNeedsPython;
              lp[r] = 0;
              std::fill(o + r * ctx, o + (r + 1) * ctx, int64_t{0});
            }
            return py::make_tuple(lengths, status);
          },
          py::arg("kind"), py::arg("texts"), py::arg("out"), py::arg("precleaned") = false)
      .def(
          "encode_words",
          [](ClipBpe& self, const py::handle& words) {
            StrList list = view_str_list(words);
            if (!list.surrogate_rows.empty()) {
              throw InputError("words[" + std::to_string(list.surrogate_rows[0]) +
                               "] has a lone surrogate; clean the text with ftfy first");
            }
            TextColumn col;
            col.views = list.s.views.data();
            col.length = static_cast<int64_t>(list.s.views.size());
            std::vector<int64_t> offsets;
            std::vector<int32_t> ids;
            {
              py::gil_scoped_release release;
              self.encode_words(col, offsets, ids);
            }
            return py::make_tuple(to_numpy(std::move(offsets)), to_numpy(std::move(ids)));
          },
          py::arg("words"))
      .def(
          "bpe_uncached",
          [](const ClipBpe& self, const std::string& word, bool heap) { return self.bpe_uncached(word, heap); },
          py::arg("word"), py::arg("heap"))
      .def(
          "set_ftfy_tables",
          [](ClipBpe& self, const py::array& cps, const py::array& unsafe, const py::array& ccc, const py::array& masks,
             const py::array& alt_offsets, const py::array& alt_items) {
            auto vec = [](const py::array& a, const char* what, char kind, py::ssize_t size) {
              if (a.ndim() != 1 || a.dtype().kind() != kind || a.dtype().itemsize() != size ||
                  !(a.flags() & py::array::c_style)) {
                throw InputError(std::string(what) + " must be a C-contiguous 1-D array of " + (kind == 'u' ? "u" : "") +
                                 "int" + std::to_string(8 * size));
              }
              return a.shape(0);
            };
            FtfyTables t;
            const auto n = vec(cps, "cps", 'u', 4);
            vec(unsafe, "unsafe", 'u', 1);
            vec(ccc, "ccc", 'u', 1);
            vec(masks, "masks", 'u', 8);
            const auto na = vec(alt_offsets, "alt_offsets", 'i', 8);
            const auto ni = vec(alt_items, "alt_items", 'u', 8);
            if (unsafe.shape(0) != n || ccc.shape(0) != n || masks.shape(0) != n) {
              throw InputError("cps, unsafe, ccc and masks must have the same length");
            }
            auto* c = static_cast<const uint32_t*>(cps.data());
            auto* u = static_cast<const uint8_t*>(unsafe.data());
            auto* k = static_cast<const uint8_t*>(ccc.data());
            auto* mk = static_cast<const uint64_t*>(masks.data());
            auto* ao = static_cast<const int64_t*>(alt_offsets.data());
            auto* ai = static_cast<const uint64_t*>(alt_items.data());
            t.cps.assign(c, c + n);
            t.unsafe.assign(u, u + n);
            t.ccc.assign(k, k + n);
            t.masks.assign(mk, mk + n);
            t.alt_offsets.assign(ao, ao + na);
            t.alt_items.assign(ai, ai + ni);
            self.set_ftfy_tables(std::move(t));
          },
          py::arg("cps"), py::arg("unsafe"), py::arg("ccc"), py::arg("masks"), py::arg("alt_offsets"),
          py::arg("alt_items"))
      .def(
          "ftfy_noop",
          [](const ClipBpe& self, const py::bytes& text) {
            const std::string_view v = text;
            return self.ftfy_noop(reinterpret_cast<const uint8_t*>(v.data()), static_cast<int64_t>(v.size()));
          },
          py::arg("text"))
      .def_property_readonly("has_ftfy_tables", &ClipBpe::has_ftfy_tables)
      .def("clear_cache", &ClipBpe::clear_cache)
      .def_property_readonly("cache_words", &ClipBpe::cache_words)
      .def_property_readonly("merges_monotone", &ClipBpe::merges_monotone)
      .def_property_readonly("sot_id", &ClipBpe::sot_id)
      .def_property_readonly("eot_id", &ClipBpe::eot_id);
}

}  // namespace fc_clip_bind
// Clustering kernels: silhouette (fastcurate/silhouette.hpp) and SemDeDup (fastcurate/semdedup.hpp).
// fastcurate.kernels.silhouette / .semdedup wrap them. Embedding matrices are 2-D float16 /
// float32 / float64 arrays whose rows are contiguous (np.memmap works: nothing is copied); every
// other array must have the exact dtype. Buffers are taken with the GIL held, then released.
namespace fc_cluster_bind {
namespace py = pybind11;

// Keeps the array referenced while the GIL is released.
struct Emb {
  py::array arr;
  fastcurate::Rows rows;
};

Emb emb_of(const py::array& a, const char* what, int64_t index_base) {
  const std::string w = what;
  if (a.ndim() != 2) {
    throw fastcurate::InputError(w + " must be a 2-D array (rows x dims), got ndim=" + std::to_string(a.ndim()));
  }
  const auto dt = a.dtype();
  fastcurate::Rows r;
  if (dt.kind() == 'f' && dt.itemsize() == 2) {
    r.dtype = fastcurate::DType::F16;
  } else if (dt.kind() == 'f' && dt.itemsize() == 4) {
    r.dtype = fastcurate::DType::F32;
  } else if (dt.kind() == 'f' && dt.itemsize() == 8) {
    r.dtype = fastcurate::DType::F64;
  } else {
    throw std::invalid_argument(w + " must be float16, float32 or float64, got " + py::str(dt).cast<std::string>() +
                                     "; convert it with " + w + ".astype(np.float32)");
  }
  if (dt.attr("byteorder").cast<std::string>() == ">") {
    throw std::invalid_argument(w + " is big-endian; convert it with " + w + ".astype(" + w + ".dtype.newbyteorder('='))");
  }
  const auto item = static_cast<py::ssize_t>(dt.itemsize());
  if (a.shape(0) > 1 && (a.strides(0) % item != 0 || a.strides(0) < a.shape(1) * item)) {
    throw fastcurate::InputError(w + " rows are not laid out one after another; pass np.ascontiguousarray(" + w + ")");
  }
  if (a.shape(1) > 1 && a.strides(1) != item) {
    throw fastcurate::InputError(w + " rows are not contiguous; pass np.ascontiguousarray(" + w + ")");
  }
  r.data = a.data();
  r.n = a.shape(0);
  r.d = a.shape(1);
  r.stride = a.shape(0) > 1 ? a.strides(0) / item : a.shape(1);
  r.index_base = index_base;
  return Emb{a, r};
}

template <typename T> struct dt;
template <> struct dt<int32_t> { static constexpr char kind = 'i'; static constexpr const char* name = "int32"; };
template <> struct dt<int64_t> { static constexpr char kind = 'i'; static constexpr const char* name = "int64"; };
template <> struct dt<double> { static constexpr char kind = 'f'; static constexpr const char* name = "float64"; };

template <typename T>
T* typed(const py::array& a, const char* what, int ndim, bool writable) {
  const std::string w = what;
  if (a.ndim() != ndim) {
    throw fastcurate::InputError(w + " must be " + std::to_string(ndim) + "-D, got ndim=" + std::to_string(a.ndim()));
  }
  const auto d = a.dtype();
  if (d.kind() != dt<T>::kind || d.itemsize() != static_cast<py::ssize_t>(sizeof(T)) ||
      d.attr("byteorder").cast<std::string>() == ">") {
    throw std::invalid_argument(w + " must have dtype " + dt<T>::name + ", got " + py::str(d).cast<std::string>() +
                                     "; convert it with np.ascontiguousarray(" + w + ", dtype=np." + dt<T>::name + ")");
  }
  if (!(a.flags() & py::array::c_style)) {
    throw fastcurate::InputError(w + " must be C-contiguous; pass np.ascontiguousarray(" + w + ")");
  }
  if (writable && !a.writeable()) throw fastcurate::InputError(w + " must be writable");
  return static_cast<T*>(const_cast<void*>(a.data()));
}

void need_len(const py::array& a, int64_t n, const char* what, const char* of) {
  if (a.shape(0) != n) {
    throw fastcurate::InputError(std::string(what) + " has " + std::to_string(a.shape(0)) + " values, expected " +
                                 std::to_string(n) + " (" + of + ")");
  }
}

py::array_t<double> vec(int64_t n) { return py::array_t<double>(static_cast<py::ssize_t>(n)); }

}  // namespace fc_cluster_bind

inline void bind_cluster(pybind11::module_& m) {
  namespace py = pybind11;
  using namespace fc_cluster_bind;
  using fastcurate::CancelToken;

  m.def("dense_isa", []() { return std::string(fastcurate::dense_isa_name()); },
        "The vector instruction set the clustering kernels use on this CPU: 'avx512', 'avx2' or 'scalar'.");

  m.def(
      "cosine_cluster_sums",
      [](const py::array& x, const py::array& labels, const py::array& sums, const py::array& counts, int threads,
         int64_t index_base) {
        Emb e = emb_of(x, "embeddings", index_base);
        const int32_t* lab = typed<int32_t>(labels, "labels", 1, false);
        need_len(labels, e.rows.n, "labels", "one per embedding row");
        double* S = typed<double>(sums, "sums", 2, true);
        int64_t* C = typed<int64_t>(counts, "counts", 1, true);
        const int32_t k = static_cast<int32_t>(counts.shape(0));
        if (sums.shape(0) != k || sums.shape(1) != e.rows.d) {
          throw fastcurate::InputError("sums must be (k, d) = (" + std::to_string(k) + ", " + std::to_string(e.rows.d) +
                                       "); embeddings of another width cannot share these sums");
        }
        run_released(e.rows.n, [&](const CancelToken* cancel) {
          fastcurate::cosine_cluster_sums(e.rows, lab, k, S, C, check_threads(threads), cancel);
          return 0;
        });
      },
      py::arg("x"), py::arg("labels"), py::arg("sums"), py::arg("counts"), py::arg("threads") = 0,
      py::arg("index_base") = 0,
      "Adds the L2-normalised rows of x into sums[label] (float64, k x d) and 1 into counts[label] (int64).");

  m.def(
      "silhouette_cosine_rows",
      [](const py::array& x, const py::array& labels, const py::array& sums, const py::array& counts, int threads,
         int64_t index_base) {
        Emb e = emb_of(x, "embeddings", index_base);
        const int32_t* lab = typed<int32_t>(labels, "labels", 1, false);
        need_len(labels, e.rows.n, "labels", "one per embedding row");
        const double* S = typed<double>(sums, "sums", 2, false);
        const int64_t* C = typed<int64_t>(counts, "counts", 1, false);
        const int32_t k = static_cast<int32_t>(counts.shape(0));
        if (sums.shape(0) != k || sums.shape(1) != e.rows.d) {
          throw fastcurate::InputError("sums must be (k, d) = (" + std::to_string(k) + ", " + std::to_string(e.rows.d) + ")");
        }
        auto s = vec(e.rows.n), a = vec(e.rows.n), b = vec(e.rows.n);
        double *ps = s.mutable_data(), *pa = a.mutable_data(), *pb = b.mutable_data();
        run_released(e.rows.n, [&](const CancelToken* cancel) {
          fastcurate::silhouette_cosine_rows(e.rows, lab, S, C, k, ps, pa, pb, check_threads(threads), cancel);
          return 0;
        });
        return py::make_tuple(s, a, b);
      },
      py::arg("x"), py::arg("labels"), py::arg("sums"), py::arg("counts"), py::arg("threads") = 0,
      py::arg("index_base") = 0, "(s, a, b) of every row of x for the cosine distance, from the sums of all rows.");

  m.def(
      "silhouette_euclidean_full",
      [](const py::array& x, const py::array& labels, int32_t k, int threads, int64_t symmetric_budget_bytes) {
        Emb e = emb_of(x, "embeddings", 0);
        const int32_t* lab = typed<int32_t>(labels, "labels", 1, false);
        need_len(labels, e.rows.n, "labels", "one per embedding row");
        auto s = vec(e.rows.n), a = vec(e.rows.n), b = vec(e.rows.n);
        double *ps = s.mutable_data(), *pa = a.mutable_data(), *pb = b.mutable_data();
        // Always on a worker thread: even small inputs are O(n^2 d) here.
        run_released(std::max<int64_t>(e.rows.n, 1 << 20), [&](const CancelToken* cancel) {
          fastcurate::silhouette_euclidean_full(e.rows, lab, k, ps, pa, pb, check_threads(threads),
                                                symmetric_budget_bytes, cancel);
          return 0;
        });
        return py::make_tuple(s, a, b);
      },
      py::arg("x"), py::arg("labels"), py::arg("k"), py::arg("threads") = 0,
      py::arg("symmetric_budget_bytes") = int64_t(1) << 30, "(s, a, b) of every row: exact Euclidean silhouette.");

  m.def(
      "euclidean_distance_sums_add",
      [](const py::array& q, const py::array& q_ids, const py::array& r, int64_t r_first, const py::array& r_labels,
         const py::array& acc, int threads) {
        Emb eq = emb_of(q, "query rows", 0);
        Emb er = emb_of(r, "reference rows", r_first);
        const int64_t* ids = typed<int64_t>(q_ids, "q_ids", 1, false);
        need_len(q_ids, eq.rows.n, "q_ids", "one per query row");
        const int32_t* lab = typed<int32_t>(r_labels, "r_labels", 1, false);
        need_len(r_labels, er.rows.n, "r_labels", "one per reference row");
        double* A = typed<double>(acc, "acc", 2, true);
        if (acc.shape(0) != eq.rows.n) need_len(acc, eq.rows.n, "acc", "one row per query");
        const int32_t k = static_cast<int32_t>(acc.shape(1));
        run_released(std::max<int64_t>(eq.rows.n, 1 << 20), [&](const CancelToken* cancel) {
          fastcurate::euclidean_distance_sums_add(eq.rows, ids, er.rows, r_first, lab, k, A, check_threads(threads),
                                                  cancel);
          return 0;
        });
      },
      py::arg("q"), py::arg("q_ids"), py::arg("r"), py::arg("r_first"), py::arg("r_labels"), py::arg("acc"),
      py::arg("threads") = 0,
      "acc[i, r_labels[j]] += ||q_i - r_j|| (0 when q_ids[i] == r_first + j); acc is float64 (len(q), k).");

  m.def(
      "silhouette_from_sums",
      [](const py::array& sums, const py::array& labels, const py::array& counts) {
        const double* S = typed<double>(sums, "sums", 2, false);
        const int32_t* lab = typed<int32_t>(labels, "labels", 1, false);
        const int64_t* C = typed<int64_t>(counts, "counts", 1, false);
        const int64_t mrows = sums.shape(0);
        need_len(labels, mrows, "labels", "one per row of sums");
        const int32_t k = static_cast<int32_t>(counts.shape(0));
        if (sums.shape(1) != k) throw fastcurate::InputError("sums must have one column per cluster (len(counts))");
        auto s = vec(mrows), a = vec(mrows), b = vec(mrows);
        double *ps = s.mutable_data(), *pa = a.mutable_data(), *pb = b.mutable_data();
        {
          py::gil_scoped_release release;
          fastcurate::silhouette_from_sums(S, mrows, lab, C, k, ps, pa, pb);
        }
        return py::make_tuple(s, a, b);
      },
      py::arg("sums"), py::arg("labels"), py::arg("counts"), "(s, a, b) from per-cluster distance sums.");

  m.def(
      "semdedup",
      [](const py::array& rows, const py::array& offsets, const py::object& centroids, double threshold,
         const std::string& compare_to, int threads, int64_t index_base) {
        Emb e = emb_of(rows, "embeddings", index_base);
        const int64_t* off = typed<int64_t>(offsets, "offsets", 1, false);
        if (offsets.shape(0) < 1) throw fastcurate::InputError("offsets must hold n_clusters + 1 values");
        const int64_t n_clusters = offsets.shape(0) - 1;
        std::optional<Emb> ce;
        if (!centroids.is_none()) ce = emb_of(py::reinterpret_borrow<py::array>(centroids), "centroids", 0);
        fastcurate::SemDedupOptions opt;
        opt.threshold = threshold;
        if (compare_to == "all") {
          opt.compare_to = fastcurate::CompareTo::All;
        } else if (compare_to == "kept") {
          opt.compare_to = fastcurate::CompareTo::Kept;
        } else {
          throw fastcurate::InputError("compare_to must be 'all' (the paper) or 'kept', got '" + compare_to + "'");
        }
        opt.threads = check_threads(threads);
        fastcurate::SemDedupResult r = run_released(std::max<int64_t>(e.rows.n, 1 << 20), [&](const CancelToken* cancel) {
          return fastcurate::semdedup(e.rows, off, n_clusters, ce ? &ce->rows : nullptr, opt, cancel);
        });
        py::dict stats;
        stats["tiles_total"] = r.tiles_total;
        stats["tiles_skipped"] = r.tiles_skipped;
        stats["exact_pairs"] = r.exact_pairs;
        return py::make_tuple(to_numpy(std::move(r.max_sim)), to_numpy(std::move(r.twin)), stats);
      },
      py::arg("rows"), py::arg("offsets"), py::arg("centroids"), py::arg("threshold"), py::arg("compare_to") = "all",
      py::arg("threads") = 0, py::arg("index_base") = 0,
      "SemDeDup over clusters laid out in keep order: (max_sim, twin, stats); max_sim is NaN and twin -1 for kept rows.");
}

// ---------------------------------------------------------------------------------------------
// Pair mining within groups (fastcurate/pairs.hpp): candidate pairs capped per group by a
// uid-hash priority, and their scores. fastcurate.kernels.pairs wraps it.
namespace fc_pairs_bind {
namespace py = pybind11;
using fc_balance_bind::checked;

// A 2-D C-contiguous float32 or float16 array as an EmbeddingView (None: absent).
EmbeddingView embedding_view(const py::object& o, const char* what, int64_t n) {
  EmbeddingView e;
  if (o.is_none()) return e;
  if (!py::isinstance<py::array>(o)) {
    throw InputError(std::string(what) + " must be a numpy array (n, dim) of float32 or float16, or None");
  }
  py::array a = py::reinterpret_borrow<py::array>(o);
  const std::string w = what;
  if (a.ndim() != 2) {
    throw InputError(w + " must be 2-D (n, dim), got ndim=" + std::to_string(a.ndim()) + "; stack the row vectors");
  }
  const auto d = a.dtype();
  const bool f32 = d.kind() == 'f' && d.itemsize() == 4, f16 = d.kind() == 'f' && d.itemsize() == 2;
  if (!(f32 || f16) || d.attr("byteorder").cast<std::string>() == ">") {
    throw InputError(w + " must have dtype float32 or float16, got " + py::str(d).cast<std::string>() +
                     "; convert it with np.ascontiguousarray(" + w + ", dtype=np.float32)");
  }
  if (!(a.flags() & py::array::c_style)) throw InputError(w + " must be C-contiguous; pass np.ascontiguousarray(" + w + ")");
  if (a.shape(0) != n) {
    throw InputError(w + " has " + std::to_string(a.shape(0)) + " rows for " + std::to_string(n) +
                     " uid hashes; pass one vector per row");
  }
  e.data = a.data();
  e.dim = a.shape(1);
  e.f16 = f16;
  return e;
}

template <class T>
py::array_t<T> vec(std::vector<T>&& v) {
  return to_numpy(std::move(v));
}

}  // namespace fc_pairs_bind

inline void bind_pairs(pybind11::module_& m) {
  namespace py = pybind11;
  using namespace fc_pairs_bind;

  m.def(
      "mine_pairs",
      [](const py::array& group_starts, const py::array& uid_hash, std::uint64_t seed, std::int64_t max_pairs_per_group,
         const py::object& image, const py::object& text, bool cross, const py::object& label_offsets,
         const py::object& labels, int threads) {
        PairInput in;
        in.group_starts = checked<std::int64_t>(group_starts, "group_starts");
        if (group_starts.shape(0) < 1) throw InputError("group_starts must hold at least one value (n_groups + 1)");
        in.n_groups = group_starts.shape(0) - 1;
        in.uid_hash = checked<std::uint64_t>(uid_hash, "uid_hash");
        in.n = uid_hash.shape(0);
        in.seed = seed;
        in.max_pairs_per_group = max_pairs_per_group;
        in.image = embedding_view(image, "image", in.n);
        in.text = embedding_view(text, "text", in.n);
        in.cross = cross;
        py::array lo, lv;
        if (label_offsets.is_none() != labels.is_none()) throw InputError("give label_offsets and labels together");
        if (!label_offsets.is_none()) {
          lo = py::reinterpret_borrow<py::array>(label_offsets);
          lv = py::reinterpret_borrow<py::array>(labels);
          in.label_offsets = checked<std::int64_t>(lo, "label_offsets");
          in.labels = checked<std::uint64_t>(lv, "labels");
          if (lo.shape(0) != in.n + 1) {
            throw InputError("label_offsets has " + std::to_string(lo.shape(0)) + " values; it needs n + 1 = " +
                             std::to_string(in.n + 1));
          }
          const std::int64_t last = in.label_offsets[in.n];
          if (last < 0 || last > lv.shape(0)) {
            throw InputError("label_offsets[-1]=" + std::to_string(last) + " does not fit len(labels)=" +
                             std::to_string(lv.shape(0)));
          }
        }
        check_threads(threads);
        PairOutput r = run_released(in.n, [&](const CancelToken* cancel) { return mine_pairs(in, threads, cancel); });
        py::dict d;
        d["possible"] = r.possible;
        d["query"] = vec(std::move(r.query));
        d["target"] = vec(std::move(r.target));
        d["group"] = vec(std::move(r.group));
        d["priority"] = vec(std::move(r.priority));
        d["image_sim"] = vec(std::move(r.image_sim));
        d["text_sim"] = vec(std::move(r.text_sim));
        d["query_image_target_text"] = vec(std::move(r.query_image_target_text));
        d["query_text_target_image"] = vec(std::move(r.query_text_target_image));
        d["label_overlap"] = vec(std::move(r.label_overlap));
        return d;
      },
      py::arg("group_starts"), py::arg("uid_hash"), py::arg("seed"), py::arg("max_pairs_per_group"),
      py::arg("image") = py::none(), py::arg("text") = py::none(), py::arg("cross") = false,
      py::arg("label_offsets") = py::none(), py::arg("labels") = py::none(), py::arg("threads") = 0,
      "Candidate pairs within groups (capped per group by a uid-hash priority) and their scores: a dict of arrays.");

  m.def(
      "pair_priority",
      [](const py::array& a, const py::array& b, std::uint64_t seed) {
        const auto* x = checked<std::uint64_t>(a, "a");
        const auto* y = checked<std::uint64_t>(b, "b");
        if (a.shape(0) != b.shape(0)) throw InputError("a and b must have the same length");
        std::vector<std::uint64_t> out(static_cast<size_t>(a.shape(0)));
        for (size_t i = 0; i < out.size(); ++i) out[i] = pair_priority(x[i], y[i], seed);
        return to_numpy(std::move(out));
      },
      py::arg("a"), py::arg("b"), py::arg("seed"), "pair_priority of each (a[i], b[i]) (uint64; symmetric in a and b).");

  m.def(
      "half_to_float",
      [](const py::array& bits) {
        const auto* h = checked<std::uint64_t>(bits, "bits");
        std::vector<double> out(static_cast<size_t>(bits.shape(0)));
        for (size_t i = 0; i < out.size(); ++i) {
          if (h[i] > 0xFFFF) throw InputError("bits[" + std::to_string(i) + "] is not a 16-bit value");
          out[i] = static_cast<double>(half_to_float(static_cast<std::uint16_t>(h[i])));
        }
        return to_numpy(std::move(out));
      },
      py::arg("bits"), "IEEE half-float bit patterns (uint64 holding 16-bit values) as float64 (tests).");
}

PYBIND11_MODULE(_core, m) {
  m.doc() = "fastcurate C++ kernels (use the fastcurate package, not this module directly)";

  // Core errors become the classes of fastcurate.errors, so `except fastcurate.FastcurateError`
  // catches them. Imported lazily by name: fastcurate.errors has no dependency on this module.
  py::module_ errors = py::module_::import("fastcurate.errors");
  // Leaked on purpose: module-lifetime references must not be released after interpreter shutdown.
  static PyObject* input_error = py::object(errors.attr("InputError")).release().ptr();
  static PyObject* input_type_error = py::object(errors.attr("InputTypeError")).release().ptr();
  static PyObject* format_error = py::object(errors.attr("FormatError")).release().ptr();
  static PyObject* base_error = py::object(errors.attr("FastcurateError")).release().ptr();
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const Cancelled& e) {
      PyErr_SetString(PyExc_KeyboardInterrupt, e.what());
    } catch (const InputError& e) {
      PyErr_SetString(input_error, e.what());
    } catch (const FormatError& e) {
      PyErr_SetString(format_error, e.what());
    } catch (const Error& e) {
      PyErr_SetString(base_error, e.what());
    } catch (const std::invalid_argument& e) {
      PyErr_SetString(input_type_error, e.what());
    }
  });

  bind_matcher(m);
  bind_balance(m);
  bind_text_filters(m);
  bind_images(m);
  bind_pairs(m);
  fc_clip_bind::bind(m);
  bind_cluster(m);

  m.def("simd_name", &simd::active_name, "The vectorised code path in use: 'sse2' or 'scalar'.");
  m.def("simd_available", []() { return simd::kCompiled; }, "Whether a vectorised path was compiled in.");
  m.def("set_simd", &simd::set_enabled, py::arg("enabled"),
        "Enable or disable the vectorised paths (results are identical; for tests and benchmarks).");
}
