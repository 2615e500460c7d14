//! Objects on S3 (or any server speaking its protocol), through the `object_store` crate:
//! `s3://bucket/prefix`, with the endpoint, region and credentials taken the usual AWS way
//! (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_ENDPOINT_URL`, ...). A PUT
//! replaces an object whole, so readers see the old object or the new one. Readers that
//! memory-map (an HNSW index) get a local copy, kept under a cache directory and fetched again
//! when the object's ETag changes.

use super::{ObjectMeta, ObjectStore, check_key};
use crate::StorageError;
use futures::TryStreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as ObjPath;
use object_store::{ObjectStore as _, ObjectStoreExt as _};
use std::path::{Path, PathBuf};

pub struct S3Objects {
    store: AmazonS3,
    bucket: String,
    /// `""` or `a/b/`: what every key is under
    prefix: String,
    runtime: tokio::runtime::Runtime,
    cache: PathBuf,
}

impl std::fmt::Debug for S3Objects {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Objects")
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("cache", &self.cache)
            .finish()
    }
}

/// `s3://bucket[/prefix]` as (bucket, prefix ending in `/` or empty).
pub fn parse_url(url: &str) -> Result<(String, String), StorageError> {
    let bad = |why: &str| StorageError::BadAddress {
        what: format!("[storage] objects {url:?}"),
        message: why.into(),
    };
    let rest = url
        .strip_prefix("s3://")
        .ok_or_else(|| bad("expected s3://bucket/prefix"))?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    let bucket_ok = (3..=63).contains(&bucket.len())
        && bucket
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.');
    if !bucket_ok {
        return Err(bad(
            "a bucket name is 3-63 lowercase letters, digits, '-' or '.'",
        ));
    }
    let prefix = prefix.trim_end_matches('/');
    if !prefix.is_empty() && check_key(prefix).is_err() {
        return Err(bad(
            "the prefix is `/`-separated segments of letters, digits, '-', '_' or '.'",
        ));
    }
    let prefix = if prefix.is_empty() {
        String::new()
    } else {
        format!("{prefix}/")
    };
    Ok((bucket.to_owned(), prefix))
}

impl S3Objects {
    /// The objects under `url` (`s3://bucket/prefix`); local copies for memory-mapping readers
    /// go under `cache`.
    pub fn open(url: &str, cache: &Path) -> Result<S3Objects, StorageError> {
        let mut builder = AmazonS3Builder::from_env();
        // the AWS CLI's name for a custom endpoint (MinIO, a test server)
        if let Ok(endpoint) = std::env::var("AWS_ENDPOINT_URL") {
            builder = builder
                .with_allow_http(endpoint.starts_with("http://"))
                .with_endpoint(endpoint);
        }
        Self::with_builder(url, cache, builder)
    }

    /// As [`S3Objects::open`], configured by `builder` rather than the environment.
    pub fn with_builder(
        url: &str,
        cache: &Path,
        builder: AmazonS3Builder,
    ) -> Result<S3Objects, StorageError> {
        let (bucket, prefix) = parse_url(url)?;
        // https to S3 through rustls with ring, the workspace's one crypto provider (a second
        // call finds it installed)
        #[allow(
            deprecated,
            reason = "ring is the workspace's rustls provider (aws-lc would be a second one)"
        )]
        let provider = tokio_rustls::rustls::crypto::ring::default_provider();
        let _ = provider.install_default();
        let store = builder
            .with_bucket_name(&bucket)
            .build()
            .map_err(|e| failed(url, &e))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| StorageError::io(cache)(e))?;
        Ok(S3Objects {
            store,
            bucket,
            prefix,
            runtime,
            cache: cache.to_path_buf(),
        })
    }

    fn path(&self, key: &str) -> Result<ObjPath, StorageError> {
        check_key(key)?;
        Ok(ObjPath::from(format!("{}{key}", self.prefix)))
    }

    /// Runs `f` to completion on this store's runtime, off any async runtime the caller is on.
    fn block<T>(&self, f: impl Future<Output = T>) -> T {
        crate::binding::blocking(|| self.runtime.block_on(f))
    }

    fn failed(&self, key: &str, e: &object_store::Error) -> StorageError {
        failed(&self.describe(key), e)
    }

    /// The object's ETag (or size and time when the server gives none), `None` when absent.
    fn version(&self, key: &str) -> Result<Option<(String, u64)>, StorageError> {
        let path = self.path(key)?;
        match self.block(self.store.head(&path)) {
            Ok(m) => Ok(Some((
                m.e_tag
                    .unwrap_or_else(|| format!("{}-{}", m.size, m.last_modified)),
                m.size,
            ))),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.failed(key, &e)),
        }
    }
}

/// An S3 failure in the store's terms: the server cannot be reached or refused.
fn failed(what: &str, e: &object_store::Error) -> StorageError {
    StorageError::Unavailable {
        what: format!("object store {what}"),
        message: e.to_string(),
    }
}

