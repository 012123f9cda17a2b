// Picks the kernel table once, at first use (module import), from the CPU's
// features and PYTRANSFORMER_ISA.
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/kernels.h"
#include "runtime/cpu_features.h"

namespace pt::kernels {

namespace {

std::vector<const KernelTable*> build_available() {
  std::vector<const KernelTable*> tables{&table_generic()};
#ifdef PT_BUILD_AVX2
  if (cpu_features().avx2) tables.push_back(&table_avx2());
#endif
#ifdef PT_BUILD_AVX512
  if (cpu_features().avx512) tables.push_back(&table_avx512());
#endif
  return tables;
}

const std::vector<const KernelTable*>& available_tables() {
  static const std::vector<const KernelTable*> tables = build_available();
  return tables;
}

const KernelTable* find(const char* isa) {
  for (const KernelTable* t : available_tables())
    if (std::strcmp(t->isa, isa) == 0) return t;
  return nullptr;
}

std::string& request_warning() {
  static std::string w;
  return w;
}

const KernelTable* choose_initial() {
  const KernelTable* best = available_tables().back();
  const char* env = std::getenv("PYTRANSFORMER_ISA");
  if (!env || !*env || std::strcmp(env, "auto") == 0) return best;
  if (const KernelTable* t = find(env)) return t;
  const bool known = !std::strcmp(env, "generic") || !std::strcmp(env, "avx2") || !std::strcmp(env, "avx512");
  request_warning() = std::string("PYTRANSFORMER_ISA=") + env +
                      (known ? " is not supported by this CPU or build" : " is not one of generic, avx2, avx512, auto") +
                      "; using " + best->isa;
  return best;
}

std::atomic<const KernelTable*>& active_table() {
  static std::atomic<const KernelTable*> table{choose_initial()};
  return table;
}

}  // namespace

const KernelTable& active() { return *active_table().load(std::memory_order_acquire); }

int available_count() { return static_cast<int>(available_tables().size()); }

const KernelTable& available(int i) { return *available_tables().at(static_cast<size_t>(i)); }

void set_active(const char* isa) {
  const KernelTable* t = find(isa);
  if (!t) throw std::invalid_argument(std::string("instruction set '") + isa + "' is not available here");
  active_table().store(t, std::memory_order_release);
}

const char* isa_request_warning() {
  active();  // make sure the choice (and its warning) has been made
  return request_warning().c_str();
}

namespace {

bool vnni_allowed() {
  const char* env = std::getenv("PYTRANSFORMER_VNNI");
  return !(env && std::strcmp(env, "0") == 0);
}

std::vector<const Int8Kernels*> build_int8_available() {
  std::vector<const Int8Kernels*> sets{&int8_generic()};
#ifdef PT_BUILD_AVX2
  if (cpu_features().avx2) sets.push_back(&int8_avx2());
#endif
#ifdef PT_BUILD_AVX2_VNNI
  if (cpu_features().avx_vnni) sets.push_back(&int8_avx2_vnni());
#endif
#ifdef PT_BUILD_AVX512
  if (cpu_features().avx512) sets.push_back(&int8_avx512());
#endif
#ifdef PT_BUILD_AVX512_VNNI
  if (cpu_features().avx512_vnni) sets.push_back(&int8_avx512_vnni());
#endif
  return sets;
}

const std::vector<const Int8Kernels*>& int8_sets() {
  static const std::vector<const Int8Kernels*> sets = build_int8_available();
  return sets;
}

const Int8Kernels* int8_find(const char* name) {
  for (const Int8Kernels* k : int8_sets())
    if (std::strcmp(k->name, name) == 0) return k;
  return nullptr;
}

}  // namespace

const Int8Kernels& int8_for(const KernelTable& table) {
  const std::string isa = table.isa;
  if (isa != "generic" && vnni_allowed())
    if (const Int8Kernels* k = int8_find((isa + "_vnni").c_str())) return *k;
  return int8_signed_for(table);
}

const Int8Kernels& int8_signed_for(const KernelTable& table) {
  if (std::strcmp(table.isa, "generic") != 0)
    if (const Int8Kernels* k = int8_find(table.isa)) return *k;
  return int8_generic();
}

int int8_available_count() { return static_cast<int>(int8_sets().size()); }

const Int8Kernels& int8_available(int i) { return *int8_sets().at(static_cast<size_t>(i)); }

}  // namespace pt::kernels
