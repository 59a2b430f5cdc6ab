//! One-time codes: six digits, single use, five tries, resend and daily
//! limits, shared across nodes through the ephemeral store.
use civid::authn::otp::{self, Check, Issue, Target};

use crate::harness::TestServer;

#[tokio::test]
async fn codes_are_single_use_limited_and_rate_limited() {
    let server = TestServer::start().await;
    let s = &server.state;
    let t = Target::new("test", "register", "index-of-13800138000");

    let Issue::Code(code) = otp::issue(s, &t).await.expect("issue") else { panic!("a code") };
    assert_eq!(code.len(), 6);
    assert!(matches!(otp::issue(s, &t).await.expect("issue"), Issue::TooSoon(w) if (1..=60).contains(&w)));
    let wrong = if code == "000000" { "111111" } else { "000000" };
    assert_eq!(otp::check(s, &t, wrong).await.expect("check"), Check::Wrong(4));
    assert_eq!(otp::check(s, &t, &code).await.expect("check"), Check::Valid);
    assert_eq!(otp::check(s, &t, &code).await.expect("check"), Check::NoCode, "single use");

    // Five wrong tries and the code is gone, even the right one fails after.
    let t2 = Target::new("test", "register", "index-of-13900139000");
    let Issue::Code(code) = otp::issue(s, &t2).await.expect("issue") else { panic!("a code") };
    let wrong = if code == "000000" { "111111" } else { "000000" };
    for left in (0..5).rev() {
        assert_eq!(otp::check(s, &t2, wrong).await.expect("check"), Check::Wrong(left));
    }
    assert_eq!(otp::check(s, &t2, &code).await.expect("check"), Check::NoCode);

    // At most ten a day per destination (the resend wait lifted for the test).
    let t3 = Target::new("test", "register", "index-of-13700137000");
    for i in 0..10 {
        assert!(matches!(otp::issue(s, &t3).await.expect("issue"), Issue::Code(_)), "code {i}");
        s.eph.delete("otp-resend:test:register:index-of-13700137000").await.expect("lift");
    }
    assert_eq!(otp::issue(s, &t3).await.expect("issue"), Issue::DailyLimit);
    server.stop().await;
}
