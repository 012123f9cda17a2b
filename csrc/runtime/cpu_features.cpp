#include "runtime/cpu_features.h"

#include <cstdio>
#include <cstdlib>
#include <algorithm>
#include <cstring>
#include <string>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

namespace pt {

namespace {

#if defined(__x86_64__) || defined(__i386__)
// Extended control register 0: which register states the OS saves on context switch.
unsigned long long read_xcr0() {
  unsigned int eax = 0, edx = 0;
  __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
  return (static_cast<unsigned long long>(edx) << 32) | eax;
}

CpuFeatures detect() {
  CpuFeatures f;
  unsigned int eax, ebx, ecx, edx;
  if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return f;
  const bool osxsave = ecx & (1u << 27);
  const bool avx = ecx & (1u << 28);
  const bool fma = ecx & (1u << 12);
  const bool f16c = ecx & (1u << 29);
  if (!osxsave || !avx) return f;
  const unsigned long long xcr0 = read_xcr0();
  const bool os_ymm = (xcr0 & 0x6) == 0x6;            // SSE + AVX state
  const bool os_zmm = (xcr0 & 0xe6) == 0xe6;          // + opmask, ZMM_Hi256, Hi16_ZMM
  if (__get_cpuid_max(0, nullptr) < 7) return f;
  __cpuid_count(7, 0, eax, ebx, ecx, edx);
  const bool avx2 = ebx & (1u << 5);
  const bool avx512f = ebx & (1u << 16);
  const bool avx512dq = ebx & (1u << 17);
  const bool avx512bw = ebx & (1u << 30);
  const bool avx512vl = ebx & (1u << 31);
  f.avx2 = os_ymm && avx2 && fma && f16c;
  f.avx512 = f.avx2 && os_zmm && avx512f && avx512dq && avx512bw && avx512vl;
  f.avx512_vnni = f.avx512 && (ecx & (1u << 11));
  unsigned int max_sub = eax;  // leaf 7's highest subleaf
  if (max_sub >= 1) {
    __cpuid_count(7, 1, eax, ebx, ecx, edx);
    f.avx_vnni = f.avx2 && (eax & (1u << 4));
  }
  return f;
}
#else
CpuFeatures detect() { return CpuFeatures{}; }
#endif

}  // namespace

namespace {

std::string read_line(const std::string& path) {
  std::string out;
  if (FILE* f = std::fopen(path.c_str(), "r")) {
    char buf[256];
    if (std::fgets(buf, sizeof buf, f)) out = buf;
    std::fclose(f);
  }
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
  return out;
}

// "48K" / "1024K" / "32M" -> bytes (0 if unreadable).
long long parse_size(const std::string& s) {
  if (s.empty()) return 0;
  char* end = nullptr;
  const long long v = std::strtoll(s.c_str(), &end, 10);
  if (v <= 0) return 0;
  if (*end == 'K') return v << 10;
  if (*end == 'M') return v << 20;
  if (*end == 'G') return v << 30;
  return v;
}

// CPUs in a list such as "0-3,8-11".
int count_cpus(const std::string& list) {
  int n = 0;
  const char* p = list.c_str();
  while (*p) {
    char* end = nullptr;
    const long a = std::strtol(p, &end, 10);
    if (end == p) break;
    long b = a;
    p = end;
    if (*p == '-') {
      b = std::strtol(p + 1, &end, 10);
      p = end;
    }
    if (b >= a) n += static_cast<int>(b - a + 1);
    if (*p == ',') ++p;
  }
  return n;
}

bool from_sysfs(CacheInfo& c) {
  bool any = false;
  for (int i = 0; i < 16; ++i) {
    const std::string dir = "/sys/devices/system/cpu/cpu0/cache/index" + std::to_string(i) + "/";
    const std::string level = read_line(dir + "level");
    if (level.empty()) break;
    const std::string type = read_line(dir + "type");
    if (type != "Data" && type != "Unified") continue;
    const long long size = parse_size(read_line(dir + "size"));
    if (size <= 0) continue;
    const int sharing = std::max(1, count_cpus(read_line(dir + "shared_cpu_list")));
    if (level == "1") c.l1d_bytes = size, any = true;
    else if (level == "2") c.l2_bytes = size, any = true;
    else if (level == "3") c.l3_bytes = size / sharing, any = true;
  }
  return any;
}

#if defined(__x86_64__) || defined(__i386__)
// Deterministic cache parameters: leaf 4 (Intel) or 0x8000001D (AMD), same layout.
bool from_cpuid(CacheInfo& c) {
  unsigned int eax, ebx, ecx, edx;
  unsigned int leaf = 4;
  if (__get_cpuid_max(0x80000000, nullptr) >= 0x8000001D) {
    __cpuid(0, eax, ebx, ecx, edx);
    if (ebx == 0x68747541) leaf = 0x8000001D;  // "Auth"enticAMD
  }
  if (leaf == 4 && __get_cpuid_max(0, nullptr) < 4) return false;
  bool any = false;
  for (unsigned int i = 0; i < 16; ++i) {
    __cpuid_count(leaf, i, eax, ebx, ecx, edx);
    const unsigned int type = eax & 0x1f;  // 0 none, 1 data, 2 instruction, 3 unified
    if (type == 0) break;
    if (type == 2) continue;
    const unsigned int level = (eax >> 5) & 0x7;
    const long long sharing = ((eax >> 14) & 0xfff) + 1;
    const long long size = static_cast<long long>((ebx >> 22) + 1) * (((ebx >> 12) & 0x3ff) + 1) *
                           ((ebx & 0xfff) + 1) * (static_cast<long long>(ecx) + 1);
    if (level == 1) c.l1d_bytes = size, any = true;
    else if (level == 2) c.l2_bytes = size, any = true;
    else if (level == 3) c.l3_bytes = size / sharing, any = true;
  }
  return any;
}
#else
bool from_cpuid(CacheInfo&) { return false; }
#endif

CacheInfo detect_caches() {
  CacheInfo c;
  if (const char* env = std::getenv("PYTRANSFORMER_CACHE")) {
    long long v[3] = {0, 0, 0};
    if (std::sscanf(env, "%lld,%lld,%lld", &v[0], &v[1], &v[2]) == 3 && v[0] > 0 && v[1] > 0 && v[2] > 0) {
      c.l1d_bytes = v[0] << 10;
      c.l2_bytes = v[1] << 10;
      c.l3_bytes = v[2] << 10;
      c.source = "env";
      return c;
    }
  }
  if (from_sysfs(c)) {
    c.source = "sysfs";
  } else if (from_cpuid(c)) {
    c.source = "cpuid";
  }
  return c;
}

}  // namespace

const CacheInfo& cache_info() {
  static const CacheInfo info = detect_caches();
  return info;
}

const CpuFeatures& cpu_features() {
  static const CpuFeatures features = detect();
  return features;
}

}  // namespace pt