impl ObjectStore for S3Objects {
    fn put(&self, key: &str, bytes: &[u8]) -> Result<(), StorageError> {
        let path = self.path(key)?;
        let payload = object_store::PutPayload::from(bytes.to_vec());
        self.block(self.store.put(&path, payload))
            .map(|_| ())
            .map_err(|e| self.failed(key, &e))
    }

    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        let path = self.path(key)?;
        self.block(async {
            match self.store.get(&path).await {
                Ok(r) => r.bytes().await.map(|b| Some(b.to_vec())),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(e),
            }
        })
        .map_err(|e| self.failed(key, &e))
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StorageError> {
        // listing is by directory; the string prefix is applied after
        let full = format!("{}{prefix}", self.prefix);
        let dir = full.rfind('/').map(|at| ObjPath::from(&full[..at]));
        let found: Vec<object_store::ObjectMeta> = self
            .block(self.store.list(dir.as_ref()).try_collect())
            .map_err(|e| self.failed(prefix, &e))?;
        let mut out: Vec<ObjectMeta> = found
            .into_iter()
            .filter_map(|m| {
                let location = m.location.to_string();
                let key = location.strip_prefix(&self.prefix)?;
                (key.starts_with(prefix) && check_key(key).is_ok()).then(|| ObjectMeta {
                    key: key.to_owned(),
                    size: m.size,
                })
            })
            .collect();
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    fn delete(&self, key: &str) -> Result<bool, StorageError> {
        let path = self.path(key)?;
        // S3 answers a delete of nothing with success: ask first
        let existed = self.version(key)?.is_some();
        if existed {
            self.block(self.store.delete(&path))
                .map_err(|e| self.failed(key, &e))?;
        }
        let _ = std::fs::remove_file(self.cache.join("objects").join(key));
        Ok(existed)
    }

    fn exists(&self, key: &str) -> Result<bool, StorageError> {
        Ok(self.version(key)?.is_some())
    }

    fn local_path(&self, key: &str) -> Result<Option<PathBuf>, StorageError> {
        check_key(key)?;
        let local = self.cache.join("objects").join(key);
        let stamp = self.cache.join("etags").join(key);
        let Some((etag, size)) = self.version(key)? else {
            let _ = std::fs::remove_file(&local);
            return Ok(None);
        };
        let fresh = std::fs::read_to_string(&stamp).is_ok_and(|s| s == etag)
            && std::fs::metadata(&local).is_ok_and(|m| m.len() == size);
        if !fresh {
            let Some(bytes) = self.get(key)? else {
                return Ok(None);
            };
            for file in [&local, &stamp] {
                if let Some(dir) = file.parent() {
                    std::fs::create_dir_all(dir).map_err(|e| StorageError::io(dir)(e))?;
                }
            }
            super::write_atomic(&local, &bytes)?;
            super::write_atomic(&stamp, etag.as_bytes())?;
        }
        Ok(Some(local))
    }

    fn describe(&self, key: &str) -> String {
        format!("s3://{}/{}{key}", self.bucket, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_a_bucket_and_a_prefix() {
        assert_eq!(
            parse_url("s3://lake/encore/prod").unwrap(),
            ("lake".into(), "encore/prod/".into())
        );
        assert_eq!(
            parse_url("s3://lake/").unwrap(),
            ("lake".into(), String::new())
        );
        for bad in [
            "lake/x",
            "s3://",
            "s3://UP/x",
            "s3://ab",
            "s3://lake/../x",
            "s3://lake/a//b",
        ] {
            let e = parse_url(bad).unwrap_err().to_string();
            assert!(e.contains(bad), "{bad}: {e}");
        }
    }

    /// The suite on the S3-protocol server named by `ENCORE_TEST_S3` (default: the moto server
    /// `.ci/run` starts, `http://127.0.0.1:5055`), in bucket `encore-test` under a prefix of
    /// this run's own.
    #[test]
    #[allow(clippy::print_stderr, reason = "a skipped test says why")]
    fn s3_passes_the_object_store_conformance_suite() {
        use std::io::{Read, Write};
        let endpoint =
            std::env::var("ENCORE_TEST_S3").unwrap_or_else(|_| "http://127.0.0.1:5055".into());
        let host = endpoint.trim_start_matches("http://").trim_end_matches('/');
        // the bucket, made with a bare PUT (the test server does not check signatures)
        let made = std::net::TcpStream::connect(host).and_then(|mut c| {
            write!(
                c,
                "PUT /encore-test HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            )?;
            let mut answer = String::new();
            c.read_to_string(&mut answer)?;
            Ok(answer)
        });
        let made = match made {
            Ok(answer) => answer,
            Err(e) => {
                assert!(
                    std::env::var_os("ENCORE_REQUIRE_SERVICES").is_none(),
                    "ENCORE_REQUIRE_SERVICES is set but no S3 server answers at {endpoint}: {e}"
                );
                eprintln!("skipped: no S3 server at {endpoint} ({e}); set ENCORE_TEST_S3");
                return;
            }
        };
        assert!(made.starts_with("HTTP/1.1 200"), "{made}");
        let run = format!(
            "t{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos())
        );
        let cache = tempfile::tempdir().unwrap();
        let open = |name: &str| -> Box<dyn ObjectStore> {
            let builder = AmazonS3Builder::new()
                .with_endpoint(&endpoint)
                .with_allow_http(true)
                .with_region("us-east-1")
                .with_access_key_id("test")
                .with_secret_access_key("test");
            Box::new(
                S3Objects::with_builder(
                    &format!("s3://encore-test/{run}/{name}"),
                    &cache.path().join(name),
                    builder,
                )
                .unwrap(),
            )
        };
        super::super::testsuite::run(&open);
        // a replaced object's local copy is fetched again, not served stale
        let s = open("recopy");
        s.put("idx", b"first").unwrap();
        let p = s.local_path("idx").unwrap().unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"first");
        s.put("idx", b"second!").unwrap();
        let p = s.local_path("idx").unwrap().unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"second!");
        assert!(s.describe("idx").starts_with("s3://encore-test/"));
    }
}
