//! Applies process.capabilities: the bounding set shrinks to the spec's set (never
//! asking for what the host does not have), then the other sets follow.
use caps::{CapSet, Capability, CapsHashSet};
use oci_spec::runtime::LinuxCapabilities;

use crate::error::{Error, Result};

fn convert(set: &Option<oci_spec::runtime::Capabilities>) -> CapsHashSet {
    let mut out = CapsHashSet::new();
    for c in set.iter().flatten() {
        // oci-spec's enum serializes to the canonical "CAP_X" name that caps parses.
        if let Ok(serde_json::Value::String(name)) = serde_json::to_value(c) {
            if let Ok(cap) = name.parse::<Capability>() {
                out.insert(cap);
            }
        }
    }
    out
}

fn err(what: &str, e: caps::errors::CapsError) -> Error {
    Error::Spec(format!("set {what} capabilities: {e}"))
}

/// Drops everything outside the spec's bounding set. Runs while still root.
pub fn drop_bounding(c: &LinuxCapabilities) -> Result<()> {
    let keep = convert(c.bounding());
    let current = caps::read(None, CapSet::Bounding).map_err(|e| err("bounding", e))?;
    for cap in current.difference(&keep) {
        caps::drop(None, CapSet::Bounding, *cap).map_err(|e| err("bounding", e))?;
    }
    Ok(())
}

/// Sets inheritable, effective, permitted and ambient after the uid change (which ran
/// with PR_SET_KEEPCAPS). Order matters: effective must stay within permitted.
pub fn apply(c: &LinuxCapabilities) -> Result<()> {
    let bounding = caps::read(None, CapSet::Bounding).map_err(|e| err("bounding", e))?;
    let within = |s: CapsHashSet| -> CapsHashSet { s.intersection(&bounding).copied().collect() };
    let permitted = within(convert(c.permitted()));
    let effective: CapsHashSet = within(convert(c.effective()))
        .intersection(&permitted)
        .copied()
        .collect();
    let inheritable = within(convert(c.inheritable()));
    caps::set(None, CapSet::Inheritable, &inheritable).map_err(|e| err("inheritable", e))?;
    caps::set(None, CapSet::Effective, &effective).map_err(|e| err("effective", e))?;
    caps::set(None, CapSet::Permitted, &permitted).map_err(|e| err("permitted", e))?;
    let ambient: CapsHashSet = convert(c.ambient())
        .into_iter()
        .filter(|a| permitted.contains(a) && inheritable.contains(a))
        .collect();
    if !ambient.is_empty() {
        caps::set(None, CapSet::Ambient, &ambient).map_err(|e| err("ambient", e))?;
    }
    Ok(())
}
