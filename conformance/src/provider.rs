//! The checker's stand-in provider: an [`HttpInterceptor`] that sends every request the
//! policy allowed to one provider (the built-in fakecloud, or `--provider URL`), injects
//! the fault of the current step, keeps the requests of the current call for the rules to
//! look at, and records or replays the provider's answers.

use std::sync::{Arc, Mutex, MutexGuard};

use airlock::intercept::{
    Exchange, HttpInterceptor, InjectedFailure, InterceptedRequest, Interception, ProviderResponse,
};
use url::Url;

use super::recording::{Body, Event, RecordedExchange, Recording};

/// A provider failure the checker injects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Every request of the call is answered `429 Too Many Requests` with `Retry-After: 1`.
    RateLimited,
    /// Every request of the call is answered `500 Internal Server Error`.
    ServerError,
    /// Every request of the call is answered `401 Unauthorized`.
    Unauthorized,
    /// The call's first mutating request (or its first request, for a read) reaches the
    /// provider, which processes it; then the connection breaks before the answer.
    ResetAfterProcessing,
    /// As [`Fault::ResetAfterProcessing`], but the answer never comes in time: the guest
    /// waits out its request timeout.
    SlowAfterProcessing,
}

impl Fault {
    /// Every fault, in the order the checker injects them.
    pub const ALL: [Fault; 5] = [
        Fault::RateLimited,
        Fault::ServerError,
        Fault::ResetAfterProcessing,
        Fault::SlowAfterProcessing,
        Fault::Unauthorized,
    ];

    /// How the fault reads in a report.
    pub fn describe(self) -> &'static str {
        match self {
            Fault::RateLimited => "429 with Retry-After: 1",
            Fault::ServerError => "500",
            Fault::Unauthorized => "401",
            Fault::ResetAfterProcessing => "connection reset after the provider processed it",
            Fault::SlowAfterProcessing => "answer slower than the request timeout",
        }
    }

    /// Whether it hits every request of the call, or only one.
    fn persistent(self) -> bool {
        matches!(
            self,
            Fault::RateLimited | Fault::ServerError | Fault::Unauthorized
        )
    }

    fn injected_status(status: u16, extra: Option<(&str, &str)>) -> Interception {
        let mut headers = vec![("content-type".to_owned(), "application/json".to_owned())];
        if let Some((name, value)) = extra {
            headers.push((name.to_owned(), value.to_owned()));
        }
        Interception::Respond(ProviderResponse {
            status,
            headers,
            body: format!(r#"{{"error":"injected by airlock check","status":{status}}}"#)
                .into_bytes(),
        })
    }
}

/// One request of the current call, as the rules see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SeenRequest {
    pub(crate) method: String,
    pub(crate) url: String,
    pub(crate) mutating: bool,
    pub(crate) faulted: bool,
    /// The provider's status (live or replayed); `None` when it did not answer, or the
    /// checker answered in its place (an injected fault).
    pub(crate) status: Option<u16>,
}

impl SeenRequest {
    pub(crate) fn label(&self) -> String {
        format!("{} {}", self.method, self.url)
    }
}

/// Where the answers come from.
enum Mode {
    /// The network, at this origin; `recording` keeps what came back.
    Live {
        origin: Url,
        recording: Option<Vec<Event>>,
    },
    /// A recording, in order.
    Replay {
        events: Vec<Event>,
        next: usize,
        divergence: Option<String>,
    },
}

struct State {
    mode: Mode,
    fault: Option<Fault>,
    /// A one-shot fault waits for the first mutating request (create, destroy), or takes
    /// the first request (status).
    mutating_target: bool,
    fired: u32,
    seen: Vec<SeenRequest>,
}

/// The stand-in provider. See the module docs.
pub(crate) struct StandIn {
    state: Mutex<State>,
}

impl std::fmt::Debug for StandIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StandIn")
    }
}

impl StandIn {
    /// Send requests to `origin`, recording the answers if asked.
    pub(crate) fn live(origin: Url, record: bool) -> Arc<StandIn> {
        Arc::new(StandIn {
            state: Mutex::new(State {
                mode: Mode::Live {
                    origin,
                    recording: record.then(Vec::new),
                },
                fault: None,
                mutating_target: false,
                fired: 0,
                seen: Vec::new(),
            }),
        })
    }

