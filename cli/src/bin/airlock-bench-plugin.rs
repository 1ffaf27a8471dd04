//! A native plugin run as one process per call, the way Terraform-style plugin systems run
//! providers: the baseline of the "process per call" rows of
//! `cargo bench -p airlock-cli --bench compare`. It reads one request from stdin, does the
//! same work as the benchmark adapters' `status` (`cli/benches/compare/native.rs`), writes
//! one answer to stdout and exits. Not part of Airlock's interface.
//!
//! Request: `{"adapter": "constant"|"example", "config": "<json text>", "instanceId": "…",
//! "state": {"key": "value text", …}}`. Answer: the status detail as JSON, or
//! `{"error": "…"}` with exit status 1.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::process::ExitCode;

use serde::Deserialize;

#[path = "../../benches/compare/native.rs"]
#[allow(dead_code)]
mod native;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Request {
    adapter: String,
    config: String,
    #[serde(default)]
    instance_id: String,
    #[serde(default)]
    state: HashMap<String, String>,
}

fn answer(input: &str) -> Result<String, String> {
    let request: Request = serde_json::from_str(input).map_err(|e| e.to_string())?;
    let detail = match request.adapter.as_str() {
        "constant" => native::constant_status(&request.config)?,
        "example" => native::example_status(&request.config, &request.instance_id, |key| {
            request.state.get(key).map(|v| v.as_bytes().to_vec())
        })?,
        other => return Err(format!("unknown adapter {other:?}")),
    };
    serde_json::to_string(&detail).map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    let mut input = String::new();
    let result = std::io::stdin()
        .read_to_string(&mut input)
        .map_err(|e| e.to_string())
        .and_then(|_| answer(&input));
    let mut stdout = std::io::stdout().lock();
    match result {
        Ok(json) => {
            let _ = writeln!(stdout, "{json}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            let _ = writeln!(stdout, "{}", serde_json::json!({ "error": error }));
            ExitCode::FAILURE
        }
    }
}
