//! The only place `bindgen!` runs: host bindings for the `runtime-host` world, which imports
//! every capability and exports the contract and all optional interfaces. The runtime never
//! instantiates that world as a whole; it looks up each exported interface on its own
//! (`GuestIndices`), which is how it tells which optional interfaces a component has.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "airlock:adapter/runtime-host@0.1.0",
    imports: { default: async | trappable },
    exports: { default: async },
    with: {
        "airlock:adapter/secrets.secret": crate::capabilities::secrets::SecretHandle,
    },
});

pub(crate) use self::airlock::adapter::types as wit;
pub(crate) use self::exports::airlock::adapter::{contract, costs, lifecycle, rotation};
