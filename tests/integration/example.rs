//! The example adapter through the embedding API.

use std::collections::HashSet;
use std::time::Duration;

use airlock::{Credential, ErrorCode, ErrorOrigin, Operation, Output, Status};
use serde_json::json;

use crate::common::*;

#[tokio::test]
async fn the_whole_contract_through_the_embedding_api() {
    let t = runtime();
    let adapter = load(&t.runtime, EXAMPLE_ADAPTER, "").await;
    let config = example_config(0);

    adapter.validate_config(&config).await.unwrap();
    let params = json!({ "name": "orders", "steps": 4 });
    let first = adapter
        .create(&config, &params, Some("key-1"))
        .await
        .unwrap();
    assert!(first.created);
    assert_eq!(first.idempotency_key.as_deref(), Some("key-1"));
    assert_eq!(first.connection["database"], "orders");
    assert_eq!(first.metadata.as_ref().unwrap()["region"], "eu-west-1");

    let again = adapter
        .create(&config, &params, Some("key-1"))
        .await
        .unwrap();
    assert_eq!(again.instance_id, first.instance_id);
    assert!(!again.created);

    let other = adapter
        .create(&config, &params, Some("key-2"))
        .await
        .unwrap();
    assert_ne!(other.instance_id, first.instance_id);
    assert!(other.created);

    let status = adapter.status(&config, &first.instance_id).await.unwrap();
    assert_eq!(status.status, Status::Success);
    assert_eq!(status.progress.map(|p| (p.current, p.total)), Some((4, 4)));

    match adapter
        .credentials(&config, &first.instance_id)
        .await
        .unwrap()
    {
        Credential::Ephemeral {
            values,
            expires_at_ms,
            ..
        } => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis() as u64;
            assert!(
                expires_at_ms > now && expires_at_ms <= now + 15 * 60 * 1000 + 1000,
                "{expires_at_ms} vs {now}"
            );
            assert!(values["token"].as_str().unwrap().starts_with("tok_"));
        }
        other => panic!("expected an ephemeral credential, got {other:?}"),
    }

    adapter.destroy(&config, &first.instance_id).await.unwrap();
    adapter
        .destroy(&config, &first.instance_id)
        .await
        .expect("destroy is idempotent");
    let after = adapter.status(&config, &first.instance_id).await.unwrap();
    assert_eq!(after.status, Status::Cancelled);
    assert_eq!(after.message.as_deref(), Some("instance was destroyed"));

    let gone = adapter
        .credentials(&config, &first.instance_id)
        .await
        .unwrap_err();
    assert_eq!(gone.error_code, ErrorCode::Permanent);
    assert_eq!(
        gone.message,
        format!("instance {:?} was destroyed", first.instance_id)
    );
}

#[tokio::test]
async fn status_walks_pending_running_success_across_separate_calls() {
    let t = runtime();
    let adapter = load(&t.runtime, EXAMPLE_ADAPTER, "").await;
    let config = example_config(1000);
    let created = adapter
        .create(&config, &json!({ "name": "slow", "steps": 3 }), None)
        .await
        .unwrap();

    let mut seen = Vec::new();
    let mut last_progress = 0;
    for _ in 0..200 {
        let detail = adapter.status(&config, &created.instance_id).await.unwrap();
        let progress = detail
            .progress
            .expect("the example always reports progress");
        assert!(progress.current <= progress.total);
        assert!(progress.current >= last_progress, "progress went backwards");
        last_progress = progress.current;
        if seen.last() != Some(&detail.status) {
            seen.push(detail.status);
        }
        if detail.status.is_terminal() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        seen,
        vec![Status::Pending, Status::Running, Status::Success]
    );
    assert_eq!(last_progress, 3);
}

