//! The one sysctl the service touches: IPv4 forwarding, which bridged containers need to
//! reach beyond the host (Docker turns it on too).
use crate::{Error, Result};

const IP_FORWARD: &str = "/proc/sys/net/ipv4/ip_forward";

/// Sets `net.ipv4.ip_forward=1` unless it already is; called when a bridge is created.
pub fn enable_ip_forward() -> Result<()> {
    let now = std::fs::read_to_string(IP_FORWARD)
        .map_err(|e| Error::sys(format!("read {IP_FORWARD}"), e))?;
    if now.trim() == "1" {
        return Ok(());
    }
    tracing::info!("enabling net.ipv4.ip_forward for bridge networks");
    std::fs::write(IP_FORWARD, "1").map_err(|e| Error::sys(format!("write {IP_FORWARD}"), e))
}
