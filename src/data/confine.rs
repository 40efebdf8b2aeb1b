//! Keeping a data set's reads inside one folder: a path a manifest names must be relative
//! and free of `..`, and whatever it resolves to (symbolic links followed) must lie in the
//! root; anything but a regular file is refused by the reader itself.

use std::path::{Component, Path};

use super::DataError;

/// Refuses a manifest's `file` cell that is absolute or climbs with `..`.
pub(crate) fn check_relative(manifest: &str, line: u64, name: &str) -> Result<(), DataError> {
    let refused = |problem: &str| DataError::malformed(manifest, format!("line {line}: file {name:?} {problem}"));
    for component in Path::new(name).components() {
        match component {
            Component::Normal(_) | Component::CurDir => {}
            Component::ParentDir => return Err(refused("must not contain '..'")),
            // Not echoed: it names a place outside the data root.
            Component::RootDir | Component::Prefix(_) => {
                return Err(DataError::malformed(
                    manifest,
                    format!("line {line}: an absolute file path; paths must be relative to the manifest"),
                ))
            }
        }
    }
    Ok(())
}

/// Refuses `path` unless its real location lies inside `root` (canonical).
pub(crate) fn check(root: &Path, path: &Path) -> Result<(), DataError> {
    let real = path.canonicalize().map_err(|e| DataError::io(path, e))?;
    if !real.starts_with(root) {
        return Err(DataError::malformed(
            &path.display().to_string(),
            "leads outside the data root (through a symbolic link)",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_paths_stay_relative_and_links_stay_inside() {
        assert!(check_relative("m.csv", 2, "a/b.mat").is_ok());
        assert!(check_relative("m.csv", 2, "./b.mat").is_ok());
        let e = check_relative("m.csv", 3, "../secret.mat").unwrap_err().to_string();
        assert!(e.contains("line 3") && e.contains("'..'"), "{e}");
        assert!(check_relative("m.csv", 4, "/etc/passwd").unwrap_err().to_string().contains("relative"));

        let outer = tempfile::tempdir().unwrap();
        let root = outer.path().join("root");
        std::fs::create_dir(&root).unwrap();
        std::fs::write(outer.path().join("secret.csv"), "1\n").unwrap();
        std::fs::write(root.join("ok.csv"), "1\n").unwrap();
        std::os::unix::fs::symlink(outer.path().join("secret.csv"), root.join("link.csv")).unwrap();
        let root = root.canonicalize().unwrap();
        assert!(check(&root, &root.join("ok.csv")).is_ok());
        assert!(check(&root, &root.join("link.csv")).unwrap_err().to_string().contains("outside the data root"));
    }
}
