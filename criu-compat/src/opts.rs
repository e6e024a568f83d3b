//! `criu_opts` of a DUMP or RESTORE request → a [`Job`]. Each field is either mapped to
//! the stasis option of the same meaning, accepted where stasis always behaves as asked
//! (said beside it), or refused with an error naming the field: never ignored. The list
//! with reasons is docs/criu-compat.md.

use std::path::PathBuf;

use crate::cli::compat::{is_ns_key, is_pipe_key, mnt_external};
use crate::job::Job;
use crate::proto::{CriuCgMode, CriuNetworkLockMethod, CriuOpts};
use stasis::netns::{NetExternal, VethExternal};

/// `empty_ns` bit stasis takes: runc always asks the network namespace to be left
/// empty; stasis rebuilds a network namespace of the tree's own as it was dumped anyway
/// (runc's loopback comes back up, where CRIU leaves it down).
const CLONE_NEWNET: u32 = 0x4000_0000;

/// The directories and log of `opts` for a client of pid `peer` (its fds are resolved
/// through `/proc/<peer>/fd`): enough to log a refusal of the rest.
pub fn base(opts: &CriuOpts, peer: i32) -> Result<Job, String> {
    let images = match opts.images_dir_fd {
        -1 => PathBuf::from(
            opts.images_dir
                .clone()
                .ok_or("images_dir_fd is -1 and images_dir unset")?,
        ),
        fd => client_fd_path(peer, fd)?,
    };
    let mut job = Job::new(images);
    if let Some(fd) = opts.work_dir_fd {
        job.work = client_fd_path(peer, fd)?;
    }
    job.log_file = match (opts.log_to_stderr(), &opts.log_file) {
        (true, _) => Some("-".into()),
        (false, Some(name)) => Some(log_name(name)?),
        (false, None) => None,
    };
    job.log_level = opts.log_level();
    Ok(job)
}

/// Refuses what stasis does not implement, then maps the rest of `opts` onto `job`;
/// `restore` says which side asks.
pub fn fill(job: &mut Job, opts: &CriuOpts, restore: bool) -> Result<(), String> {
    refuse_unsupported(opts, restore)?;
    job.pid = match (opts.pid, restore) {
        (Some(pid), _) => pid,
        (None, true) => 0,
        (None, false) => {
            return Err("pid unset: stasis does not dump the requesting process itself".into())
        }
    };
    job.leave_running = opts.leave_running();
    job.parent_img = opts.parent_img.clone().map(PathBuf::from);
    job.track_mem = opts.track_mem();
    job.shell_job = opts.shell_job();
    job.orphan_pts_master = opts.orphan_pts_master();
    job.tcp_established = opts.tcp_established();
    job.tcp_close = opts.tcp_close();
    job.network_lock = lock_mode(opts.network_lock)?;
    job.ext_unix_sk = opts.ext_unix_sk();
    job.skip_in_flight = opts.tcp_skip_in_flight();
    job.file_locks = opts.file_locks();
    job.link_remap = opts.link_remap();
    job.ghost_limit = u64::from(opts.ghost_limit());
    job.freeze_cgroup = opts.freeze_cgroup.clone().map(PathBuf::from);
    if !restore {
        (job.page_server, job.lazy) = remote(opts)?;
    }
    fill_cgroups(job, opts);
    if let Some(t) = opts.timeout.filter(|&t| t != 0) {
        job.timeout = std::time::Duration::from_secs(u64::from(t));
    }
    let ext_mnt = (opts.ext_mnt.iter()).map(|m| (m.key.clone(), m.val.clone()));
    let ext_mnt: Vec<(String, String)> = match restore {
        true => ext_mnt.collect(),
        false => ext_mnt
            .filter(|(mp, _)| is_mountpoint(job.pid, mp))
            .collect(),
    };
    job.mnt_externals = (ext_mnt.into_iter())
        .chain(opts.external.iter().filter_map(|e| mnt_external(e)))
        .collect();
    job.root = opts
        .root
        .as_ref()
        .filter(|r| restore && *r != "/")
        .map(PathBuf::from);
    job.rst_sibling = opts.rst_sibling();
    job.inherit_fds = (opts.inherit_fd.iter())
        .map(|i| (i.key.clone(), i.fd))
        .collect();
    job.veth_externals = (opts.external.iter())
        .filter_map(|e| VethExternal::parse(e))
        .collect();
    job.net_external = (opts.external.iter())
        .filter_map(|e| NetExternal::parse(e))
        .next_back()
        .filter(|_| !restore);
    job.join_net = (opts.join_ns.iter())
        .filter(|j| restore && j.ns == "net")
        .map(|j| match j.ns_file.parse::<i32>() {
            Ok(pid) => PathBuf::from(format!("/proc/{pid}/ns/net")),
            Err(_) => PathBuf::from(&j.ns_file),
        })
        .next_back();
    Ok(())
}

