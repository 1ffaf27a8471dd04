// Included by cli/build.rs with `#[path]`: compiles guest crates of the adapters/ workspace
// to wasm components, the way wasmtime's test-programs do, so that a plain `cargo build` or
// `cargo test` builds everything it needs.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The target every guest is built for.
pub(crate) const GUEST_TARGET: &str = "wasm32-wasip2";

/// The repository root (the parent of the crate running this build script).
pub(crate) fn repo_root() -> PathBuf {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    manifest
        .parent()
        .expect("crate has a parent directory")
        .to_owned()
}

/// Where guests are built: `adapters` inside the host's target directory, so one target
/// tree holds everything while the two cargo invocations never wait on the same lock.
pub(crate) fn guest_target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|dir| {
            if dir.is_absolute() {
                dir
            } else {
                root.join(dir)
            }
        })
        .unwrap_or_else(|| root.join("target"))
        .join("adapters")
}

fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    // The host build's flags are for the host, not for wasm guests.
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_TARGET",
        "CARGO_TARGET_DIR",
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTC_WRAPPER",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

/// Make sure the wasm target's standard library is installed, installing it with rustup
/// if it is missing.
fn ensure_target() {
    let sysroot = Command::new(std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into()))
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim().to_owned()));
    let installed = sysroot.is_some_and(|s| s.join("lib/rustlib").join(GUEST_TARGET).exists());
    if installed {
        return;
    }
    println!("cargo:warning=installing the {GUEST_TARGET} target with rustup");
    let ok = Command::new("rustup")
        .args(["target", "add", GUEST_TARGET])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        panic!(
            "the {GUEST_TARGET} target is not installed and `rustup target add {GUEST_TARGET}` failed; install it and build again"
        );
    }
}

/// Build `packages` of the adapters/ workspace for the guest target (release profile), one
/// cargo invocation each so that each resolves its own SDK features. Returns each
/// package's `.wasm` path.
pub(crate) fn build_guests(packages: &[String]) -> Vec<(String, PathBuf)> {
    packages
        .iter()
        .map(|package| {
            let target_dir = guest_target_dir(&repo_root());
            (package.clone(), build_guest(package, None, &target_dir))
        })
        .collect()
}

/// Build `package` (with `feature` on, if one is given) into `target_dir` and return its
/// `.wasm` path.
fn build_guest(package: &str, feature: Option<&str>, target_dir: &Path) -> PathBuf {
    let root = repo_root();
    let adapters = root.join("adapters");
    println!("cargo:rerun-if-changed={}", adapters.display());
    println!("cargo:rerun-if-changed={}", root.join("wit").display());
    ensure_target();
    let mut command = cargo();
    command.current_dir(&adapters).args([
        "build",
        "--release",
        "--quiet",
        "--target",
        GUEST_TARGET,
        "-p",
        package,
    ]);
    if let Some(feature) = feature {
        command.args(["--features", feature]);
    }
    let status = command
        .arg("--target-dir")
        .arg(target_dir)
        .status()
        .unwrap_or_else(|e| panic!("running cargo for guest {package}: {e}"));
    assert!(
        status.success(),
        "building guest {package} for {GUEST_TARGET} failed (see the errors above)"
    );
    let wasm = target_dir
        .join(GUEST_TARGET)
        .join("release")
        .join(format!("{}.wasm", package.replace('-', "_")));
    assert!(
        wasm.exists(),
        "guest {package} built but {} is missing",
        wasm.display()
    );
    wasm
}

/// The crates under `adapters/conformance/` marked `component-per-feature = true`: one
/// component per cargo feature, each copied to `{package}__{feature}.wasm` (`-` as `_`).
/// Returns (package, feature, path) for each.
pub(crate) fn build_feature_variants() -> Vec<(String, String, PathBuf)> {
    let dir = repo_root().join("adapters").join("conformance");
    let target_dir = guest_target_dir(&repo_root());
    let mut crates: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.path().join("Cargo.toml"))
                .collect()
        })
        .unwrap_or_default();
    crates.retain(|manifest| manifest.exists());
    crates.sort();
    let mut built = Vec::new();
    for manifest in crates {
        let text = std::fs::read_to_string(&manifest).expect("reading a guest manifest");
        if !text.contains("component-per-feature = true") {
            continue;
        }
        let package = text
            .lines()
            .find_map(|line| line.trim().strip_prefix("name = \""))
            .map(|rest| rest.trim_end_matches('"').to_owned())
            .expect("a package name");
        let features: Vec<String> = text
            .split("[features]")
            .nth(1)
            .unwrap_or_default()
            .lines()
            .skip(1)
            .take_while(|line| !line.trim_start().starts_with('['))
            .filter_map(|line| {
                line.split_once(" = ")
                    .map(|(name, _)| name.trim().to_owned())
            })
            .filter(|name| !name.is_empty() && !name.starts_with('#') && name != "default")
            .collect();
        for feature in features {
            let wasm = build_guest(&package, Some(&feature), &target_dir);
            let copy = wasm.with_file_name(format!(
                "{}__{}.wasm",
                package.replace('-', "_"),
                feature.replace('-', "_")
            ));
            std::fs::copy(&wasm, &copy).expect("copying a feature variant");
            built.push((package.clone(), feature, copy));
        }
    }
    built
}

/// The guest packages (cdylib crates) under `adapters/`, `adapters/hostile/` and
/// `adapters/bench/`, found from their manifests.
pub(crate) fn guest_packages() -> Vec<String> {
    let adapters = repo_root().join("adapters");
    let crates_in = |dir: &Path| -> Vec<PathBuf> {
        std::fs::read_dir(dir)
            .map(|entries| {
                entries
                    .flatten()
                    .map(|e| e.path())
                    .filter(|p| p.join("Cargo.toml").exists())
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut dirs = crates_in(&adapters);
    dirs.extend(crates_in(&adapters.join("hostile")));
    dirs.extend(crates_in(&adapters.join("bench")));
    let mut packages: Vec<String> = dirs
        .iter()
        .filter_map(|dir| std::fs::read_to_string(dir.join("Cargo.toml")).ok())
        .filter(|manifest| manifest.contains("cdylib"))
        .filter_map(|manifest| {
            manifest.lines().find_map(|line| {
                line.trim()
                    .strip_prefix("name = \"")
                    .map(|rest| rest.trim_end_matches('"').to_owned())
            })
        })
        .collect();
    packages.sort();
    packages
}
