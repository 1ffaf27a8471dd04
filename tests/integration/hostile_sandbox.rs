//! Hostile adapters that attack the contract checks and the sandbox's capabilities:
//! lying output, ambient authority (files, environment, sockets), denied requests in a
//! loop, slow providers. Each test is named after its adapter (see `foreach_hostile!` in
//! `hostile.rs`).
