//! CRIU's option names, so that scripts written for CRIU run unchanged. Two groups:
//! [`CriuFlags`], taken by `dump` and `restore` alike, and [`RestoreNoops`], the dump
//! options CRIU also takes at restore, where stasis's image already says what they ask.
//! A flag whose meaning stasis has is accepted (a no-op where stasis always behaves that
//! way); a flag or mode whose meaning stasis does not implement is refused with a usage
//! error naming it, never silently ignored. Flags that change what stasis does live in
//! `dump.rs` / `restore.rs` beside the others of their subcommand.

use clap::Args;
use stasis::netns::{NetExternal, VethExternal};

/// CRIU options accepted by both `dump` and `restore`; [`CriuFlags::check`] refuses the
/// values stasis does not implement.
#[derive(Args, Debug, Default)]
pub struct CriuFlags {
    /// How the restore puts the tree back into its cgroups, as CRIU: none (they must
    /// exist; nothing set), props (must exist; settings restored), soft (default:
    /// created if missing, settings restored in those created), full (created if
    /// missing, settings always restored), strict (all must be new), ignore (the tree
    /// stays in the restorer's cgroups). Accepted at dump, where it changes nothing.
    #[arg(long = "manage-cgroups", value_name = "MODE", num_args = 0..=1,
          require_equals = true, default_missing_value = "soft")]
    pub manage_cgroups: Option<String>,
    /// At dump: record the cgroups below PATH (instead of the tasks' own); at restore:
    /// put what was recorded there at PATH. With CONTROLLER (`cpu`, `name=x`), for
    /// that hierarchy only.
    #[arg(long = "cgroup-root", value_name = "[CONTROLLER:]PATH")]
    pub cgroup_root: Vec<String>,
    /// CRIU's custom property lists: refused (stasis saves its own list, `cgroupfs::PROPS`).
    #[arg(long = "cgroup-props", value_name = "PROPS", hide = true)]
    pub cgroup_props: Option<String>,
    #[arg(long = "cgroup-props-file", value_name = "FILE", hide = true)]
    pub cgroup_props_file: Option<String>,
    /// At dump: record only the hierarchies with this controller (`name=x` for a named
    /// one); repeatable.
    #[arg(long = "cgroup-dump-controller", value_name = "NAME")]
    pub cgroup_dump_controller: Vec<String>,
    /// A directory where every hierarchy is mounted already (`NAME` for `name=NAME`,
    /// `unified` for cgroup2, the controllers' names otherwise), used instead of
    /// stasis's private mounts.
    #[arg(long = "cgroup-yard", value_name = "PATH")]
    pub cgroup_yard: Option<String>,
    /// How TCP connections to peers outside the tree are held while it is down:
    /// `iptables` (the default, as CRIU's), `nftables` or `skip` (no lock). At restore the
    /// image's mode is used whatever is given here, as CRIU does.
    #[arg(long = "network-lock", value_name = "iptables|nftables|skip")]
    pub network_lock: Option<String>,
    /// `--ext-mount-map auto` is `--external mnt[]`; a KEY:VALUE map is refused (use
    /// `--external mnt[..]`).
    #[arg(short = 'M', long = "ext-mount-map", value_name = "KEY:VALUE|auto")]
    pub ext_mount_map: Vec<String>,
    /// Accepted: stasis takes a mount's master outside the tree again from the mount's
    /// source whenever that source is in the master's group (checked at dump).
    #[arg(long = "enable-external-masters")]
    pub external_masters: bool,
    /// Accepted; a mount sharing a peer group with the dumper's mounts is still refused.
    #[arg(long = "enable-external-sharing")]
    pub external_sharing: bool,
    /// CRIU's external resources: `mnt[MOUNTPOINT]:KEY` at dump, `mnt[KEY]:PATH` at
    /// restore (mounts of the tree's namespace that come from outside); `mnt[]` (also
    /// `mnt[]:s`, `mnt[]:m`) at dump: a mount showing a directory of a filesystem
    /// the dumper has mounted is bound from there at restore, whatever its kind;
    /// `veth[INSIDE]:OUTSIDE[@BRIDGE]` (a veth of the tree's network namespace whose other
    /// end is outside; at restore that end is made with this name, on this bridge);
    /// `macvlan[INSIDE]:LOWER` at restore (the lower link of a macvlan of the tree's
    /// network namespace, outside);
    /// `net[INO]:KEY` at dump (the tree's network namespace is the caller's: not saved,
    /// joined at restore from `--inherit-fd fd[N]:KEY`); others refused.
    #[arg(long = "external", value_name = "RESOURCE")]
    pub external: Vec<String>,
    /// Accepted: stasis always finds inotify and fanotify watch targets by path (from their
    /// file handles, checked to be the watched inode).
    #[arg(long = "force-irmap")]
    pub force_irmap: bool,
    /// Accepted with --force-irmap; stasis needs no scan hint.
    #[arg(long = "irmap-scan-path", value_name = "PATH")]
    pub irmap_scan_path: Vec<String>,
    /// At restore: the restorer's fd N replaces every fd of the tree on the pipe whose
    /// dump-time link text was `pipe:[INO]` and whose other end was outside the tree (a
    /// container's stdio pipes); `fd[N]:KEY`: the network namespace open as fd N is the
    /// one the tree dumped with `--external net[INO]:KEY` comes back in. No effect at dump.
    #[arg(long = "inherit-fd", value_name = "fd[N]:KEY")]
    pub inherit_fd: Vec<String>,
}

