//! SSH commit signatures: the SSHSIG armour `git verify-commit` checks with
//! `gpg.format=ssh`, made by `ssh-keygen -Y sign` so that no crypto code of our own (or a
//! crate for it) is needed.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use super::WorkspaceError;

/// The namespace git signs and verifies commits in.
const NAMESPACE: &str = "git";

/// The armoured SSH signature of `payload` (a commit buffer) made with the private key at
/// `key`. The key must have no passphrase: nobody is there to type it.
pub(super) fn ssh_sign(key: &Path, payload: &str) -> Result<String, WorkspaceError> {
    let failed = |what: String| WorkspaceError::Signing(what);
    let mut child = Command::new("ssh-keygen")
        .args(["-Y", "sign", "-n", NAMESPACE, "-f"])
        .arg(key)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|err| failed(format!("cannot run ssh-keygen ({err}); install OpenSSH's client tools")))?;
    // ssh-keygen reads all of stdin before it writes: the payload cannot fill a pipe both ways.
    let written = child.stdin.take().map(|mut stdin| stdin.write_all(payload.as_bytes()));
    let output = child.wait_with_output().map_err(|err| failed(format!("ssh-keygen: {err}")))?;
    if let Some(Err(err)) = written {
        return Err(failed(format!("cannot hand the commit to ssh-keygen: {err}")));
    }
    let signature = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() || !signature.contains("-----BEGIN SSH SIGNATURE-----") {
        let said = String::from_utf8_lossy(&output.stderr);
        let said = said.trim();
        return Err(failed(format!(
            "ssh-keygen -Y sign with {} failed ({}): {said}; the key must be an SSH private key without a passphrase",
            key.display(),
            output.status
        )));
    }
    Ok(signature)
}
