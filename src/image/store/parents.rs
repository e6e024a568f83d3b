//! The parents of an incremental stored image (`dump --prev-images-dir` with
//! `--compress`, `--encrypt-key`, `--sign`): each ancestor is opened and verified as the
//! image itself is (signature, manifest, every file; with `--require-signature`, every
//! image of the chain must be signed by that key) before any process is created, and
//! the chain is laid out so that `load` finds each parent: an image decoded into a
//! private copy gets its `chain.img` rewritten there to name its parent's opened
//! directory (absolute), and a plain image whose parent had to be opened that way is
//! laid out as links to its files beside such a rewritten `chain.img`. A chain of plain
//! images is left as it is (`load` resolves and verifies it in place).

use std::path::Path;

use super::{OpenOptions, Opened, StoreError, TempDir};
use crate::image::chain::{self, ChainImage, CHAIN};
use crate::image::file::{encode, Kind};

/// Longest chain of parents followed (as `image::chain`).
const MAX_DEPTH: usize = 64;

/// Opens the ancestors of `opened` (the image in `dir`), each verified, and lays out
/// `opened` so that its `chain.img` names its opened parent.
pub(super) fn open(
    opened: &mut Opened,
    dir: &Path,
    opts: &OpenOptions,
    depth: usize,
) -> Result<(), StoreError> {
    let Some(record) = chain::load(opened.dir())? else {
        return Ok(());
    };
    let Some(parent) = &record.parent else {
        return Ok(());
    };
    if depth >= MAX_DEPTH {
        let what = format!("chain of parents longer than {MAX_DEPTH}");
        return Err(StoreError::sealed(dir.join(CHAIN), what));
    }
    let pdir = chain::parent_dir(dir, parent);
    // Ancestors' pages are read by stasis itself, from files: decoded, never deferred.
    let mut popened = super::open_one(&pdir, opts, false)?;
    open(&mut popened, &pdir, opts, depth + 1)?;
    if popened.dir() != pdir.as_path() {
        let target =
            std::path::absolute(popened.dir()).map_err(StoreError::io("resolve", popened.dir()))?;
        relink(opened, dir, &record, &target)?;
    }
    opened.parents.push(popened);
    Ok(())
}

/// Makes `opened`'s `chain.img` name `parent`: rewritten in its private copy, or (an
/// image opened in place) in a new directory of links to its files.
fn relink(
    opened: &mut Opened,
    dir: &Path,
    record: &ChainImage,
    parent: &Path,
) -> Result<(), StoreError> {
    if !opened.copy {
        let temp = TempDir::new("chain")?;
        let links = temp.path().join("image");
        std::fs::create_dir(&links).map_err(StoreError::io("create directory", &links))?;
        let src = std::path::absolute(dir).map_err(StoreError::io("resolve", dir))?;
        for name in super::file_names(dir)? {
            let at = links.join(&name);
            std::os::unix::fs::symlink(src.join(&name), &at)
                .map_err(StoreError::io("link", &at))?;
        }
        opened.dir = links;
        opened._temp = Some(temp);
    }
    let mut record = record.clone();
    if let Some(p) = record.parent.as_mut() {
        p.dir = parent.to_string_lossy().into_owned();
    }
    let path = opened.dir.join(CHAIN);
    std::fs::remove_file(&path).map_err(StoreError::io("remove", &path))?;
    super::write_file(&path, &encode(Kind::Chain, &record)?)
}

/// Whether `dir` is a private copy decoded and verified whole by `opened` or one of its
/// ancestors (its pages files need no second pass).
pub(super) fn verified_copy(opened: &Opened, dir: &Path) -> bool {
    let same = |a: &Path| match (a.canonicalize(), dir.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    (opened.copy && same(opened.dir())) || opened.parents.iter().any(|p| verified_copy(p, dir))
}
