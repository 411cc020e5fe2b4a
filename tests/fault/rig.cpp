#include "rig.hpp"

#include <dirent.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "../support.hpp"
#include "driver.hpp"

using namespace std::chrono_literals;
using supervisor::errc;

namespace fault {

std::chrono::milliseconds patience() {
  static const std::chrono::milliseconds value = [] {
    const char* env = std::getenv("FAULT_PATIENCE_MS");
    return std::chrono::milliseconds(env != nullptr ? std::atol(env) : 2000);
  }();
  return value;
}

int thread_count() {
  int n = 0;
  if (DIR* dir = opendir("/proc/self/task")) {
    while (const dirent* entry = readdir(dir)) {
      n += entry->d_name[0] != '.' ? 1 : 0;
    }
    closedir(dir);
  }
  return n;
}

Rig::Rig(Verdict& verdict, Flavor flavor) : verdict_(verdict) {
  supervisor::Options<FaultKey> options;
  options.clock = clock_;
  options.on_error = [this](const supervisor::ErrorReport<FaultKey>& r) { on_error(r); };
  if (flavor == Flavor::threads) {
    sup_ = std::make_unique<Sup>(std::make_shared<FaultTable>(map_), std::move(options));
    return;
  }
  if (flavor == Flavor::coroutines) {
    const int before = thread_count();
    pool_ = std::make_unique<supervisor::ThreadPool>(1);
    pool_threads_ = thread_count() - before;
    executor_ = std::make_unique<FaultExecutor>(*pool_);
    options.executor = *executor_;
  }  // else (`own_pool`) `run` starts a pool of the supervisor's own, and joins it
  co_sup_ = std::make_unique<CoSup>(std::make_shared<CoFaultTable>(co_map_), std::move(options));
}

Rig::~Rig() {
  disarm();
  if (runner_.joinable()) {
    cancel_.request_stop();
    if (!within([&] { return run_returned(); })) {
      verdict_.fail("hang: run did not return even when canceled");
      abandon(verdict_);  // Cannot join: ends this process with the verdict.
    }
    runner_.join();
  }
}

void Rig::on_error(const supervisor::ErrorReport<FaultKey>& r) {
  {
    Quiet quiet;
    Report entry{r.source, tag_of(r.error), {}};
    if (r.key != nullptr) {
      std::strncpy(entry.key.data(), r.key->name.c_str(), entry.key.size() - 1);
    }
    std::lock_guard lock(report_mutex_);  // A mutex allocates nothing: safe under every kind.
    const int i = reports_.load();
    if (i < static_cast<int>(report_log_.size())) {
      report_log_[static_cast<std::size_t>(i)] = entry;
    }
    reports_.store(i + 1);
  }
  point(Kind::hook);  // After recording: the report itself did arrive.
}

std::shared_ptr<Script> Rig::row(const std::string& name, Script::Start start, Script::Stop stop) {
  Quiet quiet;
  auto script = std::make_shared<Script>();
  script->start = start;
  script->stop = stop;
  if (auto& slot = scripts_[name]) {
    retired_.push_back(slot);
  }
  scripts_[name] = script;
  if (co_sup_) {
    co_map_->insert_or_assign(FaultKey(name), CoWorker(script));
  } else {
    map_->insert_or_assign(FaultKey(name), Worker(script));
  }
  return script;
}

void Rig::erase_row(const std::string& name) {
  Quiet quiet;
  map_->erase(FaultKey(name));
  co_map_->erase(FaultKey(name));
}

std::vector<std::string> Rig::names() const {
  std::vector<std::string> result;
  for (const auto& entry : scripts_) {
    result.push_back(entry.first);
  }
  return result;
}

void Rig::start_run() {
  const int callbacks = in_callback_.count();
  ++runs_started_;
  runner_ = std::thread([this] {
    Quiet quiet;  // A new thread starts loud; only `run` itself is under test here.
    try {
      Loud loud;
      with_sup([this](auto& sup) {
        sup.run(supervisor::Cancel(cancel_.get_token(), 60s), [this](std::stop_token stopping) {
          Quiet quiet;
          in_callback_.notify();
          test::wait_until_either(stopping, finish_.get_token());
        });
      });
    } catch (...) {
      Quiet quiet;
      if (const long tag = current_tag()) {
        std::lock_guard lock(caller_mutex_);
        caller_tags_.push_back(tag);
      }
    }
    run_done_.notify();
  });
  // A healthy initial pass lets the callback in as soon as its starts have finished, and none of
  // the scripts here is slow to start: an initial wait still armed after a while is stuck.
  bool released = false;
  const auto soon = std::chrono::steady_clock::now() + patience() / 4;
  wait("run's callback never ran", [&] {
    if (in_callback_.count() > callbacks || run_returned()) {
      return true;
    }
    if (!released && std::chrono::steady_clock::now() > soon && clock_->sleepers() > 0 &&
        clock_->arms() == 1) {
      verdict_.fail("hang: the initial pass never settled (released by initial_wait)");
      released = true;
      clock_->advance(1s);
    }
    return false;
  });
}

void Rig::await_run(const char* what) {
  wait(what, [&] { return run_returned(); });
}

void Rig::restart_pass() {
  wait("restart loop never armed its wait", [&] { return clock_->sleepers() >= 1; });
  const auto arms = clock_->arms();
  const int reports = reports_.load();
  clock_->advance(1min);
  wait("restart pass never finished", [&] {
    if (clock_->arms() > arms) {
      return true;
    }
    std::lock_guard lock(report_mutex_);
    for (int i = reports; i < std::min(reports_.load(), 1024); ++i) {
      if (report_log_[static_cast<std::size_t>(i)].source == supervisor::ErrorSource::clock) {
        verdict_.fail("unusable: the restart loop ended (clock report), no more passes");
        throw StoryAborted{};
      }
    }
    return false;
  });
}

bool Rig::start_reported(const std::string& name) const {
  std::lock_guard lock(report_mutex_);
  for (int i = report_mark_; i < std::min(reports_.load(), 1024); ++i) {
    const Report& r = report_log_[static_cast<std::size_t>(i)];
    // A pass that failed as a whole (iterate, next) or skipped a row never starts some keys.
    if ((r.source == supervisor::ErrorSource::start && name == r.key.data()) ||
        r.source == supervisor::ErrorSource::iterate || r.source == supervisor::ErrorSource::row) {
      return true;
    }
  }
  return false;
}

void Rig::settle(const std::vector<std::string>& names) {
  for (const auto& name : names) {
    const auto& s = *scripts_.at(name);
    wait("start of " + name + " never finished nor was reported",
         [&] { return s.readied.count() > 0 || s.returned.count() > 0 || start_reported(name); });
  }
}

void Rig::hang(const std::string& what) {
  // `run` ended early (a fault it reported to its caller): the story has nothing left to drive.
  if (!run_returned()) {
    verdict_.fail("hang: " + what);
  }
  throw StoryAborted{};
}

Outcome Rig::call(const std::function<void(std::error_code&)>& f) {
  Outcome outcome;
  try {
    Loud loud;
    f(outcome.code);
  } catch (...) {
    outcome.tag = current_tag();
    if (outcome.tag != 0) {
      std::lock_guard lock(caller_mutex_);
      caller_tags_.push_back(outcome.tag);
    } else {
      outcome.other = true;
    }
  }
  return outcome;
}

Outcome Rig::start(const std::string& name, supervisor::Cancel cancel) {
  const FaultKey key(name);
  auto outcome = call(
      [&](std::error_code& ec) { with_sup([&](auto& sup) { (void)sup.start(key, cancel, ec); }); });
  if (outcome.code == errc::deadline_exceeded) {
    hang("start of " + name);
  }
  return outcome;
}

Outcome Rig::stop(const std::string& name, supervisor::Cancel cancel) {
  const FaultKey key(name);
  return call(
      [&](std::error_code& ec) { with_sup([&](auto& sup) { sup.stop(key, cancel, ec); }); });
}

Outcome Rig::get(const std::string& name) {
  const FaultKey key(name);
  return call([&](std::error_code& ec) { with_sup([&](auto& sup) { (void)sup.get(key, ec); }); });
}

bool Rig::has_process(const std::string& name) {
  Quiet quiet;
  std::error_code ec;
  try {
    with_sup([&](auto& sup) { (void)sup.get(FaultKey(name), ec); });
  } catch (...) {
    return true;  // cannot tell: keep waiting
  }
  return ec != supervisor::errc::process_not_found;
}

Outcome Rig::visit(const std::string& name) {
  const FaultKey key(name);
  return call([&](std::error_code& ec) {
    with_sup([&](auto& sup) { ec = sup.visit(key, [](const auto& /*runnable*/) {}); });
  });
}

Outcome Rig::keys(std::vector<std::string>* out) {
  return call([&](std::error_code&) {
    with_sup([&](auto& sup) {
      auto keys = sup.keys();
      Quiet quiet;
      for (const auto& key : keys) {
        if (out != nullptr) {
          out->push_back(key.name);
        }
      }
    });
  });
}

// ---- Checks -------------------------------------------------------------------------------------

void Rig::check_keys_agree() {
  disarm();
  for (const auto& name : names()) {
    // Settle what the story left in flight: a process still starting or stopping.
    (void)within([&] { return get(name).code != errc::process_not_running; });
    std::vector<std::string> listed;
    (void)keys(&listed);
    const bool in_keys = std::find(listed.begin(), listed.end(), name) != listed.end();
    const auto got = get(name).code;
    if (got == errc::process_not_running) {
      verdict_.fail("stuck key: " + name + " never leaves process_not_running");
      continue;
    }
    if ((got == errc::process_not_found) == in_keys) {
      verdict_.fail("stuck key: " + name + ": get says " + got.message() + " but keys() " +
                    (in_keys ? "lists it" : "does not"));
    }
    if (got == errc::process_not_found) {
      row(name);  // A fresh, well-behaved runnable: the key alone is under test.
      const auto started = start(name, 10s);
      if (started.code == errc::process_exists) {
        verdict_.fail("stuck key: " + name + " not found by get, yet start says process_exists");
      } else if (!started.ok()) {
        verdict_.fail("unusable: start of free key " + name + " failed: " + started.code.message());
      } else if (!stop(name, 10s).ok()) {
        verdict_.fail("unusable: stop of " + name + " after a fresh start failed");
      }
    }
  }
}

void Rig::end_run_and_check(int baseline_threads) {
  disarm();
  if (runner_.joinable()) {
    request_finish();
    // A runnable that ignores the graceful stop holds a graceful shutdown up by design.
    for (const auto& [name, script] : scripts_) {
      if (script->stop == Script::Stop::ignore_graceful && script->live.load() > 0) {
        request_cancel();
      }
    }
    if (!within([&] { return run_returned(); })) {
      verdict_.fail("hang: run did not return after its callback did (forced it)");
      request_cancel();
    }
    if (!within([&] { return run_returned(); })) {
      verdict_.fail("hang: run did not return even when canceled");
      abandon(verdict_);
    }
    runner_.join();
  }
  baseline_threads += pool_threads_;
  if (!within([&] { return thread_count() <= baseline_threads; }, patience() / 5)) {
    verdict_.fail("thread left: " + std::to_string(thread_count() - baseline_threads) +
                  " thread(s) still alive after run returned");
  }
  std::vector<std::string> listed;
  (void)keys(&listed);
  for (const auto& name : listed) {
    verdict_.fail("stuck key: " + name + " still has a process after run returned");
  }
  for (const auto& [name, script] : scripts_) {
    if (script->live.load() != 0) {
      verdict_.fail("thread left: the runnable of " + name + " still runs after run returned");
    }
  }
  for (const auto& script : retired_) {
    if (script->live.load() != 0) {
      verdict_.fail("thread left: a replaced runnable still runs after run returned");
    }
  }
}

void Rig::check_reports(Kind kind) {
  const long n = verdict_.fired;
  std::scoped_lock lock(caller_mutex_, report_mutex_);
  long seen = std::count(caller_tags_.begin(), caller_tags_.end(), n);
  // A wake-up whose `schedule` failed is resumed where it was made instead: nothing to report.
  seen += n != 0 && recovered() == n ? 1 : 0;
  for (int i = 0; i < std::min(reports_.load(), 1024); ++i) {
    seen += report_log_[static_cast<std::size_t>(i)].tag == n ? 1 : 0;
  }
  if (n == 0 || kind == Kind::hook) {
    return;  // Nothing injected, or the hook's own exception, which has nowhere to go.
  }
  if (seen == 0) {
    dump_fired_trace();
    verdict_.fail("lost report: injected fault #" + std::to_string(n) +
                  " reached neither a caller nor on_error");
  } else if (seen > 1) {
    verdict_.fail("duplicated report: injected fault #" + std::to_string(n) + " seen " +
                  std::to_string(seen) + " times");
  }
}

void Rig::check_second_run(int baseline_threads) {
  disarm();
  for (const auto& name : names()) {
    row(name);
  }
  cancel_ = std::stop_source();
  finish_ = std::stop_source();
  const int reports_before = reports_.load();
  try {
    start_run();
    for (const auto& name : names()) {
      wait("second run: " + name + " never became ready", [&] { return get(name).ok(); });
      if (!stop(name, 10s).ok() || get(name).code != errc::process_not_found) {
        verdict_.fail("unusable: second run: stop of " + name + " failed");
      } else if (!start(name, 10s).ok() || !stop(name, 10s).ok()) {
        verdict_.fail("unusable: second run: fresh start+stop of " + name + " failed");
      }
    }
  } catch (const StoryAborted&) {
    verdict_.fail("unusable: the second run, without faults, did not complete its steps");
  }
  end_run_and_check(baseline_threads);
  if (reports_.load() != reports_before) {
    verdict_.fail("unusable: second run, without faults, still reported errors");
  }
}

}  // namespace fault
