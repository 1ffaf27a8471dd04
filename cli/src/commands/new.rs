//! `airlock new NAME [--dir DIR]`: a ready adapter crate. It depends on the SDK (vendored,
//! with the WIT inside it, because the SDK is not on crates.io and this binary may run far
//! from a checkout), implements the five operations against a placeholder provider (the
//! fakecloud API), has a policy file and an example config, and builds with both
//! `cargo build --target wasm32-wasip2` and `cargo component build`.
//!
//! Everything it writes is embedded in the binary at build time: the templates under
//! `cli/template/` (`.tmpl` files have placeholders), the SDK's files and the WIT
//! (listed by `cli/build/vendor.rs`), and the guest workspace's `Cargo.lock`, so the new
//! crate resolves to the dependency versions this repository builds and tests with.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;

mod vendored {
    include!(concat!(env!("OUT_DIR"), "/vendored.rs"));
}

/// The guest workspace's manifest: the source of the values the SDK's manifest inherits.
const GUEST_WORKSPACE: &str = include_str!("../../../adapters/Cargo.toml");
/// The guest workspace's lock file; cargo prunes the entries the new crate does not use.
const GUEST_LOCK: &str = include_str!("../../../adapters/Cargo.lock");
/// Where the SDK goes in the new crate, with the WIT in its `wit/`.
const SDK_DIR: &str = "vendor/airlock-sdk";
/// How the SDK's bindings find the WIT in this repository (`adapters/sdk` → `wit`), and in
/// the vendored copy. The WIT is not put at the new crate's root, where `../../wit` would
/// find it, because `cargo component build` takes a `wit/` there as the crate's own target
/// and fails ("multiple worlds found") or writes `src/bindings.rs` of its own.
const WIT_PATH: (&str, &str) = ("path: \"../../wit\"", "path: \"wit\"");

/// The templates: (path in the new crate, text with `{{name}}`, `{{wasm}}`, `{{type}}`).
const TEMPLATES: &[(&str, &str)] = &[
    ("Cargo.toml", include_str!("../../template/Cargo.toml.tmpl")),
    ("README.md", include_str!("../../template/README.md.tmpl")),
    (
        "policy.toml",
        include_str!("../../template/policy.toml.tmpl"),
    ),
    ("config.json", include_str!("../../template/config.json")),
    (".gitignore", include_str!("../../template/gitignore")),
    ("src/lib.rs", include_str!("../../template/src/lib.rs.tmpl")),
    (
        "src/provider.rs",
        include_str!("../../template/src/provider.rs"),
    ),
];

/// Names a new crate cannot have, by why not; compared with '-' read as '_'.
const RESERVED: &[(&str, &str)] = &[
    (
        "a Rust keyword",
        "abstract as async await become box break const continue crate do dyn else enum
         extern false final fn for gen if impl in let loop macro match mod move mut override
         priv pub ref return self static struct super trait true try type typeof unsafe
         unsized use virtual where while yield",
    ),
    ("a standard crate", "alloc core proc_macro std test"),
    ("a directory cargo uses", "build deps examples incremental"),
    (
        "a Windows device name",
        "aux con nul prn com1 com2 com3 com4 com5 com6 com7 com8 com9
         lpt1 lpt2 lpt3 lpt4 lpt5 lpt6 lpt7 lpt8 lpt9",
    ),
    (
        "a dependency of the new crate",
        "airlock_sdk serde serde_derive serde_json wit_bindgen",
    ),
];

/// The longest name: the policy's adapter-name limit.
const MAX_NAME_LEN: usize = 64;

/// Exit status when the files could not be written.
const EXIT_WRITE: u8 = 1;
/// Exit status for a bad name or an occupied directory.
const EXIT_USAGE: u8 = 2;

#[derive(Args)]
pub(crate) struct NewArgs {
    /// The crate's name: lower-case letters, digits, '-' and '_', starting with a letter.
    /// It is also the adapter's name in `policy.toml`.
    name: String,
    /// Where to create the crate (default: ./NAME). It must not exist or be empty.
    #[arg(long)]
    dir: Option<PathBuf>,
}