impl CriuFlags {
    /// The first flag stasis cannot honour, as a usage error naming it.
    pub fn check(&self) -> Result<(), String> {
        self.cgroup_mode()?;
        let cgroup_flags = [
            ("--cgroup-props", self.cgroup_props.is_some()),
            ("--cgroup-props-file", self.cgroup_props_file.is_some()),
        ];
        if let Some((flag, _)) = cgroup_flags.iter().find(|(_, given)| *given) {
            return Err(format!(
                "{flag}: stasis saves its own list of cgroup settings; custom lists are \
                 not supported"
            ));
        }
        self.lock_mode()?;
        if let Some(map) = self.ext_mount_map.iter().find(|m| *m != "auto") {
            return Err(format!(
                "--ext-mount-map {map}: give each external mount with --external \
                 mnt[MOUNTPOINT]:KEY at dump and mnt[KEY]:PATH at restore"
            ));
        }
        let known = |e: &String| {
            mnt_external(e).is_some()
                || mnt_auto(e)
                || VethExternal::parse(e).is_some()
                || NetExternal::parse(e).is_some()
        };
        if let Some(ext) = self.external.iter().find(|e| !known(e)) {
            return Err(format!(
                "--external {ext}: stasis handles external mounts (mnt[MOUNTPOINT]:KEY at \
                 dump, mnt[KEY]:PATH at restore, mnt[] or mnt[]:s|m), veth pairs (veth[INSIDE]:OUTSIDE[@BRIDGE], \
                 netdev[INSIDE]:OUTSIDE), macvlan lower links (macvlan[INSIDE]:LOWER) and \
                 the tree's network namespace (net[INO]:KEY)"
            ));
        }
        self.inherit_fds().map(drop)
    }

    /// `--inherit-fd fd[N]:pipe:[INO]` as `(pipe:[INO], N)`.
    pub fn inherit_fds(&self) -> Result<Vec<(String, i32)>, String> {
        self.inherit_fd.iter().map(|s| inherit_fd(s)).collect()
    }
}

/// `fd[N]:KEY` → `(KEY, N)`: KEY a pipe's `pipe:[INO]` or the key of an external network
/// namespace (a word: no `:`, `/` or `[`); another key is refused.
pub fn inherit_fd(spec: &str) -> Result<(String, i32), String> {
    let parsed = spec
        .strip_prefix("fd[")
        .and_then(|s| s.split_once("]:"))
        .and_then(|(n, key)| Some((key.to_string(), n.parse::<i32>().ok()?)));
    match parsed {
        Some((key, n)) if is_pipe_key(&key) || is_ns_key(&key) => Ok((key, n)),
        _ => Err(format!(
            "--inherit-fd {spec}: stasis takes fd[N]:pipe:[INO] (a pipe of the caller) and \
             fd[N]:KEY (the network namespace of an external net[INO]:KEY) only"
        )),
    }
}

