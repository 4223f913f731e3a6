//! A hash for names and shards that both `movie` (output names) and
//! `dataset` (shards) use, kept apart so that neither imports the other.

/// FNV-1a, 64-bit: a hash fixed across platforms, releases and processes
/// (std's `DefaultHasher` is none of these), for shard assignment and names.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The published FNV-1a test vectors: the shard of a file must never
    /// change between releases or machines.
    #[test]
    fn fnv1a64_matches_the_reference_vectors() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }
}
