//! Integration tests: the real service over a real socket, real Parquet read back by DuckDB, a real
//! S3-compatible server on 127.0.0.1. One binary; nextest runs each test in its own process.

mod backfill;
mod browser;
mod check;
mod cli;
mod compact;
mod config;
mod current;
mod delta;
mod deploy;
mod durability;
mod flush;
mod fuzz;
mod helpers;
mod hostile;
mod inspector;
mod logs;
mod ops;
mod pipeline;
mod queries;
mod readme;
mod resilience;
mod s3;
mod stub_api;
mod subscription;
mod tls;
mod warehouse;
