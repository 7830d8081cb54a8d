//! When to reload: filesystem events (notify, recursive, on the directory so that editors'
//! write-temp-and-rename saves, creates and deletes are all seen), or polling as a fallback.

use std::fs::Metadata;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use notify::event::{AccessKind, AccessMode};
use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio::time::{Instant, Interval, MissedTickBehavior, sleep_until};
use tokio_util::sync::CancellationToken;

/// Reload after this long without further changes…
const QUIET: Duration = Duration::from_millis(20);
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

pub(super) enum Trigger {
    /// Filesystem events. The channel holds at most one pending "something changed": a full
    /// channel already means "reload", so extra events are dropped (coalesced).
    Notify {
        _watcher: RecommendedWatcher,
        rx: mpsc::Receiver<()>,
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

    /// Waits for a change, then for the debounce window to close. `false` if cancelled.
    pub async fn debounced(&mut self, cancel: &CancellationToken) -> bool {
        tokio::select! {
            biased;
            _ = cancel.cancelled() => return false,
            _ = self.changed() => {}
        }
        let deadline = Instant::now() + MAX_DELAY;
        loop {
            let quiet_until = (Instant::now() + QUIET).min(deadline);
            tokio::select! {
                biased;
                _ = cancel.cancelled() => return false,
                _ = sleep_until(quiet_until) => return true,
                _ = self.changed() => {}
            }
        }
    }

    /// Resolves on the next change. Cancel-safe.
    async fn changed(&mut self) {
        match self {
            Trigger::Notify { rx, .. } => {
                if rx.recv().await.is_none() {
                    // Cannot happen while we hold the watcher; never spin if it does.
                    std::future::pending::<()>().await;
                }
            }
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
    let (tx, rx) = mpsc::channel(1);
    let span = tracing::Span::current();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        match event {
            // Opens and reads (our own loads among them) change nothing.
            Ok(e) if matches!(e.kind, EventKind::Access(a) if a != AccessKind::Close(AccessMode::Write)) =>
            {
                return;
            }
            Ok(_) => {}
            Err(e) => span.in_scope(|| tracing::warn!(error = %e, "watch error; reloading")),
        }
        let _ = tx.try_send(()); // Full: a reload is already pending.
    })?;
    watcher.watch(dir, RecursiveMode::Recursive)?;
    Ok(Trigger::Notify {
        _watcher: watcher,
        rx,
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
