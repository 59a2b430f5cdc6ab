//! Catalog entries of signing out (RP-Initiated and Front-Channel Logout).

pub const ZH_CN: &[(&str, &str)] = &[
    ("logout.confirm.title", "退出登录"),
    ("logout.confirm.portal", "{client}请求让您退出登录。"),
    ("logout.confirm.message", "退出后，您在本平台登录过的所有政务服务都将退出。确定要退出吗？"),
    ("logout.confirm.submit", "退出登录"),
    ("logout.confirm.stay", "保持登录"),
    ("error.logout_request.title", "退出请求无效"),
    (
        "error.logout_request.message",
        "发起退出的链接有误或已被篡改，因此没有执行退出。如需退出，请在“我的账号”页面中退出登录。",
    ),
    ("error.logout_redirect.title", "服务地址未登记"),
    (
        "error.logout_redirect.message",
        "退出后要返回的地址未在本平台登记，为保护您的安全，没有执行退出。如需退出，请在“我的账号”页面中退出登录。",
    ),
];

pub const EN: &[(&str, &str)] = &[
    ("logout.confirm.title", "Sign out"),
    ("logout.confirm.portal", "{client} asks to sign you out."),
    (
        "logout.confirm.message",
        "Signing out here signs you out of every government service you used with this account. Sign out now?",
    ),
    ("logout.confirm.submit", "Sign out"),
    ("logout.confirm.stay", "Stay signed in"),
    ("error.logout_request.title", "This sign-out link is not valid"),
    (
        "error.logout_request.message",
        "The link that asked to sign you out is wrong or was altered, so you were not signed out. To sign out, use \"Sign out\" on your account page.",
    ),
    ("error.logout_redirect.title", "Return address not registered"),
    (
        "error.logout_redirect.message",
        "The address to return to after signing out is not registered with this platform, so for your safety you were not signed out. To sign out, use \"Sign out\" on your account page.",
    ),
];
