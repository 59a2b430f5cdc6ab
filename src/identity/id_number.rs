//! Resident identity card numbers (公民身份号码, GB 11643-1999): six digits
//! of the registering county, the birth date `YYYYMMDD`, a three-digit
//! sequence whose last digit is odd for men and even for women, and a check
//! character by ISO 7064 MOD 11-2 (`0`–`9` or `X`). The 2023 foreigners'
//! permanent residence ID has the same structure and starts with `9`.
use std::fmt;

use chrono::{Datelike, NaiveDate};

/// Weights of the first seventeen characters (2^(17-i) mod 11).
const WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
/// The check character for each value of the weighted sum mod 11.
const CHECK: &[u8; 11] = b"10X98765432";

/// Real county-level codes (GB/T 2260), a few per region, for generated
/// numbers: tests and `civid registry synth`.
pub const COUNTY_CODES: &[&str] = &[
    "110101", "110105", "110108", "120101", "120104", "130102", "140105", "150102", "210102", "220102", "230102",
    "310101", "310104", "310115", "320102", "320505", "330106", "330212", "340104", "350102", "350203", "360102",
    "370102", "370202", "370203", "410105", "420106", "430104", "440106", "440305", "450103", "460106", "500103",
    "510107", "520102", "530102", "540102", "610113", "620102", "630102", "640104", "650102",
];

/// What is wrong with a resident ID number. The messages never repeat the
/// number, so they may be shown, printed and logged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdError {
    /// Not 18 characters (after trimming spaces): how many there were.
    Length(usize),
    /// Something other than digits, or an `X` anywhere but last.
    Characters,
    /// The first two digits are not a province (or `9`, permanent residence).
    Region,
    /// Positions 7–14 are not a date, or it is before 1900 or in the future.
    BirthDate,
    /// The check character does not match: a typo.
    Check,
}

impl IdError {
    /// A stable key for message catalogs (`id_number.length`, …).
    pub fn key(self) -> &'static str {
        match self {
            IdError::Length(_) => "id_number.length",
            IdError::Characters => "id_number.characters",
            IdError::Region => "id_number.region",
            IdError::BirthDate => "id_number.birth_date",
            IdError::Check => "id_number.check",
        }
    }
}

impl fmt::Display for IdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdError::Length(n) => write!(f, "an ID number has 18 characters, this one has {n}"),
            IdError::Characters => f.write_str("an ID number is 17 digits and a last digit or X"),
            IdError::Region => f.write_str("the ID number does not start with a province code"),
            IdError::BirthDate => {
                f.write_str("the birth date in the ID number (characters 7-14) is not a date between 1900 and today")
            }
            IdError::Check => f.write_str("the ID number's check character does not match (a typing error?)"),
        }
    }
}

impl std::error::Error for IdError {}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sex {
    Male,
    Female,
}

/// A valid resident ID number, normalised (trimmed, `X` upper case).
#[derive(Clone, PartialEq, Eq)]
pub struct ResidentId {
    number: String,
    birth: NaiveDate,
}

impl fmt::Debug for ResidentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ResidentId({})", super::mask_id(&self.number))
    }
}

fn province_ok(d1: u8, d2: u8) -> bool {
    if d1 == 9 {
        return true;
    }
    matches!(
        d1 * 10 + d2,
        11..=15 | 21..=23 | 31..=37 | 41..=46 | 50..=54 | 61..=65 | 71 | 81..=83
    )
}

/// The check character for the first seventeen digits (values 0–9).
fn check_char(digits: &[u8]) -> u8 {
    let sum: u32 = digits.iter().zip(WEIGHTS).map(|(d, w)| u32::from(*d) * w).sum();
    CHECK[(sum % 11) as usize]
}

fn digit_value(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0, |acc, b| acc * 10 + u32::from(b - b'0'))
}

impl ResidentId {
    /// Checks `input` (surrounding spaces ignored, `x` accepted for `X`);
    /// the birth date may not be after `today`.
    pub fn parse(input: &str, today: NaiveDate) -> Result<ResidentId, IdError> {
        let s = input.trim();
        let n = s.chars().count();
        if n != 18 {
            return Err(IdError::Length(n));
        }
        let b = s.as_bytes();
        if !b[..17].iter().all(u8::is_ascii_digit) || !matches!(b[17], b'0'..=b'9' | b'X' | b'x') {
            return Err(IdError::Characters);
        }
        if !province_ok(b[0] - b'0', b[1] - b'0') {
            return Err(IdError::Region);
        }
        let birth =
            NaiveDate::from_ymd_opt(digit_value(&b[6..10]) as i32, digit_value(&b[10..12]), digit_value(&b[12..14]))
                .filter(|d| d.year() >= 1900 && *d <= today)
                .ok_or(IdError::BirthDate)?;
        let digits: Vec<u8> = b[..17].iter().map(|c| c - b'0').collect();
        if check_char(&digits) != b[17].to_ascii_uppercase() {
            return Err(IdError::Check);
        }
        Ok(ResidentId { number: s.to_ascii_uppercase(), birth })
    }

    /// A valid number for a county code (six digits, e.g. from
    /// [`COUNTY_CODES`]), a birth date from 1900 on and a sequence 0–999
    /// (its last digit odd: a man). For tests and synthetic registries.
    pub fn generate(county: &str, birth: NaiveDate, sequence: u16) -> Result<ResidentId, IdError> {
        let c = county.as_bytes();
        if c.len() != 6 || !c.iter().all(u8::is_ascii_digit) || sequence > 999 {
            return Err(IdError::Characters);
        }
        if !province_ok(c[0] - b'0', c[1] - b'0') {
            return Err(IdError::Region);
        }
        if !(1900..=9999).contains(&birth.year()) {
            return Err(IdError::BirthDate);
        }
        let mut number = format!("{county}{}{sequence:03}", birth.format("%Y%m%d"));
        let digits: Vec<u8> = number.bytes().map(|c| c - b'0').collect();
        number.push(char::from(check_char(&digits)));
        Ok(ResidentId { number, birth })
    }

