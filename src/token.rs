//! Random tokens (admin token, session ids, worker names, temporary file names): a leaf
//! module, so every layer may use it.

/// 32 random bytes as hex.
pub fn generate_token() -> std::io::Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(std::io::Error::other)?;
    Ok(hex::encode(bytes))
}
