//! Credentials kept in a directory: `ca.crt`, `node.crt` and `node.key` (0600).

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::{Result, TlsError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

impl Credentials {
    fn paths(dir: &Path) -> [PathBuf; 3] {
        [
            dir.join("ca.crt"),
            dir.join("node.crt"),
            dir.join("node.key"),
        ]
    }

    /// `None` if the directory holds no credentials yet; an error if it holds some
    /// but not all of them.
    pub fn load(dir: &Path) -> Result<Option<Self>> {
        let [ca, cert, key] = Self::paths(dir);
        let present = [&ca, &cert, &key].iter().filter(|p| p.exists()).count();
        if present == 0 {
            return Ok(None);
        }
        if present < 3 {
            return Err(TlsError::Invalid(format!(
                "{} holds only part of this machine's credentials (ca.crt, node.crt, node.key); \
                 remove the folder and join again with a new token",
                dir.display()
            )));
        }
        Ok(Some(Credentials {
            ca_pem: std::fs::read_to_string(ca)?,
            cert_pem: std::fs::read_to_string(cert)?,
            key_pem: std::fs::read_to_string(key)?,
        }))
    }

    /// The certificate and key, ready for rustls, if the certificate is for `want`.
    pub fn live_for(&self, want: &crate::Identity) -> Result<std::sync::Arc<crate::LiveCert>> {
        let live = crate::LiveCert::new(&self.cert_pem, &self.key_pem)?;
        match live.identity() {
            Some(id) if id == *want => Ok(live),
            other => Err(TlsError::Invalid(format!(
                "the certificate is for {other:?}, not for {want}"
            ))),
        }
    }

    /// Writes all three files (each to a temp file, synced, then renamed).
    pub fn save(&self, dir: &Path) -> Result<()> {
        create_private_dir(dir)?;
        let [ca, cert, key] = Self::paths(dir);
        write_private(&ca, self.ca_pem.as_bytes())?;
        write_private(&key, self.key_pem.as_bytes())?;
        write_private(&cert, self.cert_pem.as_bytes())?;
        Ok(())
    }
}

pub fn create_private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    Ok(())
}

/// Writes `bytes` to `path` atomically with mode 0600.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saved_credentials_load_back_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("dir");
        let tls = dir.path().join("tls");
        assert_eq!(Credentials::load(&tls).expect("load"), None);
        let c = Credentials {
            ca_pem: "ca".into(),
            cert_pem: "cert".into(),
            key_pem: "key".into(),
        };
        c.save(&tls).expect("save");
        assert_eq!(Credentials::load(&tls).expect("load"), Some(c));
        let mode = std::fs::metadata(tls.join("node.key"))
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        std::fs::remove_file(tls.join("node.crt")).expect("rm");
        assert!(Credentials::load(&tls).is_err());
    }
}
