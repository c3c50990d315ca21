use std::ffi::OsStr;

use super::*;

#[test]
fn a_reported_change_is_due_at_once_and_otherwise_the_poll_decides() {
    let ms = Duration::from_millis;
    // inotify reported something: look now, whatever the interval.
    assert!(check_due(true, true, ms(0)));
    assert!(check_due(true, false, ms(0)));
    // Watched and quiet: only the slow safety-net poll.
    assert!(!check_due(false, true, POLL));
    assert!(!check_due(false, true, FALLBACK_POLL - ms(1)));
    assert!(check_due(false, true, FALLBACK_POLL));
    // Not watched: the fast poll.
    assert!(!check_due(false, false, POLL - ms(1)));
    assert!(check_due(false, false, POLL));
}

#[test]
fn only_entries_the_loader_reads_count_as_changes() {
    let one = |mask, name: Option<&str>| {
        let mut r = Reported::default();
        r.add(mask, name.map(OsStr::new));
        r
    };
    let changed = Reported {
        changed: true,
        new_dirs: false,
    };
    let nothing = Reported::default();
    let modify = AddWatchFlags::IN_MODIFY;
    assert_eq!(one(modify, Some("function.yaml")), changed);
    assert_eq!(
        one(modify, Some("app.py")),
        changed,
        "the fingerprint decides"
    );
    assert_eq!(one(modify, Some(".env")), changed);
    assert_eq!(one(modify, None), changed, "the directory itself");
    assert_eq!(one(modify, Some(".function.yaml.swp")), nothing);
    assert_eq!(one(AddWatchFlags::IN_CREATE, Some(".flint")), nothing);
    assert_eq!(one(AddWatchFlags::IN_IGNORED, None), nothing);
    let dir = AddWatchFlags::IN_ISDIR;
    let new_dir = Reported {
        changed: true,
        new_dirs: true,
    };
    assert_eq!(one(AddWatchFlags::IN_CREATE | dir, Some("hello")), new_dir);
    assert_eq!(
        one(AddWatchFlags::IN_MOVED_TO | dir, Some("hello")),
        new_dir
    );
    assert_eq!(one(AddWatchFlags::IN_DELETE | dir, Some("hello")), changed);
    assert_eq!(one(AddWatchFlags::IN_CREATE | dir, Some("target")), nothing);
    assert_eq!(one(AddWatchFlags::IN_Q_OVERFLOW, None), new_dir);
}

#[test]
fn polling_is_due_after_the_fast_interval() {
    let mut changes = Changes::polling();
    assert!(!changes.watching());
    let start = changes.last_check;
    assert!(!changes.due(start));
    assert!(changes.due(start + POLL));
    assert!(!changes.due(start + POLL), "the check was taken");
}

/// Waits (bounded) until inotify's report makes a check due; the clock
/// passed stays within the slow poll, so only a report can make it due.
fn reported(changes: &mut Changes) -> bool {
    let at = changes.last_check;
    for _ in 0..200 {
        if changes.due(at) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    false
}

#[test]
fn new_edited_and_removed_manifests_are_reported_but_not_the_events_store() {
    let dir = std::env::temp_dir().join(format!("flint-changes-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("hello")).unwrap();
    std::fs::create_dir_all(dir.join(".flint/events")).unwrap();
    let (mut changes, error) = Changes::watch(&dir);
    assert!(error.is_none(), "{error:?}");
    assert!(changes.watching());
    let now = changes.last_check;
    assert!(!changes.due(now), "nothing changed yet");

    // The events store writes all the time: not a change to the manifests.
    std::fs::write(dir.join(".flint/events/store.redb"), "x").unwrap();
    assert!(!changes.due(now), "a write under .flint is not a change");

    let manifest = dir.join("hello/function.yaml");
    std::fs::write(&manifest, "kind: Function\n").unwrap();
    assert!(reported(&mut changes), "a new manifest");
    std::fs::write(&manifest, "kind: Function\n# edited\n").unwrap();
    assert!(reported(&mut changes), "an edited manifest");
    std::fs::create_dir_all(dir.join("later")).unwrap();
    assert!(reported(&mut changes), "a new directory");
    // A directory created after the watch started is watched too.
    std::fs::write(dir.join("later/function.yaml"), "kind: Function\n").unwrap();
    assert!(reported(&mut changes), "a manifest in a new directory");
    std::fs::remove_file(&manifest).unwrap();
    assert!(reported(&mut changes), "a removed manifest");
    std::fs::remove_dir_all(&dir).unwrap();
}
