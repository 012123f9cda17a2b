#include "runtime/threads.h"

#include <atomic>
#include <cstdlib>
#include <fstream>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>

#ifdef __linux__
#include <sched.h>
#endif

namespace pt {

namespace {

int parse_positive_env(const char* name) {
  const char* s = std::getenv(name);
  if (!s || !*s) return 0;
  char* end = nullptr;
  long v = std::strtol(s, &end, 10);
  if (end == s || v < 1 || v > 4096) return 0;
  return static_cast<int>(v);
}

int detect_physical_cores() {
#ifdef __linux__
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    // One entry per distinct (package, core) among the CPUs we may run on.
    std::set<std::string> cores;
    int cpus = 0;
    for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
      if (!CPU_ISSET(cpu, &set)) continue;
      ++cpus;
      const std::string base = "/sys/devices/system/cpu/cpu" + std::to_string(cpu) + "/topology/";
      std::ifstream pkg(base + "physical_package_id"), core(base + "core_id");
      std::string p, c;
      if (pkg >> p && core >> c) {
        cores.insert(p + ":" + c);
      } else {
        cores.insert("cpu" + std::to_string(cpu));
      }
    }
    if (!cores.empty()) return static_cast<int>(cores.size());
    if (cpus > 0) return cpus;
  }
#endif
  unsigned hc = std::thread::hardware_concurrency();
  return hc > 0 ? static_cast<int>(hc) : 1;
}

int default_threads() {
  if (int n = parse_positive_env("PYTRANSFORMER_NUM_THREADS")) return n;
  if (int n = parse_positive_env("OMP_NUM_THREADS")) return n;
  return physical_core_count();
}

std::atomic<int>& requested_threads() {
  static std::atomic<int> n{default_threads()};
  return n;
}

}  // namespace

int physical_core_count() {
  static const int n = detect_physical_cores();
  return n;
}

bool openmp_enabled() {
#ifdef _OPENMP
  return true;
#else
  return false;
#endif
}

int get_num_threads() {
#ifdef _OPENMP
  return requested_threads().load(std::memory_order_relaxed);
#else
  return 1;
#endif
}

void set_num_threads(int n) {
  if (n < 1) throw std::invalid_argument("num_threads must be >= 1, got " + std::to_string(n));
  requested_threads().store(n, std::memory_order_relaxed);
}

}  // namespace pt