/// The fields set in `opts` that stasis takes without an option of its own, because it
/// always behaves as they ask, each with why (logged; the list is docs/criu-compat.md's).
pub fn accepted(o: &CriuOpts) -> Vec<String> {
    let notes = [
        (
            o.evasive_devices(),
            "evasive_devices",
            "stasis reopens a device by its path",
        ),
        (
            o.force_irmap(),
            "force_irmap",
            "stasis finds an inotify watch's target by its handle",
        ),
        (
            !o.irmap_scan_paths.is_empty(),
            "irmap_scan_paths",
            "stasis finds an inotify watch's target by its handle",
        ),
        (
            o.auto_ext_mnt(),
            "auto_ext_mnt",
            "stasis keeps a mount it shares with the host as the host's",
        ),
        (
            o.display_stats(),
            "display_stats",
            "stasis always writes the stats files",
        ),
        (
            o.pre_dump_mode.is_some(),
            "pre_dump_mode",
            "stasis reads a pre-dump's pages the same way whichever mode is asked",
        ),
    ];
    (notes.into_iter())
        .filter(|(set, _, _)| *set)
        .map(|(_, field, why)| format!("{field}: accepted, {why}"))
        .collect()
}

/// `ps` of a dump: the page server to send the image to, or with `lazy_pages` where the
/// source listens for the target (on `ps.address` if given, else any address, as CRIU).
#[allow(clippy::type_complexity)]
fn remote(o: &CriuOpts) -> Result<(Option<(String, u16)>, Option<(String, u16)>), String> {
    let Some(ps) = &o.ps else {
        return match o.lazy_pages() {
            true => Err("lazy_pages: needs ps.port, where the source serves its pages".into()),
            false => Ok((None, None)),
        };
    };
    let port = (ps.port)
        .and_then(|p| u16::try_from(p).ok())
        .filter(|&p| p != 0)
        .ok_or_else(|| format!("ps.port {:?}: the page server's port is needed", ps.port))?;
    match o.lazy_pages() {
        true => Ok((
            None,
            Some((ps.address.clone().unwrap_or("0.0.0.0".into()), port)),
        )),
        false => Ok((
            Some((ps.address.clone().unwrap_or("127.0.0.1".into()), port)),
            None,
        )),
    }
}

/// `/proc/<peer>/fd/<fd>`'s target: a directory the client opened.
fn client_fd_path(peer: i32, fd: i32) -> Result<PathBuf, String> {
    let link = format!("/proc/{peer}/fd/{fd}");
    std::fs::read_link(&link)
        .map_err(|e| format!("fd {fd} of the client (pid {peer}): {link}: {e}"))
}

/// CRIU takes a plain file name (no subdirectories) for the log.
fn log_name(name: &str) -> Result<PathBuf, String> {
    if name.contains('/') {
        return Err(format!(
            "log_file {name:?}: a file name in the work directory, without '/'"
        ));
    }
    Ok(name.into())
}

/// The first field set to something stasis does not implement, with the reason.
pub fn refuse_unsupported(o: &CriuOpts, restore: bool) -> Result<(), String> {
    let refusals = [
        flags(o),
        cgroups(o),
        mounts(o, restore),
        memory(o, restore),
        channels(o, restore),
    ];
    refusals.into_iter().flatten().next().map_or(Ok(()), Err)
}

fn refused(field: &str, given: bool, why: &str) -> Option<String> {
    given.then(|| format!("{field}: {why}"))
}

