//! The data directory: where it is by default, the modes of what Airlock creates in it, a
//! planted compiled artifact that must never run, and state namespaces bound to their
//! component.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use airlock::{CacheOutcome, Error, Policy, Runtime};
use serde_json::{Value, json};

use crate::common::*;

const AIRLOCK: &str = env!("CARGO_BIN_EXE_airlock");
/// A uid no one on the test machine has.
const STRANGER: u32 = 4242;

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn chown(path: &Path, uid: u32) {
    std::os::unix::fs::chown(path, Some(uid), None).unwrap();
}

fn uid() -> u32 {
    use std::os::unix::fs::MetadataExt;
    // The owner of a file this process just made is its effective uid.
    let probe = tempfile::NamedTempFile::new().unwrap();
    probe.as_file().metadata().unwrap().uid()
}

/// The only `.cwasm` file under `dir/cache` whose name starts with `digest`.
fn artifact(dir: &Path, digest: &str) -> PathBuf {
    std::fs::read_dir(dir.join("cache"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with(digest))
        .unwrap_or_else(|| panic!("no artifact for {digest}"))
}

/// `airlock ARGS` under umask 000, with the environment given and no `$AIRLOCK_DATA_DIR`.
fn airlock_umask_0(cwd: &Path, env: &[(&str, &Path)], args: &[&str]) -> Output {
    let mut command = Command::new("sh");
    command
        .current_dir(cwd)
        .env_remove("AIRLOCK_DATA_DIR")
        .env_remove("XDG_DATA_HOME")
        .args(["-c", "umask 000; exec \"$0\" \"$@\"", AIRLOCK])
        .args(args);
    for (name, value) in env {
        command.env(name, value);
    }
    command.output().expect("running airlock")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test]
async fn the_data_dir_cache_database_and_artifacts_are_private_to_their_owner() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("nested/data");
    // Under umask 000 a default mode would leave everything writable by everyone.
    let output = airlock_umask_0(
        root.path(),
        &[],
        &[
            "--data-dir",
            data.to_str().unwrap(),
            "inspect",
            EXAMPLE_ADAPTER,
        ],
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(mode(&root.path().join("nested")), 0o700);
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&data.join("cache")), 0o700);
    assert_eq!(mode(&data.join("airlock.db")), 0o600);
    let digest = load(&runtime_in(&data), EXAMPLE_ADAPTER, "")
        .await
        .info()
        .sha256
        .clone();
    assert_eq!(mode(&artifact(&data, &digest)), 0o600);

    // With connections open, SQLite's write-ahead log and shared-memory files exist: they
    // take the database file's mode.
    let t = runtime();
    let example = load(&t.runtime, EXAMPLE_ADAPTER, "").await;
    example
        .create(&example_config(0), &json!({ "name": "m" }), Some("k"))
        .await
        .unwrap();
    for file in ["airlock.db", "airlock.db-wal", "airlock.db-shm"] {
        assert_eq!(mode(&t.dir.path().join(file)), 0o600, "{file}");
    }

    // A database left 0644 by an earlier version is made private when it is opened.
    chmod(&data.join("airlock.db"), 0o644);
    drop(runtime_in(&data));
    assert_eq!(mode(&data.join("airlock.db")), 0o600);
}

#[test]
fn the_default_data_dir_is_the_users_not_the_working_directory() {
    let home = tempfile::tempdir().unwrap();
    let checkout = tempfile::tempdir().unwrap();
    // A repository that ships a data directory of its own.
    let shipped = checkout.path().join(".airlock");
    std::fs::create_dir(&shipped).unwrap();
    std::fs::write(shipped.join("airlock.db"), b"planted").unwrap();
    let status = |output: &Output| {
        assert_eq!(output.status.code(), Some(0), "{}", stderr(output));
        let result: Value = serde_json::from_slice(&output.stdout).unwrap();
        result["instanceId"].as_str().unwrap().to_owned()
    };
    let create = [
        "invoke",
        EXAMPLE_ADAPTER,
        "create",
        "--config",
        r#"{"region":"eu-west-1","stepMillis":0}"#,
        "--params",
        r#"{"name":"db1"}"#,
    ];
    let id = status(&airlock_umask_0(
        checkout.path(),
        &[("HOME", home.path())],
        &create,
    ));
    assert!(id.starts_with("ex-"), "{id}");
    let data = home.path().join(".local/share/airlock");
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&home.path().join(".local")), 0o700);
    assert_eq!(mode(&data.join("airlock.db")), 0o600);
    assert_eq!(
        std::fs::read(shipped.join("airlock.db")).unwrap(),
        b"planted",
        "the checkout's data directory is neither used nor touched"
    );
    assert_eq!(std::fs::read_dir(&shipped).unwrap().count(), 1);

    // $XDG_DATA_HOME comes first; a relative one is ignored, as the spec says.
    let xdg = tempfile::tempdir().unwrap();
    status(&airlock_umask_0(
        checkout.path(),
        &[("HOME", home.path()), ("XDG_DATA_HOME", xdg.path())],
        &create,
    ));
    assert_eq!(mode(&xdg.path().join("airlock/airlock.db")), 0o600);
    status(&airlock_umask_0(
        checkout.path(),
        &[("HOME", home.path()), ("XDG_DATA_HOME", Path::new("rel"))],
        &create,
    ));
    assert!(!checkout.path().join("rel").exists());

    // No home at all: no guessing; the command says what to do.
    let output = Command::new(AIRLOCK)
        .current_dir(checkout.path())
        .env_remove("AIRLOCK_DATA_DIR")
        .env_remove("XDG_DATA_HOME")
        .env_remove("HOME")
        .args(["inspect", EXAMPLE_ADAPTER])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(3));
    assert_eq!(
        stderr(&output),
        "error: no data directory: neither $XDG_DATA_HOME nor $HOME is set to an absolute path; pass --data-dir DIR (or set $AIRLOCK_DATA_DIR, or RuntimeConfig::data_dir)\n"
    );
}

