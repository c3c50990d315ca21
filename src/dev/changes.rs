//! Noticing edits under `flint dev`'s directory without reading it all the
//! time. The kernel tells (inotify) when something in one of the watched
//! directories changed; only then does the event loop compare the
//! directory's fingerprint (a `stat` of every manifest). A slow poll of the
//! fingerprint stays as a safety net for what inotify cannot see (a
//! filesystem without change notification), and a directory that cannot be
//! watched (the watch limit reached) is polled at the old, fast pace.
//!
//! An idle `flint dev` with 10,000 Functions thus costs one non-blocking
//! `read` per tick and one fingerprint every [`FALLBACK_POLL`], not two
//! fingerprints a second.

use std::path::Path;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};

use super::local;

/// How often the fingerprint is compared when nothing watches the directory.
pub const POLL: Duration = Duration::from_millis(500);

/// How often the fingerprint is compared even though inotify reports
/// changes: the safety net for changes it missed.
pub const FALLBACK_POLL: Duration = Duration::from_secs(10);

/// Reads of the event queue per check at most (each returns many events);
/// a queue still not empty after them counts as a change anyway.
const MAX_READS: usize = 64;

/// Why the directory could not be watched.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    /// inotify could not be set up, or could not watch a directory (for
    /// instance `fs.inotify.max_user_watches` reached).
    #[error("cannot watch {path} for changes: {source}")]
    Watch {
        /// The directory.
        path: String,
        /// What the kernel said.
        #[source]
        source: Errno,
    },
}

/// Whether the manifests may have changed since the last check.
pub struct Changes {
    /// `None`: polling only.
    inotify: Option<Inotify>,
    /// The directory watched.
    root: std::path::PathBuf,
    /// When the fingerprint was last compared.
    last_check: Instant,
}

impl Changes {
    /// Watches `dir` and every directory under it the loader reads; on
    /// failure, polls (and says why).
    pub fn watch(dir: &Path) -> (Self, Option<WatchError>) {
        let mut changes = Self {
            inotify: None,
            root: dir.to_path_buf(),
            last_check: Instant::now(),
        };
        let error = match Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC) {
            Ok(inotify) => {
                changes.inotify = Some(inotify);
                changes.add_watches().err()
            }
            Err(source) => Some(WatchError::Watch {
                path: dir.display().to_string(),
                source,
            }),
        };
        (changes, error)
    }

    /// Changes that are only ever polled for (no inotify).
    #[cfg(test)]
    pub fn polling() -> Self {
        Self {
            inotify: None,
            root: std::path::PathBuf::new(),
            last_check: Instant::now(),
        }
    }

    /// Whether inotify reports changes (else the directory is polled).
    pub fn watching(&self) -> bool {
        self.inotify.is_some()
    }

    /// Whether to compare the fingerprint now: after a reported change at
    /// once, else when the poll interval has passed. New directories are
    /// watched before this returns, so the rescan that follows and every
    /// later edit in them are seen.
    pub fn due(&mut self, now: Instant) -> bool {
        let reported = self.drain();
        if reported.new_dirs
            && let Err(e) = self.add_watches()
        {
            tracing::warn!(error = %e, "watching new directories; polling instead");
        }
        let due = check_due(
            reported.changed,
            self.watching(),
            now.saturating_duration_since(self.last_check),
        );
        if due {
            self.last_check = now;
        }
        due
    }

    /// Takes the events queued so far.
    fn drain(&mut self) -> Reported {
        let mut reported = Reported::default();
        let Some(inotify) = &self.inotify else {
            return reported;
        };
        for _ in 0..MAX_READS {
            match inotify.read_events() {
                Ok(events) => {
                    for event in events {
                        reported.add(event.mask, event.name.as_deref());
                    }
                }
                Err(Errno::EAGAIN) => return reported,
                Err(Errno::EINTR) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "reading manifest changes; polling instead");
                    self.inotify = None;
                    reported.changed = true;
                    return reported;
                }
            }
        }
        reported.changed = true;
        reported
    }

    /// Adds a watch on the root and every directory under it the loader
    /// reads (adding one already there is harmless).
    fn add_watches(&mut self) -> Result<(), WatchError> {
        let Some(inotify) = &self.inotify else {
            return Ok(());
        };
        let mask = AddWatchFlags::IN_MODIFY
            | AddWatchFlags::IN_ATTRIB
            | AddWatchFlags::IN_CLOSE_WRITE
            | AddWatchFlags::IN_MOVED_FROM
            | AddWatchFlags::IN_MOVED_TO
            | AddWatchFlags::IN_CREATE
            | AddWatchFlags::IN_DELETE
            | AddWatchFlags::IN_DELETE_SELF
            | AddWatchFlags::IN_MOVE_SELF
            | AddWatchFlags::IN_ONLYDIR;
        let mut dirs = vec![self.root.clone()];
        while let Some(dir) = dirs.pop() {
            if let Err(source) = inotify.add_watch(&dir, mask) {
                // A directory gone since it was listed is no failure.
                if source == Errno::ENOENT || source == Errno::ENOTDIR {
                    continue;
                }
                self.inotify = None;
                return Err(WatchError::Watch {
                    path: dir.display().to_string(),
                    source,
                });
            }
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let name = entry.file_name();
                if entry.file_type().is_ok_and(|t| t.is_dir()) && !skipped(&name.to_string_lossy())
                {
                    dirs.push(entry.path());
                }
            }
        }
        Ok(())
    }
}

/// What a batch of inotify events says.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Reported {
    /// Something the loader reads may have changed.
    pub changed: bool,
    /// A directory appeared: it needs a watch of its own.
    pub new_dirs: bool,
}

impl Reported {
    /// Takes one event: `mask` as the kernel gave it, `name` the entry in
    /// the watched directory (none: the directory itself).
    pub fn add(&mut self, mask: AddWatchFlags, name: Option<&std::ffi::OsStr>) {
        if mask.contains(AddWatchFlags::IN_Q_OVERFLOW) {
            // Events were lost: look, and watch anew.
            self.changed = true;
            self.new_dirs = true;
            return;
        }
        if mask.contains(AddWatchFlags::IN_IGNORED) {
            return;
        }
        let relevant = name.is_none_or(|n| {
            let n = n.to_string_lossy();
            n == local::DOT_ENV || !skipped(&n)
        });
        if !relevant {
            return;
        }
        self.changed = true;
        if mask.contains(AddWatchFlags::IN_ISDIR)
            && mask.intersects(AddWatchFlags::IN_CREATE | AddWatchFlags::IN_MOVED_TO)
        {
            self.new_dirs = true;
        }
    }
}

/// The decision of [`Changes::due`]: at once after a reported change, else
/// when the poll interval (slow with inotify, fast without) has passed.
pub fn check_due(changed: bool, watching: bool, since_check: Duration) -> bool {
    let every = if watching { FALLBACK_POLL } else { POLL };
    changed || since_check >= every
}

/// Names the loader does not read: dot-files and dot-directories (the
/// events store lives in `.flint/`; editors' swap files), `target` and
/// `node_modules`.
fn skipped(name: &str) -> bool {
    name.starts_with('.') || name == "target" || name == "node_modules"
}

#[cfg(test)]
#[path = "changes_tests.rs"]
mod tests;
