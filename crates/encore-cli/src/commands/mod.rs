pub mod bench;
pub mod config;
pub mod data;
pub mod demo;
pub mod eval;
pub mod events;
pub mod serve;
pub mod sim;