/// A data directory whose cache holds, under the example adapter's digest, the compiled
/// code of another adapter (`bench-constant`), with the database recording that code's
/// digest for the example's key: what an attacker who can write the directory leaves.
async fn plant_constant_as_example(data: &Path) -> String {
    let runtime = runtime_in(data);
    let example = load(&runtime, EXAMPLE_ADAPTER, "").await;
    let constant = load(&runtime, BENCH_CONSTANT, "").await;
    let (example, constant) = (
        example.info().sha256.clone(),
        constant.info().sha256.clone(),
    );
    drop(runtime);
    std::fs::copy(artifact(data, &constant), artifact(data, &example)).unwrap();
    let db = rusqlite::Connection::open(data.join("airlock.db")).unwrap();
    let updated = db
        .execute(
            "UPDATE compiled_artifacts SET sha256 =
               (SELECT sha256 FROM compiled_artifacts WHERE cache_key LIKE ?2 || '-%')
             WHERE cache_key LIKE ?1 || '-%'",
            [&example, &constant],
        )
        .unwrap();
    assert_eq!(updated, 1);
    example
}

/// What a create through the example adapter's file returns: the real example answers
/// `ex-…`, `created: true`; the planted constant `constant-1`, `created: false`.
async fn create_through_example(runtime: &Runtime) -> Result<(String, bool), Error> {
    let adapter = runtime
        .load_file(EXAMPLE_ADAPTER, Policy::default())
        .await?;
    let created = adapter
        .create(&example_config(0), &json!({ "name": "p" }), None)
        .await
        .unwrap();
    Ok((created.instance_id, created.created))
}

/// A way to spoil the data directory, the way to mend it, and the refusal it causes.
type Case<'a> = (&'a str, Box<dyn Fn() + 'a>, Box<dyn Fn() + 'a>, String);