fn flags(o: &CriuOpts) -> Option<String> {
    let no_lsm =
        "stasis does not change LSM labels (an AppArmor/SELinux profile stays the restorer's)";
    [
        refused("exec_cmd", !o.exec_cmd.is_empty(), "stasis runs no command after a restore"),
        refused("veths", !o.veths.is_empty(), "stasis rebuilds only loopback and dummy links (no veth pair whose other end is outside)"),
        refused("unix_sk_ino", !o.unix_sk_ino.is_empty(), "external unix sockets are taken with ext_unix_sk"),
        refused("join_ns", o.join_ns.iter().any(|j| j.ns != "net"), "stasis joins only an existing network namespace (ns \"net\")"),
        refused("empty_ns", o.empty_ns() & !CLONE_NEWNET != 0, "only the network namespace (CLONE_NEWNET) may be left empty: stasis rebuilds the others from the image"),
        refused("weak_sysctls", o.weak_sysctls(), "stasis restores no sysctls"),
        refused("cpu_cap", o.cpu_cap.is_some_and(|c| c != u32::MAX), "stasis always checks the CPU features an image needs"),
        refused("lsm_profile", o.lsm_profile.is_some(), no_lsm),
        refused("lsm_mount_context", o.lsm_mount_context.is_some(), no_lsm),
        refused("unprivileged", o.unprivileged(), "stasis needs root (CAP_SYS_ADMIN or CAP_CHECKPOINT_RESTORE)"),
        refused("leave_stopped", o.leave_stopped(), "stasis lets the tree run (or kills it) after a dump"),
        refused("skip_file_rwx_check", o.skip_file_rwx_check(), "stasis checks a file's access mode at restore"),
        config_file(o),
    ]
    .into_iter()
    .flatten()
    .next()
}

/// CRIU reads its configuration file; stasis reads none, so one that exists is refused.
fn config_file(o: &CriuOpts) -> Option<String> {
    let path = o.config_file.as_deref()?;
    std::path::Path::new(path)
        .exists()
        .then(|| format!("config_file {path}: stasis reads no CRIU configuration file"))
}

fn cgroups(o: &CriuOpts) -> Option<String> {
    let why = "stasis saves its own list of cgroup settings; custom lists are not supported";
    let mode = o.manage_cgroups_mode.filter(|&m| cg_mode(m).is_none());
    [
        mode.map(|m| format!("manage_cgroups_mode {m}: not a mode CRIU defines")),
        refused("cgroup_props", o.cgroup_props.is_some(), why),
        refused("cgroup_props_file", o.cgroup_props_file.is_some(), why),
    ]
    .into_iter()
    .flatten()
    .next()
}

/// Whether `mountpoint` is a mount point of `pid`'s mount namespace. At dump, CRIU skips an
/// `ext_mnt` entry naming no mount of the tree (runc passes its masked paths and devices
/// whether the container mounted them or not); stasis refuses an external it cannot
/// find, so such entries are dropped here, as CRIU drops them.
fn is_mountpoint(pid: i32, mountpoint: &str) -> bool {
    let text = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap_or_default();
    let mounts = stasis::proc::mountinfo::parse(&text).unwrap_or_default();
    mounts.iter().any(|m| m.mountpoint == mountpoint)
}

/// The stasis mode of a `criu_cg_mode` (DEFAULT is CRIU's default, soft).
fn cg_mode(m: i32) -> Option<stasis::restore::CgroupMode> {
    use stasis::restore::CgroupMode;
    Some(match CriuCgMode::try_from(m).ok()? {
        CriuCgMode::Ignore => CgroupMode::Ignore,
        CriuCgMode::CgNone => CgroupMode::None,
        CriuCgMode::Props => CgroupMode::Props,
        CriuCgMode::Soft | CriuCgMode::Default => CgroupMode::Soft,
        CriuCgMode::Full => CgroupMode::Full,
        CriuCgMode::Strict => CgroupMode::Strict,
    })
}

/// Maps the cgroup fields onto `job`, as CRIU's service does: `manage_cgroups` true is
/// soft and false ignore, `manage_cgroups_mode` wins over it; unset, CRIU's default.
fn fill_cgroups(job: &mut Job, o: &CriuOpts) {
    use stasis::restore::CgroupMode;
    let mut mode = CgroupMode::default();
    if o.manage_cgroups.is_some() {
        mode = if o.manage_cgroups() {
            CgroupMode::Soft
        } else {
            CgroupMode::Ignore
        };
    }
    if let Some(m) = o.manage_cgroups_mode.and_then(cg_mode) {
        mode = m;
    }
    let roots: Vec<(Option<String>, String)> = (o.cg_root.iter())
        .map(|r| (r.ctrl.clone(), r.path.clone()))
        .collect();
    let yard = o.cgroup_yard.as_ref().map(PathBuf::from);
    job.cgroup_dump = stasis::dump::cgroup::CgroupDumpOptions {
        roots: roots.clone(),
        yard: yard.clone(),
        controllers: o.cgroup_dump_controller.clone(),
    };
    job.cgroup_restore = stasis::restore::CgroupRestoreOptions { mode, roots, yard };
}

