//! Names and paths that come from users: a name is one plain path component, and a path is
//! resolved inside the data root or refused (`..`, absolute paths, symlinks leading out).

use std::path::{Component, Path, PathBuf};

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PathError {
    #[error("{what} {name:?}: {problem}")]
    BadName { what: &'static str, name: String, problem: &'static str },
    #[error("dataset path {path:?}: {problem}")]
    Refused { path: String, problem: String },
    #[error("dataset path {path:?} does not exist under the data root")]
    Missing { path: String },
    #[error("data root {root}: {problem}")]
    Root { root: String, problem: String },
}

/// Checks that `name` is a safe single path component: 1 to 128 bytes, no path
/// separators, control characters or characters other systems refuse in file names
/// (`:*?"<>|`), not starting with a dot or a space, not ending with a space or a dot.
pub fn check_name(what: &'static str, name: &str) -> Result<(), PathError> {
    let bad = |problem| Err(PathError::BadName { what, name: name.to_string(), problem });
    if name.is_empty() || name.len() > 128 {
        return bad("must be 1 to 128 bytes long");
    }
    if name.starts_with(['.', ' ']) || name.ends_with([' ', '.']) {
        return bad("must not start with a dot or a space, nor end with a space or a dot");
    }
    if name.chars().any(|c| c.is_control() || "/\\:*?\"<>|".contains(c)) {
        return bad("must not hold '/', '\\', ':', '*', '?', '\"', '<', '>', '|' or control characters");
    }
    Ok(())
}

/// The canonical form of the data root (it must exist and be a folder).
pub fn canonical_root(root: &Path) -> Result<PathBuf, PathError> {
    let err = |problem: String| PathError::Root { root: root.display().to_string(), problem };
    let canonical = root.canonicalize().map_err(|e| err(e.to_string()))?;
    if !canonical.is_dir() {
        return Err(err("not a folder".into()));
    }
    Ok(canonical)
}

/// Resolves a user-supplied relative path inside `root` (already canonical). Refuses
/// absolute paths and `..` outright, and anything whose real location (symlinks
/// followed) lies outside the root.
pub fn resolve_inside(root: &Path, requested: &str) -> Result<PathBuf, PathError> {
    let refused = |problem: &str| PathError::Refused { path: requested.to_string(), problem: problem.to_string() };
    if requested.trim().is_empty() {
        return Err(refused("is empty"));
    }
    if requested.contains('\0') {
        return Err(refused("contains a NUL character"));
    }
    let rel = Path::new(requested);
    for component in rel.components() {
        match component {
            Component::Normal(_) | Component::CurDir => {}
            Component::ParentDir => return Err(refused("must not contain '..'")),
            Component::RootDir | Component::Prefix(_) => {
                return Err(refused("must be relative to the data root, not absolute"))
            }
        }
    }
    let joined = root.join(rel);
    let real = joined.canonicalize().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => PathError::Missing { path: requested.to_string() },
        _ => refused(&e.to_string()),
    })?;
    if !real.starts_with(root) {
        return Err(refused("leads outside the data root (through a symbolic link)"));
    }
    Ok(real)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_single_plain_components() {
        for ok in ["cwru", "inner race 7", "a.b_c-1", "007", "OR007@6", "12k_Drive_End_OR007@6_0_130.wav", "naïve"] {
            assert_eq!(check_name("label", ok), Ok(()), "{ok}");
        }
        for bad in ["", ".", "..", ".hidden", "a/b", "a\\b", "x\0", " lead", "trail.", "a:b", "a\nb", &"x".repeat(129)]
        {
            assert!(check_name("label", bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn paths_resolve_inside_the_root_and_escapes_are_refused() {
        let outer = tempfile::tempdir().unwrap();
        let root_dir = outer.path().join("root");
        std::fs::create_dir_all(root_dir.join("sets/cwru")).unwrap();
        std::fs::create_dir_all(outer.path().join("secret")).unwrap();
        let root = canonical_root(&root_dir).unwrap();

        assert_eq!(resolve_inside(&root, "sets/cwru").unwrap(), root.join("sets/cwru"));
        assert_eq!(resolve_inside(&root, "./sets/./cwru/").unwrap(), root.join("sets/cwru"));

        let problem = |p: &str| match resolve_inside(&root, p) {
            Err(PathError::Refused { problem, .. }) => problem,
            other => panic!("{p}: {other:?}"),
        };
        assert!(problem("../secret").contains(".."));
        assert!(problem("sets/../../secret").contains(".."));
        assert!(problem(outer.path().join("secret").to_str().unwrap()).contains("absolute"));
        assert!(problem("/etc").contains("absolute"));
        assert!(problem("").contains("empty"));

        std::os::unix::fs::symlink(outer.path().join("secret"), root.join("sets/link")).unwrap();
        assert!(problem("sets/link").contains("outside"));
        // A symlink that stays inside the root is fine.
        std::os::unix::fs::symlink(root.join("sets/cwru"), root.join("alias")).unwrap();
        assert_eq!(resolve_inside(&root, "alias").unwrap(), root.join("sets/cwru"));

        assert_eq!(resolve_inside(&root, "sets/none"), Err(PathError::Missing { path: "sets/none".into() }));
    }
}