/// The key of an external namespace, `net[INO]:KEY`'s KEY: a word.
pub fn is_ns_key(key: &str) -> bool {
    !key.is_empty() && !key.contains([':', '/', '[', ']'])
}

/// A pipe's link text, `pipe:[INO]`: an inherited-fd key stasis takes.
pub fn is_pipe_key(key: &str) -> bool {
    key.strip_prefix("pipe:[")
        .and_then(|k| k.strip_suffix(']'))
        .is_some_and(|n| n.parse::<u64>().is_ok())
}

impl CriuFlags {
    /// The `--network-lock` mode (CRIU's default, iptables, when not given).
    pub fn lock_mode(&self) -> Result<stasis::netlock::LockMode, String> {
        let Some(name) = self.network_lock.as_deref() else {
            return Ok(Default::default());
        };
        stasis::netlock::LockMode::parse(name).ok_or_else(|| {
            format!("--network-lock {name}: the modes are iptables, nftables and skip")
        })
    }
}

impl CriuFlags {
    /// `--manage-cgroups`'s mode (soft when not given, as CRIU's).
    pub fn cgroup_mode(&self) -> Result<stasis::restore::CgroupMode, String> {
        let Some(mode) = self.manage_cgroups.as_deref() else {
            return Ok(stasis::restore::CgroupMode::default());
        };
        stasis::restore::CgroupMode::parse(mode).ok_or_else(|| {
            format!("--manage-cgroups={mode}: not one of none, props, soft, full, strict, ignore")
        })
    }

    /// `--cgroup-root` values as (controller, path).
    fn cgroup_roots(&self) -> Vec<(Option<String>, String)> {
        (self.cgroup_root.iter())
            .map(|r| match r.split_once(':') {
                Some((c, p)) => (Some(c.to_string()), p.to_string()),
                None => (None, r.clone()),
            })
            .collect()
    }

    /// What `dump` takes of the cgroup flags.
    pub fn cgroup_dump(&self) -> stasis::dump::cgroup::CgroupDumpOptions {
        stasis::dump::cgroup::CgroupDumpOptions {
            roots: self.cgroup_roots(),
            yard: self.cgroup_yard.as_ref().map(Into::into),
            controllers: self.cgroup_dump_controller.clone(),
        }
    }

    /// What `restore` takes of the cgroup flags (after [`CriuFlags::check`]).
    pub fn cgroup_restore(&self) -> stasis::restore::CgroupRestoreOptions {
        stasis::restore::CgroupRestoreOptions {
            mode: self.cgroup_mode().unwrap_or_default(),
            roots: self.cgroup_roots(),
            yard: self.cgroup_yard.as_ref().map(Into::into),
        }
    }

    /// The `veth[INSIDE]:OUTSIDE[@BRIDGE]`, `macvlan[INSIDE]:LOWER` and
    /// `netdev[INSIDE]:OUTSIDE` externals.
    pub fn veth_externals(&self) -> Vec<VethExternal> {
        self.external
            .iter()
            .filter_map(|e| VethExternal::parse(e))
            .collect()
    }

    /// The last `net[INO]:KEY` external.
    pub fn net_external(&self) -> Option<NetExternal> {
        self.external
            .iter()
            .filter_map(|e| NetExternal::parse(e))
            .next_back()
    }

    /// The mounts of the dump declared external: `mnt[A]:B`, `mnt[]` and
    /// `--ext-mount-map auto`.
    pub fn mount_externals(&self) -> stasis::dump::mnt::Externals {
        stasis::dump::mnt::Externals {
            named: self.mnt_externals(),
            auto: self.external.iter().any(|e| mnt_auto(e))
                || self.ext_mount_map.iter().any(|m| m == "auto"),
        }
    }

    /// The `mnt[A]:B` externals, as `(A, B)`.
    pub fn mnt_externals(&self) -> Vec<(String, String)> {
        self.external
            .iter()
            .filter_map(|e| mnt_external(e))
            .collect()
    }

