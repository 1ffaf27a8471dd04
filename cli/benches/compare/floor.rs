//! The floor: the same components in a minimal wasmtime host. WASI linked with an empty
//! context, every Airlock capability answered from memory (`state` from a `HashMap`, logs
//! and progress dropped, no secrets, no network), and per call a fresh `Store`,
//! `InstancePre::instantiate` and one export call. No fuel, no epochs, no limiter, no
//! policy, no database, no receipt: what any host that gives each call a fresh instance
//! has to pay.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use wasmtime::component::{Component, HasSelf, Linker, Resource, ResourceTable};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

wasmtime::component::bindgen!({
    path: "../wit",
    world: "airlock:adapter/adapter@0.1.0",
});

use self::airlock::adapter::types::StatusDetail;
use self::airlock::adapter::{http, invocation, log, progress, secrets, state};

/// The store data of one floor call.
pub(crate) struct FloorHost {
    wasi: WasiCtx,
    table: ResourceTable,
    state: Arc<Mutex<HashMap<String, Vec<u8>>>>,
}

impl WasiView for FloorHost {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl self::airlock::adapter::types::Host for FloorHost {}

impl state::Host for FloorHost {
    fn get(&mut self, key: String) -> Result<Option<Vec<u8>>, state::StateError> {
        Ok(self.state.lock().unwrap().get(&key).cloned())
    }
    fn set(
        &mut self,
        key: String,
        value: Vec<u8>,
        _ttl: Option<u64>,
    ) -> Result<(), state::StateError> {
        self.state.lock().unwrap().insert(key, value);
        Ok(())
    }
    fn insert_new(
        &mut self,
        key: String,
        value: Vec<u8>,
        _ttl: Option<u64>,
    ) -> Result<bool, state::StateError> {
        let mut map = self.state.lock().unwrap();
        if map.contains_key(&key) {
            return Ok(false);
        }
        map.insert(key, value);
        Ok(true)
    }
    fn delete(&mut self, key: String) -> Result<bool, state::StateError> {
        Ok(self.state.lock().unwrap().remove(&key).is_some())
    }
}

impl invocation::Host for FloorHost {
    fn client_token(&mut self) -> Option<String> {
        None
    }
}

impl log::Host for FloorHost {
    fn log(&mut self, _: log::Level, _: String, _: Vec<(String, String)>) {}
}

impl progress::Host for FloorHost {
    fn report(&mut self, _: u64, _: u64, _: Option<String>) {}
}

impl secrets::HostSecret for FloorHost {
    fn name(&mut self, _: Resource<secrets::Secret>) -> String {
        String::new()
    }
    fn drop(&mut self, _: Resource<secrets::Secret>) -> wasmtime::Result<()> {
        Ok(())
    }
}

impl secrets::Host for FloorHost {
    fn get(&mut self, name: String) -> Result<Resource<secrets::Secret>, secrets::SecretError> {
        Err(secrets::SecretError::NotGranted(name))
    }
    fn reveal(&mut self, _: Resource<secrets::Secret>) -> Result<String, secrets::SecretError> {
        Err(secrets::SecretError::RevealDenied("no secrets here".into()))
    }
}

impl http::Host for FloorHost {
    fn send(&mut self, _: http::Request) -> Result<http::Response, http::RequestError> {
        Err(http::RequestError::Denied(
            "the floor host has no network".into(),
        ))
    }
}

/// How the floor's engine is configured.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum FloorTuning {
    /// The pooling allocator with wasmtime's defaults: what a host gets by turning it on.
    Naive,
    /// The pooling settings Airlock's engine uses (`runtime/src/engine.rs`), so that the
    /// difference to Airlock is Airlock's own work.
    AsAirlock,
}

pub(crate) fn engine(tuning: FloorTuning) -> Engine {
    let mut pool = PoolingAllocationConfig::default();
    if tuning == FloorTuning::AsAirlock {
        airlock_pooling(&mut pool);
    }
    let mut config = Config::new();
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    Engine::new(&config).expect("floor engine")
}

/// Keep in step with `runtime/src/engine.rs` (the reset settings only; the pool's size
/// does not change a call's cost).
fn airlock_pooling(pool: &mut PoolingAllocationConfig) {
    pool.pagemap_scan(wasmtime::Enabled::Auto)
        .linear_memory_keep_resident(1 << 20)
        .table_keep_resident(64 << 10);
}

/// One component in the floor host, pre-linked once.
pub(crate) struct Floor {
    engine: Engine,
    pre: AdapterPre<FloorHost>,
    /// What the guest's `state` sees; shared by its calls.
    pub(crate) state: Arc<Mutex<HashMap<String, Vec<u8>>>>,
}

impl Floor {
    pub(crate) fn new(engine: &Engine, wasm: &str) -> Floor {
        let component = Component::from_file(engine, wasm).expect("component compiles");
        let mut linker = Linker::new(engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).expect("WASI links");
        Adapter::add_to_linker::<FloorHost, HasSelf<FloorHost>>(&mut linker, |host| host)
            .expect("capabilities link");
        let pre = AdapterPre::new(
            linker
                .instantiate_pre(&component)
                .expect("imports satisfied"),
        )
        .expect("the component exports the contract");
        Floor {
            engine: engine.clone(),
            pre,
            state: Arc::default(),
        }
    }

    fn store(&self) -> Store<FloorHost> {
        Store::new(
            &self.engine,
            FloorHost {
                wasi: WasiCtx::builder().build(),
                table: ResourceTable::new(),
                state: self.state.clone(),
            },
        )
    }

    /// Fresh store, fresh instance, one `status` call.
    pub(crate) fn status(&self, config: &str, instance_id: &str) -> StatusDetail {
        let mut store = self.store();
        let adapter = self.pre.instantiate(&mut store).expect("instantiates");
        adapter
            .airlock_adapter_contract()
            .call_status(&mut store, &config.to_owned(), instance_id)
            .expect("no trap")
            .expect("status succeeds")
    }

    /// Fresh store, fresh instance, one `create` call; the new instance id.
    pub(crate) fn create(&self, config: &str, params: &str, key: Option<&str>) -> String {
        let mut store = self.store();
        let adapter = self.pre.instantiate(&mut store).expect("instantiates");
        adapter
            .airlock_adapter_contract()
            .call_create(&mut store, &config.to_owned(), &params.to_owned(), key)
            .expect("no trap")
            .expect("create succeeds")
            .instance_id
    }
}
