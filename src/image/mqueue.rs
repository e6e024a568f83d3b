//! The POSIX message queue record (`mqueue.img`): the queues of the tree's IPC namespace
//! (its mqueue filesystem) with their attributes and messages. Open queue descriptors
//! are `FdKind::Mqueue` fds of the files records. Written only when the tree's namespace
//! is its own or the dumper's (queues of the host's namespace belong to everyone on it
//! and survive the dump).

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::error::ImageError;

/// Name of the record file (absent: no queue was saved).
pub const MQUEUE: &str = "mqueue.img";

/// `mqueue.img`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MqueueImage {
    pub queues: Vec<PosixQueue>,
}

/// One queue of the namespace's mqueue filesystem.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PosixQueue {
    /// The name without its leading `/` (what the mqueue filesystem lists).
    pub name: String,
    /// The permission bits (0o777).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// `mq_maxmsg`.
    pub maxmsg: i64,
    /// `mq_msgsize`.
    pub msgsize: i64,
    /// The messages in receive order (highest priority first, oldest first within one).
    pub messages: Vec<PosixMessage>,
}

/// One queued message.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PosixMessage {
    pub prio: u32,
    pub data: Vec<u8>,
}

/// `MQ_PRIO_MAX`: priorities are below it.
const PRIO_MAX: u32 = 32768;

/// Impossible records: a name the kernel would refuse or given twice, attributes out of
/// range, more messages than the queue holds, a message longer than its size or
/// out of receive order.
pub fn validate(img: &MqueueImage, path: &Path) -> Result<(), ImageError> {
    let fail = |what: String| Err(ImageError::invalid(path, what));
    let mut names: Vec<&str> = img.queues.iter().map(|q| q.name.as_str()).collect();
    names.sort_unstable();
    if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
        return fail(format!("POSIX message queue /{} appears twice", w[0]));
    }
    for q in &img.queues {
        if !valid_name(&q.name) {
            return fail(format!("POSIX message queue name {:?} is invalid", q.name));
        }
        if q.maxmsg <= 0 || q.msgsize <= 0 || q.messages.len() as i64 > q.maxmsg {
            return fail(format!(
                "POSIX message queue /{} holds {} messages of at most {} (mq_msgsize {})",
                q.name,
                q.messages.len(),
                q.maxmsg,
                q.msgsize
            ));
        }
        let long = q.messages.iter().any(|m| m.data.len() as i64 > q.msgsize);
        let prio = q.messages.iter().any(|m| m.prio >= PRIO_MAX);
        let order = q.messages.windows(2).any(|w| w[0].prio < w[1].prio);
        if long || prio || order {
            return fail(format!(
                "POSIX message queue /{} has a message too long, of a priority out of range or out of order",
                q.name
            ));
        }
    }
    Ok(())
}

/// A name the mqueue filesystem can hold: 1 to 255 bytes, no `/`, not `.` or `..`.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && !name.contains(['/', '\0'])
        && name != "."
        && name != ".."
}

impl MqueueImage {
    /// The queue named `name` (without its `/`).
    pub fn queue(&self, name: &str) -> Option<&PosixQueue> {
        self.queues.iter().find(|q| q.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::file::{decode, encode, Kind};

    fn queue(name: &str, prios: &[u32]) -> PosixQueue {
        PosixQueue {
            name: name.into(),
            mode: 0o640,
            uid: 1,
            gid: 2,
            maxmsg: 4,
            msgsize: 16,
            messages: prios
                .iter()
                .map(|&prio| PosixMessage {
                    prio,
                    data: b"x".to_vec(),
                })
                .collect(),
        }
    }

    #[test]
    fn round_trips() {
        let img = MqueueImage {
            queues: vec![queue("a", &[9, 3, 3]), queue("b", &[])],
        };
        let bytes = encode(Kind::Mqueue, &img).unwrap();
        let back: MqueueImage = decode(Kind::Mqueue, &bytes, Path::new(MQUEUE)).unwrap();
        assert_eq!(back, img);
        validate(&back, Path::new(MQUEUE)).unwrap();
        assert!(back.queue("b").is_some());
    }

    #[test]
    fn refuses_impossible_records() {
        let mut long = queue("a", &[1]);
        long.messages[0].data = vec![0; 17];
        let bad = [
            vec![queue("a", &[]), queue("a", &[])],
            vec![queue("a/b", &[])],
            vec![queue("..", &[])],
            vec![queue("a", &[1, 2])],
            vec![queue("a", &[1, 1, 1, 1, 1])],
            vec![queue("a", &[PRIO_MAX])],
            vec![long],
        ];
        for queues in bad {
            let img = MqueueImage { queues };
            assert!(validate(&img, Path::new(MQUEUE)).is_err(), "{img:?}");
        }
    }
}
