//! The `--record` / `--replay` file: what the provider answered during a check, in order,
//! so a failing run can be repeated exactly without the provider. JSON, one document:
//!
//! ```json
//! { "format": "airlock-check-recording", "version": 1, "adapterSha256": "…",
//!   "events": [
//!     { "kind": "exchange", "method": "POST", "url": "https://api.provider.example/v1/databases",
//!       "requestBody": "{…}", "response": { "status": 201, "headers": [["content-type", "application/json"]], "body": "{…}" } },
//!     { "kind": "resources", "count": 1 } ] }
//! ```
//!
//! Secret header values never reach the file (the interceptor sees them as `<secret>`).
//! Bodies are kept as text when they are UTF-8, else as base64 in `bodyBase64`.

use std::path::Path;

use airlock::intercept::{Exchange, InterceptedRequest, ProviderResponse};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

const FORMAT: &str = "airlock-check-recording";
const VERSION: u32 = 1;

/// A whole recording.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct Recording {
    format: String,
    version: u32,
    /// The component the recording was made with.
    pub(crate) adapter_sha256: String,
    /// The run's nonce (it is part of every idempotency key), so a replay sends the same.
    pub(crate) run: String,
    pub(crate) events: Vec<Event>,
}

/// One thing the provider said.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub(crate) enum Event {
    /// A request that went to the provider and what came back.
    Exchange(Box<RecordedExchange>),
    /// The provider's resource count when the checker asked (`null`: unknown).
    Resources { count: Option<u64> },
}

/// A request and its answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RecordedExchange {
    pub(crate) method: String,
    pub(crate) url: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) request_headers: Vec<(String, String)>,
    #[serde(flatten)]
    pub(crate) request_body: Body,
    /// `None` when the provider did not answer; `failure` says why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) response: Option<RecordedResponse>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) failure: Option<String>,
}

/// A body as text or base64.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Body {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    body: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    body_base64: Option<String>,
}

impl Body {
    pub(crate) fn new(bytes: &[u8]) -> Body {
        if bytes.is_empty() {
            return Body::default();
        }
        match std::str::from_utf8(bytes) {
            Ok(text) => Body {
                body: Some(text.to_owned()),
                body_base64: None,
            },
            Err(_) => Body {
                body: None,
                body_base64: Some(STANDARD.encode(bytes)),
            },
        }
    }

    fn bytes(&self) -> Result<Vec<u8>, String> {
        match (&self.body, &self.body_base64) {
            (Some(text), None) => Ok(text.clone().into_bytes()),
            (None, Some(encoded)) => STANDARD
                .decode(encoded)
                .map_err(|e| format!("bodyBase64 is not base64: {e}")),
            (None, None) => Ok(Vec::new()),
            (Some(_), Some(_)) => Err("both body and bodyBase64 are set".to_owned()),
        }
    }
}

/// A provider's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RecordedResponse {
    pub(crate) status: u16,
    #[serde(default)]
    headers: Vec<(String, String)>,
    #[serde(flatten)]
    body: Body,
}

impl From<RecordedResponse> for ProviderResponse {
    fn from(recorded: RecordedResponse) -> ProviderResponse {
        ProviderResponse {
            status: recorded.status,
            headers: recorded.headers,
            // Checked when the recording was read.
            body: recorded.body.bytes().unwrap_or_default(),
        }
    }
}

impl RecordedExchange {
    pub(crate) fn new(request: &InterceptedRequest, exchange: &Exchange) -> RecordedExchange {
        let (response, failure) = match exchange {
            Exchange::Answered(answer) => (
                Some(RecordedResponse {
                    status: answer.status,
                    headers: answer.headers.clone(),
                    body: Body::new(&answer.body),
                }),
                None,
            ),
            Exchange::Failed(why) => (None, Some(why.clone())),
        };
        RecordedExchange {
            method: request.method.clone(),
            url: request.url.clone(),
            request_headers: request.headers.clone(),
            request_body: Body::new(&request.body),
            response,
            failure,
        }
    }
}

impl Recording {
    pub(crate) fn new(adapter_sha256: String, run: String, events: Vec<Event>) -> Recording {
        Recording {
            format: FORMAT.to_owned(),
            version: VERSION,
            adapter_sha256,
            run,
            events,
        }
    }

