//! wasmtime setup, done once per [`crate::Runtime`]: the engine (pooling allocator, fuel,
//! epoch interruption), the epoch ticker that turns wall-clock deadlines into guest
//! interruptions, and the linker with every capability in it.

use std::time::Duration;

use wasmtime::{
    Config, Enabled, Engine, InstanceAllocationStrategy, OptLevel, PoolingAllocationConfig,
};

use crate::error::Error;

/// How often the epoch advances. A running guest checks its deadline and yields to other
/// tasks at every tick, so this is both the deadline's resolution and the longest a guest
/// can hold a worker thread.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(2);

/// At most this much of each linear memory is reset in place (and kept resident) after a
/// call; dirty pages past it are returned to the kernel. A warm slot holds at most this
/// much RSS, and only the pages calls actually touched.
const LINEAR_MEMORY_KEEP_RESIDENT: usize = 1 << 20;
/// The same for tables.
const TABLE_KEEP_RESIDENT: usize = 64 << 10;

/// Instance-pool sizing and ceilings, from [`crate::RuntimeConfig`].
pub(crate) struct EngineSettings {
    pub(crate) pool_size: u32,
    pub(crate) max_memory_bytes: u64,
}

pub(crate) fn build_engine(settings: &EngineSettings) -> Result<Engine, Error> {
    let mut pool = PoolingAllocationConfig::new();
    let instances = settings.pool_size;
    // A Rust component has one core module instance and memory of its own plus a handful of
    // small shim instances; one built by cargo-component adds the WASI adapter's module.
    pool.total_component_instances(instances)
        .total_core_instances(instances * 8)
        .total_memories(instances * 2)
        .total_tables(instances * 4)
        .total_stacks(instances)
        .max_memories_per_component(4)
        .max_tables_per_component(8)
        .max_core_instances_per_component(16)
        .max_memory_size(settings.max_memory_bytes as usize)
        // Resetting a slot for its next instance is about half of a fresh call when it is
        // done with `madvise` (page faults and TLB flushes). With the PAGEMAP_SCAN ioctl
        // (Linux 6.7+) wasmtime finds the pages the call dirtied and restores just those
        // with `memcpy`/`memset`, up to the keep-resident bound; the pages stay mapped, so
        // the next call does not fault them in. Where the ioctl is missing this falls back
        // to `madvise` past the first `keep_resident` bytes. Measured in
        // docs/benchmarks.md: a trivial call 21 µs → 11 µs.
        .pagemap_scan(Enabled::Auto)
        .linear_memory_keep_resident(LINEAR_MEMORY_KEEP_RESIDENT)
        .table_keep_resident(TABLE_KEEP_RESIDENT);

    let mut config = Config::new();
    config
        .wasm_component_model(true)
        .consume_fuel(true)
        .epoch_interruption(true)
        .cranelift_opt_level(OptLevel::Speed)
        .parallel_compilation(true)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    Engine::new(&config).map_err(|e| Error::Engine(format!("{e:#}")))
}

/// Advances the engine's epoch every [`EPOCH_TICK`] on a thread of its own, until the
/// engine is dropped.
pub(crate) fn spawn_epoch_ticker(engine: &Engine) {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("airlock-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        })
        .expect("spawning the epoch thread");
}
