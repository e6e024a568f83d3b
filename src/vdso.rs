//! The vDSO's dynamic symbols, parsed with goblin. A restored task keeps calling into the
//! vDSO at the addresses it resolved at startup, so the restoring kernel's vDSO must export
//! the same symbols at the same offsets for the moved vDSO to be a drop-in replacement.

/// `(name, offset)` of every defined dynamic symbol, sorted.
pub fn symbols(image: &[u8]) -> Result<Vec<(String, u64)>, String> {
    let elf = goblin::elf::Elf::parse(image).map_err(|e| format!("parse vDSO ELF: {e}"))?;
    let mut out: Vec<(String, u64)> = elf
        .dynsyms
        .iter()
        .filter(|s| s.st_value != 0)
        .filter_map(|s| {
            elf.dynstrtab
                .get_at(s.st_name)
                .map(|n| (n.to_string(), s.st_value))
        })
        .collect();
    out.sort();
    Ok(out)
}

/// Differences between two symbol tables, for the refusal message.
pub fn mismatches(saved: &[(String, u64)], here: &[(String, u64)]) -> Vec<String> {
    saved
        .iter()
        .filter(|s| !here.contains(s))
        .map(|(n, off)| match here.iter().find(|(h, _)| h == n) {
            Some((_, o)) => format!("{n} at {off:#x} (here {o:#x})"),
            None => format!("{n} (missing here)"),
        })
        .collect()
}
