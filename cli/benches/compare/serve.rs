//! The service part (`-- serve`): the example adapter's `status` through `airlock serve`
//! over keep-alive HTTP/1.1 on 127.0.0.1, beside the same call in this process.
//!
//! - `airlock serve` runs as a child process (this package's `airlock` binary) on SQLite in
//!   a temporary directory, with one tenant whose ceiling lifts the quotas ([`CEILING`]).
//!   The example adapter is stored as the tenant's active version directly in the service's
//!   store (as the integration tests' `publish` does), and one instance is created through
//!   the service.
//! - Latency, one connection, interleaved in rounds: `GET /healthz` (the client and the
//!   service's frame), `GET /v1/adapters/example` (that and the API key checked against
//!   the store, one registry read; no adapter call), the status through the service, and the status through
//!   `Adapter::invoke` in this process (a runtime on a data directory of its own, the
//!   same empty policy). The HTTP rows run with reqwest and with [`RawConnection`], a
//!   hand-written HTTP/1.1 client, so that reqwest's own share is readable.
//! - Calls per second with 1 and 64 connections, each its own keep-alive connection driven
//!   by one task, for [`MEASURE`] after [`WARM`], beside the in-process calls per second
//!   with 1 and 64 callers ([`calls_per_second`]). The load generator runs on the same two
//!   cores as the service, so the CPU of both processes is shown.
//!
//! The targets (issue 13) are judged on the reqwest rows; the hand-written client's figures
//! stand beside them.

use std::sync::atomic::AtomicUsize;

use airlock::storage::service::NewVersion;
use sha2::Digest;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};

use super::*;

/// Lifts the tenant's quotas so that they do not throttle the benchmark (both are `u32`s
/// with no maximum but their type; see docs/ceiling.md).
const CEILING: &str = "[quotas]\nconcurrent_calls = 100000\ncalls_per_second = 1000000\n";
/// Calls per row per round in the latency table.
const PER_ROUND_SERVE: usize = 300;
/// Connections of the second throughput run (the first has one).
const CONNECTIONS: usize = 64;
/// How long each throughput run warms up, and how long it is measured.
const WARM: Duration = Duration::from_millis(500);
const MEASURE: Duration = Duration::from_secs(3);

/// What the targets are judged on.
#[derive(Clone, Copy, Default)]
pub(crate) struct ServeReport {
    in_process: Stats,
    service: Stats,
    service_raw: Stats,
    /// Calls per second with [`CONNECTIONS`] callers: in process, through the service with
    /// reqwest and with the hand-written client.
    in_process_many: f64,
    service_many: f64,
    service_raw_many: f64,
}

pub(crate) fn serve(tokio: &tokio::runtime::Runtime, report: &mut Report) {
    let dir = tempfile::tempdir().expect("tempdir");
    let data_dir = dir.path().join("serve");
    let key = tenant(&data_dir, &dir.path().join("ceiling.toml"));
    tokio.block_on(async {
        // Dropped before the service starts: the service's storage is its own.
        let runtime = airlock_runtime(&data_dir);
        publish(&runtime, "bench", EXAMPLE_ADAPTER).await;
    });
    let server = Server::start(&data_dir);
    let authorization = format!("Bearer {key}");

    let config: Value = serde_json::from_str(EXAMPLE_CONFIG).expect("json");
    let created = tokio.block_on(async {
        reqwest::Client::new()
            .post(format!("{}/v1/adapters/example/instances", server.url))
            .header("authorization", &authorization)
            .json(&json!({ "config": config, "params": { "name": "bench" } }))
            .send()
            .await
            .expect("create request")
            .json::<Value>()
            .await
            .expect("create answer")
    });
    let id = created["instanceId"]
        .as_str()
        .unwrap_or_else(|| panic!("create through the service: {created}"))
        .to_owned();
    let status_path = format!("/v1/adapters/example/instances/{id}");

    // In process: the same adapter under the same (empty) policy, on a data directory of
    // its own.
    let local = airlock_runtime(&dir.path().join("in-process"));
    let (adapter, local_id) = tokio.block_on(async {
        let adapter = load_adapter(&local, "example", EXAMPLE_ADAPTER, Policy::default()).await;
        let id = adapter
            .create(&config, &json!({ "name": "bench" }), None)
            .await
            .expect("create")
            .instance_id;
        (adapter, id)
    });

    let mut latency = latency(
        tokio,
        &server,
        &authorization,
        &status_path,
        &adapter,
        &config,
        &local_id,
    );
    let throughput = throughput(
        tokio,
        &server,
        &authorization,
        &status_path,
        &adapter,
        &local_id,
    );
    latency.in_process_many = throughput.in_process_many;
    latency.service_many = throughput.service_many;
    latency.service_raw_many = throughput.service_raw_many;
    report.serve = Some(latency);
    drop(server);
}

