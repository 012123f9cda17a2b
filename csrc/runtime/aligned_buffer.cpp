#include "runtime/aligned_buffer.h"

#include <cstdio>
#include <cstdlib>
#include <new>
#include <utility>

#if defined(__linux__) || defined(__APPLE__)
#include <unistd.h>
#endif

namespace pt {

namespace {
double query_physical_memory() {
#if defined(_SC_PHYS_PAGES) && defined(_SC_PAGESIZE)
  const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
  if (pages > 0 && page > 0) return static_cast<double>(pages) * static_cast<double>(page);
#endif
  return 1099511627776.0;  // 1 TiB
}
}  // namespace

double physical_memory_bytes() {
  // Once: sysconf(_SC_PHYS_PAGES) is a sysinfo() system call (~0.6 us on a KVM guest),
  // and every op checks its output size against it.
  static const double bytes = query_physical_memory();
  return bytes;
}

std::string human_bytes(double bytes) {
  const char* units[] = {"bytes", "KB", "MB", "GB", "TB", "PB", "EB"};
  int u = 0;
  while (bytes >= 1000.0 && u < 6) {
    bytes /= 1000.0;
    ++u;
  }
  char buf[64];
  std::snprintf(buf, sizeof(buf), u == 0 ? "%.0f %s" : "%.1f %s", bytes, units[u]);
  return buf;
}

namespace {
float* allocate(std::size_t count) {
  if (count == 0) return nullptr;
  if (count > (static_cast<std::size_t>(-1) - AlignedBuffer::kAlignment) / sizeof(float)) throw std::bad_alloc();
  std::size_t bytes = count * sizeof(float);
  bytes = (bytes + AlignedBuffer::kAlignment - 1) / AlignedBuffer::kAlignment * AlignedBuffer::kAlignment;
  void* p = std::aligned_alloc(AlignedBuffer::kAlignment, bytes);
  if (!p) throw std::bad_alloc();
  return static_cast<float*>(p);
}
}  // namespace

AlignedBuffer::AlignedBuffer(std::size_t count) : data_(allocate(count)), size_(count) {}

AlignedBuffer::~AlignedBuffer() { std::free(data_); }

AlignedBuffer::AlignedBuffer(AlignedBuffer&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)), size_(std::exchange(other.size_, 0)) {}

AlignedBuffer& AlignedBuffer::operator=(AlignedBuffer&& other) noexcept {
  if (this != &other) {
    std::free(data_);
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}

void AlignedBuffer::release() {
  std::free(data_);
  data_ = nullptr;
  size_ = 0;
}

void AlignedBuffer::reserve_discard(std::size_t count) {
  if (count <= size_) return;
  float* p = allocate(count);
  std::free(data_);
  data_ = p;
  size_ = count;
}

}  // namespace pt
