//! The host side of every import a guest may use. One module per capability, each with its
//! own per-call state and its own `Host` implementation; [`CallContext`] is the store data
//! of one call and owns them all. Nothing here survives the call: a fresh `CallContext` is
//! built for every instance.
//!
//! | capability | module | granted by |
//! |---|---|---|
//! | `state` | [`state`] | always; scoped to the adapter's name, bounded by `[limits]` |
//! | `log` | [`log`] | always; bounded by `[limits]` |
//! | `progress` | [`progress`] | always; bounded by `[limits]` |
//! | `secrets` | [`secrets`] | `[secrets.NAME]` tables: source, bound destinations, reveal |
//! | `http` | [`http`] | `[[http.allow]]` entries and the `[http]` bounds; empty denies all |
//! | WASI | [`stdio`] and wasmtime-wasi | clocks and random only; no files, env, args, sockets; stdout/stderr captured and bounded |

pub(crate) mod http;
pub(crate) mod invocation;
pub(crate) mod limiter;
pub(crate) mod log;
pub(crate) mod progress;
pub(crate) mod secrets;
pub(crate) mod state;
pub(crate) mod stdio;

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc::UnboundedSender;
use wasmtime::component::{HasData, Linker, ResourceTable};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::bindings::airlock::adapter as imports;
use crate::policy::Limits;
use crate::storage::{Scope, Storage};

/// What a policy grants an adapter, compiled once at load and shared by its calls.
pub(crate) struct AdapterGrants {
    pub(crate) http: Arc<http::HttpGrant>,
    pub(crate) secrets: Arc<secrets::SecretGrants>,
}

/// What a call's capabilities are built from.
pub(crate) struct CallSetup<'a> {
    /// Whose call: the tenant and the adapter's name.
    pub(crate) scope: &'a Scope,
    pub(crate) limits: &'a Limits,
    pub(crate) storage: Arc<dyn Storage>,
    pub(crate) grants: &'a AdapterGrants,
    pub(crate) deadline: Instant,
    pub(crate) live_progress: Option<UnboundedSender<progress::ProgressReport>>,
    pub(crate) client_token: Option<String>,
}

/// The store data of one call.
pub(crate) struct CallContext {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(crate) limiter: limiter::CallLimiter,
    pub(crate) state: state::StateScope,
    pub(crate) log: log::LogSink,
    pub(crate) progress: progress::ProgressSink,
    pub(crate) stdout: stdio::BoundedPipe,
    pub(crate) stderr: stdio::BoundedPipe,
    pub(crate) secrets: secrets::SecretBroker,
    pub(crate) http: http::OutboundHttp,
    pub(crate) invocation: invocation::InvocationFacts,
}

impl CallContext {
    /// Everything one call's capabilities start from, fresh.
    pub(crate) fn new(setup: CallSetup<'_>) -> Self {
        let CallSetup {
            scope,
            limits,
            storage,
            grants,
            deadline,
            live_progress,
            client_token,
        } = setup;
        let stdio_bytes = limits.stdio_bytes as usize;
        let stdout = stdio::BoundedPipe::new(stdio_bytes);
        let stderr = stdio::BoundedPipe::new(stdio_bytes);
        // Deliberately empty: no preopened directories, no environment, no arguments, no
        // network. Clocks and random stay, because language runtimes need them.
        let wasi = WasiCtx::builder()
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .socket_addr_check(|_, _| Box::pin(async { false }))
            .build();
        CallContext {
            wasi,
            table: ResourceTable::new(),
            limiter: limiter::CallLimiter::new(limits.memory_bytes(), limits.table_elements),
            state: state::StateScope::new(storage, scope.clone(), limits),
            // Guest text is redacted where it enters the host: each sink holds the guard.
            log: log::LogSink::new(
                scope.adapter.clone(),
                limits.log_records,
                limits.log_line_bytes,
                grants.secrets.guard.clone(),
            ),
            progress: progress::ProgressSink::new(
                limits.progress_reports,
                limits.log_line_bytes,
                live_progress,
                grants.secrets.guard.clone(),
            ),
            stdout,
            stderr,
            secrets: secrets::SecretBroker::new(&scope.adapter, grants.secrets.clone()),
            http: http::OutboundHttp::new(&scope.adapter, grants.http.clone(), deadline),
            invocation: invocation::InvocationFacts { client_token },
        }
    }

    /// The secrets capability needs the resource table as well as its own state.
    pub(crate) fn secrets_view(&mut self) -> secrets::SecretsView<'_> {
        secrets::SecretsView {
            broker: &mut self.secrets,
            table: &mut self.table,
        }
    }

    /// The http capability needs the resource table and the secret grants to place secret
    /// values into headers.
    pub(crate) fn http_view(&mut self) -> http::HttpView<'_> {
        http::HttpView {
            http: &mut self.http,
            secrets: &self.secrets,
            table: &mut self.table,
        }
    }
}

impl WasiView for CallContext {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Projections from the store data to each capability's own state.
macro_rules! capability_view {
    ($name:ident, $data:ty, |$ctx:ident| $project:expr) => {
        struct $name;
        impl HasData for $name {
            type Data<'a> = $data;
        }
        impl $name {
            fn project<'a>($ctx: &'a mut CallContext) -> $data {
                $project
            }
        }
    };
}

capability_view!(StateView, &'a mut state::StateScope, |ctx| &mut ctx.state);
capability_view!(LogView, &'a mut log::LogSink, |ctx| &mut ctx.log);
capability_view!(ProgressView, &'a mut progress::ProgressSink, |ctx| &mut ctx
    .progress);
capability_view!(SecretsCap, secrets::SecretsView<'a>, |ctx| ctx
    .secrets_view());
capability_view!(HttpCap, http::HttpView<'a>, |ctx| ctx.http_view());
capability_view!(InvocationView, &'a mut invocation::InvocationFacts, |ctx| {
    &mut ctx.invocation
});

/// The unit `types` interface has no functions, but bindgen still wants a host for it.
struct TypesView;
impl HasData for TypesView {
    type Data<'a> = &'a mut CallContext;
}
impl imports::types::Host for CallContext {}

/// Link WASI (async) and every Airlock capability into `linker`.
pub(crate) fn add_to_linker(linker: &mut Linker<CallContext>) -> wasmtime::Result<()> {
    wasmtime_wasi::p2::add_to_linker_async(linker)?;
    imports::types::add_to_linker::<CallContext, TypesView>(linker, |ctx| ctx)?;
    imports::state::add_to_linker::<CallContext, StateView>(linker, StateView::project)?;
    imports::log::add_to_linker::<CallContext, LogView>(linker, LogView::project)?;
    imports::progress::add_to_linker::<CallContext, ProgressView>(linker, ProgressView::project)?;
    imports::secrets::add_to_linker::<CallContext, SecretsCap>(linker, SecretsCap::project)?;
    imports::http::add_to_linker::<CallContext, HttpCap>(linker, HttpCap::project)?;
    imports::invocation::add_to_linker::<CallContext, InvocationView>(
        linker,
        InvocationView::project,
    )?;
    Ok(())
}