pub(crate) fn run(args: NewArgs) -> ExitCode {
    if let Err(message) = check_name(&args.name) {
        eprintln!("error: {message}");
        return ExitCode::from(EXIT_USAGE);
    }
    let dir = args.dir.unwrap_or_else(|| PathBuf::from(&args.name));
    let files = match crate_files(&args.name) {
        Ok(files) => files,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::from(EXIT_WRITE);
        }
    };
    match write_crate(&dir, &files) {
        Ok(()) => {}
        Err(WriteError::Occupied(message)) => {
            eprintln!("error: {message}");
            return ExitCode::from(EXIT_USAGE);
        }
        Err(WriteError::Io(message)) => {
            eprintln!("error: {message}");
            return ExitCode::from(EXIT_WRITE);
        }
    }
    let wasm = wasm_stem(&args.name);
    let shown = dir.display();
    println!("created adapter crate {} in {shown}", args.name);
    println!();
    println!("  cd {shown}");
    println!(
        "  cargo build --target wasm32-wasip2 --release   # or: cargo component build --release"
    );
    println!(
        "  airlock check target/wasm32-wasip2/release/{wasm}.wasm --policy policy.toml --config @config.json"
    );
    println!();
    println!(
        "src/provider.rs is the placeholder provider's API client; README.md says what to replace."
    );
    ExitCode::SUCCESS
}

/// Check that `name` can be a crate name, an adapter name and a file name everywhere.
fn check_name(name: &str) -> Result<(), String> {
    let problem = if name.is_empty() {
        Some("it is empty".to_owned())
    } else if name.len() > MAX_NAME_LEN {
        Some(format!("it is longer than {MAX_NAME_LEN} characters"))
    } else if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-' || *c == '_'))
    {
        Some(if c.is_ascii_uppercase() {
            format!("{c:?} is upper-case; use lower case (adapter names are)")
        } else {
            format!("{c:?} is not allowed; use a-z, 0-9, '-' and '_'")
        })
    } else if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        Some("it must start with a letter".to_owned())
    } else {
        let stem = wasm_stem(name);
        RESERVED
            .iter()
            .find(|(_, names)| names.split_whitespace().any(|r| r == stem))
            .map(|(what, _)| format!("it is {what}"))
    };
    match problem {
        None => Ok(()),
        Some(why) => Err(format!(
            "{name:?} is not a valid adapter crate name: {why} (for example: my-cloud)"
        )),
    }
}

/// The crate's file stem: the name with '-' as '_', as cargo names the `.wasm`.
fn wasm_stem(name: &str) -> String {
    name.replace('-', "_")
}

/// The adapter type's name: `my-cloud` → `MyCloudAdapter`.
fn type_name(name: &str) -> String {
    let mut camel: String = name
        .split(['-', '_'])
        .filter(|part| !part.is_empty())
        .map(|part| {
            let mut chars = part.chars();
            let first = chars.next().map(|c| c.to_ascii_uppercase());
            first.into_iter().chain(chars).collect::<String>()
        })
        .collect();
    if !(camel.ends_with("Adapter") && camel.len() > "Adapter".len()) {
        camel.push_str("Adapter");
    }
    camel
}

/// A template with its placeholders filled in.
fn render(template: &str, name: &str) -> String {
    template
        .replace("{{name}}", name)
        .replace("{{wasm}}", &wasm_stem(name))
        .replace("{{type}}", &type_name(name))
}