#[tokio::test]
async fn validate_config_names_the_bad_field() {
    let t = runtime();
    let adapter = load(&t.runtime, EXAMPLE_ADAPTER, "").await;
    let cases = [
        (json!({}), "config.region: required field is missing"),
        (
            json!({ "region": 7 }),
            "config.region: expected a string, got a number",
        ),
        (
            json!({ "region": "mars-1" }),
            "config.region: unsupported region \"mars-1\"; expected one of [\"eu-west-1\", \"us-east-1\", \"ap-south-1\"]",
        ),
        (
            json!({ "region": "us-east-1", "plan": "huge" }),
            "config.plan: unknown plan \"huge\"; expected one of [\"small\", \"medium\", \"large\"]",
        ),
        (
            json!({ "region": "us-east-1", "stepMillis": 99999999 }),
            "config.stepMillis: expected an integer from 0 to 60000, got 99999999",
        ),
    ];
    for (config, message) in cases {
        let error = adapter.validate_config(&config).await.unwrap_err();
        assert_eq!(error.error_code, ErrorCode::Validation, "{config}");
        assert_eq!(error.message, message);
        assert_eq!(error.origin, ErrorOrigin::Adapter);
    }
    let error = adapter
        .create(&example_config(0), &json!({ "steps": 2 }), None)
        .await
        .unwrap_err();
    assert_eq!(
        (error.error_code, error.message.as_str()),
        (
            ErrorCode::Validation,
            "params.name: required field is missing"
        )
    );
}

#[tokio::test]
async fn the_host_refuses_bad_input_before_any_guest_runs() {
    let t = runtime();
    let adapter = load(&t.runtime, EXAMPLE_ADAPTER, "").await;
    let cases = [
        (
            json!([1]),
            Operation::ValidateConfig,
            "config must be a JSON object",
        ),
        (
            example_config(0),
            Operation::Create {
                params: json!("x"),
                idempotency_key: None,
            },
            "params must be a JSON object",
        ),
        (
            example_config(0),
            Operation::Create {
                params: json!({}),
                idempotency_key: Some("k".repeat(257)),
            },
            "idempotency key must be 1 to 256 bytes of printable text",
        ),
        (
            example_config(0),
            Operation::Status {
                instance_id: String::new(),
            },
            "instance id must be 1 to 256 bytes of printable text",
        ),
    ];
    for (config, operation, message) in cases {
        let invocation = adapter.invoke(&config, operation).await;
        let error = invocation.result.unwrap_err();
        assert_eq!(
            (error.error_code, error.message.as_str()),
            (ErrorCode::Validation, message)
        );
        assert_eq!(error.origin, ErrorOrigin::Host);
        assert!(
            !invocation.receipt.instantiated,
            "no instance for refused input"
        );
        assert_eq!(invocation.receipt.fuel_consumed, 0);
    }
}

#[tokio::test]
async fn optional_interfaces_are_detected_and_callable() {
    let t = runtime();
    let adapter = load(&t.runtime, EXAMPLE_ADAPTER, "").await;
    let optional = adapter.info().optional;
    assert!(optional.lifecycle && optional.costs && optional.rotation);
    let config = example_config(0);
    let id = adapter
        .create(&config, &json!({ "name": "opt" }), None)
        .await
        .unwrap()
        .instance_id;

    let paused = adapter.pause(&config, &id).await.unwrap();
    assert_eq!(
        (paused.status, paused.message.as_deref()),
        (Status::Success, Some("paused"))
    );
    let costs = adapter.estimate_costs(&config, &id).await.unwrap();
    assert_eq!(
        (
            costs.currency.as_str(),
            costs.hourly.as_str(),
            costs.monthly.as_str()
        ),
        ("USD", "0.01", "7.30")
    );
    let resumed = adapter.resume(&config, &id).await.unwrap();
    assert_eq!(resumed.message.as_deref(), Some("ready"));
    let costs = adapter.estimate_costs(&config, &id).await.unwrap();
    assert_eq!(
        (costs.hourly.as_str(), costs.monthly.as_str()),
        ("0.04", "29.20")
    );

    let token = |c: Credential| match c {
        Credential::Ephemeral { values, .. } => values["token"].as_str().unwrap().to_owned(),
        other => panic!("expected ephemeral, got {other:?}"),
    };
    let before = token(adapter.credentials(&config, &id).await.unwrap());
    let rotated = token(adapter.rotate_credentials(&config, &id).await.unwrap());
    assert_ne!(before, rotated);
}

#[tokio::test]
async fn an_absent_optional_interface_is_permanent_not_supported() {
    let t = runtime();
    let adapter = load(&t.runtime, HOSTILE_PANIC, "").await;
    assert_eq!(
        adapter.info().optional,
        airlock::OptionalInterfaces::default()
    );
    let config = example_config(0);
    let cases = [
        (
            Operation::Pause {
                instance_id: "i".into(),
            },
            "pause is not supported by this adapter (it does not export `airlock:adapter/lifecycle@0.1.0`)",
        ),
        (
            Operation::EstimateCosts {
                instance_id: "i".into(),
            },
            "estimate-costs is not supported by this adapter (it does not export `airlock:adapter/costs@0.1.0`)",
        ),
        (
            Operation::RotateCredentials {
                instance_id: "i".into(),
            },
            "rotate-credentials is not supported by this adapter (it does not export `airlock:adapter/rotation@0.1.0`)",
        ),
    ];
    for (operation, message) in cases {
        let invocation = adapter.invoke(&config, operation).await;
        let error = invocation.result.unwrap_err();
        assert_eq!(
            (error.error_code, error.message.as_str()),
            (ErrorCode::Permanent, message)
        );
        assert!(!invocation.receipt.instantiated);
    }
}

