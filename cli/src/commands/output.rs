//! How the CLI prints results and receipts.

use airlock::{AdapterError, Receipt};
use serde_json::json;

/// The seed's error shape.
pub(crate) fn error_json(error: &AdapterError) -> serde_json::Value {
    let mut value = json!({ "errorCode": error.error_code, "message": error.message });
    if let Some(raw) = &error.raw {
        value["raw"] = raw.clone();
    }
    value
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// A one-line summary of a receipt.
pub(crate) fn receipt_line(receipt: &Receipt) -> String {
    let mut line = format!(
        "{} in {:.2} ms · fuel {}/{} · memory {}/{}",
        receipt.operation,
        receipt.wall_time_us as f64 / 1000.0,
        receipt.fuel_consumed,
        receipt.fuel_limit,
        mib(receipt.memory_peak_bytes),
        mib(receipt.memory_limit_bytes),
    );
    match receipt.idempotency {
        Some("replayed") => line.push_str(" · answered from the idempotency record, no instance"),
        Some("resumed") => {
            line.push_str(" · took over the key from a call that crashed or stalled")
        }
        Some("fenced") => line.push_str(
            " · another call took the key over before this one recorded; its record is the answer",
        ),
        _ => {}
    }
    if receipt.http_requests > 0 {
        line.push_str(&format!(" · http requests {}", receipt.http_requests));
    }
    if receipt.redactions > 0 {
        line.push_str(&format!(
            " · {} secret value(s) redacted",
            receipt.redactions
        ));
    }
    if receipt.state_ops > 0 {
        line.push_str(&format!(" · state ops {}", receipt.state_ops));
    }
    if let Some(limit) = receipt.limit_hit {
        line.push_str(&format!(" · stopped by the {} limit", limit.as_str()));
    }
    line
}