/// `airlock tenant create bench --ceiling FILE`; the tenant's API key.
fn tenant(data_dir: &std::path::Path, ceiling: &std::path::Path) -> String {
    std::fs::write(ceiling, CEILING).expect("ceiling file");
    std::fs::create_dir_all(data_dir).expect("data directory");
    let output = Command::new(env!("CARGO_BIN_EXE_airlock"))
        .arg("--data-dir")
        .arg(data_dir)
        .args(["tenant", "create", "bench", "--ceiling"])
        .arg(ceiling)
        .output()
        .expect("airlock tenant create");
    assert!(
        output.status.success(),
        "airlock tenant create: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let answer: Value = serde_json::from_slice(&output.stdout).expect("tenant create's JSON");
    answer["apiKey"]
        .as_str()
        .unwrap_or_else(|| panic!("no apiKey in {answer}"))
        .to_owned()
}

/// Store `wasm` as version 1 of the tenant's `example` adapter, admitted and active, with
/// an empty policy.
async fn publish(runtime: &Runtime, tenant: &str, wasm: &str) {
    let component = std::fs::read(wasm).expect("component file");
    let store = runtime.service_store();
    store
        .version_put(&NewVersion {
            tenant: tenant.into(),
            adapter: "example".into(),
            version: "1".into(),
            sha256: hex::encode(sha2::Sha256::digest(&component)),
            component,
            policy: String::new(),
            recording: None,
            admission: "{}".into(),
            admitted: true,
        })
        .await
        .expect("version stored");
    assert!(
        store
            .set_active(tenant, "example", "1")
            .await
            .expect("set active")
    );
}

/// `airlock serve --listen 127.0.0.1:0` as a child process, killed when dropped.
struct Server {
    child: std::process::Child,
    /// `http://ADDRESS`.
    url: String,
    /// `ADDRESS`.
    address: String,
}

impl Server {
    fn start(data_dir: &std::path::Path) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_airlock"))
            .arg("--data-dir")
            .arg(data_dir)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("starting airlock serve");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        stdout
            .read_line(&mut line)
            .expect("airlock serve's first line");
        let url = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("airlock serve printed {line:?}"))
            .to_owned();
        // Whatever else it prints is read, so that it never blocks on a full pipe.
        std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
        let address = url.trim_start_matches("http://").to_owned();
        Server {
            child,
            url,
            address,
        }
    }

    fn pid(&self) -> String {
        self.child.id().to_string()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// --- the clients ---------------------------------------------------------------------------

/// One keep-alive HTTP/1.1 connection spoken by hand: one fixed `GET` written in one
/// piece, the answer read by its `Content-Length`. About the least a client can do, so
/// that reqwest's share of a call is what reqwest costs beyond it.
struct RawConnection {
    stream: tokio::io::BufReader<tokio::net::TcpStream>,
    request: Vec<u8>,
    line: String,
    body: Vec<u8>,
}

impl RawConnection {
    async fn open(address: &str, path: &str, authorization: &str) -> RawConnection {
        let stream = tokio::net::TcpStream::connect(address)
            .await
            .expect("connecting to airlock serve");
        stream.set_nodelay(true).expect("TCP_NODELAY");
        let request = format!(
            "GET {path} HTTP/1.1\r\nhost: {address}\r\nauthorization: {authorization}\r\n\r\n"
        );
        RawConnection {
            stream: tokio::io::BufReader::new(stream),
            request: request.into_bytes(),
            line: String::new(),
            body: Vec::new(),
        }
    }

    /// Send the request, read the whole answer; its status code.
    async fn call(&mut self) -> u16 {
        self.stream
            .get_mut()
            .write_all(&self.request)
            .await
            .expect("writing the request");
        self.line.clear();
        self.stream
            .read_line(&mut self.line)
            .await
            .expect("the status line");
        let status: u16 = self
            .line
            .split(' ')
            .nth(1)
            .and_then(|code| code.parse().ok())
            .unwrap_or_else(|| panic!("status line {:?}", self.line));
        let mut length = None;
        loop {
            self.line.clear();
            self.stream
                .read_line(&mut self.line)
                .await
                .expect("a header");
            let header = self.line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse::<usize>().ok();
            }
        }
        let length = length.expect("the service answers with a Content-Length");
        self.body.resize(length, 0);
        self.stream
            .read_exact(&mut self.body)
            .await
            .expect("the body");
        status
    }
}

