//! Catalog entries of the account centre (`/realms/{realm}/account`).

pub const ZH_CN: &[(&str, &str)] = &[("account.title", "账户中心")];

pub const EN: &[(&str, &str)] = &[("account.title", "Your account")];
