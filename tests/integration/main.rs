//! Airlock's integration tests: real components built from adapters/ by cli/build.rs,
//! run in the real runtime, with a real database file in a temporary directory.

#![allow(unreachable_pub, missing_docs)]

#[macro_use]
mod common;
mod capabilities;
mod check;
mod cli;
mod example;
mod hostile;
mod hostile_runtime;
mod hostile_sandbox;
mod idempotency;
mod loading;
mod new;
mod nodes;
mod pool;
mod serve;
mod serve_contract;
mod serve_nodes;
mod serve_registry;
mod storage;
mod tenant;
