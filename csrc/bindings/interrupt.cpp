#include "bindings/interrupt.h"

#include <atomic>
#include <csignal>
#include <mutex>

#if defined(__linux__) || defined(__APPLE__)
#include <pthread.h>
#define PT_HAVE_SIGACTION 1
#endif

namespace pt::bindings {

namespace {

std::atomic<bool> g_sigint{false};

#ifdef PT_HAVE_SIGACTION
pthread_t g_main_thread;
bool g_have_main = false;
struct sigaction g_previous;
int g_depth = 0;  // nested scopes of the main thread (e.g. a stream inside a call)

void on_sigint(int sig, siginfo_t* info, void* uctx) {
  g_sigint.store(true, std::memory_order_relaxed);
  // Hand the signal on: Python's C handler records it for the interpreter.
  if (g_previous.sa_flags & SA_SIGINFO) {
    if (g_previous.sa_sigaction) g_previous.sa_sigaction(sig, info, uctx);
  } else if (g_previous.sa_handler != SIG_DFL && g_previous.sa_handler != SIG_IGN && g_previous.sa_handler) {
    g_previous.sa_handler(sig);
  }
}

// True when SIGINT is handled by Python's default handler (KeyboardInterrupt).
bool python_default_sigint() {
  try {
    py::module_ signal = py::module_::import("signal");
    py::object handler = signal.attr("getsignal")(SIGINT);
    return handler.is(signal.attr("default_int_handler"));
  } catch (py::error_already_set&) {
    return false;
  }
}
#endif

}  // namespace

void init_interrupts() {
#ifdef PT_HAVE_SIGACTION
  // The interpreter's main thread: threading.main_thread().ident is its pthread_t.
  try {
    py::object main = py::module_::import("threading").attr("main_thread")();
    const unsigned long ident = main.attr("ident").cast<unsigned long>();
    g_main_thread = (pthread_t)ident;  // NOLINT: an integer on Linux, a pointer on macOS
    g_have_main = true;
  } catch (py::error_already_set&) {
    g_have_main = false;
  }
#endif
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const pt::Interrupted&) {
      // Python's handler for the recorded SIGINT raises (KeyboardInterrupt by default).
      if (PyErr_CheckSignals() == 0 && !PyErr_Occurred()) PyErr_SetNone(PyExc_KeyboardInterrupt);
    }
  });
}

SigintScope::SigintScope(bool enable) {
  (void)enable;
#ifdef PT_HAVE_SIGACTION
  if (!enable || !g_have_main || !pthread_equal(pthread_self(), g_main_thread)) return;
  if (g_depth == 0) {
    if (!python_default_sigint()) return;
    g_sigint.store(false, std::memory_order_relaxed);
    struct sigaction ours {};
    ours.sa_sigaction = &on_sigint;
    ours.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&ours.sa_mask);
    if (sigaction(SIGINT, &ours, &g_previous) != 0) return;
  }
  ++g_depth;
  active_ = true;
  set_cancel_flag(&g_sigint);
#endif
}

SigintScope::~SigintScope() {
#ifdef PT_HAVE_SIGACTION
  if (!active_) return;
  if (--g_depth == 0) {
    set_cancel_flag(nullptr);
    sigaction(SIGINT, &g_previous, nullptr);
  }
#endif
}



}  // namespace pt::bindings
