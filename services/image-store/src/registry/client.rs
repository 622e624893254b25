//! A small OCI distribution API client on hyper: plain HTTP for loopback and insecure
//! registries, HTTPS (rustls, ring, webpki roots) otherwise; anonymous, basic and bearer
//! token auth (Docker Hub's `WWW-Authenticate: Bearer realm=…,service=…,scope=…`).
use std::{sync::Mutex, time::Duration};

use base64::Engine;
use bytes::Bytes;
use http::{header, HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::{
    client::legacy::{connect::HttpConnector, Client as HyperClient},
    rt::TokioExecutor,
};

use crate::error::{Error, Result};

use super::reference::Endpoint;

/// Credentials for one registry (from the request).
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    pub username: String,
    pub password: String,
    pub identity_token: String,
}

impl Credentials {
    fn basic(&self) -> Option<String> {
        if self.username.is_empty() && self.password.is_empty() {
            return None;
        }
        let raw = format!("{}:{}", self.username, self.password);
        Some(format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        ))
    }
}

/// A parsed `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
}

/// Parses `Bearer realm="…",service="…",scope="…"` or `Basic realm="…"`.
pub fn parse_challenge(value: &str) -> Option<Challenge> {
    let value = value.trim();
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    if scheme.eq_ignore_ascii_case("basic") {
        return Some(Challenge::Basic);
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let mut params = std::collections::HashMap::new();
    let mut s = rest.trim();
    while !s.is_empty() {
        let Some((key, after)) = s.split_once('=') else {
            break;
        };
        let key = key
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_ascii_lowercase();
        let after = after.trim_start();
        let (val, next) = if let Some(q) = after.strip_prefix('"') {
            // Quoted string; backslash escapes.
            let mut out = String::new();
            let mut chars = q.char_indices();
            let mut end = q.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, n)) = chars.next() {
                            out.push(n);
                        }
                    }
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    c => out.push(c),
                }
            }
            (out, &q[end..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].trim().to_string(), &after[end..])
        };
        params.insert(key, val);
        s = next.trim_start().trim_start_matches(',').trim_start();
    }
    Some(Challenge::Bearer {
        realm: params.remove("realm")?,
        service: params.remove("service"),
        scope: params.remove("scope"),
    })
}

pub struct Response {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Incoming,
}

impl Response {
    pub async fn bytes(self) -> Result<Bytes> {
        Ok(self
            .body
            .collect()
            .await
            .map_err(|e| Error::Unavailable(format!("reading a registry response: {e}")))?
            .to_bytes())
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    }

    /// The registry's error message (`{"errors":[{"code":…,"message":…}]}`), or the status.
    pub async fn error_message(self) -> String {
        let status = self.status;
        let body = self.bytes().await.unwrap_or_default();
        registry_error_message(status, &body)
    }
}

