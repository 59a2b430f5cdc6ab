//! Catalog entries of the factors pages (see `web/i18n.rs`).

pub const ZH_CN: &[(&str, &str)] = &[];

pub const EN: &[(&str, &str)] = &[];