    pub fn as_str(&self) -> &str {
        &self.number
    }

    pub fn birth_date(&self) -> NaiveDate {
        self.birth
    }

    /// The 17th digit: odd for a man, even for a woman.
    pub fn sex(&self) -> Sex {
        if (self.number.as_bytes()[16] - b'0') % 2 == 1 { Sex::Male } else { Sex::Female }
    }

    /// The county (or, for `9…`, issuing) code: the first six digits.
    pub fn region(&self) -> &str {
        &self.number[..6]
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn today() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 11, 26).unwrap()
    }

    #[test]
    fn known_numbers() {
        let id = ResidentId::parse("11010519491231002X", today()).unwrap();
        assert_eq!(id.as_str(), "11010519491231002X");
        assert_eq!(id.birth_date(), NaiveDate::from_ymd_opt(1949, 12, 31).unwrap());
        assert_eq!(id.sex(), Sex::Female);
        assert_eq!(id.region(), "110105");
        // Lower-case x, spaces around.
        let id = ResidentId::parse(" 11010519491231002x ", today()).unwrap();
        assert_eq!(id.as_str(), "11010519491231002X");
        let man = ResidentId::generate("370202", NaiveDate::from_ymd_opt(1990, 1, 1).unwrap(), 123).unwrap();
        assert_eq!(man.sex(), Sex::Male);
        assert_eq!(ResidentId::parse(man.as_str(), today()).unwrap(), man);
    }

    #[test]
    fn says_what_is_wrong() {
        assert_eq!(ResidentId::parse("1101051949123100", today()), Err(IdError::Length(16)));
        assert_eq!(ResidentId::parse("11010519491231002XX", today()), Err(IdError::Length(19)));
        assert_eq!(ResidentId::parse("11010519491231002Y", today()), Err(IdError::Characters));
        assert_eq!(ResidentId::parse("1101051949123100X2", today()), Err(IdError::Characters));
        assert_eq!(ResidentId::parse("11010519491231002一", today()), Err(IdError::Characters));
        assert_eq!(ResidentId::parse("16010519491231002X", today()), Err(IdError::Region));
        assert_eq!(ResidentId::parse("11010519491331002X", today()), Err(IdError::BirthDate));
        assert_eq!(ResidentId::parse("11010518991231002X", today()), Err(IdError::BirthDate));
        assert_eq!(ResidentId::parse("110105194912310021", today()), Err(IdError::Check));
        // Not in the future.
        let tomorrow = ResidentId::generate("110105", today().succ_opt().unwrap(), 1).unwrap();
        assert_eq!(ResidentId::parse(tomorrow.as_str(), today()), Err(IdError::BirthDate));
        assert!(ResidentId::parse(tomorrow.as_str(), today().succ_opt().unwrap()).is_ok());
        // Permanent residence ID (starts with 9).
        let foreign = ResidentId::generate("931234", NaiveDate::from_ymd_opt(1985, 5, 5).unwrap(), 12).unwrap();
        assert!(ResidentId::parse(foreign.as_str(), today()).is_ok());
        assert!(IdError::Check.to_string().contains("check"));
        assert_eq!(IdError::Region.key(), "id_number.region");
    }

    fn valid() -> impl Strategy<Value = (ResidentId, NaiveDate, u16)> {
        let days = (today() - NaiveDate::from_ymd_opt(1900, 1, 1).unwrap()).num_days();
        (0..COUNTY_CODES.len(), 0..=days, 0u16..1000).prop_map(|(c, d, seq)| {
            let birth = NaiveDate::from_ymd_opt(1900, 1, 1).unwrap() + chrono::Days::new(d as u64);
            (ResidentId::generate(COUNTY_CODES[c], birth, seq).unwrap(), birth, seq)
        })
    }

    proptest! {
        #[test]
        fn generated_numbers_parse_and_round_trip((id, birth, seq) in valid()) {
            let parsed = ResidentId::parse(id.as_str(), today()).unwrap();
            prop_assert_eq!(&parsed, &id);
            prop_assert_eq!(parsed.birth_date(), birth);
            prop_assert_eq!(parsed.sex(), if seq % 2 == 1 { Sex::Male } else { Sex::Female });
            let lower = format!("  {}\t", id.as_str().to_ascii_lowercase());
            prop_assert_eq!(ResidentId::parse(&lower, today()).unwrap(), id);
        }

        #[test]
        fn every_single_substitution_is_rejected((id, _, _) in valid()) {
            let s = id.as_str().as_bytes().to_vec();
            for i in 0..s.len() {
                for c in b"0123456789X" {
                    if *c == s[i] {
                        continue;
                    }
                    let mut t = s.clone();
                    t[i] = *c;
                    let t = String::from_utf8(t).unwrap();
                    prop_assert!(ResidentId::parse(&t, today()).is_err(), "accepted {} (position {})", t, i + 1);
                }
            }
        }

        #[test]
        fn every_adjacent_transposition_is_rejected((id, _, _) in valid()) {
            let s = id.as_str().as_bytes().to_vec();
            for i in 0..s.len() - 1 {
                if s[i] == s[i + 1] {
                    continue;
                }
                let mut t = s.clone();
                t.swap(i, i + 1);
                let t = String::from_utf8(t).unwrap();
                prop_assert!(ResidentId::parse(&t, today()).is_err(), "accepted {} (positions {}-{})", t, i + 1, i + 2);
            }
        }
    }
}
