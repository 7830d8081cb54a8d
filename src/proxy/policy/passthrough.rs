//! `ssl-passthrough`: a request that reaches weir's HTTP layer over a TLS connection weir
//! terminated, for a host whose TLS connections go to its backend unopened, is answered 421
//! Misdirected Request. Such a request came on a connection made for another host (a browser
//! reuses an HTTP/2 connection for every host its certificate covers), or from before the host
//! passed through; forwarding it would send it, in clear text, to a port that speaks TLS. The
//! 421 makes the client open a connection of its own for the host, which is passed through.
//! Plain-HTTP requests to the host are routed as usual.

use super::super::headers::ClientInfo;
use super::super::respond::Refusal;
use crate::model::HostSettings;

/// Refuses (421) a request on weir's TLS for a host that passes its TLS through.
#[inline]
pub(in crate::proxy) fn check(settings: &HostSettings, conn: &ClientInfo) -> Result<(), Refusal> {
    if settings.passthrough.is_some() && conn.scheme == "https" {
        return Err(Refusal::PassedThrough);
    }
    Ok(())
}
