//! Who holds a claim: a node, a process on it (pid and start time) and a call in it.
//!
//! The process part lets a caller on the same host see at once that a claim's holder is
//! gone (its pid no longer runs, or runs a process started at another time: the pid was
//! reused) and take the claim over without waiting out the lease. Across nodes only the
//! lease can tell, so there the next caller waits at most one lease length after the last
//! heartbeat.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// The holder of a claim.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Owner {
    /// The node: `RuntimeConfig::node_id`, by default this host's name and boot id, so
    /// that a process id means the same process to every runtime on this node.
    pub node: String,
    /// The process id.
    pub pid: u32,
    /// When the process started, in clock ticks after boot (Linux `/proc/PID/stat`); 0
    /// where that cannot be read, and then the process is never judged dead by its pid.
    pub started: u64,
    /// The call within the process, unique per process.
    pub call: u64,
}

static CALLS: AtomicU64 = AtomicU64::new(1);

impl Owner {
    /// This process, a new call id, on `node`.
    pub fn this_call(node: &str) -> Owner {
        Owner {
            node: node.to_owned(),
            pid: std::process::id(),
            started: *own_start_time(),
            call: CALLS.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// The call id as stored: `pid.started.call`, unique across the processes of a node.
    pub fn call_id(&self) -> String {
        format!("{}.{}.{}", self.pid, self.started, self.call)
    }

    /// Parse [`Owner::call_id`] back, with the node it was stored beside.
    pub fn from_stored(node: &str, call_id: &str) -> Option<Owner> {
        let mut parts = call_id.splitn(3, '.');
        Some(Owner {
            node: node.to_owned(),
            pid: parts.next()?.parse().ok()?,
            started: parts.next()?.parse().ok()?,
            call: parts.next()?.parse().ok()?,
        })
    }

    /// Whether this holder's process is certainly gone, as seen from `observer` (a call
    /// of this process): only on the same node, and only where the start time is known.
    pub fn is_dead(&self, observer: &Owner) -> bool {
        if self.node != observer.node || self.started == 0 || observer.started == 0 {
            return false;
        }
        if self.pid == observer.pid && self.started == observer.started {
            return false;
        }
        match start_time_of(self.pid) {
            None => true,
            Some(started) => started != self.started,
        }
    }
}

/// This host's default node id: its name and its boot id, so a reboot (which reuses pids)
/// makes a new node.
pub(crate) fn default_node_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|name| name.trim().to_owned())
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".to_owned());
    match std::fs::read_to_string("/proc/sys/kernel/random/boot_id") {
        Ok(boot) => format!("{host}/{}", boot.trim()),
        Err(_) => host,
    }
}

fn own_start_time() -> &'static u64 {
    static START: OnceLock<u64> = OnceLock::new();
    START.get_or_init(|| start_time_of(std::process::id()).unwrap_or(0))
}

/// Field 22 of `/proc/PID/stat` (start time in clock ticks after boot); `None` if no such
/// process.
fn start_time_of(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: count after it.
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_live_process_is_alive_and_a_gone_or_reused_pid_is_dead() {
        let me = Owner::this_call("n");
        assert!(me.started > 0, "this test needs /proc");
        assert!(!me.is_dead(&Owner::this_call("n")));
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let other = Owner {
            pid: child.id(),
            started: start_time_of(child.id()).unwrap(),
            ..me.clone()
        };
        assert!(!other.is_dead(&me));
        // The same pid with another start time is another process.
        let reused = Owner {
            started: other.started + 1,
            ..other.clone()
        };
        assert!(reused.is_dead(&me));
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(other.is_dead(&me));
        // Another node's process is never judged from here.
        let remote = Owner {
            node: "elsewhere".into(),
            ..other.clone()
        };
        assert!(!remote.is_dead(&me));
        let stored = Owner::from_stored("n", &me.call_id()).unwrap();
        assert_eq!(stored, me);
    }
}