    /// Write the recording as pretty JSON.
    pub(crate) fn save(&self, path: &Path) -> Result<(), String> {
        let text = serde_json::to_string_pretty(self).map_err(|e| e.to_string())?;
        std::fs::write(path, text + "\n")
            .map_err(|e| format!("cannot write the recording {}: {e}", path.display()))
    }

    /// Read and check a recording.
    pub(crate) fn load(path: &Path) -> Result<Recording, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the recording {}: {e}", path.display()))?;
        Recording::parse(&text).map_err(|e| format!("recording {}: {e}", path.display()))
    }

    fn parse(text: &str) -> Result<Recording, String> {
        let recording: Recording = serde_json::from_str(text).map_err(|e| e.to_string())?;
        if recording.format != FORMAT {
            return Err(format!(
                "format is {:?}, expected {FORMAT:?}",
                recording.format
            ));
        }
        if recording.version != VERSION {
            return Err(format!(
                "version {} is not supported (this airlock reads version {VERSION})",
                recording.version
            ));
        }
        for (i, event) in recording.events.iter().enumerate() {
            if let Event::Exchange(exchange) = event {
                let bodies = [
                    exchange.request_body.bytes().err(),
                    exchange
                        .response
                        .as_ref()
                        .and_then(|r| r.body.bytes().err()),
                ];
                if let Some(problem) = bodies.into_iter().flatten().next() {
                    return Err(format!("event {}: {problem}", i + 1));
                }
            }
        }
        Ok(recording)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(body: &[u8]) -> InterceptedRequest {
        InterceptedRequest {
            adapter: "a".into(),
            method: "POST".into(),
            url: "https://api.provider.example/v1/databases".into(),
            headers: vec![("authorization".into(), "<secret>".into())],
            body: body.to_vec(),
        }
    }

    #[test]
    fn round_trips_text_and_binary_bodies_and_failures() {
        let events = vec![
            Event::Exchange(Box::new(RecordedExchange::new(
                &request(b"{\"name\":\"x\"}"),
                &Exchange::Answered(ProviderResponse {
                    status: 201,
                    headers: vec![("content-type".into(), "application/json".into())],
                    body: vec![0xff, 0x00, 0x10],
                }),
            ))),
            Event::Exchange(Box::new(RecordedExchange::new(
                &request(b""),
                &Exchange::Failed("connection refused".into()),
            ))),
            Event::Resources { count: Some(3) },
            Event::Resources { count: None },
        ];
        let recording = Recording::new("abc".into(), "r1".into(), events.clone());
        let text = serde_json::to_string(&recording).unwrap();
        assert!(text.contains(r#""bodyBase64":"/wAQ""#), "{text}");
        assert!(text.contains(r#""body":"{\"name\":\"x\"}""#), "{text}");
        let back = Recording::parse(&text).unwrap();
        assert_eq!(back.events, events);
        let Event::Exchange(first) = &back.events[0] else {
            panic!("not an exchange")
        };
        let answer: ProviderResponse = first.response.clone().unwrap().into();
        assert_eq!(answer.body, vec![0xff, 0x00, 0x10]);
    }

    #[test]
    fn refuses_other_formats_versions_and_bad_bodies() {
        let good = Recording::new("abc".into(), "r1".into(), vec![]);
        let mut value = serde_json::to_value(&good).unwrap();
        value["version"] = 9.into();
        assert_eq!(
            Recording::parse(&value.to_string()).unwrap_err(),
            "version 9 is not supported (this airlock reads version 1)"
        );
        value["version"] = 1.into();
        value["format"] = "har".into();
        assert!(
            Recording::parse(&value.to_string())
                .unwrap_err()
                .starts_with("format is \"har\"")
        );
        let bad = r#"{"format":"airlock-check-recording","version":1,"adapterSha256":"x","run":"r",
            "events":[{"kind":"exchange","method":"GET","url":"http://x/","bodyBase64":"!!"}]}"#;
        assert!(
            Recording::parse(bad)
                .unwrap_err()
                .starts_with("event 1: bodyBase64 is not base64")
        );
        assert!(Recording::parse("{").is_err());
    }
}
