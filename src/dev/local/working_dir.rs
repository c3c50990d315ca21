//! Where a local replica runs: `workingDir` read under the manifest's
//! directory, which stands for the image's root, and never outside it.

use std::path::{Component, Path, PathBuf};

/// The local working directory for `workingDir`: the manifest's directory
/// stands for the image's root, so `/srv/app` is `<manifest dir>/srv/app`
/// and `/` the manifest's directory itself. A path that leaves the
/// manifest's directory (through `..` or a symbolic link) or does not exist
/// is refused.
pub fn working_dir(working_dir: Option<&str>, manifest_dir: &Path) -> Result<PathBuf, String> {
    let Some(wanted) = working_dir else {
        return Ok(manifest_dir.to_path_buf());
    };
    let mut relative = PathBuf::new();
    for component in Path::new(wanted).components() {
        match component {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(part) => relative.push(part),
            Component::ParentDir => {
                if !relative.pop() {
                    return Err(format!(
                        "{wanted:?} leaves the manifest's directory (flint dev takes workingDir relative to {}, which stands for the image's root)",
                        manifest_dir.display()
                    ));
                }
            }
            Component::Prefix(_) => return Err(format!("{wanted:?} is not a Unix path")),
        }
    }
    let local = manifest_dir.join(&relative);
    let (Ok(real), Ok(root)) = (local.canonicalize(), manifest_dir.canonicalize()) else {
        return Err(format!(
            "{wanted:?} is {} locally, which does not exist (flint dev takes workingDir relative to the manifest's directory, which stands for the image's root)",
            local.display()
        ));
    };
    if !real.starts_with(&root) {
        return Err(format!(
            "{wanted:?} is {} locally, a link out of the manifest's directory {}",
            local.display(),
            manifest_dir.display()
        ));
    }
    if !real.is_dir() {
        return Err(format!(
            "{wanted:?} is {} locally, which is not a directory",
            local.display()
        ));
    }
    Ok(local)
}
