//! The `invocation` capability: facts about the current call — today, the stable client
//! token of an idempotent create (see the dedupe stage of [`crate::call`]).

use crate::bindings::airlock::adapter::invocation::Host;

/// What the guest may learn about its call.
pub(crate) struct InvocationFacts {
    pub(crate) client_token: Option<String>,
}

impl Host for InvocationFacts {
    async fn client_token(&mut self) -> wasmtime::Result<Option<String>> {
        Ok(self.client_token.clone())
    }
}
