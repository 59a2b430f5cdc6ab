//! Real name: the numbers a person or an enterprise is known by in the
//! national registries, checked before anything is stored or looked up.
//!
//! - [`ResidentId`]: the resident identity card number (公民身份号码,
//!   GB 11643-1999), also the 2023 foreigners' permanent residence ID.
//! - [`Uscc`]: the unified social credit code (统一社会信用代码, GB 32100-2015).
//! - [`mask_id`], [`mask_name`]: what may appear on a screen or in a log.
//!
//! Errors say what is wrong without repeating the number, so they can be
//! shown on a page, printed by the CLI or logged.
pub mod id_number;
pub mod uscc;

pub use id_number::{IdError, ResidentId, Sex};
pub use uscc::{Uscc, UsccError};

/// `3702**********1234`: the first four and last four characters, one `*`
/// for each character between. Eight characters or fewer are all masked.
pub fn mask_id(s: &str) -> String {
    let chars: Vec<char> = s.trim().chars().collect();
    let n = chars.len();
    if n <= 8 {
        return "*".repeat(n);
    }
    let mut out = String::with_capacity(n + 6);
    out.extend(&chars[..4]);
    out.extend(std::iter::repeat_n('*', n - 8));
    out.extend(&chars[n - 4..]);
    out
}

/// `张三丰` → `张**`: the first character, one `*` for each other one. A
/// one-character name is masked whole.
pub fn mask_name(s: &str) -> String {
    let mut chars = s.trim().chars();
    match chars.next() {
        None => String::new(),
        Some(first) => {
            let rest = chars.count();
            if rest == 0 { "*".to_string() } else { format!("{first}{}", "*".repeat(rest)) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks() {
        assert_eq!(mask_id("370202199001011234"), "3702**********1234");
        assert_eq!(mask_id(" 91350100M000100Y43 "), "9135**********0Y43");
        assert_eq!(mask_id("12345678"), "********");
        assert_eq!(mask_name("张三丰"), "张**");
        assert_eq!(mask_name("张三"), "张*");
        assert_eq!(mask_name("张"), "*");
        assert_eq!(mask_name(""), "");
    }
}
