//! Integration tests of the storage backends: the data directory and the event log.

mod event_log;
