#include "driver.hpp"

#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>

#if defined(__SANITIZE_THREAD__)
#define FAULT_UNDER_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define FAULT_UNDER_TSAN 1
#endif
#endif

namespace fault {
namespace {

int g_child_fd = -1;  // In a child: where its verdict goes.

void write_all(int fd, const std::string& text) {
  std::size_t at = 0;
  while (at < text.size()) {
    const ssize_t n = ::write(fd, text.data() + at, text.size() - at);
    if (n <= 0) {
      return;
    }
    at += static_cast<std::size_t>(n);
  }
}

std::string serialize(const Verdict& v) {
  std::string out =
      "K " + std::to_string(v.opportunities) + "\nF " + std::to_string(v.fired) + "\n";
  for (const auto& p : v.problems) {
    out += "P " + p + "\n";
  }
  return out + "END\n";
}

Verdict parse(const std::string& text) {
  Verdict v;
  std::size_t at = 0;
  while (at < text.size()) {
    const std::size_t end = text.find('\n', at);
    const std::string line = text.substr(at, end - at);
    at = end == std::string::npos ? text.size() : end + 1;
    if (line.rfind("K ", 0) == 0) {
      v.opportunities = std::atol(line.c_str() + 2);
    } else if (line.rfind("F ", 0) == 0) {
      v.fired = std::atol(line.c_str() + 2);
    } else if (line.rfind("P ", 0) == 0) {
      v.fail(line.substr(2));
    }
  }
  return v;
}

/// Runs `n` in a child; a death or a timeout becomes a problem of its own.
[[maybe_unused]] Verdict run_forked(const Scenario& scenario, Kind kind, long n, Flavor flavor) {
  int out[2];
  int err[2];
  if (::pipe(out) != 0 || ::pipe(err) != 0) {
    std::perror("pipe");
    std::abort();
  }
  std::fflush(nullptr);
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::close(out[0]);
    ::close(err[0]);
    ::dup2(err[1], 2);
    g_child_fd = out[1];
    const Verdict v = run_once(scenario, kind, n, flavor);
    write_all(out[1], serialize(v));
    ::_exit(0);
  }
  ::close(out[1]);
  ::close(err[1]);
  std::string text;
  std::string errors;
  // Every step of a run is bounded by patience(); a child that outlives many of them hangs
  // somewhere no bound reaches.
  const auto limit = std::chrono::steady_clock::now() + 8 * patience();
  bool timed_out = false;
  pollfd fds[2] = {{out[0], POLLIN, 0}, {err[0], POLLIN, 0}};
  int open = 2;
  while (open > 0) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        limit - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      timed_out = true;
      break;
    }
    if (::poll(fds, 2, static_cast<int>(left.count())) <= 0) {
      continue;
    }
    for (auto& fd : fds) {
      if (fd.fd >= 0 && (fd.revents & (POLLIN | POLLHUP)) != 0) {
        char buffer[4096];
        const ssize_t got = ::read(fd.fd, buffer, sizeof buffer);
        if (got <= 0) {
          fd.fd = -1;
          --open;
        } else {
          (fd.fd == out[0] ? text : errors).append(buffer, static_cast<std::size_t>(got));
        }
      }
    }
  }
  if (timed_out) {
    ::kill(pid, SIGKILL);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  ::close(out[0]);
  ::close(err[0]);
  Verdict v = parse(text);
  if (timed_out) {
    v.fail("hang: the run never finished (killed after " +
           std::to_string((8 * patience()).count()) + " ms)");
  } else if (WIFSIGNALED(status) || text.find("END\n") == std::string::npos) {
    // Keep the first line of what the child said on its way down ("terminate called after...").
    std::string said = errors.substr(0, errors.find('\n'));
    v.fail("terminate: signal " + std::to_string(WIFSIGNALED(status) ? WTERMSIG(status) : 0) +
           (said.empty() ? "" : " (" + said + ")"));
  }
  return v;
}

Verdict run_one(const Scenario& scenario, Kind kind, long n, Flavor flavor) {
#if defined(FAULT_UNDER_TSAN)
  return run_once(scenario, kind, n, flavor);
#else
  if (std::getenv("FAULT_NO_FORK") != nullptr) {
    return run_once(scenario, kind, n, flavor);
  }
  return run_forked(scenario, kind, n, flavor);
#endif
}

}  // namespace

Verdict run_once(const Scenario& scenario, Kind kind, long n, Flavor flavor) {
  Quiet quiet;
  install_thread_hook();
  Verdict verdict;
  // A first thread makes the runtime start what it starts lazily (ThreadSanitizer's background
  // thread), so that it is in the baseline rather than counted as left behind.
  std::thread([] {}).join();
  const int baseline = thread_count();
  {
    Rig rig(verdict, flavor);
    scenario.setup(rig);
    arm(kind, n);
    try {
      scenario.story(rig);
    } catch (const StoryAborted&) {
    }
    verdict.opportunities = count();
    verdict.fired = fired();
    disarm();
    try {
      if (!rig.run_returned()) {
        rig.check_keys_agree();
      }
    } catch (const StoryAborted&) {
    }
    rig.end_run_and_check(baseline);
    rig.check_reports(kind);
    rig.check_second_run(baseline);
  }
  return verdict;
}

Sweep sweep(const Scenario& scenario, Kind kind, Flavor flavor) {
  Sweep result;
  auto note = [&](long n, const Verdict& v) {
    ++result.runs;
    for (const auto& p : v.problems) {
      result.findings.push_back({n, p});
    }
  };
  const Verdict dry = run_one(scenario, kind, 0, flavor);
  note(0, dry);
  result.opportunities = dry.opportunities;
  if (const char* only = std::getenv("FAULT_ONLY_N")) {
    const long n = std::atol(only);
    note(n, run_one(scenario, kind, n, flavor));
    return result;
  }
  // A few past K: the count varies a little with thread timing.
  for (long n = 1; n <= dry.opportunities + 3; ++n) {
    note(n, run_one(scenario, kind, n, flavor));
  }
  return result;
}

void abandon(const Verdict& verdict) {
  if (g_child_fd >= 0) {
    write_all(g_child_fd, serialize(verdict));
    ::_exit(0);
  }
  std::fputs(serialize(verdict).c_str(), stderr);
  std::fflush(stderr);
  std::_Exit(3);
}

}  // namespace fault