/// Every file of the new crate: (relative path, contents).
fn crate_files(name: &str) -> Result<Vec<(String, Cow<'static, str>)>, String> {
    let mut files: Vec<(String, Cow<'static, str>)> = TEMPLATES
        .iter()
        .map(|(path, text)| ((*path).to_owned(), Cow::Owned(render(text, name))))
        .collect();
    files.push(("Cargo.lock".to_owned(), Cow::Borrowed(GUEST_LOCK)));
    let sdk_manifest = format!("{SDK_DIR}/Cargo.toml");
    let sdk_bindings = format!("{SDK_DIR}/src/bindings.rs");
    for (path, text) in vendored::VENDORED {
        let text = if *path == sdk_manifest {
            Cow::Owned(standalone_manifest(text, GUEST_WORKSPACE)?)
        } else if *path == sdk_bindings {
            Cow::Owned(vendored_bindings(text)?)
        } else {
            Cow::Borrowed(*text)
        };
        files.push(((*path).to_owned(), text));
    }
    Ok(files)
}

/// The SDK's manifest with every `KEY.workspace = true` replaced by the value the guest
/// workspace gives it, so that it builds outside that workspace. Comments and layout stay.
fn standalone_manifest(manifest: &str, workspace: &str) -> Result<String, String> {
    let workspace: toml::Table = workspace
        .parse()
        .map_err(|e| format!("the embedded adapters/Cargo.toml does not parse: {e}"))?;
    let inherited = |table: &str| {
        workspace
            .get("workspace")
            .and_then(|w| w.get(table))
            .and_then(toml::Value::as_table)
    };
    let mut section = String::new();
    let mut out = String::with_capacity(manifest.len());
    for line in manifest.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('[') {
            section = trimmed.trim_matches(['[', ']']).trim().to_owned();
        }
        let key = trimmed
            .split_once('=')
            .filter(|(_, value)| value.trim() == "true")
            .and_then(|(key, _)| key.trim().strip_suffix(".workspace"));
        let Some(key) = key else {
            if trimmed.contains("workspace") && !trimmed.starts_with('#') {
                return Err(format!(
                    "the SDK's Cargo.toml line {trimmed:?} inherits from the workspace in a form `airlock new` cannot rewrite; use `KEY.workspace = true`"
                ));
            }
            out.push_str(line);
            out.push('\n');
            continue;
        };
        let table = match section.as_str() {
            "package" => "package",
            "dependencies" | "dev-dependencies" | "build-dependencies" => "dependencies",
            other => {
                return Err(format!(
                    "the SDK's Cargo.toml inherits {key:?} in [{other}], which `airlock new` cannot rewrite"
                ));
            }
        };
        let value = inherited(table).and_then(|t| t.get(key)).ok_or_else(|| {
            format!("the SDK's Cargo.toml inherits {key:?}, which adapters/Cargo.toml does not set in [workspace.{table}]")
        })?;
        if value.get("path").is_some() {
            return Err(format!(
                "the SDK depends on the path dependency {key:?}, which `airlock new` does not vendor"
            ));
        }
        out.push_str(&format!("{key} = {value}\n"));
    }
    Ok(out)
}

/// The SDK's bindings module, reading the WIT from the vendored SDK's own `wit/`.
fn vendored_bindings(source: &str) -> Result<String, String> {
    let (from, to) = WIT_PATH;
    if !source.contains(from) {
        return Err(format!(
            "the SDK's src/bindings.rs no longer reads the WIT with `{from}`; update WIT_PATH in cli/src/commands/new.rs"
        ));
    }
    Ok(source.replace(from, to))
}

/// Why the crate could not be written.
enum WriteError {
    /// The destination exists and is not an empty directory.
    Occupied(String),
    /// A file system failure.
    Io(String),
}

