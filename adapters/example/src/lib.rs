//! The example adapter's component. The adapter itself is in `adapter.rs`, which
//! `conformance/broken-example` also compiles, to wrap it.

mod adapter;

pub use adapter::Example;

airlock_sdk::export!(Example);
