//! `/proc/PID/auxv`: the ELF auxiliary vector the kernel gave the process at exec.
//!
//! Owns only the framing: native-endian `u64` words in `(type, value)` pairs ending with the
//! `AT_NULL` pair. What the entries mean (`AT_SYSINFO_EHDR`, `AT_HWCAP2`...) is for `dump`.

/// Splits the bytes into native-endian words and stops after the `(0, 0)` `AT_NULL` pair,
/// which is included. Without one, every whole pair is returned; a trailing partial
/// word or odd word is dropped.
pub fn parse_auxv(bytes: &[u8]) -> Vec<u64> {
    let mut words = Vec::new();
    for pair in bytes.chunks_exact(16) {
        let (kind, value) = pair.split_at(8);
        words.extend([word(kind), word(value)]);
        if word(kind) == 0 {
            break;
        }
    }
    words
}

fn word(bytes: &[u8]) -> u64 {
    u64::from_ne_bytes(
        bytes
            .try_into()
            .expect("chunks_exact(16) halves are 8 bytes"),
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;

    /// The auxv of a dynamically linked C program.
    const VICTIM: &[u8] = include_bytes!("testdata/victim.auxv");

    fn pairs(words: &[u64]) -> Vec<(u64, u64)> {
        words.chunks(2).map(|p| (p[0], p[1])).collect()
    }

    #[test]
    fn victim_vector_ends_with_at_null() {
        let words = parse_auxv(VICTIM);
        assert_eq!(words.len(), VICTIM.len() / 8);
        let pairs = pairs(&words);
        assert_eq!(pairs.last(), Some(&(0, 0)));
        assert!(pairs.contains(&(libc::AT_PAGESZ, 4096)));
        assert!(pairs.contains(&(libc::AT_SECURE, 0)));
        let vdso = pairs.iter().find(|(k, _)| *k == libc::AT_SYSINFO_EHDR);
        assert_eq!(vdso, Some(&(libc::AT_SYSINFO_EHDR, 0x7f44_5ae9_4000)));
    }

    #[test]
    fn stops_after_at_null_and_ignores_padding() {
        let mut bytes = VICTIM.to_vec();
        bytes.extend_from_slice(&[0xaa; 37]);
        assert_eq!(parse_auxv(&bytes), parse_auxv(VICTIM));
    }

    #[test]
    fn truncated_vector_keeps_whole_pairs() {
        let words = parse_auxv(&VICTIM[..16 * 3 + 9]);
        assert_eq!(words.len(), 6);
        assert_eq!(words[..], parse_auxv(VICTIM)[..6]);
        assert!(parse_auxv(&[]).is_empty());
    }
}
