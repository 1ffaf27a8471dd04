//! # airlock-cli
//!
//! The `airlock` command (`src/main.rs` only calls [`main`]) and the conformance checker
//! behind `airlock check` ([`conformance`]). They live apart from the `airlock` library so
//! that an embedder of the runtime compiles neither clap, tracing-subscriber nor fakecloud,
//! and runs no build script: this crate's `build.rs` builds every adapter under `adapters/`
//! to a component, bundles the example and fakecloud adapters for `airlock demo`, embeds
//! the SDK and the WIT for `airlock new`, and writes `$OUT_DIR/guests.rs` for the
//! integration tests and the benchmark.

mod commands;
pub mod conformance;

pub use commands::main;
