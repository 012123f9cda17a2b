#include "runtime/aligned_buffer.h"

#include <cstdlib>
#include <new>
#include <utility>

namespace pt {

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
