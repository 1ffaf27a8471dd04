//! The fakecloud adapter's component. The adapter itself is in `adapter.rs`, which
//! `conformance/broken-fakecloud` also compiles, to wrap it.

mod adapter;

pub use adapter::FakeCloud;

airlock_sdk::export!(FakeCloud);