fn mounts(o: &CriuOpts, _restore: bool) -> Option<String> {
    let no_mounts = "stasis rebuilds a mount namespace as it was, without this option";
    let external = (o.external.iter())
        .find(|e| {
            mnt_external(e).is_none()
                && VethExternal::parse(e).is_none()
                && NetExternal::parse(e).is_none()
        })
        .map(|e| format!("external {e}"));
    let inherit = (o.inherit_fd.iter())
        .find(|i| !is_pipe_key(&i.key) && !is_ns_key(&i.key))
        .map(|i| format!("inherit_fd {} as fd {}", i.key, i.fd));
    [
        external.map(|f| format!("{f}: stasis takes external mounts (mnt[A]:B), veth pairs (veth[IN]:OUT[@BRIDGE]) and the tree's network namespace (net[INO]:KEY) only")),
        inherit.map(|f| {
            format!("{f}: stasis takes the caller's pipes (key pipe:[INO]) and an external network namespace (its KEY) only")
        }),
        refused("ext_sharing", o.ext_sharing(), no_mounts),
        refused("ext_masters", o.ext_masters(), no_mounts),
        refused("skip_mnt", !o.skip_mnt.is_empty(), no_mounts),
        refused("enable_fs", !o.enable_fs.is_empty(), no_mounts),
        refused("mntns_compat_mode", o.mntns_compat_mode(), no_mounts),
    ]
    .into_iter()
    .flatten()
    .next()
}

fn memory(o: &CriuOpts, restore: bool) -> Option<String> {
    let chained = o.leave_running() || o.parent_img.is_some() || o.track_mem();
    [
        refused(
            "auto_dedup",
            o.auto_dedup(),
            "stasis does not punch parent images' pages out (no auto-dedup)",
        ),
        refused(
            "lazy_pages",
            o.lazy_pages() && !restore && chained,
            "cannot be combined with leave_running, parent_img or track_mem: the lazily \
             dumped tree is killed once its pages are served",
        ),
    ]
    .into_iter()
    .flatten()
    .next()
}

fn channels(o: &CriuOpts, restore: bool) -> Option<String> {
    let no_net = "stasis-criu does not hand CRIU's TLS options to stasis's page stream \
                  yet (stasis's own --tls with --tls-cert/--tls-key/--tls-cacert or \
                  --tls-psk encrypts it)";
    let ps_fd = o.ps.as_ref().is_some_and(|p| p.fd.is_some());
    [
        refused(
            "ps.fd",
            ps_fd,
            "stasis's page server listens on ps.address/ps.port and its senders connect \
             there; a socket connected beforehand is not taken",
        ),
        refused(
            "ps",
            restore && o.ps.is_some(),
            "a restore takes no page server (a lazy restore asks the lazy-pages daemon in \
             the work directory for its source)",
        ),
        refused(
            "status_fd",
            o.status_fd.is_some(),
            "stasis reports no readiness on a status fd over RPC (CRIU marks it obsolete)",
        ),
        refused(
            "pidfd_store_sk",
            o.pidfd_store_sk.is_some(),
            "stasis's tracker keeps a tree's tracking by its root pid, not through a pidfd store",
        ),
        refused("tls", o.tls(), no_net),
        refused("tls_cacert", o.tls_cacert.is_some(), no_net),
        refused("tls_cacrl", o.tls_cacrl.is_some(), no_net),
        refused("tls_cert", o.tls_cert.is_some(), no_net),
        refused("tls_key", o.tls_key.is_some(), no_net),
        refused("tls_no_cn_verify", o.tls_no_cn_verify(), no_net),
    ]
    .into_iter()
    .flatten()
    .next()
}

