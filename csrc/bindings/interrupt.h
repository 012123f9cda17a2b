// Ctrl-C during a long call: the call stops within milliseconds and Python raises
// KeyboardInterrupt (or whatever its SIGINT handler raises).
//
// While a call made from Python's main thread runs with the GIL released, a SIGINT
// handler of ours sets a flag that the computation watches (runtime/interrupt.h),
// then hands the signal to the handler it replaced (Python's, which records it).
// The C++ work stops with pt::Interrupted; the exception translator (GIL held) then
// lets Python run its handler.
// Usage: `SigintScope watch; py::gil_scoped_release release; ...`. Calls from other threads are not watched: Python
// delivers SIGINT to the main thread only.
#pragma once

#include <pybind11/pybind11.h>

#include <utility>

#include "runtime/interrupt.h"

namespace pt::bindings {

namespace py = pybind11;

// Watches SIGINT on this thread for its lifetime when it is Python's main thread and
// SIGINT goes to Python's default handler. Construct with the GIL held.
class SigintScope {
 public:
  explicit SigintScope(bool enable = true);
  ~SigintScope();
  SigintScope(const SigintScope&) = delete;
  SigintScope& operator=(const SigintScope&) = delete;

 private:
  bool active_ = false;
};

// Records the main thread and registers the translation of pt::Interrupted: Python's
// pending signal handlers run and their exception is raised (KeyboardInterrupt when
// they raise none). Call once at import, from the importing thread.
void init_interrupts();

}  // namespace pt::bindings
