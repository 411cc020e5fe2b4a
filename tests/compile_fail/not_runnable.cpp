// Must NOT compile: `Process` of a type that cannot be moved into the process record. The CTest
// test `supervisor_compile_fail_not_runnable` builds it and passes only if the compiler's message
// names the unsatisfied concept, StorableRunnable, and the type (see tests/CMakeLists.txt).

#include <stop_token>
#include <supervisor/process.hpp>

struct NotMovable {
  NotMovable() = default;
  NotMovable(const NotMovable&) = delete;
  NotMovable(NotMovable&&) = delete;
  NotMovable& operator=(const NotMovable&) = delete;
  NotMovable& operator=(NotMovable&&) = delete;
  ~NotMovable() = default;
  void run(const std::stop_token& /*force*/, supervisor::Ready& ready) const { ready(); }
};

int main() {
  supervisor::Process<NotMovable>* process = nullptr;
  return process == nullptr ? 0 : 1;
}
