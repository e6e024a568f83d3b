//! The namespaces record (`namespaces.img`): where the tree's tasks sit in pid namespaces
//! below the dumper's, and the UTS names of the root's UTS namespace. Absent (older images,
//! trees in the dumper's own pid and UTS namespaces): every task has only its pid, and the
//! tree comes back in the restorer's UTS namespace.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::error::ImageError;

/// Name of the record file.
pub const NAMESPACES: &str = "namespaces.img";

/// The kernel's `MAX_PID_NS_LEVEL`: pid namespaces nest at most this deep.
pub const MAX_PID_NS_LEVEL: usize = 32;

/// `namespaces.img`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NsImage {
    /// Every task (process, thread or zombie) of the tree that lives in a pid namespace
    /// below the dumper's, with its ids there.
    pub pids: Vec<NsPid>,
    /// `(process, child)`: the process had unshared its pid namespace (`pid_for_children`)
    /// into the one `child` is the init of; it is put back there after the child is made.
    pub pid_for_children: Vec<(i32, i32)>,
    /// The names of the root's UTS namespace, if it was not the dumper's: the root is then
    /// created in a new UTS namespace with these names.
    pub uts: Option<Uts>,
    /// The clocks of the tree's own time namespace at dump time: the root is created in a
    /// new one whose clocks go on from them.
    pub time: Option<TimeNs>,
}

/// The clocks of a time namespace, in nanoseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeNs {
    pub monotonic: i64,
    pub boottime: i64,
}

/// The ids of one task in nested pid namespaces.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NsPid {
    /// Its id in the dumper's namespace (the id every other record uses).
    pub id: i32,
    /// Its ids in each namespace below the dumper's, outermost first (`NSpid` of
    /// `/proc/PID/status` without its first entry). An init of its namespace ends in 1.
    pub inner: Vec<i32>,
}

/// `uname(2)`'s names of a UTS namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Uts {
    pub hostname: String,
    pub domainname: String,
}

impl NsImage {
    pub fn is_empty(&self) -> bool {
        self.pids.is_empty()
            && self.pid_for_children.is_empty()
            && self.uts.is_none()
            && self.time.is_none()
    }

    /// The ids of `id` below the dumper's namespace (empty: it lives in the dumper's).
    pub fn inner(&self, id: i32) -> &[i32] {
        (self.pids.iter().find(|p| p.id == id)).map_or(&[], |p| &p.inner)
    }

    /// `set_tid` for `clone3`: the id in the innermost namespace first, `id` last.
    pub fn set_tid(&self, id: i32) -> Vec<i32> {
        let mut ids: Vec<i32> = self.inner(id).iter().rev().copied().collect();
        ids.push(id);
        ids
    }

    /// Whether `id` is the init of a pid namespace below the dumper's.
    pub fn is_pid_ns_init(&self, id: i32) -> bool {
        self.inner(id).last() == Some(&1)
    }

    /// The id of task `id` as task `from` sees it (0: invisible from there, as
    /// `getpgid`/`getsid` report an id outside the caller's namespace).
    pub fn view(&self, from: i32, id: i32) -> i32 {
        match self.inner(from).len() {
            0 => id,
            level => self.inner(id).get(level - 1).copied().unwrap_or(0),
        }
    }
}

/// Checks what a restore relies on: nesting within the kernel's limit, positive ids.
pub fn validate(ns: &NsImage, path: &Path) -> Result<(), ImageError> {
    let bad = |what: String| ImageError::Invalid {
        path: path.to_path_buf(),
        what,
    };
    for p in &ns.pids {
        if p.inner.is_empty() || p.inner.len() >= MAX_PID_NS_LEVEL {
            return Err(bad(format!(
                "task {} has {} nested pids",
                p.id,
                p.inner.len()
            )));
        }
        if p.id <= 0 || p.inner.iter().any(|&i| i <= 0) {
            return Err(bad(format!(
                "task {} has a pid below 1: {:?}",
                p.id, p.inner
            )));
        }
    }
    if let Some(uts) = &ns.uts {
        if uts.hostname.len() > 64 || uts.domainname.len() > 64 {
            return Err(bad("a UTS name is longer than 64 bytes".to_string()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> NsImage {
        NsImage {
            pids: vec![
                NsPid {
                    id: 100,
                    inner: vec![1],
                },
                NsPid {
                    id: 101,
                    inner: vec![2],
                },
                NsPid {
                    id: 102,
                    inner: vec![3, 1],
                },
            ],
            pid_for_children: vec![(99, 100)],
            uts: Some(Uts {
                hostname: "box".into(),
                domainname: "(none)".into(),
            }),
            time: Some(TimeNs {
                monotonic: 5,
                boottime: 7,
            }),
        }
    }

    #[test]
    fn set_tid_lists_the_innermost_id_first() {
        let ns = sample();
        assert_eq!(ns.set_tid(102), vec![1, 3, 102]);
        assert_eq!(ns.set_tid(99), vec![99]);
        assert!(ns.is_pid_ns_init(100) && ns.is_pid_ns_init(102) && !ns.is_pid_ns_init(101));
    }

    #[test]
    fn view_translates_into_the_viewers_namespace() {
        let ns = sample();
        assert_eq!(ns.view(99, 101), 101);
        assert_eq!(ns.view(101, 100), 1);
        assert_eq!(ns.view(102, 102), 1);
        assert_eq!(ns.view(101, 99), 0);
    }

    #[test]
    fn round_trips_and_validates() {
        let ns = sample();
        let bytes = postcard::to_allocvec(&ns).expect("encode");
        let back: NsImage = postcard::from_bytes(&bytes).expect("decode");
        assert_eq!(back, ns);
        assert!(validate(&ns, Path::new("x")).is_ok());
        let mut bad = ns;
        bad.pids[0].inner.clear();
        assert!(validate(&bad, Path::new("x")).is_err());
    }
}