    /// Answer from `recording` instead of a provider.
    pub(crate) fn replay(recording: Recording) -> Arc<StandIn> {
        Arc::new(StandIn {
            state: Mutex::new(State {
                mode: Mode::Replay {
                    events: recording.events,
                    next: 0,
                    divergence: None,
                },
                fault: None,
                mutating_target: false,
                fired: 0,
                seen: Vec::new(),
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Start a call: arm `fault` (or none) and forget the previous call's requests. A
    /// one-shot fault hits the first mutating request if `mutating_target`, else the first.
    pub(crate) fn begin(&self, fault: Option<Fault>, mutating_target: bool) {
        let mut state = self.lock();
        state.fault = fault;
        state.mutating_target = mutating_target;
        state.fired = 0;
        state.seen.clear();
    }

    /// The requests of the current call.
    pub(crate) fn seen(&self) -> Vec<SeenRequest> {
        self.lock().seen.clone()
    }

    /// The provider's resource count: `live` as counted (recorded, in record mode), or in
    /// a replay the recorded one. `None` when it cannot be known.
    pub(crate) fn resources(&self, live: Option<u64>) -> Option<u64> {
        let mut state = self.lock();
        match &mut state.mode {
            Mode::Live { recording, .. } => {
                let count = live;
                if let Some(events) = recording {
                    events.push(Event::Resources { count });
                }
                count
            }
            Mode::Replay {
                events,
                next,
                divergence,
            } => match events.get(*next) {
                Some(Event::Resources { count }) => {
                    *next += 1;
                    *count
                }
                other => {
                    divergence.get_or_insert_with(|| {
                        format!(
                            "replay diverged at event {}: the checker asked for the resource count, the recording has {}",
                            *next + 1,
                            describe(other)
                        )
                    });
                    None
                }
            },
        }
    }

    /// The recording made so far (record mode), or `None`.
    pub(crate) fn recording(&self) -> Option<Vec<Event>> {
        match &self.lock().mode {
            Mode::Live { recording, .. } => recording.clone(),
            Mode::Replay { .. } => None,
        }
    }

    /// Why replay went off the recording, if it did; and events it never used.
    pub(crate) fn replay_problem(&self) -> Option<String> {
        match &self.lock().mode {
            Mode::Live { .. } => None,
            Mode::Replay {
                events,
                next,
                divergence,
            } => divergence.clone().or_else(|| {
                (*next < events.len()).then(|| {
                    format!(
                        "the recording has {} more event(s) than this run used, the first: {}",
                        events.len() - next,
                        describe(events.get(*next))
                    )
                })
            }),
        }
    }
}

fn describe(event: Option<&Event>) -> String {
    match event {
        None => "nothing (the recording ended)".to_owned(),
        Some(Event::Resources { .. }) => "a resource count".to_owned(),
        Some(Event::Exchange(exchange)) => {
            format!("{} {}", exchange.method, exchange.url)
        }
    }
}

impl HttpInterceptor for StandIn {
    fn intercept(&self, request: &InterceptedRequest) -> Interception {
        let mut guard = self.lock();
        // One plain borrow, so the mode and the seen requests can be borrowed apart.
        let state = &mut *guard;
        let fault = state.fault.filter(|fault| {
            fault.persistent()
                || (state.fired == 0 && (request.is_mutating() || !state.mutating_target))
        });
        if fault.is_some() {
            state.fired += 1;
        }
        state.seen.push(SeenRequest {
            method: request.method.clone(),
            url: request.url.clone(),
            mutating: request.is_mutating(),
            faulted: fault.is_some(),
            status: None,
        });
        let failure = match fault {
            Some(Fault::RateLimited) => {
                return Fault::injected_status(429, Some(("retry-after", "1")));
            }
            Some(Fault::ServerError) => return Fault::injected_status(500, None),
            Some(Fault::Unauthorized) => {
                return Fault::injected_status(401, Some(("www-authenticate", "Bearer")));
            }
            Some(Fault::ResetAfterProcessing) => Some(InjectedFailure::ConnectionReset),
            Some(Fault::SlowAfterProcessing) => Some(InjectedFailure::Timeout),
            None => None,
        };
        match &mut state.mode {
            Mode::Live { origin, .. } => {
                let origin = Some(origin.clone());
                match failure {
                    None => Interception::Forward { origin },
                    Some(failure) => Interception::ForwardThenFail { origin, failure },
                }
            }
            Mode::Replay {
                events,
                next,
                divergence,
            } => {
                let recorded = match events.get(*next) {
                    Some(Event::Exchange(exchange))
                        if exchange.method == request.method
                            && exchange.url == request.url
                            && exchange.request_body == Body::new(&request.body) =>
                    {
                        *next += 1;
                        (**exchange).clone()
                    }
                    Some(Event::Exchange(exchange))
                        if exchange.method == request.method && exchange.url == request.url =>
                    {
                        let message = format!(
                            "replay diverged at event {}: the adapter sent {} {} with another body than the recording's",
                            *next + 1,
                            request.method,
                            request.url,
                        );
                        divergence.get_or_insert(message);
                        return Interception::Fail(InjectedFailure::ConnectionReset);
                    }
                    other => {
                        let message = format!(
                            "replay diverged at event {}: the adapter sent {} {}, the recording has {}",
                            *next + 1,
                            request.method,
                            request.url,
                            describe(other)
                        );
                        divergence.get_or_insert(message);
                        return Interception::Fail(InjectedFailure::ConnectionReset);
                    }
                };
                match (failure, recorded.response) {
                    (Some(failure), _) => Interception::Fail(failure),
                    (None, Some(response)) => {
                        if let Some(last) = state.seen.last_mut() {
                            last.status = Some(response.status);
                        }
                        Interception::Respond(response.into())
                    }
                    (None, None) => Interception::Fail(InjectedFailure::ConnectionReset),
                }
            }
        }
    }

    fn exchanged(&self, request: &InterceptedRequest, exchange: &Exchange) {
        let mut state = self.lock();
        if let Exchange::Answered(response) = exchange
            && let Some(seen) =
                state.seen.iter_mut().rev().find(|s| {
                    s.status.is_none() && s.method == request.method && s.url == request.url
                })
        {
            seen.status = Some(response.status);
        }
        if let Mode::Live {
            recording: Some(events),
            ..
        } = &mut state.mode
        {
            events.push(Event::Exchange(Box::new(RecordedExchange::new(
                request, exchange,
            ))));
        }
    }
}
