// The one bindings file: converts and validates Python inputs, releases the GIL for the work,
// keeps Ctrl-C responsive, and maps core errors onto fastcurate.errors. No logic lives here.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

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
#include "fastcurate/common.hpp"
#include "fastcurate/embeddings.hpp"
#include "fastcurate/matcher.hpp"
#include "fastcurate/semdedup.hpp"
#include "fastcurate/silhouette.hpp"
#include "fastcurate/simd.hpp"

namespace py = pybind11;
using namespace fastcurate;

namespace {

// ---------------------------------------------------------------------------------------------
// Results cross into numpy without a copy: the vector moves to the heap and a capsule frees it.
template <class T>
py::array_t<T> to_numpy(std::vector<T>&& v) {
  auto* heap = new std::vector<T>(std::move(v));
  py::capsule owner(heap, [](void* p) { delete static_cast<std::vector<T>*>(p); });
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

}  // namespace fc_balance_bind

inline void bind_balance(pybind11::module_& m) {
    namespace py = pybind11;
    using namespace fc_balance_bind;

    m.def(
        "count_entries_into",
        [](const py::array& offsets, const py::array& ids, py::array counts) {
            Csr c = csr_of(offsets, ids);
            auto* out = const_cast<std::uint64_t*>(checked<std::uint64_t>(counts, "counts", true));
            const auto n = static_cast<std::size_t>(counts.shape(0));
            py::gil_scoped_release release;
            translate([&] { fastcurate::count_entries(c.view, out, n); return 0; });
        },
        py::arg("offsets"), py::arg("ids"), py::arg("counts"),
        "Add, for every entry, the number of texts matching it to `counts` (uint64, in place).");

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
            const auto dlen = static_cast<std::uint64_t>(data.shape(0));
            if (offsets.ndim() != 1 || offsets.shape(0) < 1)
                throw fastcurate::InputError("offsets must be 1-D with at least one value");
            const auto n = static_cast<std::size_t>(offsets.shape(0) - 1);
            py::array_t<std::uint64_t> out(static_cast<py::ssize_t>(n));
            std::uint64_t* o = out.mutable_data();
            if (offsets.dtype().itemsize() == 4) {
                const auto* off = checked<std::int32_t>(offsets, "offsets");
                if (off[0] < 0 || static_cast<std::uint64_t>(off[n]) > dlen)
                    throw fastcurate::InputError("string offsets out of range of the data buffer");
                py::gil_scoped_release release;
                translate([&] { fastcurate::hash_strings(off, d, n, o); return 0; });
            } else {
                const auto* off = checked<std::int64_t>(offsets, "offsets");
                if (off[0] < 0 || static_cast<std::uint64_t>(off[n]) > dlen)
                    throw fastcurate::InputError("string offsets out of range of the data buffer");
                py::gil_scoped_release release;
                translate([&] { fastcurate::hash_strings(off, d, n, o); return 0; });
            }
            return out;
        },
        py::arg("offsets"), py::arg("data"),
        "64-bit hashes of Arrow-layout strings (int32 or int64 offsets into a uint8 data buffer).");

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
  bind_cluster(m);

  m.def("simd_name", &simd::active_name, "The vectorised code path in use: 'sse2' or 'scalar'.");
  m.def("simd_available", []() { return simd::kCompiled; }, "Whether a vectorised path was compiled in.");
  m.def("set_simd", &simd::set_enabled, py::arg("enabled"),
        "Enable or disable the vectorised paths (results are identical; for tests and benchmarks).");
}
