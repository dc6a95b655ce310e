//! Which store file `import` and `export` work on: the same settings
//! `serve` and `standalone` read (`--store`/`UPID_STORE`, then the config
//! file's `store`), then whichever of the two modes' default files exists.

use std::path::{Path, PathBuf};

use crate::config::{FileConfig, SERVE_STORE, default_standalone_store};

use super::ImportError;

/// `flag` (from `--store` or `UPID_STORE`), else the config file's `store`,
/// else the default store of `serve` or of `standalone`, whichever exists.
///
/// With neither given nor existing the caller must say: the two modes'
/// defaults differ, and creating a store where no collector will look
/// would lose the import.
pub fn resolve_store_path(flag: Option<&Path>, file: &FileConfig) -> Result<PathBuf, ImportError> {
    if let Some(path) = flag.map(Path::to_path_buf).or_else(|| file.store.clone()) {
        return Ok(path);
    }
    let standalone = default_standalone_store(
        std::env::var("XDG_DATA_HOME").ok().as_deref(),
        std::env::var("HOME").ok().as_deref(),
    )
    .ok();
    let candidates: Vec<PathBuf> = std::iter::once(PathBuf::from(SERVE_STORE))
        .chain(standalone)
        .collect();
    if let Some(found) = candidates.iter().find(|p| p.exists()) {
        return Ok(found.clone());
    }
    let tried: Vec<String> = candidates.iter().map(|p| p.display().to_string()).collect();
    Err(ImportError::NoStore {
        tried: tried.join(", "),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flag_wins_over_the_config_file() {
        let file = FileConfig {
            store: Some(PathBuf::from("/from/file.duckdb")),
            ..FileConfig::default()
        };
        assert_eq!(
            resolve_store_path(Some(Path::new("/from/flag.duckdb")), &file).ok(),
            Some(PathBuf::from("/from/flag.duckdb"))
        );
        assert_eq!(
            resolve_store_path(None, &file).ok(),
            Some(PathBuf::from("/from/file.duckdb"))
        );
    }
}