pub fn registry_error_message(status: StatusCode, body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Errs {
        errors: Vec<E>,
    }
    #[derive(serde::Deserialize)]
    struct E {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    if let Ok(e) = serde_json::from_slice::<Errs>(body) {
        let parts: Vec<String> = e
            .errors
            .iter()
            .map(|e| {
                if e.message.is_empty() {
                    e.code.to_ascii_lowercase()
                } else {
                    e.message.clone()
                }
            })
            .collect();
        if !parts.is_empty() {
            return parts.join("; ");
        }
    }
    let text = String::from_utf8_lossy(body).trim().to_string();
    if text.is_empty() || text.len() > 200 {
        status.to_string()
    } else {
        text
    }
}

type Http = HyperClient<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// A session with one registry for one repository (auth header cached).
pub struct Registry {
    http: Http,
    pub endpoint: Endpoint,
    creds: Credentials,
    /// The scopes asked for with bearer tokens (`repository:a/b:pull,push`); empty: the
    /// challenge's.
    scopes: Vec<String>,
    auth: Mutex<Option<String>>,
}

impl Registry {
    pub fn new(endpoint: Endpoint, creds: Credentials, scope: Option<String>) -> Result<Registry> {
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(rustls::crypto::ring::default_provider())
            .map_err(|e| Error::Internal(format!("TLS setup: {e}")))?
            .https_or_http()
            .enable_http1()
            .build();
        let http = HyperClient::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(https);
        Ok(Registry {
            http,
            endpoint,
            creds,
            scopes: scope.into_iter().collect(),
            auth: Mutex::new(None),
        })
    }

    /// Asks for `scope` too (a cross-repository mount needs pull on the source).
    pub fn add_scope(&mut self, scope: String) {
        if !self.scopes.contains(&scope) {
            self.scopes.push(scope);
        }
    }

    /// The scopes for a token request: ours, else the challenge's.
    fn token_scopes<'a>(&'a self, challenge: Option<&'a str>) -> Vec<&'a str> {
        if self.scopes.is_empty() {
            challenge.into_iter().collect()
        } else {
            self.scopes.iter().map(String::as_str).collect()
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}://{}{}", self.endpoint.scheme, self.endpoint.host, path)
    }

    async fn raw(
        &self,
        method: &Method,
        url: &str,
        headers: &[(&str, String)],
        body: &Bytes,
        auth: Option<&str>,
    ) -> Result<Response> {
        let mut req = Request::builder().method(method.clone()).uri(url);
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        req = req.header(header::USER_AGENT, "berth/0.1");
        if let Some(a) = auth {
            req = req.header(header::AUTHORIZATION, a);
        }
        let req = req
            .body(Full::new(body.clone()))
            .map_err(|e| Error::InvalidArgument(format!("bad registry URL {url}: {e}")))?;
        let resp = tokio::time::timeout(Duration::from_secs(60), self.http.request(req))
            .await
            .map_err(|_| {
                Error::Unavailable(format!(
                    "registry {} did not answer in time",
                    self.endpoint.display
                ))
            })?
            .map_err(|e| {
                let mut msg = e.to_string();
                let mut src: Option<&dyn std::error::Error> = std::error::Error::source(&e);
                while let Some(s) = src {
                    msg = format!("{msg}: {s}");
                    src = s.source();
                }
                Error::Unavailable(format!(
                    "cannot reach registry {} ({url}): {msg}",
                    self.endpoint.display
                ))
            })?;
        let (parts, body) = resp.into_parts();
        Ok(Response {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }

    /// Sends a request to the registry, authenticating on a 401 challenge and following
    /// redirects (blob downloads go to storage backends).
    pub async fn send(
        &self,
        method: Method,
        path_or_url: &str,
        headers: &[(&str, String)],
        body: Bytes,
    ) -> Result<Response> {
        let mut url = if path_or_url.starts_with("http://") || path_or_url.starts_with("https://") {
            path_or_url.to_string()
        } else {
            self.url(path_or_url)
        };
        let mut authed_retry = false;
        for _ in 0..6 {
            let own_host = url.starts_with(&self.url(""));
            let auth = if own_host {
                self.auth.lock().unwrap_or_else(|e| e.into_inner()).clone()
            } else {
                None
            };
            let resp = self
                .raw(&method, &url, headers, &body, auth.as_deref())
                .await?;
            if resp.status == StatusCode::UNAUTHORIZED && own_host && !authed_retry {
                if let Some(challenge) = resp
                    .header("www-authenticate")
                    .and_then(|c| parse_challenge(&c))
                {
                    authed_retry = true;
                    let _ = resp.bytes().await;
                    self.authenticate(&challenge).await?;
                    continue;
                }
            }
            if resp.status.is_redirection() && (method == Method::GET || method == Method::HEAD) {
                if let Some(loc) = resp.header("location") {
                    let _ = resp.bytes().await;
                    url = self.resolve_location(&url, &loc);
                    continue;
                }
            }
            return Ok(resp);
        }
        Err(Error::Unavailable(format!(
            "registry {}: too many redirects or authentication rounds",
            self.endpoint.display
        )))
    }

    /// Makes `loc` (a Location header) absolute against `base`.
    pub fn resolve_location(&self, base: &str, loc: &str) -> String {
        if loc.starts_with("http://") || loc.starts_with("https://") {
            loc.to_string()
        } else if loc.starts_with('/') {
            let scheme_end = base.find("://").map_or(0, |i| i + 3);
            let host_end = base[scheme_end..]
                .find('/')
                .map_or(base.len(), |i| scheme_end + i);
            format!("{}{}", &base[..host_end], loc)
        } else {
            let dir = base.rfind('/').map_or(base.len(), |i| i + 1);
            format!("{}{}", &base[..dir], loc)
        }
    }

    async fn authenticate(&self, challenge: &Challenge) -> Result<()> {
        let header = match challenge {
            Challenge::Basic => self.creds.basic().ok_or_else(|| {
                Error::Unauthenticated(format!(
                    "{}: authentication required (no credentials; run login first)",
                    self.endpoint.display
                ))
            })?,
            Challenge::Bearer {
                realm,
                service,
                scope,
            } => {
                let token = self
                    .fetch_token(realm, service.as_deref(), scope.as_deref())
                    .await?;
                format!("Bearer {token}")
            }
        };
        *self.auth.lock().unwrap_or_else(|e| e.into_inner()) = Some(header);
        Ok(())
    }

    async fn fetch_token(
        &self,
        realm: &str,
        service: Option<&str>,
        scope: Option<&str>,
    ) -> Result<String> {
        let mut query = Vec::new();
        if let Some(s) = service {
            query.push(format!("service={}", urlencode(s)));
        }
        // Ask for the scopes this session needs (push needs more than the challenge says).
        for s in self.token_scopes(scope) {
            query.push(format!("scope={}", urlencode(s)));
        }
        let url = if query.is_empty() {
            realm.to_string()
        } else if realm.contains('?') {
            format!("{realm}&{}", query.join("&"))
        } else {
            format!("{realm}?{}", query.join("&"))
        };
        let resp = if self.creds.identity_token.is_empty() {
            let basic = self.creds.basic();
            self.raw(&Method::GET, &url, &[], &Bytes::new(), basic.as_deref())
                .await?
        } else {
            // An identity token is an OAuth2 refresh token (Docker's `IdentityToken`).
            let mut form = vec![
                "grant_type=refresh_token".to_string(),
                "client_id=berth".to_string(),
                format!("refresh_token={}", urlencode(&self.creds.identity_token)),
            ];
            if let Some(s) = service {
                form.push(format!("service={}", urlencode(s)));
            }
            // OAuth2 takes several scopes space-separated.
            let scopes = self.token_scopes(scope);
            if !scopes.is_empty() {
                form.push(format!("scope={}", urlencode(&scopes.join(" "))));
            }
            self.raw(
                &Method::POST,
                realm,
                &[(
                    "content-type",
                    "application/x-www-form-urlencoded".to_string(),
                )],
                &Bytes::from(form.join("&")),
                None,
            )
            .await?
        };
        let status = resp.status;
        if !status.is_success() {
            let msg = resp.error_message().await;
            return Err(auth_error(status, &self.endpoint.display, &msg));
        }
        #[derive(serde::Deserialize)]
        struct Token {
            #[serde(default)]
            token: String,
            #[serde(default)]
            access_token: String,
        }
        let body = resp.bytes().await?;
        let t: Token = serde_json::from_slice(&body).map_err(|e| {
            Error::Unavailable(format!(
                "registry {}: invalid token response: {e}",
                self.endpoint.display
            ))
        })?;
        let token = if t.token.is_empty() {
            t.access_token
        } else {
            t.token
        };
        if token.is_empty() {
            return Err(Error::Unauthenticated(format!(
                "registry {}: the token server returned no token",
                self.endpoint.display
            )));
        }
        Ok(token)
    }
}

/// Maps an auth failure to Unauthenticated / PermissionDenied with the registry's words.
pub fn auth_error(status: StatusCode, registry: &str, msg: &str) -> Error {
    if status == StatusCode::FORBIDDEN {
        Error::PermissionDenied(format!("{registry}: denied: {msg}"))
    } else {
        Error::Unauthenticated(format!("{registry}: {msg}"))
    }
}

/// Percent-encodes a query value.
pub fn urlencode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_docker_hub_bearer_challenge() {
        let c = parse_challenge(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#,
        )
        .unwrap();
        assert_eq!(
            c,
            Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/busybox:pull".into()),
            }
        );
    }

    #[test]
    fn parses_basic_and_odd_challenges() {
        assert_eq!(
            parse_challenge(r#"Basic realm="Registry Realm""#),
            Some(Challenge::Basic)
        );
        assert_eq!(
            parse_challenge(r#"bearer realm="http://a/t?x=1", scope="repository:a/b:pull,push""#),
            Some(Challenge::Bearer {
                realm: "http://a/t?x=1".into(),
                service: None,
                scope: Some("repository:a/b:pull,push".into()),
            })
        );
        assert_eq!(
            parse_challenge(r#"Bearer realm=http://x/token,service=reg"#),
            Some(Challenge::Bearer {
                realm: "http://x/token".into(),
                service: Some("reg".into()),
                scope: None,
            })
        );
        assert_eq!(parse_challenge("Bearer service=x"), None);
        assert_eq!(parse_challenge("Negotiate"), None);
    }

    #[test]
    fn registry_errors_read_the_json_message() {
        let body =
            br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{}}]}"#;
        assert_eq!(
            registry_error_message(StatusCode::NOT_FOUND, body),
            "manifest unknown"
        );
        assert_eq!(
            registry_error_message(StatusCode::NOT_FOUND, b""),
            "404 Not Found"
        );
    }
}
