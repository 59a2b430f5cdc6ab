//! Roles of administrators and what each may do, per realm.
use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Role {
    /// Everything about the realms it is given.
    RealmAdmin,
    /// Find people, disable and enable them, end their sessions, reset credentials.
    Helpdesk,
    /// Read configuration, statistics and the audit log.
    Auditor,
    /// See unmasked personal data (each read is audited).
    PiiReader,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::RealmAdmin, Role::Helpdesk, Role::Auditor, Role::PiiReader];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::RealmAdmin => "realm-admin",
            Role::Helpdesk => "helpdesk",
            Role::Auditor => "auditor",
            Role::PiiReader => "pii-reader",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    ReadConfig,
    WriteConfig,
    ReadUsers,
    ManageUsers,
    ReadPii,
    /// Enterprises, their representatives and agents, masked.
    ReadEnterprises,
    ReadAudit,
    ReadStats,
    /// Back-channel logout deliveries and their attempts.
    ReadLogouts,
}

impl Action {
    fn roles(self) -> &'static [Role] {
        match self {
            Action::ReadConfig => &[Role::RealmAdmin, Role::Auditor],
            Action::WriteConfig => &[Role::RealmAdmin],
            Action::ReadUsers | Action::ManageUsers => &[Role::RealmAdmin, Role::Helpdesk],
            Action::ReadPii => &[Role::PiiReader],
            Action::ReadEnterprises => &[Role::RealmAdmin, Role::Helpdesk, Role::Auditor],
            Action::ReadAudit => &[Role::RealmAdmin, Role::Auditor],
            Action::ReadStats | Action::ReadLogouts => &[Role::RealmAdmin, Role::Auditor, Role::Helpdesk],
        }
    }
}

/// Whether someone holding `held` (role, realm-or-`*`) may do `action` in `realm`.
pub fn allowed(held: &[(String, String)], realm: &str, action: Action) -> bool {
    held.iter().any(|(role, r)| {
        (r == realm || r == "*") && Role::parse(role).is_some_and(|role| action.roles().contains(&role))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
    }

    #[test]
    fn roles_apply_per_realm() {
        let h = held(&[("helpdesk", "citizens"), ("auditor", "*")]);
        assert!(allowed(&h, "citizens", Action::ManageUsers));
        assert!(!allowed(&h, "staff", Action::ManageUsers));
        assert!(allowed(&h, "staff", Action::ReadAudit));
        assert!(!allowed(&h, "citizens", Action::WriteConfig));
        assert!(!allowed(&h, "citizens", Action::ReadPii));
        assert!(allowed(&h, "staff", Action::ReadEnterprises));
        assert!(!allowed(&held(&[("pii-reader", "*")]), "citizens", Action::ReadEnterprises));
        assert!(!allowed(&held(&[("bogus", "*")]), "citizens", Action::ReadConfig));
    }
}
