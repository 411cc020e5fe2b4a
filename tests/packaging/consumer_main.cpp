// A consumer of supervisor: supervises one worker from a MapTable, starts, gets and stops it while
// the supervisor runs. Exits with 0 when all of it worked.

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <exception>
#include <iostream>
#include <memory>
#include <stop_token>
#include <string>
#include <supervisor/supervisor.hpp>
#include <utility>

namespace {

// A runnable: up as soon as it has called `ready`, which blocks until it is asked to stop.
struct Worker {
  std::atomic<int> runs{0};
  std::atomic<bool> stopped{false};

  void run(const std::stop_token& /*force*/, supervisor::Ready& ready) {
    ++runs;
    ready();
    stopped = true;
  }
};

using WorkerPtr = std::shared_ptr<Worker>;

bool check(bool ok, const char* what) {
  if (!ok) {
    std::cerr << "consumer: failed: " << what << '\n';
  }
  return ok;
}

}  // namespace

int main() {
  try {
    auto table = std::make_shared<supervisor::MapTable<std::string, WorkerPtr>>();
    auto worker = std::make_shared<Worker>();

    supervisor::Options<std::string> options;
    options.restart_interval = std::chrono::hours(1);  // Only our `start` starts the worker.
    supervisor::Supervisor<std::string, WorkerPtr> sup(table, std::move(options));

    bool ok = true;
    sup.run([&] {
      table->insert_or_assign("worker", worker);
      ok &= check(sup.start("worker") == worker, "start returns the worker");
      ok &= check(sup.get("worker") == worker, "get returns the worker");
      table->erase("worker");
      sup.stop("worker");
      ok &= check(worker->stopped, "stop stops the worker");
      ok &= check(sup.keys().empty(), "no process left after stop");
    });
    ok &= check(worker->runs == 1, "the worker ran once");

    if (!ok) {
      return EXIT_FAILURE;
    }
    std::cout << "consumer: ok\n";
    return EXIT_SUCCESS;
  } catch (const std::exception& error) {
    std::cerr << "consumer: " << error.what() << '\n';
    return EXIT_FAILURE;
  }
}
