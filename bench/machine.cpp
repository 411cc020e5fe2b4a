// The machine's state while the bench runs, measured twice (before the scenarios and after):
// what one cache line costs to cross between two cores and back, and what one page costs to
// touch for the first time. On a virtual machine both move by 2x or more from one hour to the
// next (where the host puts the vCPUs, what else it runs), and with them every row that hands
// work between threads (the cycles from an outside thread, shutdown) or that touches new memory
// (restore at a million processes): a figure is read beside the probes of its own run.

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <iterator>
#include <memory>
#include <string>
#include <thread>

#include "common.hpp"
#include "harness.hpp"

namespace bench {
namespace {

/// Nanoseconds per round trip of one cache line between this thread and another: each writes
/// the next number once it sees the other's. The median of five runs.
double line_round_trip_ns() {
  constexpr int trips = 200'000;
  double runs[5];
  for (double& run : runs) {
    alignas(64) std::atomic<int> line{0};
    std::thread echo([&line] {
      for (int i = 0; i < trips; ++i) {
        while (line.load(std::memory_order_acquire) != 2 * i + 1) {
        }
        line.store(2 * i + 2, std::memory_order_release);
      }
    });
    const auto t0 = Clock::now();
    for (int i = 0; i < trips; ++i) {
      line.store(2 * i + 1, std::memory_order_release);
      while (line.load(std::memory_order_acquire) != 2 * i + 2) {
      }
    }
    run = seconds_since(t0) * 1e9 / trips;
    echo.join();
  }
  std::sort(std::begin(runs), std::end(runs));
  return runs[2];
}

/// Nanoseconds per 4 KiB page written for the first time: a fresh 64 MiB block (the allocator
/// maps it anew, then frees it back) touched one byte per page. The page fault, the zeroing, and
/// on a VM the host's share.
double first_touch_ns() {
  constexpr std::size_t page = 4096;
  constexpr std::size_t bytes = std::size_t{64} << 20U;
  const std::unique_ptr<unsigned char[]> block(new unsigned char[bytes]);
  const auto t0 = Clock::now();
  for (std::size_t at = 0; at < bytes; at += page) {
    block[at] = 1;
  }
  constexpr std::size_t pages = bytes / page;
  const double ns = seconds_since(t0) * 1e9 / static_cast<double>(pages);
  // Read back, so that the writes are not optimised away.
  std::size_t sum = 0;
  for (std::size_t at = 0; at < bytes; at += page) {
    sum += block[at];
  }
  return sum == pages ? ns : -1;
}

/// The bracketed word of the kernel's transparent huge pages setting, or "unknown".
std::string huge_pages_mode() {
  const std::string line = read_first_line("/sys/kernel/mm/transparent_hugepage/enabled");
  const auto open = line.find('[');
  const auto close = line.find(']', open);
  if (open == std::string::npos || close == std::string::npos) {
    return "unknown";
  }
  return line.substr(open + 1, close - open - 1);
}

/// `GLIBC_TUNABLES` as the process was started with it (glibc reads it once, at start), or
/// "none".
std::string glibc_tunables() {
  const char* set = std::getenv("GLIBC_TUNABLES");  // NOLINT(concurrency-mt-unsafe): no setenv
  return set != nullptr && *set != '\0' ? set : "none";
}

}  // namespace

MachineProbes probe_machine() {
  return MachineProbes{line_round_trip_ns(), first_touch_ns(), huge_pages_mode(), glibc_tunables()};
}

std::string describe(const MachineProbes& probes) {
  char text[160];
  std::snprintf(text, sizeof text,
                "cache line round trip %.0f ns, first touch %.0f ns per page (huge pages: %s)",
                probes.line_round_trip_ns, probes.first_touch_ns, probes.huge_pages.c_str());
  std::string described = text;
  if (probes.glibc_tunables != "none") {
    described += ", GLIBC_TUNABLES=" + probes.glibc_tunables;
  }
  return described;
}

}  // namespace bench
