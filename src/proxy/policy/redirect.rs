//! `permanent-redirect` / `temporal-redirect`: the route answers with the redirect and never
//! forwards; the Location is the annotation's URL exactly (ingress-nginx's `return <code>
//! <url>;`: the request's path and query are not appended).

use http::Response;

use super::super::body::ProxyBody;
use super::super::respond;
use crate::model::Redirect;

/// The response to every request of a route with `redirect`.
pub(in crate::proxy) fn respond(redirect: &Redirect) -> Response<ProxyBody> {
    respond::redirect_to(redirect.code, redirect.location.clone())
}
