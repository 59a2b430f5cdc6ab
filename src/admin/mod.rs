//! Operator actions behind the admin API and the CLI: who may do what
//! (roles per realm), bootstrap of the first administrator, and the actions
//! themselves. Its routes and OpenAPI document live in `http/admin`.
pub mod actions;
pub mod logouts;
pub mod roles;
pub mod stats;

/// `aud` of access tokens the admin API accepts (a resource of the admin realm).
pub const ADMIN_AUDIENCE: &str = "urn:civid:admin-api";
/// The realm whose people administer civid.
pub const ADMIN_REALM: &str = "admin";

/// Masks a phone number or email for display: enough to recognise, not to use.
pub fn mask(kind: &str, value: &str) -> String {
    match kind {
        "phone" => {
            let chars: Vec<char> = value.chars().collect();
            if chars.len() > 7 {
                let keep_end = 4;
                let start: String = chars.iter().take(chars.len().saturating_sub(8)).collect();
                let end: String = chars.iter().skip(chars.len() - keep_end).collect();
                format!("{start}****{end}")
            } else {
                "****".into()
            }
        }
        "email" => match value.split_once('@') {
            Some((local, domain)) => {
                let first: String = local.chars().take(1).collect();
                format!("{first}***@{domain}")
            }
            None => "***".into(),
        },
        _ => value.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::mask;

    #[test]
    fn masks_leave_too_little_to_use() {
        assert_eq!(mask("phone", "+8613800138000"), "+86138****8000");
        assert_eq!(mask("email", "li.ming@example.cn"), "l***@example.cn");
        assert_eq!(mask("username", "liming"), "liming");
    }
}

/// An admin API failure, rendered as RFC 9457 problem details.
#[derive(Debug)]
pub struct Problem {
    pub status: u16,
    pub title: &'static str,
    pub detail: String,
}

impl Problem {
    pub fn new(status: u16, title: &'static str, detail: impl Into<String>) -> Problem {
        Problem { status, title, detail: detail.into() }
    }

    pub fn not_found(what: impl Into<String>) -> Problem {
        Problem::new(404, "not found", what)
    }

    pub fn invalid(detail: impl Into<String>) -> Problem {
        Problem::new(422, "invalid", detail)
    }
}

impl From<crate::error::Error> for Problem {
    fn from(e: crate::error::Error) -> Problem {
        if e.is_unavailable() {
            tracing::warn!("admin: storage unavailable: {e}");
            Problem::new(503, "unavailable", "the database or ephemeral store is unreachable; retry shortly")
        } else {
            tracing::error!("admin: {e}");
            Problem::new(500, "internal error", "see the server log")
        }
    }
}

impl From<sea_orm::DbErr> for Problem {
    fn from(e: sea_orm::DbErr) -> Problem {
        crate::error::Error::from(e).into()
    }
}
