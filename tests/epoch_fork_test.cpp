// fork() while the library is in use: the child inherits the epoch domain, whose records belong
// to the parent's threads, and must be able to use the library afresh. Each child reports through
// its exit code (0, or the number of the first check that failed) and ends with `_exit`; it arms
// `alarm` first, so a deadlock kills it rather than hangs the suite.

#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdint>
#include <functional>
#include <latch>
#include <memory>
#include <string>
#include <supervisor/detail/epoch.hpp>
#include <supervisor/detail/sharded_map.hpp>
#include <thread>
#include <vector>

#include "catch_shim.hpp"
#include "sharded_map_support.hpp"
#include "support.hpp"

#if defined(__SANITIZE_THREAD__)
#define SUPERVISOR_FORK_TEST_TSAN 1
#elif defined(__SANITIZE_ADDRESS__)
#define SUPERVISOR_FORK_TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define SUPERVISOR_FORK_TEST_TSAN 1
#elif __has_feature(address_sanitizer)
#define SUPERVISOR_FORK_TEST_ASAN 1
#endif
#endif

namespace {

/// ThreadSanitizer does not support creating threads in the child of a multithreaded parent (it
/// kills the child): under it, children skip the parts that create threads.
#if defined(SUPERVISOR_FORK_TEST_TSAN)
constexpr bool children_may_create_threads = false;
#else
constexpr bool children_may_create_threads = true;
#endif

/// AddressSanitizer's allocator (before LLVM 18, llvm/llvm-project#75290; GCC 12's is older)
/// does not hold its locks across a fork: a child whose parent had a thread inside `malloc`
/// deadlocks in its own first `malloc` that needs the lock. ThreadSanitizer's runtime (GCC 12,
/// LLVM 14) has the same flaw for its thread registry: a fork that lands while another thread is
/// being created or torn down leaves a child that hangs in the runtime (seen once in CI as a
/// SIGALRM after 60 s). Under either, no thread of the parent churns while the parent forks; the
/// parked, pinned ones stay, and they are what the domain must survive.
#if defined(SUPERVISOR_FORK_TEST_ASAN) || defined(SUPERVISOR_FORK_TEST_TSAN)
constexpr bool parent_may_churn = false;
#else
constexpr bool parent_may_churn = true;
#endif

using test::lookup;
using test::Tracked;
using Value = test::TrackedValue;
using Map = test::TrackedMap;

bool erase(Map& map, std::uint64_t key) {
  return map.erase_if(key, [](const Value&) { return true; });
}

std::size_t records() { return supervisor::detail::EpochDomain::instance().records(); }

/// What a child found: the number of its first failed check, or 0.
struct Verdict {
  int failed = 0;
  void check(bool ok, int number) {
    if (!ok && failed == 0) {
      failed = number;
    }
  }
};

/// In the child: arms the alarm, runs `body`, and exits with its verdict. Never returns.
template <class Body>
[[noreturn]] void child_main(Body&& body) {
  ::alarm(60);
  int code = 100;  // an exception escaped
  try {
    Verdict verdict;
    body(verdict);
    code = verdict.failed;
  } catch (...) {
  }
  ::_exit(code);
}

/// In the parent: waits for the child and checks that it exited normally with code 0.
void expect_clean_exit(pid_t pid) {
  REQUIRE(pid > 0);
  int status = 0;
  pid_t waited = -1;
  do {
    waited = ::waitpid(pid, &status, 0);
  } while (waited == -1 && errno == EINTR);
  REQUIRE(waited == pid);
  const int signal = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
  INFO("killed by signal " << signal << " (0: none; " << SIGALRM << ": SIGALRM, a deadlock)");
  REQUIRE(signal == 0);
  REQUIRE(WIFEXITED(status));
  const int failed_check = WEXITSTATUS(status);  // the child's first failed check, or 0
  CHECK(failed_check == 0);
}

/// A fresh map in the child: an erased value is freed by `reclaim`, so the epoch advances.
void check_fresh_map(Verdict& verdict, int first) {
  std::atomic<int> destroyed{0};
  Map map;
  map.assign(7, std::make_shared<Tracked>(7, &destroyed));
  map.assign(8, std::make_shared<Tracked>(8, &destroyed));
  verdict.check(lookup(map, 7) == 7, first);
  verdict.check(erase(map, 7), first + 1);
  map.reclaim();
  verdict.check(destroyed == 1, first + 2);
  verdict.check(lookup(map, 7) == 0 && lookup(map, 8) == 8, first + 3);
}

/// A supervisor made in the child starts and stops a process.
void check_supervisor(Verdict& verdict, int first) {
  using Table = supervisor::MapTable<std::string, test::Probe>;
  auto table = std::make_shared<Table>();
  supervisor::Supervisor<std::string, test::Probe> sup(table);
  auto probe = test::Probe::with(test::Startup::ready);
  sup.run([&] {
    table->insert_or_assign("a", probe);
    (void)sup.start("a");
    verdict.check(sup.get("a").state == probe.state, first);
    table->erase("a");
    sup.stop("a");
  });
  verdict.check(probe.state->returned.count() == 1, first + 1);
}

}  // namespace

