#pragma once

/// \file
/// Hints that ask the CPU for memory a loop will read soon, so that the cache misses of the
/// entries ahead overlap the work on the current one. At a million processes the records and
/// the map's nodes lie scattered over the heap; a walk that takes its misses one after another
/// (a shutdown asking each process to stop, the frees after it) spends most of its time waiting
/// for memory. None of these changes anything, allocates, throws, or faults, whatever the address.

#include <concepts>
#include <cstddef>

namespace supervisor::detail {

/// The cache line size these hints assume (x86-64 and most AArch64 cores).
inline constexpr std::size_t prefetch_line = 64;

/// Asks for the cache line at `address` (which may be null or point anywhere).
inline void prefetch(const void* address) noexcept {
#if defined(__GNUC__) || defined(__clang__)
  __builtin_prefetch(address);
#else
  (void)address;
#endif
}

/// For a value that is a smart pointer (its `get()` gives a pointer to an object): asks for the
/// first two lines of the object (one if it is smaller). With `std::make_shared` the owners'
/// counts, which releasing the last owner reads first, lie just before the object, in its first
/// line three times in four. Nothing for a null pointer or another kind of value.
template <class Value>
void prefetch_pointee(const Value& value) noexcept {
  if constexpr (requires {
                  {*value.get()};
                  { value.get() } -> std::convertible_to<const void*>;
                }) {
    if (const auto* target = value.get()) {
      prefetch(target);
      if constexpr (sizeof(*target) > prefetch_line) {
        // Within the object: its bytes may be addressed as chars.
        prefetch(static_cast<const char*>(static_cast<const void*>(target)) + prefetch_line);
      }
    }
  } else {
    (void)value;
  }
}

}  // namespace supervisor::detail
