//! Faults and isolation, against the real binary (`CARGO_BIN_EXE_lowrouter`) run as a child
//! process: kill -9 is a real SIGKILL, and logs are the process's real stdout/stderr.
//!
//! SQLite by default; PostgreSQL when LOWROUTER_TEST_DATABASE_URL names a server (each test
//! creates its own database). The crash test runs on SQLite always and on PostgreSQL too
//! when the variable is set; the two-process test needs PostgreSQL and skips without it.
//!
//! No assertion depends on timing: load runs until a count is reached, waits poll with
//! generous timeouts.

mod common;
#[path = "faults/support.rs"]
mod support;

use std::collections::{BTreeSet, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use support::*;

/// The API suite's fake upstream (its `drip` model streams six chunks 400 ms apart).
#[allow(dead_code, unused_imports)]
#[path = "api/helpers.rs"]
mod api_helpers;

// One module per theme; each sees the others' helpers through these globs.
#[path = "faults/crash.rs"]
mod crash;
#[path = "faults/isolation.rs"]
mod isolation;
#[path = "faults/journal.rs"]
mod journal;
#[path = "faults/logs.rs"]
mod logs;
#[path = "faults/revocation.rs"]
mod revocation;
#[path = "faults/shutdown.rs"]
mod shutdown;
#[path = "faults/two_processes.rs"]
mod two_processes;
#[allow(unused_imports)]
use crash::*;
#[allow(unused_imports)]
use isolation::*;
#[allow(unused_imports)]
use journal::*;
#[allow(unused_imports)]
use logs::*;
#[allow(unused_imports)]
use revocation::*;
#[allow(unused_imports)]
use shutdown::*;
#[allow(unused_imports)]
use two_processes::*;