/// Write `files` under `dir`, which must not exist or be an empty directory. On a failure
/// part-way, what was written is removed again.
fn write_crate(dir: &Path, files: &[(String, Cow<'_, str>)]) -> Result<(), WriteError> {
    let existed = match std::fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(WriteError::Occupied(format!(
                    "{} is not empty; choose another name or --dir",
                    dir.display()
                )));
            }
            true
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(_) if dir.exists() => {
            return Err(WriteError::Occupied(format!(
                "{} exists and is not a directory; choose another name or --dir",
                dir.display()
            )));
        }
        Err(e) => {
            return Err(WriteError::Io(format!(
                "cannot read {}: {e}",
                dir.display()
            )));
        }
    };
    let written = files.iter().try_for_each(|(path, text)| {
        let target = dir.join(path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
        }
        std::fs::write(&target, text.as_bytes())
            .map_err(|e| format!("cannot write {}: {e}", target.display()))
    });
    if let Err(message) = written {
        // Leave the directory as it was found: gone, or empty.
        let _ = std::fs::remove_dir_all(dir);
        if existed {
            let _ = std::fs::create_dir(dir);
        }
        return Err(WriteError::Io(message));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use airlock::Policy;

    use super::*;

    fn file<'a>(files: &'a [(String, Cow<'static, str>)], path: &str) -> &'a str {
        files
            .iter()
            .find(|(p, _)| p == path)
            .map(|(_, text)| text.as_ref())
            .unwrap_or_else(|| panic!("no {path} among the generated files"))
    }

    #[test]
    fn names_that_cannot_be_crates_are_refused_with_the_reason() {
        for good in ["my-cloud", "db2", "a", "x_y-z", &"a".repeat(64)] {
            assert_eq!(check_name(good), Ok(()), "{good}");
        }
        let cases = [
            ("", "it is empty"),
            ("MyCloud", "'M' is upper-case"),
            ("my cloud", "' ' is not allowed"),
            ("my.cloud", "'.' is not allowed"),
            ("../x", "'.' is not allowed"),
            ("2cloud", "must start with a letter"),
            ("-x", "must start with a letter"),
            ("_x", "must start with a letter"),
            ("fn", "it is a Rust keyword"),
            ("std", "it is a standard crate"),
            ("proc-macro", "it is a standard crate"),
            ("deps", "it is a directory cargo uses"),
            ("airlock-sdk", "it is a dependency of the new crate"),
            ("serde_json", "it is a dependency of the new crate"),
            ("nul", "it is a Windows device name"),
        ];
        for (bad, why) in cases {
            let error = check_name(bad).unwrap_err();
            assert!(
                error.starts_with(&format!("{bad:?} is not a valid adapter crate name: "))
                    && error.contains(why),
                "{bad}: {error}"
            );
        }
        assert!(
            check_name(&"a".repeat(65))
                .unwrap_err()
                .contains("longer than 64")
        );
    }

    #[test]
    fn type_names_are_camel_case_adapters() {
        assert_eq!(type_name("my-cloud"), "MyCloudAdapter");
        assert_eq!(type_name("db2"), "Db2Adapter");
        assert_eq!(type_name("a__b"), "ABAdapter");
        assert_eq!(type_name("fakecloud-adapter"), "FakecloudAdapter");
        assert_eq!(type_name("adapter"), "AdapterAdapter");
    }

    #[test]
    fn templates_leave_no_placeholder_and_name_the_crate() {
        let files = crate_files("my-cloud").unwrap();
        for (path, text) in &files {
            assert!(!text.contains("{{"), "{path} keeps a placeholder");
        }
        let manifest: toml::Table = file(&files, "Cargo.toml").parse().unwrap();
        assert_eq!(manifest["package"]["name"].as_str(), Some("my-cloud"));
        assert!(file(&files, "src/lib.rs").contains("airlock_sdk::export!(MyCloudAdapter);"));
        assert!(file(&files, "README.md").contains(
            "airlock check target/wasm32-wasip2/release/my_cloud.wasm --policy policy.toml --config @config.json"
        ));
        let config: serde_json::Value = serde_json::from_str(file(&files, "config.json")).unwrap();
        assert_eq!(
            config,
            serde_json::json!({"endpoint": "https://api.provider.example", "plan": "small"})
        );
    }

    #[test]
    fn the_new_crate_builds_like_the_guest_workspace() {
        // Same release profile and dependency versions as adapters/, so that builds of the
        // new crate reuse what the repository's guests already compiled, and the lock file
        // pins what the repository tests with.
        let files = crate_files("my-cloud").unwrap();
        let manifest: toml::Table = file(&files, "Cargo.toml").parse().unwrap();
        let guests: toml::Table = GUEST_WORKSPACE.parse().unwrap();
        assert_eq!(manifest["profile"]["release"], guests["profile"]["release"]);
        for dep in ["serde", "serde_json"] {
            assert_eq!(
                manifest["dependencies"][dep], guests["workspace"]["dependencies"][dep],
                "{dep}"
            );
        }
        assert!(manifest.contains_key("workspace"), "it must stand alone");
        assert_eq!(file(&files, "Cargo.lock"), GUEST_LOCK);
    }

    #[test]
    fn the_vendored_sdk_stands_alone_beside_the_wit() {
        let files = crate_files("my-cloud").unwrap();
        let sdk = file(&files, "vendor/airlock-sdk/Cargo.toml");
        assert!(!sdk.contains(".workspace"), "{sdk}");
        let sdk: toml::Table = sdk.parse().unwrap();
        let guests: toml::Table = GUEST_WORKSPACE.parse().unwrap();
        assert_eq!(sdk["package"]["name"].as_str(), Some("airlock-sdk"));
        assert_eq!(
            sdk["package"]["version"],
            guests["workspace"]["package"]["version"]
        );
        assert_eq!(sdk["package"]["publish"].as_bool(), Some(false));
        assert_eq!(
            sdk["dependencies"]["wit-bindgen"],
            guests["workspace"]["dependencies"]["wit-bindgen"]
        );
        assert!(sdk["features"].get("lifecycle").is_some());
        // The bindings read the WIT from the SDK's own wit/, never from the crate's root.
        let bindings = file(&files, "vendor/airlock-sdk/src/bindings.rs");
        assert!(!bindings.contains("../"), "{bindings}");
        assert_eq!(bindings.matches("path: \"wit\"").count(), 4, "{bindings}");
        assert!(file(&files, "vendor/airlock-sdk/wit/worlds.wit").contains("world adapter"));
        assert!(!files.iter().any(|(p, _)| p.starts_with("wit/")));
    }

    #[test]
    fn every_sdk_and_wit_file_is_vendored_as_it_is() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut on_disk = 0;
        let wit = format!("{SDK_DIR}/wit");
        for (tree, prefix) in [("adapters/sdk", SDK_DIR), ("wit", wit.as_str())] {
            let mut pending = vec![root.join(tree)];
            while let Some(dir) = pending.pop() {
                for entry in std::fs::read_dir(&dir).unwrap() {
                    let path = entry.unwrap().path();
                    if path.file_name().unwrap().to_string_lossy().starts_with('.') {
                        continue;
                    }
                    if path.is_dir() {
                        pending.push(path);
                        continue;
                    }
                    on_disk += 1;
                    let relative = path.strip_prefix(root.join(tree)).unwrap();
                    let vendored = format!("{prefix}/{}", relative.display());
                    let (_, text) = vendored::VENDORED
                        .iter()
                        .find(|(p, _)| *p == vendored)
                        .unwrap_or_else(|| panic!("{} is not vendored", path.display()));
                    let rewritten = [
                        format!("{SDK_DIR}/Cargo.toml"),
                        format!("{SDK_DIR}/src/bindings.rs"),
                    ];
                    if !rewritten.contains(&vendored) {
                        assert_eq!(*text, std::fs::read_to_string(&path).unwrap(), "{vendored}");
                    }
                }
            }
        }
        assert_eq!(vendored::VENDORED.len(), on_disk);
        assert!(
            vendored::VENDORED
                .iter()
                .any(|(p, _)| *p == "vendor/airlock-sdk/wit/worlds.wit")
        );
    }

    #[test]
    fn workspace_inheritance_is_rewritten_or_refused() {
        let workspace = "[workspace.package]\nversion = \"1.2.3\"\n\n[workspace.dependencies]\nx = { version = \"2\", features = [\"a\"] }\np = { path = \"p\" }\n";
        let rewritten = standalone_manifest(
            "[package]\nname = \"s\"\nversion.workspace = true # kept?\n\n# a comment about workspace\n[dependencies]\nx.workspace = true\n",
            workspace,
        );
        // A trailing comment makes the line a form the rewrite does not know: refused.
        assert!(
            rewritten
                .unwrap_err()
                .contains("version.workspace = true # kept?")
        );
        let rewritten = standalone_manifest(
            "[package]\nname = \"s\"\nversion.workspace = true\n\n# a comment about workspace\n[dependencies]\nx.workspace = true\n",
            workspace,
        )
        .unwrap();
        assert_eq!(
            rewritten,
            "[package]\nname = \"s\"\nversion = \"1.2.3\"\n\n# a comment about workspace\n[dependencies]\nx = { features = [\"a\"], version = \"2\" }\n"
        );
        for (manifest, error) in [
            (
                "[dependencies]\np.workspace = true\n",
                "path dependency \"p\"",
            ),
            (
                "[dependencies]\nq.workspace = true\n",
                "does not set in [workspace.dependencies]",
            ),
            ("[lints]\nworkspace = true\n", "cannot rewrite"),
            (
                "[dependencies]\nx = { workspace = true }\n",
                "cannot rewrite",
            ),
        ] {
            let message = standalone_manifest(manifest, workspace).unwrap_err();
            assert!(message.contains(error), "{manifest}: {message}");
        }
    }

    #[test]
    fn the_policy_loads_and_its_commented_limits_are_the_defaults() {
        let files = crate_files("my-cloud").unwrap();
        let text = file(&files, "policy.toml");
        let policy = Policy::from_toml(text, "policy.toml").unwrap();
        assert_eq!(policy.name.as_deref(), Some("my-cloud"));
        assert_eq!(policy.http.allow.len(), 1);
        let allow = policy.http.allow[0].get_ref();
        assert_eq!(allow.url, "https://api.provider.example/v1/");
        assert_eq!(
            allow.methods.as_deref(),
            Some(&["GET".to_owned(), "POST".to_owned(), "DELETE".to_owned()][..])
        );
        let token = policy.secrets["provider-token"].get_ref();
        assert_eq!(token.source, "env:PROVIDER_TOKEN");
        assert_eq!(token.destinations, ["https://api.provider.example/v1/"]);
        // Uncommenting every setting gives the same policy: the comments show the defaults.
        let uncommented: String = text
            .lines()
            .map(|line| match line.strip_prefix("# ") {
                Some(setting) if setting.starts_with('[') || setting.contains(" = ") => setting,
                _ => line,
            })
            .collect::<Vec<_>>()
            .join("\n");
        assert!(uncommented.contains("\n[limits]\nfuel = 1_000_000_000"));
        assert!(uncommented.contains("\n[http]\nmax_requests_per_call = 32"));
        let uncommented = Policy::from_toml(&uncommented, "policy.toml").unwrap();
        assert_eq!(uncommented.limits, policy.limits);
        assert_eq!(uncommented.limits, airlock::Limits::default());
        assert_eq!(
            (
                uncommented.http.max_requests_per_call,
                uncommented.http.max_request_body_bytes,
                uncommented.http.max_response_body_bytes,
                uncommented.http.request_timeout_ms,
                uncommented.http.max_url_bytes,
                uncommented.http.max_request_headers,
                uncommented.http.max_request_header_bytes
            ),
            (
                policy.http.max_requests_per_call,
                policy.http.max_request_body_bytes,
                policy.http.max_response_body_bytes,
                policy.http.request_timeout_ms,
                policy.http.max_url_bytes,
                policy.http.max_request_headers,
                policy.http.max_request_header_bytes
            )
        );
    }

    #[test]
    fn an_occupied_directory_is_refused_and_a_failed_write_leaves_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let files = vec![
            ("a.txt".to_owned(), Cow::Borrowed("a")),
            ("sub/b.txt".to_owned(), Cow::Borrowed("b")),
        ];
        // An empty directory is used; a new one is created.
        let empty = tmp.path().join("empty");
        std::fs::create_dir(&empty).unwrap();
        assert!(write_crate(&empty, &files).is_ok());
        assert_eq!(
            std::fs::read_to_string(empty.join("sub/b.txt")).unwrap(),
            "b"
        );
        let fresh = tmp.path().join("x/y");
        assert!(write_crate(&fresh, &files).is_ok());
        assert_eq!(std::fs::read_to_string(fresh.join("a.txt")).unwrap(), "a");
        // A non-empty directory and a file are refused, untouched.
        match write_crate(&empty, &files) {
            Err(WriteError::Occupied(m)) => assert!(
                m.ends_with("is not empty; choose another name or --dir"),
                "{m}"
            ),
            _ => panic!("a non-empty directory was written to"),
        }
        let plain = empty.join("a.txt");
        match write_crate(&plain, &files) {
            Err(WriteError::Occupied(m)) => assert!(m.contains("is not a directory"), "{m}"),
            _ => panic!("a file was written over"),
        }
        assert_eq!(std::fs::read_to_string(&plain).unwrap(), "a");
        // A write that fails part-way (a file where a directory must go) leaves no crate.
        let broken = vec![
            ("a.txt".to_owned(), Cow::Borrowed("a")),
            ("a.txt/c.txt".to_owned(), Cow::Borrowed("c")),
        ];
        let partial = tmp.path().join("partial");
        match write_crate(&partial, &broken) {
            Err(WriteError::Io(m)) => assert!(m.starts_with("cannot create"), "{m}"),
            _ => panic!("expected a write failure"),
        }
        assert!(!partial.exists());
    }
}