/// Which client a connection is.
#[derive(Clone, Copy, PartialEq)]
enum Client {
    Reqwest,
    Raw,
}

/// One keep-alive connection sending one `GET` over and over.
enum Connection {
    /// A client of its own, so one connection of its own.
    Reqwest {
        client: reqwest::Client,
        url: String,
        authorization: String,
    },
    Raw(RawConnection),
}

impl Connection {
    async fn open(client: Client, server: &Server, path: &str, authorization: &str) -> Self {
        match client {
            Client::Reqwest => Connection::Reqwest {
                client: reqwest::Client::new(),
                url: format!("{}{path}", server.url),
                authorization: authorization.to_owned(),
            },
            Client::Raw => {
                Connection::Raw(RawConnection::open(&server.address, path, authorization).await)
            }
        }
    }

    /// One call, the answer read to its end; its status code.
    async fn call(&mut self) -> u16 {
        match self {
            Connection::Reqwest {
                client,
                url,
                authorization,
            } => {
                let response = client
                    .get(url.as_str())
                    .header("authorization", authorization.as_str())
                    .send()
                    .await
                    .expect("request");
                let status = response.status().as_u16();
                response.bytes().await.expect("body");
                status
            }
            Connection::Raw(raw) => raw.call().await,
        }
    }
}

/// A latency subject: one call on `connection`, which must answer 200.
fn http_call(connection: &tokio::sync::Mutex<Connection>) -> Subject<'_> {
    Subject::Async(Box::new(move || {
        Box::pin(async move {
            let status = connection.lock().await.call().await;
            assert_eq!(status, 200, "airlock serve answered {status}");
        })
    }))
}

// --- latency -------------------------------------------------------------------------------

