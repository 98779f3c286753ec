//! Access tokens for the BigQuery API.
//!
//! - An emulator endpoint takes no credentials: no `Authorization` header is sent.
//! - A service account key (`bigquery_credentials`: the JSON text, or the path of the JSON file) signs a
//!   JWT (RS256, with `aws-lc-rs`, already linked for TLS) and exchanges it at the key's `token_uri` for an
//!   access token (OAuth 2.0 JWT bearer grant), cached until five minutes before it expires.
//! - Without a key, the token comes from the metadata server (Google Cloud runtimes: Application Default
//!   Credentials there).
//!
//! On AWS, the key is kept in Secrets Manager and handed to the function as `BIGQUERY_CREDENTIALS` (see the
//! README's Deploying section); keyless Workload Identity Federation from the Lambda role is documented
//! there as the option to prefer and is not built in yet.

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde::Deserialize;
use tokio::sync::Mutex;

use crate::config::BigQueryConfig;
use crate::store::StoreError;

const SCOPE: &str = "https://www.googleapis.com/auth/bigquery";
const METADATA_TOKEN: &str =
    "http://metadata.google.internal/computeMetadata/v1/instance/service-accounts/default/token";

/// Where tokens come from; cheap to clone.
#[derive(Debug, Clone)]
pub struct TokenSource {
    kind: Arc<Kind>,
    cache: Arc<Mutex<Option<(String, Instant)>>>,
    http: reqwest::Client,
}

enum Kind {
    None,
    ServiceAccount(ServiceAccount),
    Metadata,
}

impl std::fmt::Debug for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::None => f.write_str("None"),
            Self::ServiceAccount(sa) => write!(f, "ServiceAccount({})", sa.client_email),
            Self::Metadata => f.write_str("Metadata"),
        }
    }
}

struct ServiceAccount {
    client_email: String,
    token_uri: String,
    key: aws_lc_rs::signature::RsaKeyPair,
}

#[derive(Deserialize)]
struct KeyFile {
    client_email: String,
    private_key: String,
    #[serde(default = "default_token_uri")]
    token_uri: String,
}

fn default_token_uri() -> String {
    "https://oauth2.googleapis.com/token".into()
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    #[serde(default = "default_lifetime")]
    expires_in: u64,
}

fn default_lifetime() -> u64 {
    3600
}

impl TokenSource {
    /// Tokens for `config`: none for an emulator, the service account key when one is set, else the
    /// metadata server. A key that cannot be read is a configuration error naming the setting.
    pub fn from_config(config: &BigQueryConfig) -> crate::error::Result<Self> {
        super::client::install_tls_provider();
        let kind = if config.is_emulator() {
            Kind::None
        } else if config.credentials.expose().trim().is_empty() {
            Kind::Metadata
        } else {
            Kind::ServiceAccount(service_account(config.credentials.expose())?)
        };
        Ok(Self {
            kind: Arc::new(kind),
            cache: Arc::new(Mutex::new(None)),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap_or_default(),
        })
    }

    /// No credentials (an emulator).
    pub fn none() -> Self {
        super::client::install_tls_provider();
        Self {
            kind: Arc::new(Kind::None),
            cache: Arc::new(Mutex::new(None)),
            http: reqwest::Client::new(),
        }
    }

    /// A bearer token, or `None` when requests go without one.
    pub async fn token(&self) -> Result<Option<String>, StoreError> {
        if matches!(*self.kind, Kind::None) {
            return Ok(None);
        }
        let mut cache = self.cache.lock().await;
        if let Some((token, until)) = cache.as_ref()
            && Instant::now() < *until
        {
            return Ok(Some(token.clone()));
        }
        let answer = match &*self.kind {
            Kind::None => return Ok(None),
            Kind::ServiceAccount(sa) => {
                let assertion = sa.assertion(time::OffsetDateTime::now_utc().unix_timestamp())?;
                self.http
                    .post(&sa.token_uri)
                    .form(&[
                        ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
                        ("assertion", assertion.as_str()),
                    ])
                    .send()
                    .await
            }
            Kind::Metadata => {
                self.http
                    .get(METADATA_TOKEN)
                    .header("Metadata-Flavor", "Google")
                    .send()
                    .await
            }
        }
        .map_err(|e| StoreError::Unavailable(format!("BigQuery credentials: {e}")))?;
        if !answer.status().is_success() {
            let status = answer.status();
            let text = answer.text().await.unwrap_or_default();
            return Err(StoreError::Rejected(format!(
                "BigQuery credentials refused ({status}): {}",
                text.chars().take(200).collect::<String>()
            )));
        }
        let token: TokenAnswer = answer
            .json()
            .await
            .map_err(|e| StoreError::Unavailable(format!("BigQuery credentials: {e}")))?;
        let until = Instant::now() + Duration::from_secs(token.expires_in.saturating_sub(300));
        *cache = Some((token.access_token.clone(), until));
        Ok(Some(token.access_token))
    }
}

