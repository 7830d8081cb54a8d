//! Phase 9, access control: the route's source lists and basic authentication, combined by
//! `satisfy` (see [`Access`]).
//!
//! - The denylist is absolute: a listed client gets 403 whatever else holds. (In
//!   ingress-nginx, `satisfy: any` lets valid credentials through a denylist too; weir does
//!   not, see the README.)
//! - `satisfy: all` (default): a client outside the allowlist gets 403; then, with basic auth,
//!   missing or wrong credentials get 401 and the realm's challenge.
//! - `satisfy: any`: a client in the allowlist needs no credentials; anyone else must
//!   authenticate (401), or gets 403 when the route has no authentication.
//!
//! The client address is [`client_ip`](super::super::headers::client_ip)'s: the TCP peer, or
//! what a trusted proxy forwarded. Passwords are verified on the blocking pool (a bcrypt hash
//! takes milliseconds by design), at most one per CPU at a time, and compared in constant time.

use std::net::IpAddr;
use std::sync::{Arc, OnceLock};

use base64::Engine;
use http::{Request, header};
use tokio::sync::Semaphore;

use super::super::respond::Refusal;
use crate::model::{Access, BasicAuth, Satisfy};

/// Whether the request may use a route with these access rules.
pub(in crate::proxy) async fn check<B>(
    access: &Access,
    client: IpAddr,
    req: &Request<B>,
) -> Result<(), Refusal> {
    if access
        .deny
        .as_ref()
        .is_some_and(|deny| deny.contains(client))
    {
        return Err(Refusal::Forbidden);
    }
    let listed = access.allow.as_ref().map(|allow| allow.contains(client));
    match (access.satisfy, listed, &access.basic) {
        (Satisfy::Any, Some(true), _) => Ok(()),
        (Satisfy::All, Some(false), _) => Err(Refusal::Forbidden),
        (_, _, Some(basic)) => authenticate(basic, req).await,
        (_, Some(false), None) => Err(Refusal::Forbidden),
        (_, _, None) => Ok(()),
    }
}

/// 401 with the realm's challenge unless the request carries a listed user's password.
async fn authenticate<B>(basic: &BasicAuth, req: &Request<B>) -> Result<(), Refusal> {
    let unauthorized = || Refusal::Unauthorized(basic.challenge.clone());
    let (user, password) = credentials(req).ok_or_else(unauthorized)?;
    let users = Arc::clone(&basic.users);
    // At most one check per CPU at a time: a flood of wrong passwords waits its turn rather
    // than take every thread of the blocking pool.
    let _permit = verifications().acquire().await;
    let verified = tokio::task::spawn_blocking(move || users.verify(&user, &password))
        .await
        .unwrap_or(false);
    if verified {
        Ok(())
    } else {
        Err(unauthorized())
    }
}

/// The password checks that may run at once: one per CPU.
fn verifications() -> &'static Semaphore {
    static VERIFICATIONS: OnceLock<Semaphore> = OnceLock::new();
    VERIFICATIONS
        .get_or_init(|| Semaphore::new(std::thread::available_parallelism().map_or(1, usize::from)))
}