#[tokio::test]
async fn state_is_shared_through_the_database_file_and_scoped_by_adapter_name() {
    let t = runtime();
    let first = load(&t.runtime, EXAMPLE_ADAPTER, "").await;
    let config = example_config(0);
    let id = first
        .create(&config, &json!({ "name": "shared" }), Some("k"))
        .await
        .unwrap()
        .instance_id;

    // A second runtime on the same directory (as a second process would be) sees it.
    let second_runtime = runtime_in(t.dir.path());
    let second = load(&second_runtime, EXAMPLE_ADAPTER, "").await;
    assert_eq!(
        second.status(&config, &id).await.unwrap().status,
        Status::Success
    );
    let repeat = second
        .create(&config, &json!({ "name": "shared" }), Some("k"))
        .await
        .unwrap();
    assert_eq!(
        (repeat.instance_id.as_str(), repeat.created),
        (id.as_str(), false)
    );

    // The same component under another name has its own, empty, namespace.
    let renamed = load(&t.runtime, EXAMPLE_ADAPTER, "name = \"example-two\"").await;
    assert_eq!(renamed.name(), "example-two");
    let error = renamed.status(&config, &id).await.unwrap_err();
    assert_eq!(
        (error.error_code, error.message),
        (ErrorCode::Permanent, format!("instance {id:?} not found"))
    );
}

#[tokio::test]
async fn concurrent_creates_with_one_key_make_one_instance() {
    let t = runtime();
    let adapter = load(&t.runtime, EXAMPLE_ADAPTER, "").await;
    let config = example_config(0);
    let calls = (0..8).map(|_| {
        let adapter = adapter.clone();
        let config = config.clone();
        tokio::spawn(async move {
            adapter
                .create(&config, &json!({ "name": "race" }), Some("same-key"))
                .await
        })
    });
    let mut ids = HashSet::new();
    let mut created = 0;
    for call in calls {
        let result = call
            .await
            .unwrap()
            .expect("every concurrent create succeeds");
        ids.insert(result.instance_id);
        created += usize::from(result.created);
    }
    assert_eq!(ids.len(), 1, "one instance for one key: {ids:?}");
    assert_eq!(created, 1, "exactly one call reports created");
}

#[tokio::test]
async fn receipts_and_logs_come_back_with_each_call() {
    let t = runtime();
    let adapter = load(
        &t.runtime,
        EXAMPLE_ADAPTER,
        "[limits]\nmemory_mib = 32\nfuel = 50000000\n",
    )
    .await;
    let invocation = adapter
        .invoke(
            &example_config(0),
            Operation::Create {
                params: json!({ "name": "r" }),
                idempotency_key: None,
            },
        )
        .await;
    let Output::Provisioned(result) = ok(invocation.result) else {
        panic!("create returns a provision result")
    };
    let receipt = invocation.receipt;
    assert_eq!(
        (receipt.adapter.as_str(), receipt.operation),
        ("example_adapter", "create")
    );
    assert!(receipt.instantiated);
    assert!(
        receipt.fuel_consumed > 1000 && receipt.fuel_consumed < 50_000_000,
        "{}",
        receipt.fuel_consumed
    );
    assert_eq!(
        (receipt.fuel_limit, receipt.memory_limit_bytes),
        (50_000_000, 32 << 20)
    );
    assert!(receipt.memory_peak_bytes > 0 && receipt.memory_peak_bytes <= 32 << 20);
    assert!(
        receipt.state_ops >= 2,
        "create claims an id and stores the instance"
    );
    assert_eq!(receipt.limit_hit, None);
    assert_eq!(invocation.logs.len(), 1);
    assert_eq!(invocation.logs[0].level, "info");
    assert_eq!(
        invocation.logs[0].message,
        format!("created {} in eu-west-1", result.instance_id)
    );
}
