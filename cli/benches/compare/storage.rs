//! The storage part (`-- storage`): what a keyed `create` costs on each backend, and how
//! many creates per second one and two nodes sustain on one PostgreSQL database.
//!
//! - Latency: the example adapter's `create` with a new key, one caller, on SQLite and on
//!   PostgreSQL, interleaved in rounds with the naive floor's create (state in a `HashMap`).
//! - Creates per second: each node a child process of this binary (`AIRLOCK_BENCH_ROLE=node`)
//!   with a `Runtime` of its own (own data directory, own node id), [`NODE_CALLERS`] callers
//!   creating new keys for [`NODE_MEASURE`]; 1 node and 2 nodes on PostgreSQL (each on a
//!   fresh database), 1 runtime on SQLite. Afterwards the database is checked for
//!   duplicates: one done record per create the callers saw, no claim left running, one
//!   instance per key, and the guest's own key → instance mapping agreeing with the
//!   record of every key.
//!
//! PostgreSQL comes from `AIRLOCK_BENCH_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`), on which the bench makes databases of
//! its own (`airlock_bench_<pid>_<what>`) and drops them afterwards. Without a server the
//! PostgreSQL rows say "not measured" and why.

use std::process::ChildStdout;

use super::*;

/// Callers per node, each creating new keys one after the other.
const NODE_CALLERS: usize = 64;
/// How long a node creates before it is measured, and how long it is measured.
const NODE_WARMUP: Duration = Duration::from_millis(500);
const NODE_MEASURE: Duration = Duration::from_secs(5);
/// Calls per row per round in the latency table.
const PER_ROUND_STORAGE: usize = 200;
/// How long the bench waits for a node to start, and for it to finish after `go`.
const NODE_START_LIMIT: Duration = Duration::from_secs(120);

/// The server the PostgreSQL rows run on.
fn postgres_admin_url() -> String {
    std::env::var("AIRLOCK_BENCH_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A PostgreSQL database of the bench's own, dropped when this is.
struct BenchDatabase {
    admin: String,
    name: String,
    url: String,
}

impl BenchDatabase {
    /// A fresh database `airlock_bench_<pid>_<what>` on the admin URL's server.
    fn create(what: &str) -> Result<BenchDatabase, String> {
        let admin = postgres_admin_url();
        let name = format!("airlock_bench_{}_{what}", std::process::id());
        let mut url = url::Url::parse(&admin).map_err(|e| format!("{admin:?}: {e}"))?;
        url.set_path(&format!("/{name}"));
        pg_query(&admin, &format!("DROP DATABASE IF EXISTS {name}"))?;
        pg_query(&admin, &format!("CREATE DATABASE {name}"))?;
        Ok(BenchDatabase {
            admin,
            name,
            url: url.into(),
        })
    }
}

impl Drop for BenchDatabase {
    fn drop(&mut self) {
        // FORCE: a node's pool may still hold connections.
        let drop = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        if let Err(error) = pg_query(&self.admin, &drop) {
            eprintln!("could not drop the bench database {}: {error}", self.name);
        }
    }
}

/// One statement on `url` (simple query protocol), on a thread of its own; the rows, each
/// column as text. Connecting is bounded, so a server that does not answer is an error.
fn pg_query(url: &str, query: &str) -> Result<Vec<Vec<Option<String>>>, String> {
    let (url, query) = (url.to_owned(), query.to_owned());
    let run = async move {
        let connect = tokio_postgres::connect(&url, tokio_postgres::NoTls);
        let (client, connection) = tokio::time::timeout(Duration::from_secs(5), connect)
            .await
            .map_err(|_| format!("{url}: no answer in 5 s"))?
            .map_err(|e| format!("{url}: {}", with_causes(&e)))?;
        tokio::spawn(connection);
        let messages = client
            .simple_query(&query)
            .await
            .map_err(|e| format!("{query}: {}", with_causes(&e)))?;
        Ok(messages
            .into_iter()
            .filter_map(|message| match message {
                tokio_postgres::SimpleQueryMessage::Row(row) => Some(
                    (0..row.len())
                        .map(|i| row.get(i).map(str::to_owned))
                        .collect(),
                ),
                _ => None,
            })
            .collect())
    };
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio")
            .block_on(run)
    })
    .join()
    .map_err(|_| "the query thread panicked".to_owned())?
}