/// The lock mode of `network_lock` (CRIU's iptables when not set).
fn lock_mode(method: Option<i32>) -> Result<stasis::netlock::LockMode, String> {
    use stasis::netlock::LockMode;
    Ok(match method.map(CriuNetworkLockMethod::try_from) {
        None => LockMode::default(),
        Some(Ok(CriuNetworkLockMethod::Iptables)) => LockMode::Iptables,
        Some(Ok(CriuNetworkLockMethod::Nftables)) => LockMode::Nftables,
        Some(Ok(CriuNetworkLockMethod::Skip)) => LockMode::Skip,
        Some(Err(_)) => {
            let m = method.unwrap_or_default();
            return Err(format!(
                "network_lock: unknown method {m} (1 iptables, 2 nftables, 3 skip)"
            ));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::InheritFd;

    fn refusal(o: CriuOpts, restore: bool) -> String {
        refuse_unsupported(&o, restore).unwrap_err()
    }

    #[test]
    fn runc_defaults_pass_at_dump() {
        let o = CriuOpts {
            empty_ns: Some(CLONE_NEWNET),
            orphan_pts_master: Some(true),
            notify_scripts: Some(true),
            root: Some("/rootfs".into()),
            config_file: Some("/nonexistent/runc.conf".into()),
            ..Default::default()
        };
        assert_eq!(refuse_unsupported(&o, false), Ok(()));
    }

    #[test]
    fn podman_netns_passes() {
        let dump = CriuOpts {
            external: vec!["net[4026532174]:extRootNetNS".into()],
            empty_ns: Some(CLONE_NEWNET),
            ..Default::default()
        };
        assert_eq!(refuse_unsupported(&dump, false), Ok(()));
        let restore = CriuOpts {
            inherit_fd: vec![InheritFd {
                key: "extRootNetNS".into(),
                fd: 4,
            }],
            empty_ns: Some(CLONE_NEWNET),
            ..Default::default()
        };
        assert_eq!(refuse_unsupported(&restore, true), Ok(()));
    }

    #[test]
    fn unimplemented_fields_are_named() {
        let inherit = CriuOpts {
            inherit_fd: vec![InheritFd {
                key: "ipc[1]".into(),
                fd: 1,
            }],
            ..Default::default()
        };
        assert!(refusal(inherit, true).starts_with("inherit_fd ipc[1] as fd 1: "));
        let mode = CriuOpts {
            manage_cgroups_mode: Some(42),
            ..Default::default()
        };
        assert!(refusal(mode, false).starts_with("manage_cgroups_mode 42: "));
        let external = CriuOpts {
            external: vec!["tun[tap0]:host".into()],
            ..Default::default()
        };
        assert!(refusal(external, true).starts_with("external tun[tap0]:host: "));
        let dedup = CriuOpts {
            auto_dedup: Some(true),
            ..Default::default()
        };
        assert!(refusal(dedup, false).starts_with("auto_dedup: "));
        let parent = CriuOpts {
            parent_img: Some("../parent".into()),
            track_mem: Some(true),
            ..Default::default()
        };
        assert_eq!(refuse_unsupported(&parent, false), Ok(()));
    }

    #[test]
    fn ps_sends_to_a_page_server_or_serves_lazily() {
        use crate::proto::CriuPageServerInfo;
        let ps = |fd: Option<i32>| CriuPageServerInfo {
            address: Some("10.0.0.2".into()),
            port: Some(7000),
            fd,
            ..Default::default()
        };
        let send = CriuOpts {
            ps: Some(ps(None)),
            ..Default::default()
        };
        let at = Some(("10.0.0.2".to_string(), 7000));
        assert_eq!(remote(&send), Ok((at.clone(), None)));
        let lazy = CriuOpts {
            lazy_pages: Some(true),
            ..send.clone()
        };
        assert_eq!(remote(&lazy), Ok((None, at)));
        let no_port = CriuOpts {
            lazy_pages: Some(true),
            ..Default::default()
        };
        assert!(remote(&no_port).unwrap_err().starts_with("lazy_pages: "));
        assert!(refusal(send.clone(), true).starts_with("ps: "));
        let with_fd = CriuOpts {
            ps: Some(ps(Some(5))),
            ..Default::default()
        };
        assert!(refusal(with_fd, false).starts_with("ps.fd: "));
        let lazy_chain = CriuOpts {
            track_mem: Some(true),
            ..lazy
        };
        assert!(refusal(lazy_chain, false).starts_with("lazy_pages: "));
    }

    #[test]
    fn network_lock_methods_map_to_modes() {
        use stasis::netlock::LockMode;
        assert_eq!(lock_mode(None), Ok(LockMode::Iptables));
        assert_eq!(lock_mode(Some(2)), Ok(LockMode::Nftables));
        assert_eq!(lock_mode(Some(3)), Ok(LockMode::Skip));
        assert!(lock_mode(Some(7))
            .unwrap_err()
            .starts_with("network_lock: "));
    }
}
