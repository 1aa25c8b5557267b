//! One file per CLI command: thin glue over the library's rooms, printing what it did.
//! `serve` itself is `startup`.

pub mod check;
pub mod config_check;
pub mod samples;
pub mod send_test;
pub mod spool;
pub mod subscriptions;