/// An error and its causes, `: `-separated (tokio-postgres says only "error connecting to
/// server" and keeps the reason in its source).
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(next) = cause {
        text.push_str(&format!(": {next}"));
        cause = next.source();
    }
    text
}

/// A policy under which callers can create for as long as the bench runs: every create
/// of the example adapter adds two state keys.
fn node_policy() -> Policy {
    let text = "[limits]\nmax_concurrent_calls = 1024\nstate_keys = 100_000_000\n";
    Policy::from_toml(text, "bench node policy").expect("policy")
}

pub(crate) fn storage(tokio: &tokio::runtime::Runtime, report: &mut Report) {
    latency(tokio, report);
    creates_per_second(report);
}

// --- latency -------------------------------------------------------------------------------

fn latency(tokio: &tokio::runtime::Runtime, report: &mut Report) {
    let dir = tempfile::tempdir().expect("tempdir");
    let sqlite = airlock_runtime(&dir.path().join("sqlite"));
    let database = BenchDatabase::create("latency");
    let postgres = database.as_ref().map_err(Clone::clone).and_then(|db| {
        let url = DatabaseUrl::parse(&db.url)?;
        Runtime::new(RuntimeConfig {
            database: Some(url),
            ..RuntimeConfig::with_data_dir(dir.path().join("postgres"))
        })
        .map_err(|e| e.to_string())
    });
    let (on_sqlite, on_postgres) = tokio.block_on(async {
        let on_sqlite = load_adapter(&sqlite, "example", EXAMPLE_ADAPTER, node_policy()).await;
        let on_postgres = match &postgres {
            Ok(runtime) => {
                Some(load_adapter(runtime, "example", EXAMPLE_ADAPTER, node_policy()).await)
            }
            Err(_) => None,
        };
        (on_sqlite, on_postgres)
    });
    let naive = floor::engine(FloorTuning::Naive);
    let floor = Floor::new(&naive, EXAMPLE_ADAPTER);
    let config: Value = serde_json::from_str(EXAMPLE_CONFIG).expect("json");
    let params = json!({ "name": "bench" });
    let keys = AtomicU64::new(0);
    let next_key = || format!("storage-{}", keys.fetch_add(1, Ordering::Relaxed));

    const WORKLOAD: &str = "example `create`, new key";
    let mut rows = vec![
        row(
            WORKLOAD,
            "floor-naive",
            PER_ROUND_STORAGE,
            floor_create(&floor, &next_key),
        ),
        row(
            WORKLOAD,
            "sqlite",
            PER_ROUND_STORAGE,
            airlock_create(&on_sqlite, &config, &params, &next_key),
        ),
    ];
    if let Some(adapter) = &on_postgres {
        rows.push(row(
            WORKLOAD,
            "postgres",
            PER_ROUND_STORAGE,
            airlock_create(adapter, &config, &params, &next_key),
        ));
    }
    run_rounds(tokio, &mut rows);

    println!(
        "\n## Storage: example `create` with a new key, one caller ({ROUNDS} interleaved rounds)\n"
    );
    println!(
        "| host | median µs | p99 µs | calls | ÷ naive floor (median) | ÷ naive floor (p99) |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    let measured: Vec<(&str, Stats, usize)> = rows
        .iter_mut()
        .map(|row| (row.host, stats(&mut row.samples), row.samples.len()))
        .collect();
    let floor_stats = measured[0].1;
    for (host, s, calls) in &measured {
        let label = match *host {
            "floor-naive" => "floor, naive pooling (state in a `HashMap`)",
            "sqlite" => "**Airlock, SQLite** (file in a temporary directory)",
            _ => "**Airlock, PostgreSQL** (127.0.0.1, same machine)",
        };
        println!(
            "| {label} | {} | {} | {calls} | {} | {} |",
            fmt_us(s.median),
            fmt_us(s.p99),
            ratio(s.median, floor_stats.median),
            ratio(s.p99, floor_stats.p99),
        );
    }
    if let Err(why) = &postgres {
        println!("| **Airlock, PostgreSQL** | not measured: {why} | | | | |");
    }
    report.storage_latency = measured.iter().map(|(h, s, _)| (*h, *s)).collect();
    // Dropped in reverse order: the adapters and runtimes, then the database.
}

// --- creates per second --------------------------------------------------------------------

/// What one node child measured (its last line of output, as JSON).
struct NodeResult {
    /// Creates that returned `created: true` within the measured window.
    measured: u64,
    /// The window's length, seconds.
    seconds: f64,
    /// Creates that returned `created: true` in all (warm-up and the calls in flight at
    /// the end too): the records the database should hold.
    created: u64,
    /// Creates that returned `created: false` (none should: every key is new).
    replayed: u64,
    failed: u64,
    first_error: Option<String>,
    /// The node's CPU time over the window, seconds.
    cpu_seconds: f64,
}

/// What the database holds after a run, and whether it shows a duplicate.
struct Audit {
    done: u64,
    running: u64,
    distinct_instances: u64,
    instance_records: u64,
    keys_agreeing: u64,
}

impl Audit {
    /// Every create recorded once, every key one instance, and the guest's records agree.
    fn clean(&self, created: u64) -> bool {
        self.done == created
            && self.running == 0
            && self.distinct_instances == created
            && self.instance_records == created
            && self.keys_agreeing == created
    }
}

/// The counts of [`Audit`], as one row of text columns, in SQL either backend runs: the
/// guest stores `key:<key>` → the instance id as a JSON string, and `instance:<id>`.
const AUDIT: &str = "SELECT
    (SELECT COUNT(*) FROM idempotency WHERE state = 'done'),
    (SELECT COUNT(*) FROM idempotency WHERE state <> 'done'),
    (SELECT COUNT(DISTINCT instance_id) FROM idempotency WHERE state = 'done'),
    (SELECT COUNT(*) FROM adapter_state WHERE key LIKE 'instance:%'),
    (SELECT COUNT(*) FROM idempotency i JOIN adapter_state s
       ON s.tenant = i.tenant AND s.namespace = i.adapter AND s.key = 'key:' || i.key
       WHERE i.state = 'done' AND s.value = CAST('\"' || i.instance_id || '\"' AS {BLOB}))";

fn audit(rows: Vec<Vec<Option<String>>>) -> Result<Audit, String> {
    let row = rows.into_iter().next().ok_or("the audit returned no row")?;
    let n = |i: usize| -> Result<u64, String> {
        row.get(i)
            .cloned()
            .flatten()
            .ok_or("the audit returned too few columns")?
            .parse()
            .map_err(|e| format!("audit column {i}: {e}"))
    };
    Ok(Audit {
        done: n(0)?,
        running: n(1)?,
        distinct_instances: n(2)?,
        instance_records: n(3)?,
        keys_agreeing: n(4)?,
    })
}

fn audit_postgres(url: &str) -> Result<Audit, String> {
    audit(pg_query(url, &AUDIT.replace("{BLOB}", "bytea"))?)
}

fn audit_sqlite(path: &std::path::Path) -> Result<Audit, String> {
    let conn = rusqlite::Connection::open(path).map_err(|e| e.to_string())?;
    let columns = conn
        .query_row(&AUDIT.replace("{BLOB}", "BLOB"), [], |row| {
            (0..5)
                .map(|i| row.get::<_, i64>(i).map(|n| Some(n.to_string())))
                .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(|e| e.to_string())?;
    audit(vec![columns])
}

/// One configuration's run: its nodes' results, the machine's CPU over the window, and
/// the audit.
struct NodesRun {
    nodes: Vec<NodeResult>,
    machine_cores_busy: f64,
    audit: Result<Audit, String>,
}

impl NodesRun {
    fn per_second(&self) -> f64 {
        self.nodes
            .iter()
            .map(|n| n.measured as f64 / n.seconds)
            .sum()
    }
    fn created(&self) -> u64 {
        self.nodes.iter().map(|n| n.created).sum()
    }
    fn no_duplicate(&self) -> bool {
        let replayed: u64 = self.nodes.iter().map(|n| n.replayed).sum();
        replayed == 0 && self.audit.as_ref().is_ok_and(|a| a.clean(self.created()))
    }
}

/// CPU time of the whole machine, busy and total, in clock ticks (`/proc/stat`).
fn machine_ticks() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let fields: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    let total: u64 = fields.iter().take(8).sum();
    // idle and iowait are fields 4 and 5.
    let idle = fields.get(3).copied().unwrap_or(0) + fields.get(4).copied().unwrap_or(0);
    (total - idle, total)
}

/// Start `nodes` node children on `database` (`None`: each its own SQLite file), let
/// them warm up, measure them over the same window, and audit what they left.
fn run_nodes(
    dir: &std::path::Path,
    database: Option<&str>,
    nodes: usize,
) -> Result<NodesRun, String> {
    let mut children = Vec::new();
    for i in 0..nodes {
        let child = Command::new(std::env::current_exe().expect("own path"))
            .env("AIRLOCK_BENCH_ROLE", "node")
            .env("AIRLOCK_BENCH_NODE_ID", format!("bench-node-{i}"))
            .env("AIRLOCK_BENCH_DATA_DIR", dir.join(format!("node-{i}")))
            .env("AIRLOCK_BENCH_DATABASE", database.unwrap_or(""))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("spawning a node: {e}"))?;
        children.push(child);
    }
    let mut outputs: Vec<BufReader<ChildStdout>> = children
        .iter_mut()
        .map(|c| BufReader::new(c.stdout.take().expect("stdout")))
        .collect();
    let started = Instant::now();
    for output in &mut outputs {
        let line = read_line(output)?;
        if line.trim() != "ready" {
            return Err(format!("a node said {line:?} instead of ready"));
        }
        if started.elapsed() > NODE_START_LIMIT {
            return Err("the nodes took too long to start".into());
        }
    }
    let (busy, total) = machine_ticks();
    for child in &mut children {
        let stdin = child.stdin.as_mut().expect("stdin");
        stdin
            .write_all(b"go\n")
            .and_then(|_| stdin.flush())
            .map_err(|e| format!("starting a node: {e}"))?;
    }
    let mut results = Vec::new();
    let mut machine = None;
    for output in &mut outputs {
        let line = read_line(output)?;
        // The first result arrives at the end of the window; the machine's CPU is read then.
        let (busy_end, total_end) = machine_ticks();
        machine.get_or_insert((busy_end - busy, total_end - total));
        let value: Value = serde_json::from_str(&line).map_err(|e| format!("{line:?}: {e}"))?;
        let n = |f: &str| value[f].as_u64().unwrap_or(0);
        results.push(NodeResult {
            measured: n("measured"),
            seconds: value["seconds"].as_f64().unwrap_or(f64::NAN),
            created: n("created"),
            replayed: n("replayed"),
            failed: n("failed"),
            first_error: value["firstError"].as_str().map(str::to_owned),
            cpu_seconds: value["cpuSeconds"].as_f64().unwrap_or(0.0),
        });
    }
    for mut child in children {
        let _ = child.wait();
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let (busy, total) = machine.unwrap_or((0, 1));
    let audit = match database {
        Some(url) => audit_postgres(url),
        None => audit_sqlite(&dir.join("node-0").join("airlock.db")),
    };
    Ok(NodesRun {
        nodes: results,
        machine_cores_busy: busy as f64 / total.max(1) as f64 * cores,
        audit,
    })
}

fn read_line(output: &mut BufReader<ChildStdout>) -> Result<String, String> {
    let mut line = String::new();
    match output.read_line(&mut line) {
        Ok(0) => Err("a node exited early (its error is above)".into()),
        Ok(_) => Ok(line),
        Err(e) => Err(format!("reading a node's output: {e}")),
    }
}

fn creates_per_second(report: &mut Report) {
    let dir = tempfile::tempdir().expect("tempdir");
    let sqlite = run_nodes(&dir.path().join("sqlite"), None, 1);
    let on_postgres = |nodes: usize| {
        let what = if nodes == 1 { "one_node" } else { "two_nodes" };
        let database = BenchDatabase::create(what)?;
        let run = run_nodes(&dir.path().join(what), Some(&database.url), nodes);
        drop(database);
        run
    };
    let one = on_postgres(1);
    let two = on_postgres(2);

    println!(
        "\n## Storage: creates per second (example adapter, new keys, {NODE_CALLERS} callers per node, {} s after {} ms of warm-up)\n",
        NODE_MEASURE.as_secs(),
        NODE_WARMUP.as_millis()
    );
    println!(
        "| backend | nodes | creates/s | per node | failed | node CPU cores | machine CPU cores busy | no duplicate |"
    );
    println!("|---|---:|---:|---|---:|---|---:|---|");
    let line = |backend: &str, nodes: usize, run: &Result<NodesRun, String>| match run {
        Ok(run) => {
            let per_node: Vec<String> = run
                .nodes
                .iter()
                .map(|n| format!("{:.0}", n.measured as f64 / n.seconds))
                .collect();
            let cpu: Vec<String> = run
                .nodes
                .iter()
                .map(|n| format!("{:.2}", n.cpu_seconds / n.seconds))
                .collect();
            let failed: u64 = run.nodes.iter().map(|n| n.failed).sum();
            let check = match &run.audit {
                Ok(a) => format!(
                    "{}: {} creates, {} done records, {} running, {} distinct instances, {} instance records, {} keys whose guest record agrees",
                    if run.no_duplicate() { "yes" } else { "**no**" },
                    run.created(),
                    a.done,
                    a.running,
                    a.distinct_instances,
                    a.instance_records,
                    a.keys_agreeing
                ),
                Err(why) => format!("**not checked**: {why}"),
            };
            println!(
                "| {backend} | {nodes} | {:.0} | {} | {failed} | {} | {:.2} | {check} |",
                run.per_second(),
                per_node.join(" + "),
                cpu.join(" + "),
                run.machine_cores_busy,
            );
            for error in run.nodes.iter().filter_map(|n| n.first_error.as_deref()) {
                println!("\nfirst failure on a node: {error}");
            }
        }
        Err(why) => println!("| {backend} | {nodes} | not measured: {why} | | | | | |"),
    };
    line("SQLite (one runtime)", 1, &sqlite);
    line("PostgreSQL", 1, &one);
    line("PostgreSQL", 2, &two);
    if let (Ok(one), Ok(two)) = (&one, &two) {
        println!(
            "\n2 nodes ÷ 1 node (PostgreSQL): {:.2}×. PostgreSQL runs on this machine's {} cores too, \
             beside the nodes: \"machine CPU cores busy\" is all of the machine's CPU over the window.",
            two.per_second() / one.per_second(),
            std::thread::available_parallelism().map_or(0, |n| n.get()),
        );
        report.two_nodes_vs_one = Some(two.per_second() / one.per_second());
    }
    report.no_duplicate = [&sqlite, &one, &two]
        .iter()
        .filter_map(|run| run.as_ref().ok())
        .map(NodesRun::no_duplicate)
        .reduce(|a, b| a && b);
}

/// The node side: a runtime of its own on the database it was given, the example adapter,
/// [`NODE_CALLERS`] callers creating new keys; says `ready` after the warm-up, measures
/// from `go` on stdin, prints its counts as one JSON line.
pub(crate) fn node_child() {
    let env = |name: &str| std::env::var(name).unwrap_or_else(|_| panic!("{name} unset"));
    let node_id = env("AIRLOCK_BENCH_NODE_ID");
    let database = Some(env("AIRLOCK_BENCH_DATABASE"))
        .filter(|url| !url.is_empty())
        .map(|url| DatabaseUrl::parse(&url).expect("database URL"));
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio");
    let runtime = Runtime::new(RuntimeConfig {
        database,
        node_id: Some(node_id.clone()),
        ..RuntimeConfig::with_data_dir(env("AIRLOCK_BENCH_DATA_DIR"))
    })
    .expect("runtime");
    let result = tokio.block_on(async {
        let adapter = load_adapter(&runtime, "example", EXAMPLE_ADAPTER, node_policy()).await;
        let config = Arc::new(serde_json::from_str::<Value>(EXAMPLE_CONFIG).expect("json"));
        let counts = Arc::new(NodeCounts::default());
        let callers: Vec<_> = (0..NODE_CALLERS)
            .map(|caller| {
                let (adapter, config, counts) = (adapter.clone(), config.clone(), counts.clone());
                let prefix = format!("{node_id}-{caller}");
                tokio::spawn(async move {
                    let mut n = 0u64;
                    while !counts.stop.load(Ordering::Relaxed) {
                        n += 1;
                        let op = Operation::Create {
                            params: json!({ "name": "bench" }),
                            idempotency_key: Some(format!("{prefix}-{n}")),
                        };
                        // Each call a task of its own, as in the throughput part.
                        let (adapter, config) = (adapter.clone(), config.clone());
                        let result =
                            tokio::spawn(async move { adapter.invoke(&config, op).await.result })
                                .await
                                .expect("call task");
                        counts.count(result);
                    }
                })
            })
            .collect();
        tokio::time::sleep(NODE_WARMUP).await;
        println!("ready");
        std::io::stdout().flush().expect("stdout");
        tokio::task::spawn_blocking(|| {
            let mut line = String::new();
            std::io::stdin().read_line(&mut line).expect("stdin")
        })
        .await
        .expect("stdin task");
        counts.counting.store(true, Ordering::Relaxed);
        let (start, cpu_start) = (Instant::now(), cpu_time());
        tokio::time::sleep(NODE_MEASURE).await;
        let measured = counts.measured.load(Ordering::Relaxed);
        let (seconds, cpu) = (start.elapsed().as_secs_f64(), cpu_time() - cpu_start);
        counts.stop.store(true, Ordering::Relaxed);
        for caller in callers {
            caller.await.expect("caller task");
        }
        json!({
            "measured": measured,
            "seconds": seconds,
            "created": counts.created.load(Ordering::Relaxed),
            "replayed": counts.replayed.load(Ordering::Relaxed),
            "failed": counts.failed.load(Ordering::Relaxed),
            "firstError": counts.first_error.lock().unwrap().clone(),
            "cpuSeconds": cpu.as_secs_f64(),
        })
    });
    println!("{result}");
}

/// A node's callers' counts.
#[derive(Default)]
struct NodeCounts {
    counting: AtomicBool,
    stop: AtomicBool,
    measured: AtomicU64,
    created: AtomicU64,
    replayed: AtomicU64,
    failed: AtomicU64,
    first_error: std::sync::Mutex<Option<String>>,
}

impl NodeCounts {
    fn count(&self, result: Result<Output, airlock::AdapterError>) {
        match result {
            Ok(Output::Provisioned(result)) if result.created => {
                self.created.fetch_add(1, Ordering::Relaxed);
                if self.counting.load(Ordering::Relaxed) {
                    self.measured.fetch_add(1, Ordering::Relaxed);
                }
            }
            Ok(_) => {
                self.replayed.fetch_add(1, Ordering::Relaxed);
            }
            Err(error) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                self.first_error
                    .lock()
                    .unwrap()
                    .get_or_insert_with(|| error.to_string());
            }
        }
    }
}
