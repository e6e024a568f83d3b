//! Work over many items (fds of a table, processes) shared by two threads: stasis's own and one more, each
//! taking the next few items as it is free (a core busy elsewhere only slows its
//! thread's share). Owns the split, not the work: the callers' closures do it.

use std::sync::atomic::{AtomicUsize, Ordering};

/// Items a thread takes at once.
const CHUNK: usize = 16;

/// `f` of each of `items`, in order: in two threads when there are at least `min` items
/// and two CPUs, else in this one. A panic in the other thread is resumed here.
pub fn map<T: Sync, R: Send>(items: &[T], min: usize, f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    // Ordering requirements: the CPUs are counted (three files the standard library
    // reads) only when there are items enough for a second thread.
    if items.len() < min.max(2) || crate::sys::cpu::usable() < 2 {
        return items.iter().map(f).collect();
    }
    let next = AtomicUsize::new(0);
    let work = || {
        let mut out = Vec::new();
        loop {
            let start = next.fetch_add(CHUNK, Ordering::Relaxed);
            if start >= items.len() {
                return out;
            }
            let end = (start + CHUNK).min(items.len());
            out.extend((start..end).map(|i| (i, f(&items[i]))));
        }
    };
    let (mut mine, theirs) = std::thread::scope(|s| {
        let other = s.spawn(work);
        (work(), other.join())
    });
    mine.extend(theirs.unwrap_or_else(|panic| std::panic::resume_unwind(panic)));
    mine.sort_unstable_by_key(|(i, _)| *i);
    mine.into_iter().map(|(_, r)| r).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_keep_the_order_of_the_items() {
        let items: Vec<u32> = (0..1000).collect();
        let doubled = map(&items, 10, |i| i * 2);
        assert_eq!(doubled, items.iter().map(|i| i * 2).collect::<Vec<_>>());
        assert_eq!(map(&items[..3], 10, |i| *i), vec![0, 1, 2]);
        assert!(map(&items[..0], 0, |i| *i).is_empty());
    }

    /// Also checks the unwinder linked statically by build.rs: a panic crosses threads.
    #[test]
    fn a_panic_in_either_thread_reaches_the_caller() {
        let items: Vec<u32> = (0..1000).collect();
        let caught = std::panic::catch_unwind(|| {
            map(&items, 10, |&i| {
                assert!(i % 100 != 99, "item {i}");
                i
            })
        });
        assert!(caught.is_err());
    }
}
