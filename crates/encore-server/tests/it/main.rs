//! The HTTP API end to end: a real server on 127.0.0.1, requests over TCP.

mod auth;
mod events;
