//! Hostile adapters that attack the runtime's limits: CPU, memory, stack, traps, floods.
//! Each test is named after its adapter (see `foreach_hostile!` in `hostile.rs`).
