//! `pty-devpts.img`: which devpts instance each pseudo-terminal of the tree lives in,
//! when that is not the one the restorer's `/dev/ptmx` reaches (the host's `/dev/pts`).
//! A tree with a devpts of its own (a container: `mount -t devpts -o newinstance` over
//! its `/dev/pts`) names its ptys `/dev/pts/N` of that instance; the restore makes each
//! such pair through the `ptmx` of the same mount of the rebuilt tree, with the same
//! number, so `/dev/pts/N` inside the tree is the same pty again. A pty absent from the
//! record is one of the host's instance (every pty of an older image). The pty whose
//! master was outside the tree has its devpts in `orphan-pty.img` and is never here.
//! The dump side is `dump/pty_devpts.rs`, the restore side `restore/pty_devpts.rs`.

use std::collections::HashSet;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::error::ImageError;

/// Name of the record file (absent: every pty of the tree is of the host's instance).
pub const PTY_DEVPTS: &str = "pty-devpts.img";

/// `pty-devpts.img`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PtyDevptsImage {
    pub ptys: Vec<PtyDevpts>,
}

/// One pty of another devpts instance than the host's.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PtyDevpts {
    /// The pts number (`<devpts>/<index>`).
    pub index: u32,
    /// A mount of its devpts instance as the tree's root sees it (`/dev/pts`): the new
    /// pair is made through its `ptmx`.
    pub devpts: String,
}

impl PtyDevptsImage {
    pub fn get(&self, index: u32) -> Option<&PtyDevpts> {
        self.ptys.iter().find(|p| p.index == index)
    }
}

/// Impossible records: a pts number twice, a devpts path that is not absolute or climbs.
pub fn validate(img: &PtyDevptsImage, path: &Path) -> Result<(), ImageError> {
    let fail = |what: String| Err(ImageError::invalid(path, what));
    let mut seen = HashSet::new();
    for p in &img.ptys {
        if !seen.insert(p.index) {
            return fail(format!("pts {} is recorded twice", p.index));
        }
        if !p.devpts.starts_with('/') || p.devpts.split('/').any(|c| c == "..") {
            return fail(format!("pts {}: devpts path {:?}", p.index, p.devpts));
        }
    }
    Ok(())
}

/// No pty is both here and the orphan pty (whose devpts `orphan-pty.img` gives).
pub fn check_orphans(img: &PtyDevptsImage, orphans: &[u32], path: &Path) -> Result<(), ImageError> {
    match orphans.iter().find(|&&i| img.get(i).is_some()) {
        Some(i) => Err(ImageError::invalid(
            path,
            format!("pts {i} is also the pty whose master was outside the tree"),
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;
    use crate::image::file::{decode, encode, Kind};

    fn pty(index: u32, devpts: &str) -> PtyDevpts {
        PtyDevpts {
            index,
            devpts: devpts.into(),
        }
    }

    #[test]
    fn a_record_round_trips_and_validates() {
        let path = Path::new(PTY_DEVPTS);
        let img = PtyDevptsImage {
            ptys: vec![pty(0, "/dev/pts"), pty(3, "/srv/pts")],
        };
        let bytes = encode(Kind::PtyDevpts, &img).unwrap();
        assert_eq!(
            decode::<PtyDevptsImage>(Kind::PtyDevpts, &bytes, path).unwrap(),
            img
        );
        validate(&img, path).unwrap();
        assert_eq!(img.get(3), Some(&pty(3, "/srv/pts")));
        check_orphans(&img, &[1], path).unwrap();
        let err = check_orphans(&img, &[3], path).unwrap_err().to_string();
        assert!(err.contains("pts 3 is also the pty"), "{err}");
    }

    #[test]
    fn a_number_twice_or_a_relative_devpts_is_refused() {
        let path = Path::new(PTY_DEVPTS);
        let twice = PtyDevptsImage {
            ptys: vec![pty(0, "/dev/pts"), pty(0, "/x/pts")],
        };
        assert!(validate(&twice, path).is_err());
        for bad in ["dev/pts", "/dev/../pts"] {
            let img = PtyDevptsImage {
                ptys: vec![pty(0, bad)],
            };
            assert!(validate(&img, path).is_err(), "{bad}");
        }
    }
}
