//! Integration tests of the storage backends: the data directory and the event log, and the
//! event log under injected faults.

mod event_log;
mod faults;
