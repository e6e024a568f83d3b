//! `stasis inspect`: what an image holds, as text for people or JSON for tools (like
//! CRIU's `crit show`). Reads metadata only; page contents are summarized by count.
//! The text shows every saved item of a task: ids and credentials, attributes, audit ids,
//! limits, timers, per thread registers, signals, altstack, scheduling and seccomp, the
//! handlers, mappings with their flags, guard regions, and the fds.

mod files;
mod ipc;
mod memory;
mod namespaces;
mod task;
mod tree;

use std::io::Write;
use std::path::Path;

use crate::image::{Image, ImageError};

#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error("write output")]
    Write(#[from] std::io::Error),
    #[error("encode JSON")]
    Json(#[from] serde_json::Error),
}

/// Prints the image at `dir`.
pub fn inspect(dir: &Path, json: bool, out: &mut impl Write) -> Result<(), InspectError> {
    let image = Image::load_metadata(dir)?;
    let tables = image.processes.iter().map(|p| (p.task.pid, &p.files));
    let lock = crate::image::netlock::NetLockImage::load(dir, tables)?;
    // Asked of the kernel now: a lock still held is one the restore has not lifted yet.
    let held: Vec<i32> = lock
        .pids
        .iter()
        .copied()
        .filter(|p| crate::netlock::held(lock.mode, *p))
        .collect();
    if json {
        let mut value = to_json(&image);
        value["netlock"] =
            serde_json::json!({ "mode": lock.mode.name(), "pids": lock.pids, "held_now": held });
        serde_json::to_writer_pretty(&mut *out, &value)?;
        writeln!(out)?;
    } else {
        text(&image, out)?;
        network_lock(dir, &lock, &held, out)?;
    }
    Ok(())
}

/// The dump's network lock, and whether it is still held now (a stale lock, if the image
/// is not being restored).
fn network_lock(
    dir: &Path,
    lock: &crate::image::netlock::NetLockImage,
    held: &[i32],
    out: &mut impl Write,
) -> std::io::Result<()> {
    write!(out, "network lock: {}", lock.mode.name())?;
    if lock.pids.is_empty() {
        return writeln!(out, ", no connection locked");
    }
    let names: Vec<String> = lock.pids.iter().map(|p| crate::netlock::name(*p)).collect();
    writeln!(out, " ({})", names.join(" "))?;
    for pid in held {
        writeln!(
            out,
            "  {} held now: stale unless this image is being restored; lift it with `stasis network-unlock -D {}`",
            crate::netlock::name(*pid),
            dir.display()
        )?;
    }
    Ok(())
}

fn to_json(image: &Image) -> serde_json::Value {
    let processes: Vec<serde_json::Value> = image
        .processes
        .iter()
        .map(|p| {
            let pid = p.task.pid;
            let owner = image.tree.mm_owner(pid);
            serde_json::json!({
                "pid": pid,
                "task": p.task,
                // A process sharing its parent's address space has no mm of its own.
                "mm": (owner == pid).then_some(&p.mm),
                "mm_of": owner,
                "files": p.files,
                "pages_stored": p.mm.pages(),
            })
        })
        .collect();
    let ghosts: Vec<serde_json::Value> = image
        .ghosts
        .files
        .iter()
        .map(|g| {
            serde_json::json!({
                "path": g.path,
                "type": g.body.describe(),
                "mode": g.mode,
                "uid": g.uid,
                "gid": g.gid,
                "mtime_ns": g.mtime_ns,
                "bytes_stored": g.body.stored(),
                "cwd_of": g.cwd_of,
            })
        })
        .collect();
    serde_json::json!({
        "inventory": image.inventory,
        "tree": image.tree,
        "tty": image.tty,
        "processes": processes,
        "ghosts": ghosts,
        "sysv": image.sysv,
        "mqueue": image.mqueue,
        "namespaces": image.ns,
        "cgroup": image.cgroup,
        "mounts": image.mounts,
        "netns": image.netns.as_ref().map(namespaces::netns_json),
        "netlinks": namespaces::netlinks_json(&image.netlinks),
        "netpeers": image.netpeers,
        "netjoins": image.netjoins,
        "socket_nets": image.socket_nets,
        "mnt_joins": image.mnt_joins,
        "orphan_pty": image.orphan_pty,
        "pty_devpts": image.pty_devpts,
        "chain": image.chain,
    })
}

fn text(image: &Image, out: &mut impl Write) -> std::io::Result<()> {
    let inv = &image.inventory;
    writeln!(
        out,
        "image {} (stasis {}, kernel {}, host {})",
        image.dir.display(),
        inv.stasis_version,
        inv.kernel_release,
        inv.hostname
    )?;
    let features = crate::sys::cpu::xfeature_names(inv.cpu.xcr0).join(" ");
    writeln!(
        out,
        "cpu: {} (xsave {} bytes: {features})",
        inv.cpu.model_name, inv.cpu.xsave_size
    )?;
    tree::tree(&image.tree, out)?;
    tree::terminals(&image.tty, out)?;
    for p in &image.processes {
        task::process(p, &image.tree, out)?;
    }
    files::ghosts(&image.ghosts, out)?;
    ipc::sysv(&image.sysv, out)?;
    ipc::mqueues(&image.mqueue, out)?;
    namespaces::sections(image, out)
}

#[cfg(test)]
mod tests;
