#pragma once

/// \file
/// `StartRegistration`: a key taken by a start in flight, freed again unless its process
/// launched. Internal to `Supervisor`.

namespace supervisor::detail {

/// Declare it before the start gate's pass: its destructor, which frees the key unless the
/// process launched (`keep`), then runs after the pass is released (freeing may destroy
/// runnables, and no user destructor runs inside the gate). `Owner::forget` calls no user code.
template <class Owner, class ManagedPtr>
struct StartRegistration {
  Owner& owner;
  ManagedPtr managed;
  bool keep = false;

  explicit StartRegistration(Owner& o) noexcept : owner(o) {}
  StartRegistration(const StartRegistration&) = delete;
  StartRegistration& operator=(const StartRegistration&) = delete;
  ~StartRegistration() {
    if (managed && !keep) {
      managed->forget_start();
      owner.forget(*managed);
    }
  }
};

}  // namespace supervisor::detail
