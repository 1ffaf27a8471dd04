//! Loading: malformed components, bad policies, and the compiled-artifact cache.

use airlock::{CacheOutcome, Error, Policy};

use crate::common::*;

#[tokio::test]
async fn malformed_components_are_refused_with_a_reason() {
    let t = runtime();
    let load_bytes = |bytes: Vec<u8>| {
        let runtime = t.runtime.clone();
        async move {
            runtime
                .load_bytes("x", bytes, Policy::default(), "input.wasm")
                .await
                .err()
                .expect("refused")
        }
    };
    let core = load_bytes(b"\0asm\x01\0\0\0".to_vec()).await;
    assert_eq!(
        core.to_string(),
        "input.wasm is not a valid WebAssembly component: it is a core WebAssembly module, not a component; \
         build with `cargo build --target wasm32-wasip2` or `cargo component build`"
    );
    let junk = load_bytes(b"#!/bin/sh\necho hi\n".to_vec()).await;
    assert_eq!(
        junk.to_string(),
        "input.wasm is not a valid WebAssembly component: it does not start with the WebAssembly magic bytes (\\0asm)"
    );
    let mut truncated = std::fs::read(EXAMPLE_ADAPTER).unwrap();
    truncated.truncate(truncated.len() / 2);
    let truncated = load_bytes(truncated).await;
    assert!(
        matches!(truncated, Error::InvalidComponent { .. }),
        "{truncated}"
    );

    let missing = t
        .runtime
        .load_file("/nonexistent/adapter.wasm", Policy::default())
        .await
        .err()
        .unwrap();
    assert!(
        missing
            .to_string()
            .starts_with("cannot read component /nonexistent/adapter.wasm: "),
        "{missing}"
    );
}

#[tokio::test]
async fn bad_policies_fail_the_load_naming_the_line() {
    let t = runtime();
    let policy = Policy::from_toml("[limits]\nfuel = 100\n", "p.toml").unwrap();
    let error = t
        .runtime
        .load_file(EXAMPLE_ADAPTER, policy)
        .await
        .err()
        .unwrap();
    assert_eq!(
        error.to_string(),
        "policy p.toml: limits.fuel = 100 is out of range (10000 to 1125899906842624)"
    );

    let error = Policy::from_toml("[limits]\nmemory = 5\n", "p.toml").unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("policy p.toml: line 2: unknown field `memory`"),
        "{error}"
    );

    let policy = Policy::from_toml("name = \"Bad Name\"\n", "p.toml").unwrap();
    let error = t
        .runtime
        .load_file(EXAMPLE_ADAPTER, policy)
        .await
        .err()
        .unwrap();
    assert!(
        error
            .to_string()
            .starts_with("policy p.toml: name = \"Bad Name\" is not a valid adapter name"),
        "{error}"
    );
}

#[tokio::test]
async fn compiled_components_are_cached_and_a_tampered_artifact_is_never_loaded() {
    let t = runtime();
    let first = load(&t.runtime, EXAMPLE_ADAPTER, "").await;
    assert_eq!(first.info().cache, CacheOutcome::Compiled);
    let second = load(&t.runtime, EXAMPLE_ADAPTER, "").await;
    assert_eq!(second.info().cache, CacheOutcome::Hit);

    // Replace the artifact with other bytes: the digest no longer matches, so it is
    // recompiled rather than deserialized, and the adapter still works.
    let cache_dir = t.dir.path().join("cache");
    let artifact = std::fs::read_dir(&cache_dir)
        .unwrap()
        .flatten()
        .find(|e| e.path().extension().is_some_and(|x| x == "cwasm"))
        .unwrap()
        .path();
    std::fs::write(&artifact, b"not what airlock wrote").unwrap();
    let third = load(&t.runtime, EXAMPLE_ADAPTER, "").await;
    assert_eq!(third.info().cache, CacheOutcome::Compiled);
    third.validate_config(&example_config(0)).await.unwrap();
    assert_eq!(
        load(&t.runtime, EXAMPLE_ADAPTER, "").await.info().cache,
        CacheOutcome::Hit
    );
}

#[tokio::test]
async fn info_describes_exports_and_capabilities() {
    let t = runtime();
    let example = load(&t.runtime, EXAMPLE_ADAPTER, "").await;
    let info = example.info();
    assert_eq!(info.name, "example_adapter");
    assert!(
        info.exports
            .contains(&"airlock:adapter/contract@0.1.0".to_owned())
    );
    let capabilities = info.capabilities();
    assert!(
        capabilities.contains(&"state") && capabilities.contains(&"log"),
        "{capabilities:?}"
    );
    assert!(
        !info
            .imports
            .iter()
            .any(|i| i.starts_with("wasi:sockets") || i.starts_with("wasi:http")),
        "{:?}",
        info.imports
    );
}
