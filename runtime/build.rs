//! Builds the example adapter to a component and bundles it into the `airlock` binary for
//! `airlock demo`, so a newcomer needs no manual build step.

#[path = "build/guests.rs"]
#[allow(dead_code)]
mod guests;

fn main() {
    let built = guests::build_guests(&["example-adapter".to_owned()]);
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
    std::fs::copy(&built[0].1, out.join("example_adapter.wasm")).expect("copying the example adapter");
}
