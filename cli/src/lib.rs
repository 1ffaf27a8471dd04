//! # airlock-cli
//!
//! The `airlock` command (`src/main.rs` only calls [`main`]); the conformance checker
//! behind `airlock check` is the `airlock-conformance` crate. The command lives apart from
//! the `airlock` library so that an embedder of the runtime compiles neither clap,
//! tracing-subscriber nor fakecloud, and runs no build script: this crate's `build.rs`
//! builds every adapter under `adapters/` to a component, bundles the example and fakecloud
//! adapters for `airlock demo`, embeds the SDK and the WIT for `airlock new`, and writes
//! `$OUT_DIR/guests.rs` for the integration tests and the benchmark.

mod commands;

pub use commands::main;
