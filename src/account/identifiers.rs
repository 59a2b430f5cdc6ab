//! Sign-in identifiers: a mainland mobile number, an email address or a
//! username, each normalised so that one person's identifier always finds
//! the same blind index however it is typed.
use crate::crypto::seal::Sealer;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Identifier {
    /// E.164, `+86` and 11 digits.
    Phone(String),
    Email(String),
    Username(String),
}

/// Mainland mobile prefixes (the second digit after the leading 1).
fn valid_mobile(digits: &str) -> bool {
    digits.len() == 11
        && digits.bytes().all(|b| b.is_ascii_digit())
        && digits.starts_with('1')
        && matches!(digits.as_bytes().get(1), Some(b'3'..=b'9'))
}

impl Identifier {
    pub fn phone(input: &str) -> Option<Identifier> {
        let compact: String = input.chars().filter(|c| !matches!(c, ' ' | '-')).collect();
        let digits = compact.strip_prefix("+86").or_else(|| compact.strip_prefix("0086")).unwrap_or(&compact);
        valid_mobile(digits).then(|| Identifier::Phone(format!("+86{digits}")))
    }

    pub fn email(input: &str) -> Option<Identifier> {
        let e = input.trim().to_lowercase();
        let (local, domain) = e.split_once('@')?;
        let ok = !local.is_empty()
            && local.len() <= 64
            && domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && e.len() <= 254
            && !e.chars().any(|c| c.is_whitespace() || c.is_control())
            && !domain.contains('@');
        ok.then_some(Identifier::Email(e))
    }

    pub fn username(input: &str) -> Option<Identifier> {
        let u = input.trim().to_lowercase();
        let ok = (3..=32).contains(&u.len())
            && u.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
            && u.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric());
        ok.then_some(Identifier::Username(u))
    }

    /// What a person typed into the one identifier field.
    pub fn parse(input: &str) -> Option<Identifier> {
        let input = input.trim();
        if input.contains('@') {
            Identifier::email(input)
        } else if input.starts_with('+') || input.bytes().all(|b| b.is_ascii_digit() || b == b' ' || b == b'-') {
            Identifier::phone(input)
        } else {
            Identifier::username(input)
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Identifier::Phone(_) => "phone",
            Identifier::Email(_) => "email",
            Identifier::Username(_) => "username",
        }
    }

    pub fn value(&self) -> &str {
        match self {
            Identifier::Phone(v) | Identifier::Email(v) | Identifier::Username(v) => v,
        }
    }

    pub fn blind_index(&self, sealer: &Sealer) -> String {
        sealer.blind_index(self.kind(), self.value())
    }

    /// Associated data binding a sealed identifier to its realm and kind.
    pub fn aad(realm: &str, kind: &str) -> Vec<u8> {
        format!("identifier\0{realm}\0{kind}").into_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_each_kind() {
        assert_eq!(Identifier::parse("138 0013 8000"), Some(Identifier::Phone("+8613800138000".into())));
        assert_eq!(Identifier::parse("+86 13800138000"), Some(Identifier::Phone("+8613800138000".into())));
        assert_eq!(Identifier::parse("12800138000"), None);
        assert_eq!(Identifier::parse("1380013800"), None);
        assert_eq!(Identifier::parse(" Li.Ming@Example.CN "), Some(Identifier::Email("li.ming@example.cn".into())));
        assert_eq!(Identifier::parse("a@b"), None);
        assert_eq!(Identifier::parse("LiMing"), Some(Identifier::Username("liming".into())));
        assert_eq!(Identifier::parse("李明"), None);
        assert_eq!(Identifier::parse(""), None);
    }
}