#[tokio::test]
async fn a_planted_artifact_in_a_data_dir_others_control_never_runs() {
    let me = uid();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let digest = plant_constant_as_example(&data).await;
    let db = data.join("airlock.db");
    let cache = data.join("cache");
    let planted = artifact(&data, &digest);
    let refusal = |path: &Path, problem: &str| {
        format!(
            "refusing to use the compiled-component cache: {} {problem}, so someone else could have planted compiled code in it; ",
            path.display()
        )
    };
    let own = "use a data directory of your own (--data-dir DIR, $AIRLOCK_DATA_DIR or RuntimeConfig::data_dir)";
    let cases: Vec<Case<'_>> = vec![
        (
            "data dir writable by everyone",
            Box::new(|| chmod(&data, 0o777)),
            Box::new(|| chmod(&data, 0o700)),
            refusal(&data, "is writable by its group and others (mode 0777)")
                + &format!("run `chmod 700 {}`, or {own}", data.display()),
        ),
        (
            "cache dir writable by its group",
            Box::new(|| chmod(&cache, 0o770)),
            Box::new(|| chmod(&cache, 0o700)),
            refusal(&cache, "is writable by its group (mode 0770)")
                + &format!("run `chmod 700 {}`, or {own}", cache.display()),
        ),
        (
            "database owned by another user",
            Box::new(|| chown(&db, STRANGER)),
            // SQLite run as root gives its -wal and -shm files the database's owner.
            Box::new(|| {
                for file in ["airlock.db", "airlock.db-wal", "airlock.db-shm"] {
                    if data.join(file).exists() {
                        chown(&data.join(file), me);
                    }
                }
            }),
            refusal(
                &db,
                &format!("is owned by uid {STRANGER}, not by you (uid {me})"),
            ) + &format!("{own}, or run `chown {me} {}` if it is yours", db.display()),
        ),
        (
            "data dir owned by another user",
            Box::new(|| chown(&data, STRANGER)),
            Box::new(|| chown(&data, me)),
            refusal(
                &data,
                &format!("is owned by uid {STRANGER}, not by you (uid {me})"),
            ) + &format!(
                "{own}, or run `chown {me} {}` if it is yours",
                data.display()
            ),
        ),
        (
            "artifact writable by others",
            Box::new(|| chmod(&planted, 0o602)),
            Box::new(|| chmod(&planted, 0o600)),
            refusal(&planted, "is writable by others (mode 0602)")
                + &format!("run `chmod 600 {}`, or {own}", planted.display()),
        ),
    ];
    for (case, spoil, mend, expected) in &cases {
        spoil();
        // A runtime opened on the spoiled directory refuses the load; the planted code
        // never runs.
        let refused = create_through_example(&runtime_in(&data))
            .await
            .expect_err(case);
        assert!(
            matches!(&refused, Error::UntrustedDataDir { .. }),
            "{case}: {refused:?}"
        );
        assert_eq!(refused.to_string(), *expected, "{case}");
        mend();
    }

    // The CLI exits 3 with the same words.
    chmod(&data, 0o777);
    let output = Command::new(AIRLOCK)
        .arg("--data-dir")
        .arg(&data)
        .args([
            "invoke",
            EXAMPLE_ADAPTER,
            "validate-config",
            "--config",
            "{}",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(3));
    assert_eq!(stderr(&output), format!("error: {}\n", cases[0].3));
    chmod(&data, 0o700);

    // The control: in a directory private to this user (an attacker who can write it can
    // do anything this user can), the planted code is what runs. So the refusals above are
    // what kept it from running.
    let runtime = runtime_in(&data);
    assert_eq!(
        create_through_example(&runtime).await.unwrap(),
        ("constant-1".to_owned(), false)
    );
}

#[tokio::test]
async fn a_checkout_data_dir_is_never_read_by_default() {
    // The issue's attack end to end: a repository ships `.airlock/` with a planted
    // artifact; `airlock invoke` run inside the checkout runs the real adapter.
    let checkout = tempfile::tempdir().unwrap();
    plant_constant_as_example(&checkout.path().join(".airlock")).await;
    let home = tempfile::tempdir().unwrap();
    let output = airlock_umask_0(
        checkout.path(),
        &[("HOME", home.path())],
        &[
            "invoke",
            EXAMPLE_ADAPTER,
            "create",
            "--config",
            r#"{"region":"eu-west-1","stepMillis":0}"#,
            "--params",
            r#"{"name":"db1"}"#,
        ],
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let result: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(result["created"], json!(true));
    assert!(
        result["instanceId"].as_str().unwrap().starts_with("ex-"),
        "{result}"
    );
}

/// Two directories, each with a different component named `adapter.wasm`.
fn two_adapters_named_alike(root: &Path) -> (PathBuf, PathBuf) {
    let first = root.join("team-a/adapter.wasm");
    let second = root.join("team-b/adapter.wasm");
    for (path, source) in [(&first, EXAMPLE_ADAPTER), (&second, BENCH_CONSTANT)] {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::copy(source, path).unwrap();
    }
    (first, second)
}

#[tokio::test]
async fn two_components_with_one_file_name_do_not_share_a_namespace() {
    let t = runtime();
    let files = tempfile::tempdir().unwrap();
    let (first, second) = two_adapters_named_alike(files.path());
    let a = load(&t.runtime, first.to_str().unwrap(), "").await;
    assert_eq!(a.name(), "adapter");
    let config = example_config(0);
    let created = a
        .create(&config, &json!({ "name": "a1" }), Some("order-1"))
        .await
        .unwrap();

    let refused = t
        .runtime
        .load_file(&second, Policy::default())
        .await
        .err()
        .expect("the second adapter.wasm is refused");
    assert!(matches!(refused, Error::Namespace { .. }), "{refused:?}");
    let canonical = std::fs::canonicalize(&first).unwrap();
    assert_eq!(
        refused.to_string(),
        format!(
            "{}: its state namespace \"adapter\" (taken from the file name, as the policy sets no `name`) belongs to the component loaded from {} (sha256 {}…), and a different component must not read its state or replay its creates; set `name = \"adapter\"` in the policy to share that state deliberately (an upgrade of the same adapter, say), or pick another name",
            second.display(),
            canonical.display(),
            &a.info().sha256[..12]
        )
    );
    // The same refusal from another process sharing the data directory.
    let output = Command::new(AIRLOCK)
        .arg("--data-dir")
        .arg(t.dir.path())
        .arg("inspect")
        .arg(&second)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(3));
    assert_eq!(stderr(&output), format!("error: {refused}\n"));

    // The first component rebuilt in place is the same adapter and keeps its state.
    std::fs::copy(HOSTILE_PANIC, &first).unwrap();
    load(&t.runtime, first.to_str().unwrap(), "").await;
    std::fs::copy(EXAMPLE_ADAPTER, &first).unwrap();

    // A policy naming the namespace shares it deliberately (an upgrade): the second
    // component then sees the first one's records.
    let upgrade = load(&t.runtime, second.to_str().unwrap(), "name = \"adapter\"\n").await;
    let replayed = upgrade
        .create(&config, &json!({ "name": "a1" }), Some("order-1"))
        .await
        .unwrap();
    assert_eq!(
        (replayed.instance_id, replayed.created),
        (created.instance_id, false)
    );
    // And the namespace now belongs to it: the first file, unnamed, is the stranger now.
    assert!(matches!(
        t.runtime.load_file(&first, Policy::default()).await,
        Err(Error::Namespace { .. })
    ));
    // Another name keeps them apart without a policy of its own.
    let apart = load(&t.runtime, first.to_str().unwrap(), "name = \"team-a\"\n").await;
    assert_eq!(
        (apart.name(), apart.info().cache),
        ("team-a", CacheOutcome::Hit)
    );
}