/// Reads a service account key: the JSON itself, or the path of a file holding it.
fn service_account(text_or_path: &str) -> crate::error::Result<ServiceAccount> {
    let bad = |why: String| crate::error::Error::Config(format!("bigquery_credentials: {why}"));
    let text = if text_or_path.trim_start().starts_with('{') {
        text_or_path.to_owned()
    } else {
        std::fs::read_to_string(text_or_path.trim())
            .map_err(|e| bad(format!("cannot read the key file ({e})")))?
    };
    let file: KeyFile =
        serde_json::from_str(&text).map_err(|e| bad(format!("not a service account key ({e})")))?;
    let pem: String = file
        .private_key
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let der = STANDARD
        .decode(pem.trim())
        .map_err(|e| bad(format!("private_key is not PEM ({e})")))?;
    let key = aws_lc_rs::signature::RsaKeyPair::from_pkcs8(&der)
        .map_err(|e| bad(format!("private_key is not an RSA PKCS#8 key ({e})")))?;
    Ok(ServiceAccount {
        client_email: file.client_email,
        token_uri: file.token_uri,
        key,
    })
}

impl ServiceAccount {
    /// The signed JWT asking for a BigQuery token, valid for an hour from `now` (Unix seconds).
    fn assertion(&self, now: i64) -> Result<String, StoreError> {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","typ":"JWT"}"#);
        let claims = serde_json::json!({
            "iss": self.client_email,
            "scope": SCOPE,
            "aud": self.token_uri,
            "iat": now,
            "exp": now + 3600,
        });
        let claims = URL_SAFE_NO_PAD.encode(claims.to_string());
        let signed = format!("{header}.{claims}");
        let mut signature = vec![0; self.key.public_modulus_len()];
        self.key
            .sign(
                &aws_lc_rs::signature::RSA_PKCS1_SHA256,
                &aws_lc_rs::rand::SystemRandom::new(),
                signed.as_bytes(),
                &mut signature,
            )
            .map_err(|_| StoreError::Rejected("could not sign the credentials' JWT".into()))?;
        Ok(format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::encoding::AsDer as _;
    use aws_lc_rs::signature::KeyPair as _;

    /// A throwaway RSA key generated for this test (never a real credential).
    fn key_file() -> (String, Vec<u8>) {
        let pair =
            aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).expect("key");
        let der = pair.as_der().expect("pkcs8");
        let pem = format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            STANDARD.encode(der.as_ref())
        );
        let json = serde_json::json!({
            "type": "service_account",
            "client_email": "analytics@example-project.iam.gserviceaccount.com",
            "private_key": pem,
            "token_uri": "https://oauth2.example/token",
        });
        (json.to_string(), pair.public_key().as_ref().to_vec())
    }

    #[test]
    fn a_service_account_signs_a_jwt_that_its_public_key_verifies() {
        let (json, public) = key_file();
        let sa = service_account(&json).expect("key reads");
        let jwt = sa.assertion(1_800_000_000).expect("signs");
        let parts: Vec<&str> = jwt.split('.').collect();
        assert_eq!(parts.len(), 3);
        let claims: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).expect("b64")).expect("json");
        assert_eq!(claims["scope"], SCOPE);
        assert_eq!(claims["aud"], "https://oauth2.example/token");
        assert_eq!(claims["exp"], 1_800_003_600);
        let signature = URL_SAFE_NO_PAD.decode(parts[2]).expect("b64");
        aws_lc_rs::signature::UnparsedPublicKey::new(
            &aws_lc_rs::signature::RSA_PKCS1_2048_8192_SHA256,
            public,
        )
        .verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &signature)
        .expect("the signature verifies");
    }

    #[test]
    fn an_unreadable_key_is_a_configuration_error_naming_the_setting() {
        for bad in [
            "{\"client_email\": 1}",
            "/no/such/key.json",
            "{\"client_email\":\"a\",\"private_key\":\"xx\"}",
        ] {
            let err = service_account(bad).err().expect("refused");
            assert!(err.to_string().contains("bigquery_credentials"), "{err}");
        }
    }
}