fn latency(
    tokio: &tokio::runtime::Runtime,
    server: &Server,
    authorization: &str,
    status_path: &str,
    adapter: &Adapter,
    config: &Value,
    local_id: &str,
) -> ServeReport {
    let open = |client, path| {
        tokio::sync::Mutex::new(tokio.block_on(Connection::open(
            client,
            server,
            path,
            authorization,
        )))
    };
    let health = open(Client::Reqwest, "/healthz");
    let health_raw = open(Client::Raw, "/healthz");
    let adapter_raw = open(Client::Raw, "/v1/adapters/example");
    let status = open(Client::Reqwest, status_path);
    let status_raw = open(Client::Raw, status_path);

    const HEALTH: &str = "`GET /healthz` (no adapter)";
    const ADAPTER: &str =
        "`GET /v1/adapters/example` (the key checked, one registry read, no adapter)";
    const STATUS: &str = "example `status`";
    let mut rows = vec![
        row(HEALTH, "reqwest", PER_ROUND_SERVE, http_call(&health)),
        row(HEALTH, "raw", PER_ROUND_SERVE, http_call(&health_raw)),
        row(ADAPTER, "raw", PER_ROUND_SERVE, http_call(&adapter_raw)),
        row(
            STATUS,
            "in-process",
            PER_ROUND_SERVE,
            airlock_call(adapter, config, || Operation::Status {
                instance_id: local_id.to_owned(),
            }),
        ),
        row(STATUS, "reqwest", PER_ROUND_SERVE, http_call(&status)),
        row(STATUS, "raw", PER_ROUND_SERVE, http_call(&status_raw)),
    ];
    run_rounds(tokio, &mut rows);

    println!(
        "\n## The service: example `status` through `airlock serve`, one keep-alive connection ({ROUNDS} interleaved rounds)\n"
    );
    println!("| workload | how | median µs | p99 µs | calls | − in-process (median) |");
    println!("|---|---|---:|---:|---:|---:|");
    let measured: Vec<(&str, &str, Stats, usize)> = rows
        .iter_mut()
        .map(|row| {
            let s = stats(&mut row.samples);
            (row.workload, row.host, s, row.samples.len())
        })
        .collect();
    let in_process = measured[3].2;
    for (workload, host, s, calls) in &measured {
        let how = match *host {
            "in-process" => "in process: `Adapter::invoke`",
            "reqwest" => "**`airlock serve`**, reqwest",
            _ => "`airlock serve`, hand-written HTTP/1.1 client",
        };
        let added = if *workload == STATUS && *host != "in-process" {
            format!("+{}", fmt_us(s.median - in_process.median))
        } else {
            "—".into()
        };
        println!(
            "| {workload} | {how} | {} | {} | {calls} | {added} |",
            fmt_us(s.median),
            fmt_us(s.p99),
        );
    }
    let (health, health_raw) = (measured[0].2, measured[1].2);
    println!(
        "\nreqwest's own share, `/healthz` with reqwest − with the hand-written client: {} µs \
         at the median.",
        fmt_us(health.median - health_raw.median)
    );
    ServeReport {
        in_process,
        service: measured[4].2,
        service_raw: measured[5].2,
        ..ServeReport::default()
    }
}

// --- throughput ----------------------------------------------------------------------------

/// Calls per second with 1 and [`CONNECTIONS`] callers, in process and through the service
/// with each client.
fn throughput(
    tokio: &tokio::runtime::Runtime,
    server: &Server,
    authorization: &str,
    status_path: &str,
    adapter: &Adapter,
    local_id: &str,
) -> ServeReport {
    println!(
        "\n## The service: example `status` calls per second ({} s after {} ms of warm-up; load generator on the same machine)\n",
        MEASURE.as_secs(),
        WARM.as_millis()
    );
    println!(
        "| callers | how | calls/s | bench process CPU cores | `airlock serve` CPU cores | ÷ in-process |"
    );
    println!("|---:|---|---:|---:|---:|---:|");
    let mut report = ServeReport::default();
    for callers in [1, CONNECTIONS] {
        let local = calls_per_second(tokio, adapter, EXAMPLE_CONFIG, local_id, callers);
        println!(
            "| {callers} | in process: `Adapter::invoke` | {:.0} | {:.2} | — | — |",
            local.calls_per_second, local.cores
        );
        for client in [Client::Reqwest, Client::Raw] {
            let service = service_calls_per_second(
                tokio,
                server,
                client,
                status_path,
                authorization,
                callers,
            );
            let how = match client {
                Client::Reqwest => "**`airlock serve`**, reqwest",
                Client::Raw => "`airlock serve`, hand-written HTTP/1.1 client",
            };
            println!(
                "| {callers} | {how} | {:.0} | {:.2} | {:.2} | {:.2} |",
                service.calls_per_second,
                service.client_cores,
                service.server_cores,
                service.calls_per_second / local.calls_per_second
            );
            if callers == CONNECTIONS {
                match client {
                    Client::Reqwest => report.service_many = service.calls_per_second,
                    Client::Raw => report.service_raw_many = service.calls_per_second,
                }
            }
        }
        if callers == CONNECTIONS {
            report.in_process_many = local.calls_per_second;
        }
    }
    report
}