TEST_CASE("fork: the child of pinned and churning threads reclaims, looks up, starts threads",
          "[fork]") {
  if (!children_may_create_threads) {
    WARN("ThreadSanitizer: the children skip creating threads (unsupported after a fork)");
  }
  if (!parent_may_churn) {
    WARN("Sanitizer: no threads churn during the forks (its runtime is not fork-safe)");
  }
  std::atomic<int> destroyed{0};
  Map map;
  map.assign(1, std::make_shared<Tracked>(1, &destroyed));
  REQUIRE(lookup(map, 1) == 1);  // The forking thread has a record of its own.

  // Threads parked inside a lookup's callback: pinned across every fork.
  constexpr int parked_count = 3;
  std::latch parked(parked_count);
  test::Event release;
  std::vector<std::thread> threads;
  for (int i = 0; i < parked_count; ++i) {
    threads.emplace_back([&] {
      map.visit(1, [&](const Value*) {
        parked.count_down();
        release.wait();
      });
    });
  }
  // Threads that churn: each new thread takes a record (under the domain's lock), looks up and
  // hands it back as it exits, so forks land while the lock is taken.
  std::atomic<bool> stop{false};
  std::atomic<int> churned{0};
  for (int i = 0; i < (parent_may_churn ? 2 : 0); ++i) {
    threads.emplace_back([&] {
      while (!stop) {
        std::thread([&] {
          (void)lookup(map, 1);
          churned.fetch_add(1);
        }).join();
      }
    });
  }
  // Lets every thread go, also when a REQUIRE ends the test early.
  struct Finish {
    std::atomic<bool>& stop;
    test::Event& release;
    std::vector<std::thread>& threads;
    void now() {
      stop = true;
      if (release.count() == 0) {
        release.notify();
      }
      for (auto& t : threads) {
        if (t.joinable()) {
          t.join();
        }
      }
    }
    ~Finish() { now(); }
  } finish{stop, release, threads};
  REQUIRE(test::eventually([&] { return parked.try_wait(); }));
  REQUIRE(test::eventually([&] { return churned >= 2 || !parent_may_churn; }));

  for (int fork_number = 0; fork_number < 50; ++fork_number) {
    const pid_t pid = ::fork();
    if (pid == 0) {
      child_main([](Verdict& verdict) {
        check_fresh_map(verdict, 10);
        // Only this thread survived: the other threads' records went back.
        verdict.check(records() == 1, 1);
        if (children_may_create_threads) {
          std::thread([&] {
            check_fresh_map(verdict, 20);  // Its first lookup takes the domain's lock.
            verdict.check(records() == 2, 30);
          }).join();
          verdict.check(records() == 1, 31);
          check_supervisor(verdict, 40);
        }
      });
    }
    expect_clean_exit(pid);
  }

  finish.now();
  // The parent's domain still works: the parked readers have gone, so the value is freed.
  REQUIRE(erase(map, 1));
  map.reclaim();
  CHECK(destroyed == 1);
}

TEST_CASE("fork: from inside a lookup's callback, the child's pin holds until it returns",
          "[fork]") {
  std::atomic<int> destroyed{0};
  std::atomic<int> fresh_destroyed{0};
  Map map;  // Only this thread uses it, so the child may go on using it.
  map.assign(1, std::make_shared<Tracked>(1, &destroyed));
  Verdict verdict;
  const pid_t pid = map.visit(1, [&](const Value* value) {
    const pid_t forked = ::fork();
    if (forked == 0) {
      ::alarm(60);
      // The value this pin reached, and anything retired since, outlive their erasure.
      verdict.check(erase(map, 1), 2);
      map.reclaim();
      verdict.check(destroyed == 0 && (*value)->key == 1, 3);
      Map fresh;
      fresh.assign(2, std::make_shared<Tracked>(2, &fresh_destroyed));
      verdict.check(erase(fresh, 2), 4);
      fresh.reclaim();
      verdict.check(fresh_destroyed == 0, 5);
      verdict.check(records() == 1, 1);
    }
    return forked;
  });
  if (pid == 0) {
    child_main([&](Verdict& after) {
      after = verdict;
      map.reclaim();
      after.check(destroyed == 1, 6);
      check_fresh_map(after, 10);
      after.check(records() == 1, 7);
    });
  }
  expect_clean_exit(pid);
  CHECK(lookup(map, 1) == 1);  // The parent's map is its own.
}

namespace {

/// Forks during its thread's exit, after the thread has handed its record back: its lookup pins
/// a borrowed record, which the child must keep while the pin lasts.
struct ForkAtExit {
  Map* map = nullptr;
  std::atomic<int>* destroyed = nullptr;
  std::atomic<pid_t>* forked_pid = nullptr;
  ~ForkAtExit() {
    if (map == nullptr) {
      return;
    }
    Verdict verdict;
    const pid_t pid = map->visit(1, [&](const Value*) {
      const pid_t forked = ::fork();
      if (forked == 0) {
        ::alarm(60);
        verdict.check(erase(*map, 1), 2);
        map->reclaim();
        verdict.check(*destroyed == 0, 3);
        verdict.check(records() == 1, 1);  // The borrowed record.
      }
      return forked;
    });
    if (pid == 0) {
      child_main([&](Verdict& after) {
        after = verdict;
        after.check(records() == 0, 4);  // The borrowed record went back, once.
        map->reclaim();
        after.check(*destroyed == 1, 5);
        check_fresh_map(after, 10);
      });
    }
    forked_pid->store(pid);
  }
};

}  // namespace

TEST_CASE("fork: during a thread's exit, a borrowed record stays the thread's in the child",
          "[fork]") {
  std::atomic<int> destroyed{0};
  Map map;
  map.assign(1, std::make_shared<Tracked>(1, &destroyed));
  std::atomic<pid_t> pid{-1};
  std::thread([&] {
    // Constructed before the thread's first lookup, so destroyed after its record went back.
    thread_local ForkAtExit at_exit;
    at_exit.map = &map;
    at_exit.destroyed = &destroyed;
    at_exit.forked_pid = &pid;
    (void)lookup(map, 1);
  }).join();
  expect_clean_exit(pid);
  CHECK(lookup(map, 1) == 1);
}
