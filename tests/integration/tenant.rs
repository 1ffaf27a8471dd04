//! `airlock tenant` as separate processes, on SQLite and on PostgreSQL: a key is shown once
//! and only its hash is stored; the service's authentication accepts it, and stops
//! accepting it when it is rotated; names, ceilings and unknown tenants are refused with
//! their reason.

use std::path::Path;
use std::process::{Command, Output};

use airlock::{DatabaseUrl, Runtime, RuntimeConfig};
use airlock_server::Tenants;
use serde_json::Value;

use crate::nodes::TestDatabase;

const AIRLOCK: &str = env!("CARGO_BIN_EXE_airlock");

/// Where the tenants live: a data directory, and a PostgreSQL database if one is given.
struct Backend<'a> {
    data_dir: &'a Path,
    database: Option<&'a str>,
}

impl Backend<'_> {
    fn airlock(&self, args: &[&str]) -> Output {
        let mut command = Command::new(AIRLOCK);
        command.arg("--data-dir").arg(self.data_dir);
        if let Some(url) = self.database {
            command.args(["--database", url]);
        }
        command
            .args(["tenant"])
            .args(args)
            .output()
            .expect("running airlock")
    }

    /// What the service would see: tenants on a runtime of the same backend.
    fn tenants(&self) -> Tenants {
        let runtime = Runtime::new(RuntimeConfig {
            database: self.database.map(|url| DatabaseUrl::parse(url).unwrap()),
            ..RuntimeConfig::with_data_dir(self.data_dir.join("service"))
        })
        .unwrap();
        Tenants::new(runtime.service_store())
    }
}

fn json_out(output: &Output) -> Value {
    assert!(
        output.status.success(),
        "status {:?}, stderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

fn refused(output: &Output) -> String {
    assert_eq!(
        output.status.code(),
        Some(1),
        "stdout: {}",
        String::from_utf8_lossy(&output.stdout)
    );
    assert!(output.stdout.is_empty());
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn administer(backend: &Backend<'_>, dir: &Path) {
    let tokio = tokio::runtime::Runtime::new().unwrap();
    let created = json_out(&backend.airlock(&["create", "acme"]));
    assert_eq!(created["tenant"], "acme");
    let key = created["apiKey"].as_str().unwrap().to_owned();
    assert!(airlock_server::apikey::well_formed(&key), "{key}");

    // The service knows the tenant by its key, and by nothing else.
    let tenants = backend.tenants();
    let who = tokio.block_on(tenants.authenticate(&key)).unwrap();
    assert_eq!(who.map(|t| t.name).as_deref(), Some("acme"));
    let mut wrong = key.clone();
    wrong.pop();
    wrong.push(if key.ends_with('A') { 'B' } else { 'A' });
    assert!(
        tokio
            .block_on(tenants.authenticate(&wrong))
            .unwrap()
            .is_none()
    );
    assert!(
        tokio
            .block_on(tenants.authenticate("Bearer nonsense"))
            .unwrap()
            .is_none()
    );

    // Shown once: a second create is refused and prints no key.
    let again = refused(&backend.airlock(&["create", "acme"]));
    assert!(again.contains("tenant \"acme\" exists already"), "{again}");
    let bad = refused(&backend.airlock(&["create", "Acme_Corp"]));
    assert!(bad.contains("tenant name \"Acme_Corp\" has 'A'"), "{bad}");

    // A ceiling that does not parse is refused with its line; a good one is kept.
    let ceiling = dir.join("ceiling.toml");
    std::fs::write(&ceiling, "[limits]\nfuel = 1_000_000\nfuell = 3\n").unwrap();
    let ceiling_arg = ceiling.to_str().unwrap();
    let bad_ceiling = refused(&backend.airlock(&["create", "globex", "--ceiling", ceiling_arg]));
    assert!(bad_ceiling.contains("line 3"), "{bad_ceiling}");
    std::fs::write(&ceiling, "[limits]\nfuel = 1_000_000\n").unwrap();
    json_out(&backend.airlock(&["create", "globex", "--ceiling", ceiling_arg]));

    let list = json_out(&backend.airlock(&["list"]));
    let names: Vec<(&str, &str)> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["tenant"].as_str().unwrap(),
                t["ceiling"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(names, [("acme", "default"), ("globex", "custom")]);

    // Rotation: the new key works at once, the old one no longer does.
    let rotated = json_out(&backend.airlock(&["rotate-key", "acme"]));
    let new_key = rotated["apiKey"].as_str().unwrap();
    assert_ne!(new_key, key);
    assert!(
        tokio
            .block_on(tenants.authenticate(&key))
            .unwrap()
            .is_none()
    );
    let who = tokio.block_on(tenants.authenticate(new_key)).unwrap();
    assert_eq!(who.map(|t| t.name).as_deref(), Some("acme"));

    let unknown = refused(&backend.airlock(&["rotate-key", "initech"]));
    assert!(unknown.contains("no tenant \"initech\""), "{unknown}");
    let set = json_out(&backend.airlock(&["set-ceiling", "acme", ceiling_arg]));
    assert_eq!(set["ceiling"], "custom");
    let reset = json_out(&backend.airlock(&["set-ceiling", "globex", "--default"]));
    assert_eq!(reset["ceiling"], "default");
    let unknown = refused(&backend.airlock(&["set-ceiling", "initech", "--default"]));
    assert!(unknown.contains("no tenant \"initech\""), "{unknown}");
}

#[test]
fn tenants_are_administered_on_sqlite_and_only_key_hashes_are_stored() {
    let dir = tempfile::tempdir().unwrap();
    let backend = Backend {
        data_dir: dir.path(),
        database: None,
    };
    // The service runtime of `Backend::tenants` must read the same file as the CLI.
    let db = dir.path().join("airlock.db");
    let shared = format!("sqlite:{}", db.display());
    let backend = Backend {
        database: Some(&shared),
        ..backend
    };
    administer(&backend, dir.path());
    let output = backend.airlock(&["rotate-key", "acme"]);
    let key = json_out(&output)["apiKey"].as_str().unwrap().to_owned();
    // Checkpointed or not, neither the file nor its write-ahead log holds the key.
    for file in ["airlock.db", "airlock.db-wal"] {
        let bytes = std::fs::read(dir.path().join(file)).unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes);
        assert!(!text.contains(&key[4..]), "{file} holds the API key");
    }
}

#[test]
fn tenants_are_administered_on_postgres() {
    let Some(database) = TestDatabase::create("tenants_are_administered_on_postgres") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let backend = Backend {
        data_dir: dir.path(),
        database: Some(&database.url),
    };
    administer(&backend, dir.path());
    // Only hashes: 64 hex digits each, no key.
    let rows = database.query("SELECT name, key_sha256 FROM tenants ORDER BY name");
    let names: Vec<_> = rows.iter().map(|r| r[0].clone().unwrap()).collect();
    assert_eq!(names, ["acme", "globex"]);
    for row in &rows {
        let hash = row[1].as_deref().unwrap();
        assert!(
            hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit()),
            "{hash}"
        );
    }
}
