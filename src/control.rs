//! The control socket's protocol, shared by the daemon (which answers,
//! `daemon::server::control`) and `spawnd status` (which asks,
//! `cli::status`): where the socket is by default, and the one JSON
//! document spawnd writes to each client.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
pub struct Report {
    pub pid: u32,
    pub version: String,
    /// The configuration directory this spawnd serves (absolute).
    #[serde(default)]
    pub config_dir: String,
    pub children: usize,
    pub services: Vec<ServiceReport>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ServiceReport {
    pub name: String,
    /// listening, paused, paused_rate, handed_off, retired; `failed` (not
    /// running: its file does not check, or it could not be bound) and
    /// `kept` (running on its previous definition after a reload that could
    /// not apply its new one), both with a `reason`.
    pub state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// `FILE:LINE` for a service of an included inetd.conf or xinetd file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    pub listen: Vec<String>,
    pub children: u32,
    pub accepted: u64,
    pub refused_access: u64,
    pub refused_limits: u64,
    pub spawn_failures: u64,
    pub abnormal_exits: u64,
    /// In-process connections (internal services, redirect) ended by
    /// `timeout`, `idle_timeout` or `connect_timeout`.
    #[serde(default)]
    pub timeouts: u64,
    /// Datagrams a wait-mode program exited without reading (dropped).
    #[serde(default)]
    pub unread_datagrams: u64,
}

/// The configuration directory a spawnd serves by default.
pub const SYSTEM_CONFIG_DIR: &str = "/etc/spawnd";

/// Where the control socket lives when `spawnd.yaml` does not say: one per
/// configuration directory, so that two spawnds (the system's and a test
/// instance, say) never share one. `/etc/spawnd` keeps `control.sock`;
/// any other directory gets `control-HASH.sock`, from its absolute path.
pub fn default_socket(config_dir: &std::path::Path) -> PathBuf {
    let base = if nix::unistd::geteuid().is_root() {
        PathBuf::from("/run/spawnd")
    } else {
        match std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
            Some(dir) => PathBuf::from(dir).join("spawnd"),
            None => PathBuf::from(format!("/tmp/spawnd-{}", nix::unistd::geteuid())),
        }
    };
    base.join(socket_name(&absolute(config_dir)))
}

/// `control.sock` for the system directory, else `control-HASH.sock`.
fn socket_name(config_dir: &std::path::Path) -> String {
    if config_dir == std::path::Path::new(SYSTEM_CONFIG_DIR) {
        return "control.sock".to_string();
    }
    // FNV-1a: stable across builds and processes (std's hashers are not).
    use std::os::unix::ffi::OsStrExt;
    let hash = config_dir
        .as_os_str()
        .as_bytes()
        .iter()
        .fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
            (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3)
        });
    format!("control-{hash:016x}.sock")
}

/// `dir` made absolute and free of links, as spawnd itself does at start.
pub fn absolute(dir: &std::path::Path) -> PathBuf {
    std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_configuration_directory_has_its_own_default_socket() {
        assert_eq!(
            socket_name(std::path::Path::new("/etc/spawnd")),
            "control.sock"
        );
        let a = socket_name(std::path::Path::new("/srv/test/spawnd"));
        let b = socket_name(std::path::Path::new("/srv/test/spawnd2"));
        assert!(a.starts_with("control-") && a.ends_with(".sock"), "{a}");
        assert_ne!(a, b);
        // Stable: the same name in every process and build.
        assert_eq!(a, socket_name(std::path::Path::new("/srv/test/spawnd")));
        assert_eq!(
            socket_name(std::path::Path::new("/")),
            "control-af63a24c860189fe.sock"
        );
    }
}
