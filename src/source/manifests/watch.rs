//! When to reload: filesystem events (notify, recursive, on the directory so that editors'
//! write-temp-and-rename saves, creates and deletes are all seen), or polling as a fallback.

use std::collections::BTreeSet;
use std::fs::Metadata;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use notify::event::{AccessKind, AccessMode};
use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::Notify;
use tokio::time::{Instant, Interval, MissedTickBehavior, sleep_until};
use tokio_util::sync::CancellationToken;

/// Reload after this long without further changes (an atomic save is one rename; a
/// `cp -r` or `git checkout` of many files comes in a burst of events microseconds apart, and
/// a burst that outlasts the window only costs another load: loads are incremental and a
/// partly written file keeps its last good objects)…
const QUIET: Duration = Duration::from_millis(2);
/// …but never later than this after the first change, even under a stream of changes.
const MAX_DELAY: Duration = Duration::from_millis(200);
/// How often the fallback polls the directory.
const POLL: Duration = Duration::from_millis(500);

/// Every manifest file with its [`Stamp`]: what the poller compares.
type Fingerprint = Vec<(PathBuf, Option<Stamp>)>;

/// What tells the poller that a file changed. mtime and size alone miss a same-size save
/// within one timestamp tick when the editor renames a new file into place (or a ConfigMap
/// mount swaps its `..data` link): the inode changes then, and ctime moves on every write,
/// rename and link swap, with nanoseconds where the filesystem has them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Stamp {
    mtime: Option<SystemTime>,
    len: u64,
    /// `(inode, ctime seconds, ctime nanoseconds)`; zeros where the platform has none.
    identity: (u64, i64, i64),
}

impl Stamp {
    pub(super) fn of(meta: &Metadata) -> Stamp {
        Stamp {
            mtime: meta.modified().ok(),
            len: meta.len(),
            identity: identity(meta),
        }
    }
}

#[cfg(unix)]
fn identity(meta: &Metadata) -> (u64, i64, i64) {
    use std::os::unix::fs::MetadataExt;
    (meta.ino(), meta.ctime(), meta.ctime_nsec())
}

#[cfg(not(unix))]
fn identity(_: &Metadata) -> (u64, i64, i64) {
    (0, 0, 0)
}

/// What changed since the last load.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Changes {
    /// These paths (files or directories) were written, created, renamed or removed.
    Paths(BTreeSet<PathBuf>),
    /// Unknown (polling, a watch error, events the watcher lost): look at everything.
    Everything,
}

impl Changes {
    fn add(&mut self, event: notify::Event) {
        match self {
            Changes::Everything => {}
            _ if event.need_rescan() || event.paths.is_empty() => *self = Changes::Everything,
            Changes::Paths(paths) => paths.extend(event.paths),
        }
    }
}

/// The changes the watcher saw and not yet taken, and the wake-up of [`Trigger::changed`].
pub(super) struct Pending {
    changes: Mutex<Changes>,
    wake: Notify,
}

impl Pending {
    fn take(&self) -> Changes {
        let mut changes = self.changes.lock().unwrap_or_else(|e| e.into_inner());
        std::mem::replace(&mut *changes, Changes::Paths(BTreeSet::new()))
    }
}

pub(super) enum Trigger {
    /// Filesystem events, coalesced into one set of changed paths until taken.
    Notify {
        _watcher: RecommendedWatcher,
        pending: Arc<Pending>,
    },
    Poll {
        dir: PathBuf,
        interval: Interval,
        last: Fingerprint,
    },
}

impl Trigger {
    /// Watches `dir`, or polls it if the watcher cannot be set up (or `force_poll`).
    pub fn new(dir: &Path, force_poll: bool) -> Trigger {
        if !force_poll {
            match watcher(dir) {
                Ok(trigger) => return trigger,
                Err(e) => tracing::warn!(
                    error = %e, interval_ms = POLL.as_millis(),
                    "cannot watch the manifests directory; polling it instead"
                ),
            }
        }
        let mut interval = tokio::time::interval_at(Instant::now() + POLL, POLL);
        interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
        Trigger::Poll {
            dir: dir.to_owned(),
            interval,
            last: fingerprint(dir),
        }
    }

    /// Waits for a change, then for the debounce window to close, and says what changed.
    /// `None` if cancelled.
    pub async fn debounced(&mut self, cancel: &CancellationToken) -> Option<Changes> {
        tokio::select! {
            biased;
            _ = cancel.cancelled() => return None,
            _ = self.changed() => {}
        }
        let deadline = Instant::now() + MAX_DELAY;
        loop {
            let quiet_until = (Instant::now() + QUIET).min(deadline);
            tokio::select! {
                biased;
                _ = cancel.cancelled() => return None,
                _ = sleep_until(quiet_until) => break,
                _ = self.changed() => {}
            }
        }
        Some(match self {
            Trigger::Notify { pending, .. } => pending.take(),
            Trigger::Poll { .. } => Changes::Everything,
        })
    }

    /// Resolves on the next change. Cancel-safe.
    async fn changed(&mut self) {
        match self {
            // A wake-up sent while nobody waits is kept for the next call (`notify_one`), so
            // events that arrive during a load are never lost.
            Trigger::Notify { pending, .. } => pending.wake.notified().await,
            Trigger::Poll {
                dir,
                interval,
                last,
            } => loop {
                interval.tick().await;
                let now = fingerprint(dir);
                if now != *last {
                    *last = now;
                    return;
                }
            },
        }
    }
}

fn watcher(dir: &Path) -> notify::Result<Trigger> {
    let pending = Arc::new(Pending {
        changes: Mutex::new(Changes::Paths(BTreeSet::new())),
        wake: Notify::new(),
    });
    let span = tracing::Span::current();
    let events = pending.clone();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let mut changes = events.changes.lock().unwrap_or_else(|e| e.into_inner());
        match event {
            // Opens and reads (our own loads among them) change nothing.
            Ok(e) if matches!(e.kind, EventKind::Access(a) if a != AccessKind::Close(AccessMode::Write)) =>
            {
                return;
            }
            Ok(e) => changes.add(e),
            Err(e) => {
                span.in_scope(|| tracing::warn!(error = %e, "watch error; reloading"));
                *changes = Changes::Everything;
            }
        }
        drop(changes);
        events.wake.notify_one();
    })?;
    watcher.watch(dir, RecursiveMode::Recursive)?;
    Ok(Trigger::Notify {
        _watcher: watcher,
        pending,
    })
}

fn fingerprint(dir: &Path) -> Fingerprint {
    super::list_files(dir)
        .files
        .into_iter()
        .map(|path| {
            let stamp = std::fs::metadata(&path).ok().map(|m| Stamp::of(&m));
            (path, stamp)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::fingerprint;

    /// An editor's save: a new file of the same size, its mtime set to the old one's (as if
    /// within one timestamp tick), renamed over the old one.
    #[test]
    fn fingerprint_sees_a_same_size_rename_in_the_same_tick() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.yaml");
        fs::write(&path, "kind: A\n").unwrap();
        let mtime = fs::metadata(&path).unwrap().modified().unwrap();
        let before = fingerprint(dir.path());

        let temp = dir.path().join(".a.yaml.tmp");
        fs::write(&temp, "kind: B\n").unwrap();
        fs::File::options()
            .write(true)
            .open(&temp)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
        fs::rename(&temp, &path).unwrap();
        let after = fingerprint(dir.path());

        let meta = fs::metadata(&path).unwrap();
        assert_eq!((meta.modified().unwrap(), meta.len()), (mtime, 8));
        assert_ne!(before, after);
    }
}
