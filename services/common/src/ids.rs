//! Random identifiers: 64 lower-case hex characters, like Docker's container IDs.
use std::io::Read;

pub fn random_id() -> String {
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .expect("read /dev/urandom");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The 12-character short form shown by `ps` and used as the default hostname.
pub fn short_id(id: &str) -> &str {
    &id[..id.len().min(12)]
}

/// True for a 64-hex ID.
pub fn is_full_id(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_ids_are_full_and_distinct() {
        let a = random_id();
        let b = random_id();
        assert!(is_full_id(&a), "{a}");
        assert_ne!(a, b);
        assert_eq!(short_id(&a).len(), 12);
    }
}
