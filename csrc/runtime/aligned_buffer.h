// Owning, 64-byte aligned float buffer (cache line and AVX-512 register size).
//
// Methods are defined out of line in a portable translation unit so that the
// ISA-specific kernel files never emit their own copies of them.
#pragma once

#include <cstddef>
#include <string>

namespace pt {

// Physical memory of the machine in bytes (a large default where unknown): the bound
// for "absurd" sizes, which are refused before anything is allocated.
double physical_memory_bytes();

// "12.3 GB"
std::string human_bytes(double bytes);

// Kernel scratch (thread-local AlignedBuffers reused across calls) larger than this
// many floats (32 MiB) is freed after the call rather than kept for the next one.
constexpr std::size_t kScratchKeepFloats = std::size_t{1} << 23;

class AlignedBuffer {
 public:
  static constexpr std::size_t kAlignment = 64;

  AlignedBuffer() = default;
  explicit AlignedBuffer(std::size_t count);  // uninitialised floats; throws std::bad_alloc
  ~AlignedBuffer();
  AlignedBuffer(AlignedBuffer&& other) noexcept;
  AlignedBuffer& operator=(AlignedBuffer&& other) noexcept;
  AlignedBuffer(const AlignedBuffer&) = delete;
  AlignedBuffer& operator=(const AlignedBuffer&) = delete;

  float* data() { return data_; }
  const float* data() const { return data_; }
  std::size_t size() const { return size_; }

  // Grows (never shrinks) to at least `count` floats; contents are not kept.
  void reserve_discard(std::size_t count);
  // Frees the memory.
  void release();

 private:
  float* data_ = nullptr;
  std::size_t size_ = 0;
};

}  // namespace pt
