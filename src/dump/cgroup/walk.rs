//! Walking a hierarchy's recorded cgroups: each top and every cgroup below it, parents
//! first, with their permissions and settings.

use std::path::Path;

use super::DumpError;
use crate::cgroupfs::{self, CgroupError, FREEZE, PERMS_ONLY, PROPS};
use crate::image::cgroup::{CgroupDir, Prop};

/// The cgroups under `tops` in hierarchy `controllers`.
pub fn dirs(
    controllers: &str,
    tops: &[String],
    yard: Option<&Path>,
) -> Result<Vec<CgroupDir>, DumpError> {
    let h = cgroupfs::Hierarchy::open(controllers, yard)?;
    let mut out = Vec::new();
    for top in tops {
        walk(&h, top, &mut out)?;
    }
    Ok(out)
}

fn walk(h: &cgroupfs::Hierarchy, path: &str, out: &mut Vec<CgroupDir>) -> Result<(), DumpError> {
    let dir = h.dir(path);
    out.push(CgroupDir {
        path: path.to_string(),
        perms: cgroupfs::perms(&dir)?,
        // The hierarchy's root holds no settings of its own to restore.
        props: if path == "/" {
            Vec::new()
        } else {
            props(&dir)?
        },
    });
    let entries = std::fs::read_dir(&dir).map_err(|source| CgroupError::Read {
        path: dir.display().to_string(),
        source,
    })?;
    let mut children = Vec::new();
    for e in entries.flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            children.push(e.file_name().to_string_lossy().into_owned());
        }
    }
    children.sort();
    for child in children {
        let sub = format!("{}/{child}", path.trim_end_matches('/'));
        walk(h, &sub, out)?;
    }
    Ok(())
}

/// The settings (readable and writable files of `PROPS` and `FREEZE`) and the
/// permissions of `PERMS_ONLY` files present in `dir`.
fn props(dir: &Path) -> Result<Vec<Prop>, CgroupError> {
    let mut out = Vec::new();
    for name in PROPS.iter().chain(FREEZE) {
        let path = dir.join(name);
        let Ok(perms) = cgroupfs::perms(&path) else {
            continue;
        };
        // devices.list is read-only: it is written back through devices.deny/allow.
        let writable = perms.mode & 0o222 != 0 || *name == "devices.list";
        if perms.mode & 0o444 == 0 || !writable {
            continue;
        }
        out.push(Prop {
            name: name.to_string(),
            value: Some(cgroupfs::read(&path)?),
            perms,
        });
    }
    for name in PERMS_ONLY {
        if let Ok(perms) = cgroupfs::perms(&dir.join(name)) {
            out.push(Prop {
                name: name.to_string(),
                value: None,
                perms,
            });
        }
    }
    Ok(out)
}
