//! Facts about the current call.

use crate::bindings::airlock::adapter::invocation as wit;

/// For a `create` with an idempotency key: the host's stable client token for this
/// (adapter, key), identical on every retry and after a crash of the host. Send it to the
/// provider as its client (idempotency) token, so that no retry can create a second
/// resource. `None` for other operations and for a create without a key.
pub fn client_token() -> Option<String> {
    wit::client_token()
}
