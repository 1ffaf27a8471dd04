//! The `secrets` capability. Secrets are granted to an adapter by name in its policy and
//! reach the guest only as opaque handles. This runtime version grants none yet, so every
//! request is denied with a typed error the guest can report (the SDK turns it into
//! `AUTH`); the handle type and the resource plumbing are here so that granting is a change
//! of policy, not of the WIT.

use wasmtime::component::{Resource, ResourceTable};

use crate::bindings::airlock::adapter::secrets::{Host, HostSecret, SecretError};

/// The host's side of a secret handle: which granted secret it stands for.
pub struct SecretHandle {
    name: String,
}

/// The secrets granted to one adapter.
pub(crate) struct SecretBroker {
    adapter: String,
}

impl SecretBroker {
    /// A broker that grants nothing.
    pub(crate) fn deny_all(adapter: &str) -> Self {
        SecretBroker {
            adapter: adapter.to_owned(),
        }
    }
}

/// What the `secrets` host functions see of a call.
pub(crate) struct SecretsView<'a> {
    pub(crate) broker: &'a mut SecretBroker,
    pub(crate) table: &'a mut ResourceTable,
}

impl Host for SecretsView<'_> {
    async fn get(
        &mut self,
        name: String,
    ) -> wasmtime::Result<Result<Resource<SecretHandle>, SecretError>> {
        tracing::info!(target: "airlock::secrets", adapter = %self.broker.adapter, secret = %name, "secret denied");
        Ok(Err(SecretError::NotGranted(format!(
            "secret {name:?} is not granted to adapter {:?}: this runtime grants no secrets yet",
            self.broker.adapter
        ))))
    }

    async fn reveal(
        &mut self,
        secret: Resource<SecretHandle>,
    ) -> wasmtime::Result<Result<String, SecretError>> {
        let name = self.table.get(&secret)?.name.clone();
        Ok(Err(SecretError::RevealDenied(format!(
            "revealing secret {name:?} is not allowed for adapter {:?}",
            self.broker.adapter
        ))))
    }
}

impl HostSecret for SecretsView<'_> {
    async fn name(&mut self, secret: Resource<SecretHandle>) -> wasmtime::Result<String> {
        Ok(self.table.get(&secret)?.name.clone())
    }

    async fn drop(&mut self, secret: Resource<SecretHandle>) -> wasmtime::Result<()> {
        self.table.delete(secret)?;
        Ok(())
    }
}
