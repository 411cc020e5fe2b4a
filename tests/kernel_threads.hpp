#pragma once

// What the kernel says of this process's threads, for tests that must go on only once another
// thread is asleep (a lock's sleeper, an idle pool worker). Linux reads /proc; elsewhere every
// thread counts as asleep, so those tests go on at once and check less.

#include <fstream>
#include <iterator>
#include <string>

#if defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>

#include <filesystem>
#endif

namespace test {

/// The calling thread's kernel id (0 where there is none to ask for).
inline long this_thread_id() {
#if defined(__linux__)
  return ::syscall(SYS_gettid);
#else
  return 0;
#endif
}

/// Whether thread `id` of this process is asleep in the kernel (state 'S' in its stat line).
/// If the file cannot be read (the thread is gone): true, so callers go on at once.
inline bool asleep_in_kernel(long id) {
#if defined(__linux__)
  std::ifstream stat("/proc/self/task/" + std::to_string(id) + "/stat");
  const std::string line((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
  const auto name_end = line.rfind(')');
  if (!stat.good() && line.empty()) {
    return true;
  }
  return name_end != std::string::npos && name_end + 2 < line.size() && line[name_end + 2] == 'S';
#else
  (void)id;
  return true;
#endif
}

/// Whether every thread of this process but the calling one is asleep in the kernel.
inline bool other_threads_asleep_in_kernel() {
#if defined(__linux__)
  const long self = this_thread_id();
  std::error_code ec;
  for (std::filesystem::directory_iterator task("/proc/self/task", ec), end; !ec && task != end;
       task.increment(ec)) {
    const long id = std::stol(task->path().filename().string());
    if (id != self && !asleep_in_kernel(id)) {
      return false;
    }
  }
#endif
  return true;
}

/// How many threads of this process, the calling one aside, are asleep in the kernel; -1 where
/// the kernel cannot be asked.
inline int other_threads_asleep_count() {
#if defined(__linux__)
  const long self = this_thread_id();
  int asleep = 0;
  std::error_code ec;
  for (std::filesystem::directory_iterator task("/proc/self/task", ec), end; !ec && task != end;
       task.increment(ec)) {
    const long id = std::stol(task->path().filename().string());
    if (id != self && asleep_in_kernel(id)) {
      ++asleep;
    }
  }
  return asleep;
#else
  return -1;
#endif
}

}  // namespace test