#[tokio::test]
async fn tenants_have_their_own_keys_state_and_client_tokens() {
    use crate::capabilities::{TOKEN, fakecloud, fakecloud_policy, secret_file};
    let t = runtime();
    let cloud = fakecloud().await;
    let token_file = secret_file(t.dir.path(), "token", TOKEN);
    let adapter = load(
        &t.runtime,
        FAKECLOUD_ADAPTER,
        &fakecloud_policy(&cloud, &token_file),
    )
    .await;
    assert_eq!(adapter.tenant(), "default");
    let acme = adapter.for_tenant("acme").await.unwrap();
    let globex = adapter.for_tenant("globex").await.unwrap();
    assert_eq!((acme.tenant(), globex.tenant()), ("acme", "globex"));
    let config = json!({ "endpoint": cloud.base_url() });
    let params = json!({ "name": "orders" });

    // One key, two tenants: two creates, and two resources at the provider, because the
    // client tokens differ (the provider would hand one tenant the other's resource for a
    // shared token).
    let a = acme
        .create(&config, &params, Some("order-1"))
        .await
        .unwrap();
    let g = globex
        .create(&config, &params, Some("order-1"))
        .await
        .unwrap();
    assert!(a.created && g.created);
    assert_ne!(a.instance_id, g.instance_id);
    assert_eq!(cloud.resource_count(), 2);
    // Each tenant's repeat is answered from its own record.
    let again = acme
        .create(&config, &params, Some("order-1"))
        .await
        .unwrap();
    assert_eq!(
        (again.instance_id.as_str(), again.created),
        (a.instance_id.as_str(), false)
    );
    // A destroy recorded for one tenant is not another's.
    acme.destroy(&config, &a.instance_id).await.unwrap();
    let replayed = acme
        .invoke(
            &config,
            airlock::Operation::Destroy {
                instance_id: a.instance_id.clone(),
            },
        )
        .await;
    assert_eq!(replayed.receipt.idempotency, Some("replayed"));
    let other = globex
        .invoke(
            &config,
            airlock::Operation::Destroy {
                instance_id: a.instance_id.clone(),
            },
        )
        .await;
    assert_eq!(
        other.receipt.idempotency, None,
        "globex's destroy runs its guest"
    );
    // A tenant name is checked like an adapter name.
    let error = adapter
        .for_tenant("no spaces")
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(error.contains("tenant \"no spaces\""), "{error}");
}

#[tokio::test]
async fn each_tenant_s_state_is_its_own() {
    let t = runtime();
    let example = load(&t.runtime, EXAMPLE_ADAPTER, "").await;
    let acme = example.for_tenant("acme").await.unwrap();
    let config = example_config(0);
    let created = acme
        .create(&config, &json!({ "name": "db" }), None)
        .await
        .unwrap();
    // The instance lives in acme's state: the default tenant cannot see it.
    assert!(acme.status(&config, &created.instance_id).await.is_ok());
    let error = example
        .status(&config, &created.instance_id)
        .await
        .unwrap_err();
    assert_eq!(
        error.message,
        format!("instance {:?} not found", created.instance_id)
    );
}
