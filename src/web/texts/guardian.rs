//! Catalog entries of minors verified with a guardian (PIPL Art. 31).

pub const ZH_CN: &[(&str, &str)] = &[
    ("guardian.code.h", "需要监护人确认"),
    (
        "guardian.code.text",
        "姓名与身份证号码一致。您未满 {age} 周岁，需要由父母或其他监护人确认后才能完成实名认证。请把下面的确认码交给监护人：监护人登录本平台（需已实名认证），在账户中心选择“为未成年人确认实名”，输入确认码、您的姓名和身份证号码。",
    ),
    (
        "guardian.code.hint",
        "确认码 {hours} 小时内有效，只能使用一次，离开本页后不会再次显示。如果遗失，可以重新核验以获取新的确认码（原确认码随即失效）。",
    ),
    ("guardian.title", "为未成年人确认实名"),
    (
        "guardian.subtitle",
        "作为未成年人的父母或其他监护人，您可以确认其实名认证。请输入未成年人在核验页面获得的确认码，以及其姓名和身份证号码。",
    ),
    ("guardian.code.label", "确认码"),
    ("guardian.minor_name.label", "未成年人的姓名"),
    ("guardian.minor_id.label", "未成年人的居民身份证号码"),
    ("guardian.relationship.label", "您与未成年人的关系"),
    ("guardian.relationship.parent", "父母"),
    ("guardian.relationship.guardian", "其他法定监护人"),
    ("guardian.consent.title", "处理未成年人敏感个人信息的同意"),
    (
        "guardian.consent.text",
        "不满十四周岁未成年人的个人信息属于敏感个人信息。作为其监护人，您同意本平台为完成该未成年人的实名认证，处理其姓名和身份证号码（与人口基础信息库比对的结果加密保存，不用于其他目的），并记录您作为监护人的确认。",
    ),
    ("guardian.consent.agree", "我是该未成年人的监护人，同意处理其个人信息"),
    ("guardian.submit", "确认实名"),
    ("guardian.needs_l3", "只有已完成实名认证的成年人才能作为监护人确认。请先完成您本人的实名认证。"),
    ("guardian.link", "为未成年人确认实名"),
    ("guardian.error.code_format", "确认码为 10 位字母和数字，请检查。"),
    ("guardian.error.code", "确认码不正确、已使用或已过期。今天还可以尝试 {n} 次。"),
    ("guardian.error.mismatch", "姓名或身份证号码与该确认码不符，未作任何更改。今天还可以尝试 {n} 次。"),
    ("guardian.error.relationship", "请选择您与未成年人的关系。"),
    ("guardian.error.consent", "请先勾选同意处理未成年人的个人信息。"),
    ("guardian.error.not_verified", "您尚未完成实名认证，不能作为监护人确认。请先完成您本人的实名认证。"),
    ("guardian.error.not_adult", "监护人须年满 18 周岁。未作任何更改。"),
    ("guardian.error.taken", "该身份证号码已用于另一个账号，未作任何更改。"),
    ("account.done.guardian_confirmed", "已确认。该未成年人的账号现在是实名等级（L3）。"),
];

pub const EN: &[(&str, &str)] = &[
    ("guardian.code.h", "A guardian must confirm"),
    (
        "guardian.code.text",
        "Your name and ID number match. As you are under {age}, a parent or other guardian must confirm before your identity is verified. Give them the code below: they sign in here (with their own identity verified), choose \"Confirm for a minor\" in their account, and enter the code, your name and your ID number.",
    ),
    (
        "guardian.code.hint",
        "The code is valid for {hours} hours, works once, and is not shown again once you leave this page. If it is lost, verify again for a new code (the old one stops working).",
    ),
    ("guardian.title", "Confirm for a minor"),
    (
        "guardian.subtitle",
        "As a parent or other guardian of a minor, you can confirm their identity. Enter the code they were given on the verification page, their name and their ID number.",
    ),
    ("guardian.code.label", "Code"),
    ("guardian.minor_name.label", "The minor's name"),
    ("guardian.minor_id.label", "The minor's resident ID number"),
    ("guardian.relationship.label", "You are their"),
    ("guardian.relationship.parent", "Parent"),
    ("guardian.relationship.guardian", "Other legal guardian"),
    ("guardian.consent.title", "Consent for a minor's sensitive personal information"),
    (
        "guardian.consent.text",
        "Personal information of a child under 14 is sensitive personal information. As their guardian, you agree that this platform processes their name and ID number to verify their identity (checked against the population registry, stored encrypted, used for nothing else), and records your confirmation as their guardian.",
    ),
    ("guardian.consent.agree", "I am this minor's guardian and agree to the processing of their information"),
    ("guardian.submit", "Confirm"),
    (
        "guardian.needs_l3",
        "Only an adult whose own identity is verified can confirm as a guardian. Please verify yours first.",
    ),
    ("guardian.link", "Confirm for a minor"),
    ("guardian.error.code_format", "The code has 10 letters and digits. Please check it."),
    ("guardian.error.code", "The code is wrong, used or expired. {n} tries left today."),
    (
        "guardian.error.mismatch",
        "The name or ID number is not the one this code was given for; nothing changed. {n} tries left today.",
    ),
    ("guardian.error.relationship", "Please choose how you are related to the minor."),
    ("guardian.error.consent", "Please tick the consent to processing the minor's information first."),
    (
        "guardian.error.not_verified",
        "Your own identity is not verified, so you cannot confirm as a guardian. Please verify yours first.",
    ),
    ("guardian.error.not_adult", "A guardian must be 18 or older. Nothing changed."),
    ("guardian.error.taken", "This ID number belongs to another account. Nothing changed."),
    ("account.done.guardian_confirmed", "Confirmed: the minor's account is now real-name verified (L3)."),
];
