//! Files that hold private keys (the saved applied state, HAProxy's certificate files): written
//! 0600 inside 0700 folders, durably (write and fsync a temporary file, rename it into place, fsync
//! the folder), on a blocking thread so the async runtime never waits on the disk.
use std::{
    fs,
    io::{self, Write as _},
    os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _},
    path::{Path, PathBuf},
};

/// Creates `dir` (and its missing parents) mode 0700, and makes an existing `dir` 0700.
pub fn private_dir(dir: &Path) -> io::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
}

/// Replaces `path` with `bytes`, mode 0600, in a 0700 folder. A crash leaves either the old file
/// or the new one, never a mix, and a rename that returned is on disk.
pub fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "a file path is needed"))?;
    private_dir(dir)?;
    let mut temporary = name.to_os_string();
    temporary.push(".tmp");
    let temporary = dir.join(temporary);
    match fs::remove_file(&temporary) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temporary)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    fs::rename(&temporary, path)?;
    fs::File::open(dir)?.sync_all()
}

/// `write_private` on a blocking thread.
pub async fn write_private_async(path: PathBuf, bytes: Vec<u8>) -> io::Result<()> {
    tokio::task::spawn_blocking(move || write_private(&path, &bytes))
        .await
        .map_err(io::Error::other)?
}

/// `private_dir` on a blocking thread.
pub async fn private_dir_async(dir: PathBuf) -> io::Result<()> {
    tokio::task::spawn_blocking(move || private_dir(&dir))
        .await
        .map_err(io::Error::other)?
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[tokio::test]
    async fn keys_are_private_and_replaced_whole() {
        let root = std::env::temp_dir().join(format!("lbaas-private-{}", uuid::Uuid::new_v4()));
        // A folder that exists with the default umask's 0755 is tightened, not trusted.
        fs::create_dir_all(&root).unwrap();
        fs::set_permissions(&root, fs::Permissions::from_mode(0o755)).unwrap();
        let file = root.join("device").join("applied.pb");
        write_private_async(file.clone(), b"first".to_vec())
            .await
            .unwrap();
        write_private_async(file.clone(), b"second".to_vec())
            .await
            .unwrap();
        assert_eq!(fs::read(&file).unwrap(), b"second");
        assert_eq!(mode(&file), 0o600);
        assert_eq!(mode(&root.join("device")), 0o700);
        private_dir_async(root.clone()).await.unwrap();
        assert_eq!(mode(&root), 0o700);
        // No temporary file is left behind.
        assert_eq!(fs::read_dir(root.join("device")).unwrap().count(), 1);
        fs::remove_dir_all(root).unwrap();
    }
}