/// What one run against the service measured.
struct ServiceThroughput {
    calls_per_second: f64,
    /// This process's CPU time over the wall time: the load generator's.
    client_cores: f64,
    /// The service process's.
    server_cores: f64,
}

/// `callers` tasks, each on a connection of its own, calling `path` until stopped.
fn service_calls_per_second(
    tokio: &tokio::runtime::Runtime,
    server: &Server,
    client: Client,
    path: &str,
    authorization: &str,
    callers: usize,
) -> ServiceThroughput {
    let counted = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let counting = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let pid = server.pid();
    tokio.block_on(async {
        let mut tasks = Vec::with_capacity(callers);
        for _ in 0..callers {
            let mut connection = Connection::open(client, server, path, authorization).await;
            let (counted, failed) = (counted.clone(), failed.clone());
            let (counting, stop) = (counting.clone(), stop.clone());
            tasks.push(tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let status = connection.call().await;
                    if status != 200 {
                        failed.fetch_add(1, Ordering::Relaxed);
                    } else if counting.load(Ordering::Relaxed) {
                        counted.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }));
        }
        tokio::time::sleep(WARM).await;
        counting.store(true, Ordering::Relaxed);
        let (start, cpu_start, server_start) = (Instant::now(), cpu_time(), cpu_time_of(&pid));
        tokio::time::sleep(MEASURE).await;
        let calls = counted.load(Ordering::Relaxed);
        let elapsed = start.elapsed();
        let (cpu, server_cpu) = (cpu_time() - cpu_start, cpu_time_of(&pid) - server_start);
        stop.store(true, Ordering::Relaxed);
        for task in tasks {
            task.await.expect("caller task");
        }
        let failed = failed.load(Ordering::Relaxed);
        assert_eq!(
            failed, 0,
            "{failed} calls through the service did not answer 200"
        );
        let seconds = elapsed.as_secs_f64();
        ServiceThroughput {
            calls_per_second: calls as f64 / seconds,
            client_cores: cpu.as_secs_f64() / seconds,
            server_cores: server_cpu.as_secs_f64() / seconds,
        }
    })
}

// --- targets -------------------------------------------------------------------------------

impl Report {
    pub(crate) fn serve_targets(&self, row: impl Fn(&str, String, Option<bool>)) {
        let Some(serve) = self.serve else {
            return;
        };
        println!("\n## Targets (issue 13, the service), judged on this run\n");
        println!("| target | measured | met |");
        println!("|---|---:|:---:|");
        let added = serve.service.median - serve.in_process.median;
        let added_raw = serve.service_raw.median - serve.in_process.median;
        row(
            "example `status` through `airlock serve`, 1 connection: adds ≤ 100 µs at the median",
            format!(
                "+{} µs ({} − {} in process; hand-written client +{} µs)",
                fmt_us(added),
                fmt_us(serve.service.median),
                fmt_us(serve.in_process.median),
                fmt_us(added_raw)
            ),
            Some(added <= 100.0),
        );
        let share = serve.service_many / serve.in_process_many;
        row(
            "example `status` through `airlock serve`, 64 connections: ≥ 50% of the in-process calls/s (64 callers)",
            format!(
                "{:.0}% ({:.0} ÷ {:.0}; hand-written client {:.0}%)",
                share * 100.0,
                serve.service_many,
                serve.in_process_many,
                serve.service_raw_many / serve.in_process_many * 100.0
            ),
            Some(share >= 0.5),
        );
    }
}
