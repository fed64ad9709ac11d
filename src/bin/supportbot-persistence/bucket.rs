//! A directory copy of the bucket: each object a file at its key's path (what `rclone copy`
//! of the bucket, or `wrangler r2 object get <bucket>/<key> --file=<dir>/<key>`, makes).

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// The objects of a copy, by key.
#[derive(Debug)]
pub struct Bucket {
    objects: BTreeMap<String, PathBuf>,
}

impl Bucket {
    /// Lists every file under `root` (following symbolic links, as a copy may be assembled
    /// from several downloads); its key is its path below `root`, `/`-separated.
    pub fn open(root: &Path) -> Result<Bucket, String> {
        let mut objects = BTreeMap::new();
        let mut folders = vec![root.to_path_buf()];
        while let Some(folder) = folders.pop() {
            let entries = fs::read_dir(&folder).map_err(|err| io_error(&folder, &err))?;
            for entry in entries {
                let path = entry.map_err(|err| io_error(&folder, &err))?.path();
                let meta = fs::metadata(&path).map_err(|err| io_error(&path, &err))?;
                if meta.is_dir() {
                    folders.push(path);
                } else if let Some(key) = key_of(root, &path) {
                    objects.insert(key, path);
                }
            }
        }
        Ok(Bucket { objects })
    }

    /// Every key, in R2's (byte) order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.objects.keys().map(String::as_str)
    }

    /// How many objects.
    pub fn len(&self) -> usize {
        self.objects.len()
    }

    /// The bytes of the object under `key`; `Ok(None)` when the copy has none.
    pub fn read(&self, key: &str) -> Result<Option<Vec<u8>>, String> {
        let Some(path) = self.objects.get(key) else {
            return Ok(None);
        };
        fs::read(path).map(Some).map_err(|err| io_error(path, &err))
    }
}

/// The key of the file `path` below `root`.
fn key_of(root: &Path, path: &Path) -> Option<String> {
    let relative = path.strip_prefix(root).ok()?;
    let parts: Vec<String> = relative
        .components()
        .map(|part| part.as_os_str().to_string_lossy().into_owned())
        .collect();
    Some(parts.join("/"))
}

/// An I/O error naming its path.
pub fn io_error(path: &Path, err: &io::Error) -> String {
    format!("{}: {err}", path.display())
}
