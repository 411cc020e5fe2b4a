#pragma once

/// \file
/// The read side of `Supervisor`: `get`, `visit` and `keys`. Each walks the process map without
/// a lock (the map's readers pin an epoch instead), so none of them blocks. Included by
/// `supervisor_class.hpp`; not for direct use.

#include <concepts>
#include <functional>
#include <optional>
#include <system_error>
#include <utility>
#include <vector>

#include "supervisor/supervisor_class.hpp"

namespace supervisor {

template <class Key, SupervisedRunnable R, class Hash, class KeyEqual>
requires std::copy_constructible<Key>
auto Supervisor<Key, R, Hash, KeyEqual>::get(const Key& key, std::error_code& ec) const
    -> std::optional<R> {
  return processes_.visit(key, [&](const ManagedPtr* managed) -> std::optional<R> {
    if (managed == nullptr || !(*managed)->launched()) {
      ec = errc::process_not_found;
      return std::nullopt;
    }
    ec = (*managed)->state() == ProcessState::running ? std::error_code{}
                                                      : errc::process_not_running;
    return (*managed)->runnable();
  });
}

template <class Key, SupervisedRunnable R, class Hash, class KeyEqual>
requires std::copy_constructible<Key>
template <std::invocable<const R&> F>
auto Supervisor<Key, R, Hash, KeyEqual>::visit(const Key& key, F&& f) const -> std::error_code {
  return processes_.visit(key, [&](const ManagedPtr* managed) -> std::error_code {
    if (managed == nullptr || !(*managed)->launched()) {
      return errc::process_not_found;
    }
    if ((*managed)->state() != ProcessState::running) {
      return errc::process_not_running;
    }
    std::invoke(f, std::as_const((*managed)->runnable()));
    return {};
  });
}

template <class Key, SupervisedRunnable R, class Hash, class KeyEqual>
requires std::copy_constructible<Key>
auto Supervisor<Key, R, Hash, KeyEqual>::keys() const -> std::vector<Key> {
  std::vector<Key> result;
  processes_.for_each_unlocked([&](const Key& key, const ManagedPtr& managed) {
    if (managed->launched()) {
      result.push_back(key);
    }
  });
  return result;
}

}  // namespace supervisor
