//! The only place wit-bindgen runs. Authors never see this module: the SDK's own types wrap
//! everything it generates.

wit_bindgen::generate!({
    path: "../../wit",
    world: "airlock:adapter/adapter@0.1.0",
    pub_export_macro: true,
    export_macro_name: "__export_adapter",
    default_bindings_module: "airlock_sdk::__private",
    generate_all,
});

#[cfg(feature = "lifecycle")]
pub mod lifecycle {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "airlock:adapter/lifecycle-adapter@0.1.0",
        pub_export_macro: true,
        export_macro_name: "__export_lifecycle",
        default_bindings_module: "airlock_sdk::__private::lifecycle",
        with: { "airlock:adapter/types@0.1.0": crate::bindings::airlock::adapter::types },
    });
}

#[cfg(feature = "costs")]
pub mod costs {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "airlock:adapter/costs-adapter@0.1.0",
        pub_export_macro: true,
        export_macro_name: "__export_costs",
        default_bindings_module: "airlock_sdk::__private::costs",
        with: { "airlock:adapter/types@0.1.0": crate::bindings::airlock::adapter::types },
    });
}

#[cfg(feature = "rotation")]
pub mod rotation {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "airlock:adapter/rotation-adapter@0.1.0",
        pub_export_macro: true,
        export_macro_name: "__export_rotation",
        default_bindings_module: "airlock_sdk::__private::rotation",
        with: { "airlock:adapter/types@0.1.0": crate::bindings::airlock::adapter::types },
    });
}
