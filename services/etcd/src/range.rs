//! Key ranges: etcd addresses "every key under a prefix" as the half-open range
//! `[prefix, range_end)`.

/// The end of the range holding every key that starts with `prefix`: the prefix with its last
/// byte below 0xff incremented and what follows dropped ("a/b" → "a/c", "a\xff" → "b"). When
/// there is no such byte (empty prefix, or only 0xff bytes) the range has no upper bound,
/// which etcd spells `"\0"`.
pub fn prefix_range_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// `(key, range_end)` of a prefix request; the empty prefix means every key (`"\0"`, `"\0"`).
pub(crate) fn prefix_range(prefix: &str) -> (Vec<u8>, Vec<u8>) {
    if prefix.is_empty() {
        return (vec![0], vec![0]);
    }
    (
        prefix.as_bytes().to_vec(),
        prefix_range_end(prefix.as_bytes()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn increments_the_last_byte() {
        assert_eq!(prefix_range_end(b"/berth/networks/"), b"/berth/networks0");
        assert_eq!(prefix_range_end(b"a"), b"b");
        assert_eq!(prefix_range_end(b"aa"), b"ab");
    }

    #[test]
    fn drops_trailing_0xff() {
        assert_eq!(prefix_range_end(b"a\xff"), b"b");
        assert_eq!(prefix_range_end(b"a\xfe\xff\xff"), b"a\xff");
    }

    #[test]
    fn unbounded_without_an_incrementable_byte() {
        assert_eq!(prefix_range_end(b""), b"\0");
        assert_eq!(prefix_range_end(b"\xff\xff"), b"\0");
    }

    #[test]
    fn empty_prefix_is_every_key() {
        assert_eq!(prefix_range(""), (vec![0], vec![0]));
        assert_eq!(prefix_range("k/"), (b"k/".to_vec(), b"k0".to_vec()));
    }

    #[test]
    fn range_holds_exactly_the_prefixed_keys() {
        let prefix = b"/net/a/";
        let end = prefix_range_end(prefix);
        let inside = |k: &[u8]| k >= &prefix[..] && k < &end[..];
        assert!(inside(b"/net/a/"));
        assert!(inside(b"/net/a/x"));
        assert!(inside(b"/net/a/\xff\xff"));
        assert!(!inside(b"/net/a"));
        assert!(!inside(b"/net/a0"));
        assert!(!inside(b"/net/b/"));
    }
}
