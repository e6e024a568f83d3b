//! Overlayfs mounts of the tree: made again as a new superblock with the same options
//! (`How::New`), which name their layers by path. Those paths are resolved by the
//! restore in stasis's namespace before the tree's mounts exist, so each layer
//! (`lowerdir`, `upperdir`, `workdir`) must be the same directory seen from stasis as
//! from the tree; a layer on one of the tree's own mounts is refused, named.

use std::os::unix::fs::MetadataExt;

use super::DumpError;
use crate::image::mnt::{How, Mount};

pub fn check(root: i32, mounts: &[Mount]) -> Result<(), DumpError> {
    // Only the overlays made anew: one cloned from stasis's own (`How::Host`, such as
    // the root of a container stasis runs in) names layers the tree never needs.
    for m in mounts
        .iter()
        .filter(|m| m.fstype == "overlay" && m.how == How::New)
    {
        for dir in layers(&m.super_opts) {
            let theirs = std::fs::metadata(format!("/proc/{root}/root{dir}"));
            let mine = std::fs::metadata(&dir);
            let same = matches!((theirs, mine), (Ok(a), Ok(b)) if a.dev() == b.dev() && a.ino() == b.ino());
            if !same {
                return Err(DumpError::unsupported(format!(
                    "overlay at {} (mount {}) has its layer {dir} on a mount of the tree's \
                     own namespace, which stasis cannot rebuild the overlay from yet; declare \
                     it with --external mnt[{}]:KEY",
                    m.mountpoint, m.id, m.mountpoint
                )));
            }
        }
    }
    Ok(())
}

/// The layer directories an overlay's options name.
fn layers(opts: &str) -> Vec<String> {
    let mut out = Vec::new();
    for o in opts.split(',') {
        match o.split_once('=') {
            Some(("lowerdir", v)) => out.extend(v.split(':').map(|d| d.replace("\\:", ":"))),
            Some(("upperdir" | "workdir" | "lowerdir+" | "datadir+", v)) => out.push(v.to_string()),
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn layers_of_the_options() {
        let l = super::layers("rw,lowerdir=/a:/b,upperdir=/u,workdir=/w,uuid=on");
        assert_eq!(l, vec!["/a", "/b", "/u", "/w"]);
    }
}
