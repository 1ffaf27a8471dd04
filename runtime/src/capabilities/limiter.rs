//! Memory and table caps of one call (a wasmtime `ResourceLimiter`), and the record of
//! which limit stopped it. Growth past a cap traps at once with [`LimitExceeded`], rather
//! than failing the grow and letting the guest turn that into an unrelated abort, so the
//! caller always learns which limit fired.

use std::fmt;

use crate::contract::LimitKind;

/// The error a limit raises inside wasmtime; the call maps it to `LIMIT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LimitExceeded {
    pub(crate) kind: LimitKind,
    pub(crate) message: String,
}

impl fmt::Display for LimitExceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for LimitExceeded {}

/// Tracks linear memory (all memories of the instance together) and table sizes.
pub(crate) struct CallLimiter {
    memory_limit: u64,
    table_limit: u64,
    memory_in_use: u64,
    pub(crate) memory_peak: u64,
    pub(crate) exceeded: Option<LimitExceeded>,
}

impl CallLimiter {
    pub(crate) fn new(memory_limit: u64, table_limit: u64) -> Self {
        CallLimiter {
            memory_limit,
            table_limit,
            memory_in_use: 0,
            memory_peak: 0,
            exceeded: None,
        }
    }

    fn refuse(&mut self, kind: LimitKind, message: String) -> wasmtime::Result<bool> {
        let error = LimitExceeded { kind, message };
        self.exceeded = Some(error.clone());
        Err(error.into())
    }
}

impl wasmtime::ResourceLimiter for CallLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let in_use = self.memory_in_use - current as u64 + desired as u64;
        if in_use > self.memory_limit {
            return self.refuse(
                LimitKind::Memory,
                format!(
                    "memory limit of {} MiB exceeded: the adapter asked for {} MiB",
                    self.memory_limit / (1024 * 1024),
                    in_use.div_ceil(1024 * 1024)
                ),
            );
        }
        self.memory_in_use = in_use;
        self.memory_peak = self.memory_peak.max(in_use);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired as u64 > self.table_limit {
            return self.refuse(
                LimitKind::Table,
                format!(
                    "table limit of {} elements exceeded: the adapter asked for {desired}",
                    self.table_limit
                ),
            );
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtime::ResourceLimiter;

    #[test]
    fn memory_is_summed_across_memories_and_capped() {
        let mib = 1024 * 1024;
        let mut limiter = CallLimiter::new(4 * mib as u64, 100);
        assert!(limiter.memory_growing(0, 2 * mib, None).unwrap());
        assert!(limiter.memory_growing(0, mib, None).unwrap());
        assert_eq!(limiter.memory_peak, 3 * mib as u64);
        let err = limiter.memory_growing(mib, 3 * mib, None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "memory limit of 4 MiB exceeded: the adapter asked for 5 MiB"
        );
        assert_eq!(
            limiter.exceeded.as_ref().map(|e| e.kind),
            Some(LimitKind::Memory)
        );
    }

    #[test]
    fn tables_are_capped() {
        let mut limiter = CallLimiter::new(1 << 20, 100);
        assert!(limiter.table_growing(0, 100, None).unwrap());
        assert!(limiter.table_growing(100, 101, None).is_err());
    }
}
