//! Files a process maps or runs that its own mount namespace does not show: it left its
//! parent's namespace and changed root (`pivot_root`, the old root detached) after it
//! mapped them, so maps and `/proc/PID/exe` name them by their path in the namespace of
//! their mount — that of an ancestor of the tree. The nearest ancestor in another
//! namespace whose root shows the same inode at that path is recorded
//! (`mntns-maps.img`), and the restore opens the path through its root
//! (`restore/mnt/maps.rs`).

use std::os::unix::fs::MetadataExt;

use super::{ns_of, reach, DumpError};
use crate::image::mnt::{MapElsewhere, MapsElsewhereImage, MAPS_ELSEWHERE};
use crate::image::{ImageWriter, Kind};

/// What the dump in progress found: by (pid, path) the ancestor whose namespace shows
/// the file, and the mappings (and exe links) recorded.
#[derive(Default)]
struct Found {
    /// The tree's processes: only they are looked at (and only once they are known).
    tree: Vec<i32>,
    paths: Vec<((i32, String), i32)>,
    maps: Vec<MapElsewhere>,
}

static FOUND: std::sync::Mutex<Option<Found>> = std::sync::Mutex::new(None);

fn with<T>(f: impl FnOnce(&mut Found) -> T) -> T {
    let mut found = FOUND.lock().unwrap_or_else(|e| e.into_inner());
    f(found.get_or_insert_with(Found::default))
}

/// Forgets the files of the last dump.
pub fn forget() {
    *FOUND.lock().unwrap_or_else(|e| e.into_inner()) = None;
}

/// The processes of the tree being dumped (frozen): [`find`] looks at them only.
pub fn set_tree(pids: &[i32]) {
    with(|f| f.tree = pids.to_vec());
}

/// The nearest ancestor of `pid` in the tree, in another mount namespace, whose namespace shows the
/// file `(dev, ino)` at `path`, with that file's path as stasis reaches it; remembered
/// for [`note`].
pub fn find(pid: i32, path: &str, dev: u64, ino: u64) -> Option<std::path::PathBuf> {
    let own = ns_of(&pid.to_string()).ok()?;
    let mut cur = pid;
    for _ in 0..64 {
        cur = crate::proc::stat(cur).ok()?.ppid;
        if !with(|f| f.tree.contains(&cur)) {
            return None;
        }
        if ns_of(&cur.to_string()).ok()? == own {
            continue;
        }
        let at = reach(cur, path);
        if std::fs::metadata(&at).is_ok_and(|m| (m.dev(), m.ino()) == (dev, ino)) {
            with(|f| f.paths.push(((pid, path.to_string()), cur)));
            return Some(at);
        }
    }
    None
}

/// Records mapping `start` (`None`: the exe link) of `pid` on `path` as opened elsewhere
/// if [`find`] found `path` for `pid` there.
pub fn note(pid: i32, path: &str, start: Option<u64>) {
    with(|f| {
        let found = f.paths.iter().find(|((p, n), _)| *p == pid && n == path);
        if let Some(&(_, ns_pid)) = found {
            f.maps.push(MapElsewhere { pid, start, ns_pid });
        }
    })
}

/// Writes `mntns-maps.img` when some file was found elsewhere.
pub fn save(writer: &ImageWriter) -> Result<(), DumpError> {
    let maps = with(|f| std::mem::take(&mut f.maps));
    if maps.is_empty() {
        return Ok(());
    }
    let image = MapsElsewhereImage { maps };
    writer.write_record(MAPS_ELSEWHERE, Kind::MapsElsewhere, &image)?;
    Ok(())
}
