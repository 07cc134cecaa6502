// TEMPORARY module file on branch `curate` only, so the balance bindings can be built and tested
// before the matcher lands. At merge the lead keeps main's module.cpp and adds
// `#include "balance_bindings.inc"` + `bind_balance(m);` to it.
#include <pybind11/pybind11.h>

#include "balance_bindings.inc"

PYBIND11_MODULE(_core, m) {
    m.doc() = "fastcurate C++ kernels";
    bind_balance(m);
}
