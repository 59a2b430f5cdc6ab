//! Unified social credit codes (统一社会信用代码, GB 32100-2015): 18
//! characters from `0-9` and the capital letters without I, O, S, V, Z —
//! registration authority, entity type, six digits of region, the nine
//! characters of the organisation code (GB 11714), and a check character
//! (weighted sum mod 31).
use std::fmt;

/// The code's alphabet; a character's value is its position (0–30).
const ALPHABET: &[u8; 31] = b"0123456789ABCDEFGHJKLMNPQRTUWXY";
const WEIGHTS: [u32; 17] = [1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28];

/// What is wrong with a credit code; the messages never repeat the code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UsccError {
    /// Not 18 characters (after trimming): how many there were.
    Length(usize),
    /// A character outside `0-9A-Y` without I, O, S, V, Z.
    Characters,
    /// The check character does not match.
    Check,
}

impl UsccError {
    /// A stable key for message catalogs (`uscc.length`, …).
    pub fn key(self) -> &'static str {
        match self {
            UsccError::Length(_) => "uscc.length",
            UsccError::Characters => "uscc.characters",
            UsccError::Check => "uscc.check",
        }
    }
}

impl fmt::Display for UsccError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UsccError::Length(n) => write!(f, "a unified social credit code has 18 characters, this one has {n}"),
            UsccError::Characters => f.write_str(
                "a unified social credit code has only digits and capital letters other than I, O, S, V and Z",
            ),
            UsccError::Check => {
                f.write_str("the unified social credit code's check character does not match (a typing error?)")
            }
        }
    }
}

impl std::error::Error for UsccError {}

/// A valid unified social credit code, upper case.
#[derive(Clone, PartialEq, Eq)]
pub struct Uscc(String);

impl fmt::Debug for Uscc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Uscc({})", super::mask_id(&self.0))
    }
}

fn value(c: u8) -> Option<u32> {
    ALPHABET.iter().position(|a| *a == c).map(|p| p as u32)
}

/// The check character for the first seventeen values.
fn check_char(values: &[u32]) -> u8 {
    let sum: u32 = values.iter().zip(WEIGHTS).map(|(v, w)| v * w).sum();
    ALPHABET[((31 - sum % 31) % 31) as usize]
}

/// GB 11714 check character of an organisation code's first eight characters.
fn org_check(body: &[u8]) -> Option<u8> {
    const W: [u32; 8] = [3, 7, 9, 10, 5, 8, 4, 2];
    let mut sum = 0;
    for (c, w) in body.iter().zip(W) {
        let v = match c {
            b'0'..=b'9' => u32::from(c - b'0'),
            b'A'..=b'Z' => u32::from(c - b'A') + 10,
            _ => return None,
        };
        sum += v * w;
    }
    Some(match 11 - sum % 11 {
        10 => b'X',
        11 => b'0',
        d => b'0' + d as u8,
    })
}

impl Uscc {
    /// Checks `input` (surrounding spaces ignored, letters upper-cased).
    pub fn parse(input: &str) -> Result<Uscc, UsccError> {
        let s = input.trim().to_ascii_uppercase();
        let n = s.chars().count();
        if n != 18 {
            return Err(UsccError::Length(n));
        }
        let values: Vec<u32> = s.bytes().map(value).collect::<Option<_>>().ok_or(UsccError::Characters)?;
        if check_char(&values[..17]) != s.as_bytes()[17] {
            return Err(UsccError::Check);
        }
        Ok(Uscc(s))
    }

    /// A valid code from the registration authority and entity type (two
    /// characters, e.g. `91` for a company registered with market
    /// regulation), a six-digit region and eight characters of organisation
    /// code (digits or letters of the alphabet); the organisation code's own
    /// GB 11714 check and the final check character are computed.
    pub fn generate(authority_type: &str, region: &str, org: &str) -> Result<Uscc, UsccError> {
        let (a, r, o) = (authority_type.as_bytes(), region.as_bytes(), org.as_bytes());
        if a.len() != 2 || r.len() != 6 || o.len() != 8 || !r.iter().all(u8::is_ascii_digit) {
            return Err(UsccError::Characters);
        }
        let oc = org_check(o).ok_or(UsccError::Characters)?;
        let mut s = format!("{authority_type}{region}{org}{}", char::from(oc));
        let values: Vec<u32> = s.bytes().map(value).collect::<Option<_>>().ok_or(UsccError::Characters)?;
        s.push(char::from(check_char(&values)));
        Ok(Uscc(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn known_codes() {
        assert_eq!(Uscc::parse("91350100M000100Y43").unwrap().as_str(), "91350100M000100Y43");
        assert_eq!(Uscc::parse(" 91350100m000100y43 ").unwrap().as_str(), "91350100M000100Y43");
        // The generator agrees with the published sample, organisation check included.
        assert_eq!(Uscc::generate("91", "350100", "M000100Y").unwrap().as_str(), "91350100M000100Y43");
        assert_eq!(Uscc::parse("91350100M000100Y4"), Err(UsccError::Length(17)));
        assert_eq!(Uscc::parse("91350100M000100I43"), Err(UsccError::Characters));
        assert_eq!(Uscc::parse("91350100M000100Y44"), Err(UsccError::Check));
        assert_eq!(UsccError::Check.key(), "uscc.check");
    }

    #[test]
    fn a_sum_of_zero_gives_check_zero() {
        // Seventeen zeros: 31 - 0 = 31, written 0.
        assert_eq!(Uscc::parse("000000000000000000").unwrap().as_str(), "000000000000000000");
    }

    fn valid() -> impl Strategy<Value = Uscc> {
        let alpha: Vec<char> = ALPHABET.iter().map(|c| char::from(*c)).collect();
        let ch = proptest::sample::select(alpha);
        (proptest::collection::vec(ch, 17)).prop_map(|v| {
            let body: String = v.into_iter().collect();
            let values: Vec<u32> = body.bytes().filter_map(value).collect();
            Uscc::parse(&format!("{body}{}", char::from(check_char(&values)))).unwrap()
        })
    }

    proptest! {
        #[test]
        fn generated_codes_round_trip(org in 0u32..100_000_000, r in 0usize..10) {
            let region = ["110105", "310115", "440305", "350100", "510107", "370202", "330106", "420106", "610113", "500103"][r];
            let code = Uscc::generate("91", region, &format!("{org:08}")).unwrap();
            prop_assert_eq!(Uscc::parse(code.as_str()).unwrap(), code.clone());
            prop_assert_eq!(Uscc::parse(&code.as_str().to_ascii_lowercase()).unwrap(), code);
        }

        #[test]
        fn every_single_substitution_is_rejected(code in valid()) {
            let s = code.as_str().as_bytes().to_vec();
            for i in 0..s.len() {
                for c in ALPHABET {
                    if *c == s[i] {
                        continue;
                    }
                    let mut t = s.clone();
                    t[i] = *c;
                    let t = String::from_utf8(t).unwrap();
                    prop_assert!(Uscc::parse(&t).is_err(), "accepted {} (position {})", t, i + 1);
                }
            }
        }

        #[test]
        fn every_adjacent_transposition_is_rejected(code in valid()) {
            let s = code.as_str().as_bytes().to_vec();
            for i in 0..s.len() - 1 {
                if s[i] == s[i + 1] {
                    continue;
                }
                let mut t = s.clone();
                t.swap(i, i + 1);
                let t = String::from_utf8(t).unwrap();
                prop_assert!(Uscc::parse(&t).is_err(), "accepted {} (positions {}-{})", t, i + 1, i + 2);
            }
        }
    }
}
