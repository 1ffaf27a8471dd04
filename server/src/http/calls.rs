//! A finished call's record: `GET /v1/calls/{id}`, where `id` is the `Airlock-Call-Id` of
//! a contract call's answer. The record holds the call's receipt and its log records
//! (redacted before they were stored), for [`CALL_RECORD_WINDOW`](crate::upkeep::CALL_RECORD_WINDOW)
//! after the call. Only the caller's own: another tenant's call answers 404, as an unknown
//! or expired one.

use airlock::storage::service::CallRecord;
use axum::Json;
use axum::extract::{Extension, Path, State};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::{ApiError, ApiErrorBody, AppState, Caller};

/// `GET /v1/calls/{id}`'s answer.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CallView {
    /// The call id (`Airlock-Call-Id` of the call's answer).
    call_id: String,
    /// The adapter called.
    adapter: String,
    /// The operation: `create`, `get`, `update`, `destroy`, …
    operation: String,
    /// The call's receipt, as the runtime wrote it (docs/receipts.md).
    #[schema(value_type = Object)]
    receipt: Value,
    /// The call's log records, oldest first, redacted before they were stored: each
    /// `{"level", "message", "fields"?, …}`.
    #[schema(value_type = Vec<Object>)]
    logs: Value,
    /// When the call finished, unix milliseconds.
    at_ms: i64,
}

impl CallView {
    fn new(record: CallRecord) -> CallView {
        // The rows are the service's own JSON; a row that is not (a bug, a hand edit) is
        // still answered, its text kept as a string rather than lost.
        let json = |text: String| serde_json::from_str(&text).unwrap_or(Value::String(text));
        CallView {
            call_id: record.call_id,
            adapter: record.adapter,
            operation: record.operation,
            receipt: json(record.receipt),
            logs: json(record.logs),
            at_ms: record.at_ms,
        }
    }
}

/// A finished call of the caller's: its receipt and log records.
#[utoipa::path(get, path = "/v1/calls/{id}", tag = "calls", operation_id = "call",
    params(("id" = String, Path, description = "The call id: `Airlock-Call-Id` of the call's answer")),
    responses(
        (status = 200, description = "The call's record", body = CallView),
        (status = 401, description = "No valid API key", body = ApiErrorBody),
        (status = 404, description = "No such call of the caller's, or its record expired", body = ApiErrorBody),
    ))]
pub(super) async fn one(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<CallView>, ApiError> {
    // A call this node answered may still be queued for writing: read it back all the same.
    state.recorder.flush().await;
    match state.store.call(&caller.tenant, &id).await? {
        Some(record) => Ok(Json(CallView::new(record))),
        None => Err(ApiError::not_found(format!(
            "no call {id:?}: a record is kept for 24 hours after the call, and only its tenant sees it"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use airlock::storage::service::CallRecord;
    use serde_json::{Value, json};

    use super::super::events::tests::{TestService, backends};
    use crate::upkeep::CALL_RECORD_WINDOW;

    #[tokio::test]
    async fn a_call_record_is_its_tenants_only() {
        for database in backends("a_call_record_is_its_tenants_only") {
            let service = TestService::start(database).await;
            let receipt = json!({"operation": "create", "outcome": "ok", "durationMs": 12});
            let logs = json!([{"level": "info", "message": "created", "fields": {"zone": "z1"}}]);
            service
                .store
                .call_put(
                    &CallRecord {
                        call_id: "call_000000000000000000000001".to_owned(),
                        tenant: "acme".to_owned(),
                        adapter: "dns".to_owned(),
                        operation: "create".to_owned(),
                        receipt: receipt.to_string(),
                        logs: logs.to_string(),
                        at_ms: 0,
                    },
                    CALL_RECORD_WINDOW,
                )
                .await
                .unwrap();
            let path = "/v1/calls/call_000000000000000000000001";

            let answer = service.get(path, &service.acme, &[]).await;
            assert_eq!(answer.status(), 200);
            let body: Value = answer.json().await.unwrap();
            assert_eq!(body["callId"], "call_000000000000000000000001");
            assert_eq!(body["adapter"], "dns");
            assert_eq!(body["operation"], "create");
            assert_eq!(body["receipt"], receipt);
            assert_eq!(body["logs"], logs);
            assert!(body["atMs"].as_i64().unwrap() > 0, "{body}");

            // An expired record: gone for its own tenant too.
            let mut expired = service
                .store
                .call("acme", "call_000000000000000000000001")
                .await
                .unwrap()
                .unwrap();
            expired.call_id = "call_000000000000000000000003".to_owned();
            service
                .store
                .call_put(&expired, std::time::Duration::from_millis(1))
                .await
                .unwrap();
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;

            // Another tenant's, one that never was, an expired one: the same 404.
            for (key, path) in [
                (&service.globex, path),
                (&service.acme, "/v1/calls/call_000000000000000000000002"),
                (&service.acme, "/v1/calls/call_000000000000000000000003"),
            ] {
                let answer = service.get(path, key, &[]).await;
                assert_eq!(answer.status(), 404, "{path}");
                let body: Value = answer.json().await.unwrap();
                assert_eq!(body["error"]["code"], "not_found", "{body}");
            }
            service.stop().await;
        }
    }
}
