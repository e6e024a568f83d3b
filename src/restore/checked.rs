//! Pages files checked as memory is filled from them: a large image's crc32 is not
//! taken in a pass of its own before the restore (which read every byte twice: once to
//! check it, once to fill memory), but summed over the very buffers the fill copies into
//! the restored processes (`memory.rs`), and compared with each file's header once the
//! tree is built, before any of its processes runs.
//!
//! What this module owns: which files are left to the fill, the sums the fillers hand
//! in, and the final check. A file the fill did not cover exactly (an address space not
//! filled from its pages files) is read whole at the check, as before. Ordering
//! requirements: [`Checked::finish`] returns before the tree is resumed, and an error
//! from it kills the tree (`restore_with`); so a corrupt page is never run, though
//! the processes of a large image exist, stopped, before it is refused.

use std::path::Path;
use std::sync::Mutex;

use super::RestoreError;
use crate::abi::PAGE_SIZE;
use crate::image::pages::{Sum, Unverified};
use crate::image::ProcessImage;

/// The pages of an address space at least this large are checked as they are filled:
/// below it, the pass before the restore costs little and a corrupt image is refused
/// before any process exists.
pub const WHILE_FILLING_MIN: u64 = 32 << 20;

/// Whether `p`'s pages files are left to the fill (see [`WHILE_FILLING_MIN`]).
pub fn while_filling(p: &ProcessImage) -> bool {
    p.mm.pages() * PAGE_SIZE >= WHILE_FILLING_MIN
}

/// The files whose crc is still to be checked, and the sums handed in for each.
#[derive(Debug, Default)]
pub struct Checked {
    files: Vec<(Unverified, Mutex<Vec<Sum>>)>,
}

impl Checked {
    pub fn new(files: Vec<Unverified>) -> Checked {
        let files = (files.into_iter())
            .map(|f| (f, Mutex::new(Vec::new())))
            .collect();
        Checked { files }
    }

    /// The sums of `path`, if its crc is left to the fill.
    pub fn sums(&self, path: &Path) -> Option<Sums<'_>> {
        (self.files.iter())
            .find(|(f, _)| f.path == path)
            .map(|(_, sums)| Sums(sums))
    }

    /// Checks every file: its sums if they cover it, else by reading it.
    pub fn finish(&self) -> Result<(), RestoreError> {
        let _s = crate::profile::span("pages checked after filling");
        for (file, sums) in &self.files {
            let sums = std::mem::take(&mut *sums.lock().unwrap_or_else(|p| p.into_inner()));
            file.check(sums)?;
        }
        Ok(())
    }
}

/// Where the fillers of one pages file hand in the sums of what they copied.
#[derive(Clone, Copy, Debug)]
pub struct Sums<'a>(&'a Mutex<Vec<Sum>>);

impl Sums<'_> {
    /// Adds the sum of the data bytes `at..at + len` (`at` 0 at the first page).
    pub fn add(&self, sum: Sum) {
        let mut all = self.0.lock().unwrap_or_else(|p| p.into_inner());
        all.push(sum);
    }
}