    /// The restore's `mnt[KEY]:PATH` externals, as `(KEY, PATH)` with PATH made absolute
    /// against the cwd stasis was started in, as any path on a command line (the mount is
    /// made later from a thread inside another mount namespace, whose cwd is elsewhere).
    /// stasis-criu, which includes this file, keeps CRIU's reading instead (a relative
    /// path taken from `/`, where CRIU's mounting thread stands) and does not call it.
    #[allow(dead_code)]
    pub fn restore_mnt_externals(&self) -> Vec<(String, String)> {
        let absolute = |p: String| match std::path::absolute(&p) {
            Ok(a) => a.to_string_lossy().into_owned(),
            Err(_) => p,
        };
        (self.mnt_externals().into_iter())
            .map(|(key, path)| (key, absolute(path)))
            .collect()
    }
}

/// Dump options CRIU also takes at restore. stasis's image already records what each
/// allowed at dump time (established connections, locks, remapped links...), so at
/// restore they change nothing: accepted so that one CRIU option list serves both sides.
#[derive(Args, Debug, Default)]
#[command(next_help_heading = "Dump options accepted for CRIU compatibility (no effect)")]
pub struct RestoreNoops {
    #[arg(long = "tcp-established")]
    pub tcp_established: bool,
    #[arg(long = "file-locks")]
    pub file_locks: bool,
    #[arg(short = 'x', long = "ext-unix-sk")]
    pub ext_unix_sk: bool,
    #[arg(long = "link-remap")]
    pub link_remap: bool,
    #[arg(long = "ghost-limit", value_name = "SIZE")]
    pub ghost_limit: Option<String>,
    #[arg(long = "skip-in-flight")]
    pub skip_in_flight: bool,
    #[arg(long = "evasive-devices")]
    pub evasive_devices: bool,
}

/// `mnt[]`, `mnt[]:s` (shared mounts too) or `mnt[]:m` (slaves too): CRIU's
/// auto-detected external mounts.
pub fn mnt_auto(e: &str) -> bool {
    matches!(e, "mnt[]" | "mnt[]:s" | "mnt[]:m")
}

/// `mnt[A]:B` → `(A, B)`.
pub fn mnt_external(e: &str) -> Option<(String, String)> {
    let (inner, b) = e.strip_prefix("mnt[")?.split_once("]:")?;
    (!inner.is_empty() && !b.is_empty()).then(|| (inner.to_string(), b.to_string()))
}

#[cfg(test)]
mod tests {
    use super::CriuFlags;

    #[test]
    fn accepted_values_pass() {
        let flags = CriuFlags {
            manage_cgroups: Some("ignore".into()),
            network_lock: Some("nftables".into()),
            ext_mount_map: vec!["auto".into()],
            external: vec!["mnt[]".into(), "mnt[]:s".into(), "mnt[/a]:K".into()],
            external_masters: true,
            force_irmap: true,
            irmap_scan_path: vec!["/zdtm".into()],
            ..CriuFlags::default()
        };
        assert_eq!(flags.check(), Ok(()));
        let ext = flags.mount_externals();
        assert!(ext.auto);
        assert_eq!(ext.named, [("/a".to_string(), "K".to_string())]);
        let relative = CriuFlags {
            external: vec!["mnt[K]:rel/dir".into()],
            ..CriuFlags::default()
        };
        let cwd = std::env::current_dir().unwrap();
        let at = cwd.join("rel/dir").to_string_lossy().into_owned();
        assert_eq!(relative.restore_mnt_externals(), [("K".to_string(), at)]);
    }

    #[test]
    fn refused_values_name_the_flag() {
        let cases = [
            (
                CriuFlags {
                    manage_cgroups: Some("loose".into()),
                    ..CriuFlags::default()
                },
                "--manage-cgroups=loose",
            ),
            (
                CriuFlags {
                    cgroup_props: Some("x".into()),
                    ..CriuFlags::default()
                },
                "--cgroup-props",
            ),
            (
                CriuFlags {
                    network_lock: Some("ebtables".into()),
                    ..CriuFlags::default()
                },
                "--network-lock ebtables",
            ),
            (
                CriuFlags {
                    ext_mount_map: vec!["auto".into(), "/a:b".into()],
                    ..CriuFlags::default()
                },
                "--ext-mount-map /a:b",
            ),
        ];
        for (flags, name) in cases {
            let err = flags.check().unwrap_err();
            assert!(err.starts_with(name), "{err} does not start with {name}");
        }
    }
}
