//! The GoTrue stand-in: what auth-js and helix-discovery send, answered as GoTrue does.

use serde_json::json;

use crate::support::{ALICE, BOB, access_token, auth_post, cloud, http, sign_in};

#[tokio::test]
async fn password_refresh_user_and_logout() {
    let cloud = cloud(None).await;

    // A wrong password: GoTrue's 400, in both body shapes.
    let (status, old) = auth_post(
        &cloud,
        "token?grant_type=password",
        json!({"email": ALICE.0, "password": "wrong-password"}),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(old["error_code"], "invalid_credentials");
    assert_eq!(old["msg"], "Invalid login credentials");
    assert_eq!(old["error"], "invalid_grant");
    assert_eq!(old["error_description"], "Invalid login credentials");
    let versioned = http()
        .post(format!("{}/auth/v1/token?grant_type=password", cloud.url()))
        .header("apikey", cloud.anon_key())
        .header("x-supabase-api-version", "2024-01-01")
        .json(&json!({"email": ALICE.0, "password": "wrong-password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(versioned.headers()["x-supabase-api-version"], "2024-01-01");
    let body: serde_json::Value = versioned.json().await.unwrap();
    assert_eq!(body["code"], "invalid_credentials");
    assert_eq!(body["message"], "Invalid login credentials");

    // The right one: a session whose token postrust accepts.
    let session = sign_in(&cloud, ALICE).await;
    assert_eq!(session["token_type"], "bearer");
    assert_eq!(session["expires_in"], 3600);
    assert_eq!(session["user"]["email"], ALICE.0);
    let claims = {
        let payload = access_token(&session).split('.').nth(1).unwrap().to_owned();
        let bytes = data_encoding::BASE64URL_NOPAD
            .decode(payload.as_bytes())
            .unwrap();
        serde_json::from_slice::<serde_json::Value>(&bytes).unwrap()
    };
    assert_eq!(claims["role"], "authenticated");
    assert_eq!(claims["aud"], "authenticated");
    assert_eq!(claims["sub"], session["user"]["id"]);
    assert_eq!(claims["email"], ALICE.0);
    assert!(claims["session_id"].is_string() && claims["exp"].is_i64());

    // GET /user.
    let user = |token: String| {
        let url = format!("{}/auth/v1/user", cloud.url());
        let key = cloud.anon_key().to_owned();
        async move {
            let r = http()
                .get(url)
                .header("apikey", key)
                .bearer_auth(token)
                .send()
                .await
                .unwrap();
            (
                r.status().as_u16(),
                r.json::<serde_json::Value>().await.unwrap(),
            )
        }
    };
    let (status, me) = user(access_token(&session)).await;
    assert_eq!((status, &me["id"]), (200, &session["user"]["id"]));
    let (status, anon) = user(cloud.anon_key().to_owned()).await;
    assert_eq!(
        (status, anon["error_code"].as_str()),
        (403, Some("bad_jwt"))
    );

    // Refresh tokens work once; reuse ends the session.
    let refresh = session["refresh_token"].as_str().unwrap();
    let (status, next) = auth_post(
        &cloud,
        "token?grant_type=refresh_token",
        json!({"refresh_token": refresh}),
    )
    .await;
    assert_eq!(status, 200, "{next}");
    assert_ne!(next["refresh_token"], session["refresh_token"]);
    let (status, again) = auth_post(
        &cloud,
        "token?grant_type=refresh_token",
        json!({"refresh_token": refresh}),
    )
    .await;
    assert_eq!(
        (status, again["error_code"].as_str()),
        (400, Some("refresh_token_already_used"))
    );
    assert_eq!(again["msg"], "Invalid Refresh Token: Already Used");
    let (status, _) = auth_post(
        &cloud,
        "token?grant_type=refresh_token",
        json!({"refresh_token": next["refresh_token"]}),
    )
    .await;
    assert_eq!(status, 400, "a reused token's session is over");

    // Logout (scope local) ends that session only.
    let one = sign_in(&cloud, ALICE).await;
    let two = sign_in(&cloud, ALICE).await;
    let logout = http()
        .post(format!("{}/auth/v1/logout?scope=local", cloud.url()))
        .header("apikey", cloud.anon_key())
        .bearer_auth(access_token(&one))
        .send()
        .await
        .unwrap();
    assert_eq!(logout.status().as_u16(), 204);
    let (status, gone) = user(access_token(&one)).await;
    assert_eq!(
        (status, gone["error_code"].as_str()),
        (403, Some("session_not_found"))
    );
    let (status, _) = user(access_token(&two)).await;
    assert_eq!(status, 200);
    let (status, refused) = auth_post(
        &cloud,
        "token?grant_type=refresh_token",
        json!({"refresh_token": one["refresh_token"]}),
    )
    .await;
    assert_eq!(
        (status, refused["error_code"].as_str()),
        (400, Some("refresh_token_not_found"))
    );
    cloud.shutdown().await;
}

#[tokio::test]
async fn emailed_codes_signup_and_the_api_key() {
    let mut cloud = cloud(None).await;
    let mut mail = cloud.take_mail().unwrap();

    let (status, _) = auth_post(&cloud, "otp", json!({"email": BOB.0, "create_user": false})).await;
    assert_eq!(status, 200);
    let email = tokio::time::timeout(crate::support::WAIT, mail.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(email.to, BOB.0);
    assert!(
        email
            .to_string()
            .starts_with("email to bob@example.com: your code is ")
    );
    assert_eq!(email.code.len(), 6);
    let (status, wrong) = auth_post(
        &cloud,
        "verify",
        json!({"type": "email", "email": BOB.0, "token": "x"}),
    )
    .await;
    assert_eq!(
        (status, wrong["error_code"].as_str()),
        (403, Some("otp_expired"))
    );
    let (status, session) = auth_post(
        &cloud,
        "verify",
        json!({"type": "magiclink", "email": BOB.0, "token": email.code}),
    )
    .await;
    assert_eq!(status, 200, "{session}");
    assert_eq!(session["user"]["email"], BOB.0);

    // An unknown address: refused without create_user, a new user with it.
    let (status, refused) = auth_post(
        &cloud,
        "otp",
        json!({"email": "carol@example.com", "create_user": false}),
    )
    .await;
    assert_eq!(
        (status, refused["error_code"].as_str()),
        (422, Some("otp_disabled"))
    );
    let (status, _) = auth_post(&cloud, "otp", json!({"email": "carol@example.com"})).await;
    assert_eq!(status, 200);
    let carol = mail.recv().await.unwrap();
    assert_eq!(carol.to, "carol@example.com");

    // Signup signs in (no email confirmation, as a local Supabase).
    let (status, signed) = auth_post(
        &cloud,
        "signup",
        json!({"email": "dave@example.com", "password": "dave-password"}),
    )
    .await;
    assert_eq!(status, 200, "{signed}");
    assert!(signed["access_token"].is_string());
    let (status, taken) = auth_post(
        &cloud,
        "signup",
        json!({"email": "dave@example.com", "password": "dave-password"}),
    )
    .await;
    assert_eq!(
        (status, taken["error_code"].as_str()),
        (422, Some("user_already_exists"))
    );
    sign_in(&cloud, ("dave@example.com", "dave-password")).await;

    // The gateway wants the anon key.
    let no_key = http()
        .post(format!("{}/auth/v1/token?grant_type=password", cloud.url()))
        .json(&json!({"email": ALICE.0, "password": ALICE.1}))
        .send()
        .await
        .unwrap();
    assert_eq!(no_key.status().as_u16(), 401);
    assert_eq!(
        no_key.json::<serde_json::Value>().await.unwrap()["message"],
        "No API key found in request"
    );
    let bad_key = http()
        .get(format!("{}/auth/v1/user", cloud.url()))
        .header("apikey", "not-the-key")
        .send()
        .await
        .unwrap();
    assert_eq!(bad_key.status().as_u16(), 401);
    cloud.shutdown().await;
}

#[tokio::test]
async fn discovery_signs_in_refreshes_and_uses_codes() {
    use helix_discovery::{auth::Auth, rest::SupabaseConfig};
    let mut cloud = cloud(None).await;
    let mut mail = cloud.take_mail().unwrap();
    let auth = Auth::new(&SupabaseConfig {
        url: cloud.url(),
        anon_key: cloud.anon_key().to_owned(),
        rest_url: None,
    })
    .unwrap();
    let session = auth.sign_in_password(ALICE.0, ALICE.1).await.unwrap();
    assert_eq!(session.email.as_deref(), Some(ALICE.0));
    let refreshed = auth.refresh(&session.refresh_token).await.unwrap();
    assert_eq!(refreshed.user_id, session.user_id);
    let err = auth.refresh(&session.refresh_token).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("Invalid Refresh Token: Already Used"),
        "{err}"
    );
    let err = auth
        .sign_in_password(ALICE.0, "wrong-password")
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("Invalid login credentials"),
        "{err}"
    );
    auth.send_otp(BOB.0).await.unwrap();
    let code = mail.recv().await.unwrap().code;
    let bob = auth.verify_otp(BOB.0, &code).await.unwrap();
    assert_eq!(bob.email.as_deref(), Some(BOB.0));
    cloud.shutdown().await;
}