/// The user and password of an `Authorization: Basic …` header (the scheme in any case).
fn credentials<B>(req: &Request<B>) -> Option<(String, Vec<u8>)> {
    let mut values = req.headers().get_all(header::AUTHORIZATION).iter();
    let value = values.next()?;
    if values.next().is_some() {
        return None;
    }
    let value = value.to_str().ok()?.trim();
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let colon = decoded.iter().position(|&b| b == b':')?;
    let user = String::from_utf8(decoded[..colon].to_vec()).ok()?;
    Some((user, decoded[colon + 1..].to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{IpList, Users};

    const ALICE: &str = "alice:$apr1$Bd6nIVYA$3BZloI3Mo8X5Hld57gVzL.";

    fn access(allow: Option<&str>, deny: Option<&str>, basic: bool, satisfy: Satisfy) -> Access {
        Access {
            allow: allow.map(|l| IpList::parse(l).unwrap()),
            deny: deny.map(|l| IpList::parse(l).unwrap()),
            basic: basic.then(|| BasicAuth {
                challenge: http::HeaderValue::from_static("Basic realm=\"r\""),
                users: Arc::new(Users::from_htpasswd(ALICE.as_bytes()).unwrap().0),
            }),
            satisfy,
        }
    }

    fn request(authorization: Option<&str>) -> Request<()> {
        let mut req = Request::new(());
        if let Some(value) = authorization {
            req.headers_mut()
                .insert(header::AUTHORIZATION, value.parse().unwrap());
        }
        req
    }

    /// "alice:secret" and "alice:wrong", Base64.
    const GOOD: &str = "Basic YWxpY2U6c2VjcmV0";
    const WRONG: &str = "Basic YWxpY2U6d3Jvbmc=";

    /// The outcome as a status code (200: allowed).
    async fn outcome(access: &Access, client: &str, authorization: Option<&str>) -> u16 {
        match check(access, client.parse().unwrap(), &request(authorization)).await {
            Ok(()) => 200,
            Err(Refusal::Forbidden) => 403,
            Err(Refusal::Unauthorized(_)) => 401,
            Err(other) => panic!("unexpected {other:?}"),
        }
    }

    /// allow, deny, basic auth, satisfy, client, Authorization, expected status.
    type Row<'a> = (
        Option<&'a str>,
        Option<&'a str>,
        bool,
        Satisfy,
        &'a str,
        Option<&'a str>,
        u16,
    );

    #[tokio::test]
    async fn the_combinations_as_a_table() {
        use Satisfy::{All, Any};
        let inside = "10.0.0.1";
        let outside = "192.0.2.1";
        let table: &[Row<'_>] = &[
            (Some("10.0.0.0/8"), None, false, All, inside, None, 200),
            (Some("10.0.0.0/8"), None, false, All, outside, None, 403),
            (
                Some("10.0.0.0/8"),
                None,
                false,
                Any,
                outside,
                Some(GOOD),
                403,
            ),
            (None, Some("10.0.0.1"), false, All, inside, None, 403),
            (None, Some("10.0.0.1"), false, All, outside, None, 200),
            (None, None, true, All, outside, None, 401),
            (None, None, true, All, outside, Some(WRONG), 401),
            (None, None, true, All, outside, Some(GOOD), 200),
            (None, None, true, Any, outside, None, 401),
            (None, None, true, Any, outside, Some(GOOD), 200),
            (Some("10.0.0.0/8"), None, true, All, inside, None, 401),
            (Some("10.0.0.0/8"), None, true, All, inside, Some(GOOD), 200),
            (
                Some("10.0.0.0/8"),
                None,
                true,
                All,
                outside,
                Some(GOOD),
                403,
            ),
            (Some("10.0.0.0/8"), None, true, Any, inside, None, 200),
            (Some("10.0.0.0/8"), None, true, Any, outside, None, 401),
            (
                Some("10.0.0.0/8"),
                None,
                true,
                Any,
                outside,
                Some(GOOD),
                200,
            ),
            (
                Some("10.0.0.0/8"),
                Some("10.0.0.1"),
                true,
                Any,
                inside,
                Some(GOOD),
                403,
            ),
            (None, Some("10.0.0.1"), true, Any, inside, Some(GOOD), 403),
        ];
        for (i, (allow, deny, basic, satisfy, client, auth, expected)) in table.iter().enumerate() {
            let rules = access(*allow, *deny, *basic, *satisfy);
            assert_eq!(
                outcome(&rules, client, *auth).await,
                *expected,
                "row {i}: {allow:?} {deny:?} basic={basic} {satisfy:?} {client} {auth:?}"
            );
        }
    }

    #[test]
    fn credentials_are_read_strictly() {
        let read = |value: &str| credentials(&request(Some(value)));
        assert_eq!(read(GOOD), Some(("alice".into(), b"secret".to_vec())));
        assert_eq!(read("basic YWxpY2U6c2VjcmV0").unwrap().0, "alice");
        // "alice:pa:ss": the password may hold colons.
        assert_eq!(read("Basic YWxpY2U6cGE6c3M=").unwrap().1, b"pa:ss");
        for bad in [
            "Bearer YWxpY2U6c2VjcmV0",
            "Basic",
            "Basic !!!",
            "Basic YWxpY2U=",
        ] {
            assert_eq!(read(bad), None, "{bad}");
        }
        let mut twice = request(Some(GOOD));
        twice
            .headers_mut()
            .append(header::AUTHORIZATION, GOOD.parse().unwrap());
        assert_eq!(credentials(&twice), None, "two Authorization headers");
    }
}
