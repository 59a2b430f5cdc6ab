//! Password hashing with Argon2id (PHC strings) and timing-safe handling of
//! unknown accounts. All functions are CPU-heavy and synchronous: call them
//! from `spawn_blocking`.

use std::sync::OnceLock;

use argon2::password_hash::phc::PasswordHash;
use argon2::{Algorithm, Argon2, Block, Params, PasswordHasher as _, Version};

use crate::crypto::CryptoError;
use crate::crypto::random::fill;

/// OWASP's recommended Argon2id setting: 19 MiB, 2 passes, 1 lane.
const M_COST_KIB: u32 = 19_456;
const T_COST: u32 = 2;
const P_COST: u32 = 1;
const SALT_LEN: usize = 16;

/// Upper bounds on the cost parameters accepted from a stored PHC string, so a
/// corrupted or planted hash cannot make one login allocate gigabytes or spin
/// for minutes. Generous enough for future increases of the defaults.
const MAX_M_COST_KIB: u32 = 256 * 1024;
const MAX_T_COST: u32 = 16;
const MAX_P_COST: u32 = 8;

fn hasher() -> Result<Argon2<'static>, CryptoError> {
    let params = Params::new(M_COST_KIB, T_COST, P_COST, None)
        .map_err(|_| CryptoError::Internal("invalid Argon2 parameters"))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// Hashes `password` with Argon2id and a random salt, as a PHC string.
pub fn hash(password: &str) -> Result<String, CryptoError> {
    let mut salt = [0u8; SALT_LEN];
    fill(&mut salt)?;
    hasher()?
        .hash_password_with_salt(password.as_bytes(), &salt)
        .map(|phc| phc.to_string())
        .map_err(|_| CryptoError::Internal("Argon2 hashing failed"))
}

/// Checks `password` against a PHC string from [`hash`]; `false` for a wrong
/// password and for any malformed or out-of-bounds PHC string.
pub fn verify(phc: &str, password: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(phc) else {
        return false;
    };
    let Ok(params) = Params::try_from(&parsed) else {
        return false;
    };
    if params.m_cost() > MAX_M_COST_KIB || params.t_cost() > MAX_T_COST || params.p_cost() > MAX_P_COST {
        return false;
    }
    // The algorithm, version and parameters come from the PHC string, so
    // hashes made with older settings keep verifying.
    let (Some(salt), Some(expected)) = (&parsed.salt, &parsed.hash) else {
        return false;
    };
    let Ok(algorithm) = Algorithm::try_from(parsed.algorithm.as_str()) else {
        return false;
    };
    let version = match parsed.version.map(Version::try_from) {
        None => Version::default(),
        Some(Ok(v)) => v,
        Some(Err(_)) => return false,
    };
    let argon = Argon2::new(algorithm, version, params.clone());
    let mut out = vec![0u8; expected.as_bytes().len()];
    // Each hashing thread keeps its Argon2 memory (19 MiB with the defaults)
    // and reuses it: a fresh allocation this large is a fresh mmap, and the
    // kernel faulting in and zeroing 4,800 pages doubled the cost of every
    // sign-in (docs/PERFORMANCE.md, "Citizen pages and password sign-in").
    let done = MEMORY.with(|m| {
        let mut m = m.borrow_mut();
        let need = params.block_count();
        if m.len() < need {
            *m = huge_paged(need);
        }
        match m.get_mut(..need) {
            Some(blocks) => argon.hash_password_into_with_memory(password.as_bytes(), salt.as_ref(), &mut out, blocks),
            None => Err(argon2::Error::MemoryTooLittle),
        }
    });
    done.is_ok() && crate::crypto::random::ct_eq(&out, expected.as_bytes())
}

/// A zeroed Argon2 memory of `blocks` blocks, asked for on transparent
/// huge pages before it is first touched. Argon2id reads its 19 MiB at
/// data-dependent places: on 4 KiB pages nearly every block read misses
/// the TLB, and huge pages made the hash ~18% faster here
/// (docs/PERFORMANCE.md). A hint only: where the kernel has no huge pages
/// to give, the memory is ordinary.
fn huge_paged(blocks: usize) -> Vec<Block> {
    let mut v: Vec<Block> = Vec::with_capacity(blocks);
    #[cfg(target_os = "linux")]
    {
        const PAGE: usize = 4096;
        let start = v.as_mut_ptr() as usize;
        let end = start + blocks * std::mem::size_of::<Block>();
        let first = start.next_multiple_of(PAGE);
        if end > first + PAGE {
            let len = (end - first) / PAGE * PAGE;
            // SAFETY: the range lies within the vector's own allocation
            // (whole pages inside it) and madvise(MADV_HUGEPAGE) only sets
            // a paging hint on it; it changes no memory contents.
            unsafe {
                libc::madvise(first as *mut libc::c_void, len, libc::MADV_HUGEPAGE);
            }
        }
    }
    v.resize(blocks, Block::new());
    v
}

thread_local! {
    /// The Argon2 memory of this thread, reused by every verification on it.
    static MEMORY: std::cell::RefCell<Vec<Block>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Spends the same time as [`verify`] on a real account, for logins naming an
/// unknown account, so response times do not reveal which accounts exist.
pub fn dummy_verify(password: &str) {
    static DUMMY: OnceLock<Option<String>> = OnceLock::new();
    // Computed with the current parameters (rather than a hard-coded string)
    // so the cost always matches freshly hashed passwords.
    if let Some(phc) = DUMMY.get_or_init(|| hash("civid dummy password").ok()) {
        let _ = verify(phc, password);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_and_verify() {
        let phc = hash("correct horse battery staple").unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(verify(&phc, "correct horse battery staple"));
        assert!(!verify(&phc, "correct horse battery stapler"));
        assert!(!verify(&phc, ""));
        // Random salts.
        assert_ne!(phc, hash("correct horse battery staple").unwrap());
    }

    #[test]
    fn malformed_phc_is_false() {
        let phc = hash("pw").unwrap();
        for bad in [
            "",
            "$",
            "plaintext",
            "$argon2id$",
            "$argon2id$v=19$m=19456,t=2,p=1$",
            "$bcrypt$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$aGFzaA",
            "$argon2id$v=19$m=1,t=2,p=1$c2FsdHNhbHRzYWx0c2FsdA$aGFzaGhhc2hoYXNoaGFzaA",
            &phc[..phc.len() - 5],
            &phc.replace("m=19456", "m=4194304"),
            &phc.replace("t=2", "t=1000"),
            &phc.replace("p=1", "p=255"),
        ] {
            assert!(!verify(bad, "pw"), "{bad}");
        }
    }

    #[test]
    fn dummy_verify_runs() {
        dummy_verify("anything");
        dummy_verify("");
    }
}
