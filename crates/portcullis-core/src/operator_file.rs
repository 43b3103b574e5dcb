//! Reading a file the operator's config names (a prompt template, a static resource, a
//! seed, a JWKS or CA file): only a regular file (a FIFO would block the load or the reload
//! for good, a device never end), and only up to a cap (a file of gigabytes would take the
//! process's memory).

use std::io::Read as _;
use std::path::Path;

/// The most a file named by the config may hold.
pub const MAX_OPERATOR_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// The bytes of `path`: a regular file (symlinks followed) of at most
/// [`MAX_OPERATOR_FILE_BYTES`].
///
/// # Errors
///
/// Not there, not a regular file, larger than the cap, or unreadable; the message says
/// which.
pub fn read(path: &Path) -> std::io::Result<Vec<u8>> {
    let meta = std::fs::metadata(path)?;
    if !meta.is_file() {
        return Err(std::io::Error::other(
            "it is not a regular file (a folder, a FIFO or a device); name a file",
        ));
    }
    let too_big = || {
        std::io::Error::other(format!(
            "it is larger than {} MiB, the most a file the config names may hold",
            MAX_OPERATOR_FILE_BYTES / (1024 * 1024)
        ))
    };
    if meta.len() > MAX_OPERATOR_FILE_BYTES {
        return Err(too_big());
    }
    let file = std::fs::File::open(path)?;
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    // It may grow between the look and the read: never past the cap.
    file.take(MAX_OPERATOR_FILE_BYTES + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_OPERATOR_FILE_BYTES {
        return Err(too_big());
    }
    Ok(bytes)
}

/// [`read`] as UTF-8 text.
///
/// # Errors
///
/// As [`read`], or the file is not UTF-8.
pub fn read_to_string(path: &Path) -> std::io::Result<String> {
    String::from_utf8(read(path)?).map_err(|_| std::io::Error::other("it is not UTF-8 text"))
}

#[cfg(test)]
#[allow(
    clippy::disallowed_methods,
    reason = "the tests make the files and the FIFO they read"
)]
mod tests {
    use super::*;

    #[test]
    fn only_regular_files_under_the_cap_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("t.txt");
        std::fs::write(&file, "hello").unwrap();
        assert_eq!(read_to_string(&file).unwrap(), "hello");
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        assert_eq!(read_to_string(&link).unwrap(), "hello");
        assert!(
            read(dir.path())
                .unwrap_err()
                .to_string()
                .contains("not a regular file")
        );
        assert!(
            read(Path::new("/dev/zero"))
                .unwrap_err()
                .to_string()
                .contains("not a regular file")
        );
        let big = dir.path().join("big");
        std::fs::File::create(&big)
            .unwrap()
            .set_len(MAX_OPERATOR_FILE_BYTES + 1)
            .unwrap();
        assert!(
            read(&big)
                .unwrap_err()
                .to_string()
                .contains("larger than 16 MiB")
        );
        std::fs::write(&file, [0xff, 0xfe]).unwrap();
        assert!(
            read_to_string(&file)
                .unwrap_err()
                .to_string()
                .contains("not UTF-8")
        );
        assert!(read(&dir.path().join("missing")).is_err());
    }

    #[test]
    fn a_fifo_is_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        if !made.is_ok_and(|s| s.success()) {
            return;
        }
        assert!(
            read(&fifo)
                .unwrap_err()
                .to_string()
                .contains("not a regular file")
        );
    }
}
