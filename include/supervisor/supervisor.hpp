#pragma once

/// \file
/// The umbrella header: including it gives the whole library. See README.md's "Layout" for a
/// map of the headers.

#include "supervisor/adapters.hpp"          // nop, from_function, start_stop, leaf, AnyRunnable
#include "supervisor/async_calls.hpp"       // AsyncCalls: async_start, async_stop, async_run
#include "supervisor/async_ready.hpp"       // CoroutineRunnable concept, AsyncReady
#include "supervisor/cancel.hpp"            // Cancel: a stop token plus a deadline
#include "supervisor/clock.hpp"             // Clock concept, SteadyClock, ManualClock, AnyClock
#include "supervisor/composite.hpp"         // chain, parallel
#include "supervisor/errors.hpp"            // errc and its error category
#include "supervisor/events.hpp"            // EventKind, Event: Options::on_event
#include "supervisor/executor.hpp"          // Executor concept, ExecutorRef
#include "supervisor/map_table.hpp"         // MapTable: an in-memory Table
#include "supervisor/options.hpp"           // Options of a Supervisor
#include "supervisor/process.hpp"           // Process<R>: one runnable's state machine
#include "supervisor/process_state.hpp"     // ProcessState
#include "supervisor/report.hpp"            // ErrorSource, ErrorReport, log_to_clog
#include "supervisor/restart_policy.hpp"    // RestartPolicy, Escalation, backoff_delay
#include "supervisor/runnable.hpp"          // Runnable concept, Ready
#include "supervisor/shutdown_report.hpp"   // ShutdownReport: Options::on_shutdown
#include "supervisor/snapshot.hpp"          // KeyState, KeyStatus, Snapshot
#include "supervisor/spawn.hpp"             // spawn: run a Task<> nobody awaits
#include "supervisor/supervisor_class.hpp"  // Supervisor<Key, R>
#include "supervisor/table.hpp"             // Table concept
#include "supervisor/task.hpp"              // Task<T>: what coroutine runnables return
#include "supervisor/thread_pool.hpp"       // ThreadPool: the stdlib executor
#include "supervisor/until_stopped.hpp"     // until_stopped: await a stop token (force alone)
