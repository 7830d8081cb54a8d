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

use http::Request;
use tokio::sync::Semaphore;

use super::super::respond::Refusal;
use super::external_auth::{AuthClient, Granted, Subject};
use crate::model::access::basic_credentials;
use crate::model::{Access, BasicAuth, Satisfy};

/// Whether the request may use a route with these access rules; what an authentication
/// service's answer gives the request when one was asked. `external` is the client and the
/// request's facts for `auth-url` (needed when the rules have one).
pub(in crate::proxy) async fn check<B>(
    access: &Access,
    client: IpAddr,
    req: &Request<B>,
    external: Option<(&AuthClient, &Subject<'_>)>,
) -> Result<Option<Box<Granted>>, Refusal> {
    let passed = decide(access, client, req, external).await?;
    // Let in without asking the service (`satisfy: any`): the headers it would have set are
    // removed, never left to the client.
    Ok(match (passed, &access.external) {
        (None, Some(auth)) => Some(Box::new(Granted::unasked(auth))),
        (passed, _) => passed,
    })
}

/// [`check`]'s decision; `Ok(None)` also when the request passes without asking the service.
async fn decide<B>(
    access: &Access,
    client: IpAddr,
    req: &Request<B>,
    external: Option<(&AuthClient, &Subject<'_>)>,
) -> Result<Option<Box<Granted>>, Refusal> {
    if access
        .deny
        .as_ref()
        .is_some_and(|deny| deny.contains(client))
    {
        return Err(Refusal::Forbidden);
    }
    let listed = access.allow.as_ref().map(|allow| allow.contains(client));
    match (access.satisfy, listed) {
        (Satisfy::Any, Some(true)) => return Ok(None),
        (Satisfy::All, Some(false)) => return Err(Refusal::Forbidden),
        _ => {}
    }
    if access.basic.is_none() && access.external.is_none() {
        return match listed {
            Some(false) => Err(Refusal::Forbidden),
            _ => Ok(None),
        };
    }
    if let Some(basic) = &access.basic {
        match authenticate(basic, req).await {
            Ok(()) if access.satisfy == Satisfy::Any || access.external.is_none() => {
                return Ok(None);
            }
            Ok(()) => {}
            // With `satisfy: any`, the authentication service may still let the request in.
            Err(_) if access.satisfy == Satisfy::Any && access.external.is_some() => {}
            Err(refusal) => return Err(refusal),
        }
    }
    match (&access.external, external) {
        (Some(auth), Some((client, subject))) => client
            .check(auth, req, subject)
            .await
            .map(|g| Some(Box::new(g))),
        (Some(_), None) => Err(Refusal::Misconfigured),
        (None, _) => Ok(None),
    }
}

/// 401 with the realm's challenge unless the request carries a listed user's password.
async fn authenticate<B>(basic: &BasicAuth, req: &Request<B>) -> Result<(), Refusal> {
    let unauthorized = || Refusal::Unauthorized(basic.challenge.clone());
    let (user, password) = basic_credentials(req.headers()).ok_or_else(unauthorized)?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{IpList, Users};
    use http::header;

    const ALICE: &str = "alice:$apr1$Bd6nIVYA$3BZloI3Mo8X5Hld57gVzL.";

    fn access(allow: Option<&str>, deny: Option<&str>, basic: bool, satisfy: Satisfy) -> Access {
        Access {
            allow: allow.map(|l| IpList::parse(l).unwrap()),
            deny: deny.map(|l| IpList::parse(l).unwrap()),
            basic: basic.then(|| BasicAuth {
                challenge: http::HeaderValue::from_static("Basic realm=\"r\""),
                users: Arc::new(Users::from_htpasswd(ALICE.as_bytes()).unwrap().0),
            }),
            external: None,
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
        match check(
            access,
            client.parse().unwrap(),
            &request(authorization),
            None,
        )
        .await
        {
            Ok(_) => 200,
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
        let read = |value: &str| basic_credentials(request(Some(value)).headers());
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
        assert_eq!(
            basic_credentials(twice.headers()),
            None,
            "two Authorization headers"
        );
    }
}
