//! The on-disk format of a trained model: a fixed 64-byte preamble, a JSON header, and a payload
//! of little-endian arrays, each aligned to 64 bytes so a reader can map them in place.
//!
//! ```text
//! 0   magic "ENCOREMD"           8 bytes
//! 8   format version             u32 (1)
//! 12  model kind                 u32 (1 popularity, 2 item-kNN, 3 ALS, 4 BPR)
//! 16  header length              u64 (bytes of JSON, padded with spaces to 64)
//! 24  payload length             u64
//! 32  SHA-256 of header+payload  32 bytes
//! 64  header JSON: config, user and item counts, sections {name, dtype, offset, len}, metadata
//! 64+header  payload
//! ```
//!
//! The checksum is also the artifact's content address. Loading checks the magic, the version,
//! the lengths against the file size, the checksum and every section's bounds before building
//! the model, so a truncated or corrupted file is an error naming it, never a wrong model.

use crate::als::AlsModel;
use crate::bpr::BprModel;
use crate::data::Csr;
use crate::itemknn::ItemKnn;
use crate::model::{Model, ModelConfig};
use crate::popularity::Popularity;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

pub const MAGIC: &[u8; 8] = b"ENCOREMD";
pub const FORMAT_VERSION: u32 = 1;
const ALIGN: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    #[error("cannot read or write model artifact {}: {message}", path.display())]
    Io { path: PathBuf, message: String },
    #[error("{} is not an encore model artifact: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
    #[error("model artifact {} failed its checksum (expected {expected}, got {actual}): the file is corrupted", path.display())]
    Checksum {
        path: PathBuf,
        expected: String,
        actual: String,
    },
    #[error("model artifact {} has format version {found}; this encore reads up to {FORMAT_VERSION}", path.display())]
    Version { path: PathBuf, found: u32 },
}

impl encore_core::Coded for ArtifactError {
    fn code(&self) -> encore_core::ErrorCode {
        match self {
            ArtifactError::Io { .. } => encore_core::ErrorCode::NotFound,
            _ => encore_core::ErrorCode::DataLoss,
        }
    }

    fn hint(&self) -> Option<String> {
        match self {
            ArtifactError::Checksum { .. } | ArtifactError::Invalid { .. } => {
                Some("retrain the model or restore the file from a backup".into())
            }
            ArtifactError::Version { .. } => Some("upgrade encore".into()),
            ArtifactError::Io { .. } => None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Section {
    name: String,
    /// "f32" | "u32" | "u8"
    dtype: String,
    /// bytes from the start of the payload
    offset: u64,
    /// elements
    len: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Header {
    config: ModelConfig,
    users: u64,
    items: u64,
    /// vector width of latent-factor models, 0 otherwise
    width: u64,
    sections: Vec<Section>,
    #[serde(default)]
    metadata: serde_json::Value,
}

/// A fitted model with the ids of its users and items (index `i` is `items[i]`) and free-form
/// metadata (lineage, metrics) that travels with it.
#[derive(Debug, Clone)]
pub struct Artifact {
    pub config: ModelConfig,
    pub model: Model,
    pub users: Vec<String>,
    pub items: Vec<String>,
    pub metadata: serde_json::Value,
    /// the training interactions (users x items, plays), when stored: serving uses them to
    /// leave out what a listener already played and to rank by popularity
    pub interactions: Option<Csr>,
    /// plays too short to count (skips), users x items, when stored: never recommended back
    pub skipped: Option<Csr>,
}

fn kind_code(model: &Model) -> u32 {
    match model {
        Model::Popularity(_) => 1,
        Model::ItemKnn(_) => 2,
        Model::Als(_) => 3,
        Model::Bpr(_) => 4,
    }
}

/// Strings as (offsets, bytes): string `i` is `bytes[offsets[i]..offsets[i + 1]]`.
fn pack_strings(strings: &[String]) -> (Vec<u32>, Vec<u8>) {
    let mut offsets = Vec::with_capacity(strings.len() + 1);
    let mut bytes = Vec::new();
    offsets.push(0);
    for s in strings {
        bytes.extend_from_slice(s.as_bytes());
        offsets.push(bytes.len() as u32);
    }
    (offsets, bytes)
}

#[derive(Default)]
struct Payload {
    bytes: Vec<u8>,
    sections: Vec<Section>,
}

impl Payload {
    fn push(&mut self, name: &str, dtype: &str, len: usize, data: impl Iterator<Item = [u8; 4]>) {
        let offset = self.bytes.len();
        for d in data {
            self.bytes.extend_from_slice(&d);
        }
        self.finish(name, dtype, offset, len);
    }

    fn finish(&mut self, name: &str, dtype: &str, offset: usize, len: usize) {
        self.bytes
            .resize(self.bytes.len().next_multiple_of(ALIGN), 0);
        self.sections.push(Section {
            name: name.into(),
            dtype: dtype.into(),
            offset: offset as u64,
            len: len as u64,
        });
    }

    fn f32s(&mut self, name: &str, v: &[f32]) {
        self.push(name, "f32", v.len(), v.iter().map(|x| x.to_le_bytes()));
    }

    fn u32s(&mut self, name: &str, v: &[u32]) {
        self.push(name, "u32", v.len(), v.iter().map(|x| x.to_le_bytes()));
    }

    fn strings(&mut self, name: &str, strings: &[String]) {
        let (offsets, bytes) = pack_strings(strings);
        self.u32s(&format!("{name}_offsets"), &offsets);
        let at = self.bytes.len();
        self.bytes.extend_from_slice(&bytes);
        self.finish(&format!("{name}_bytes"), "u8", at, bytes.len());
    }
}

impl Artifact {
    /// The artifact's bytes; its checksum (hex) is `sha256` of everything after the preamble.
    pub fn to_bytes(&self) -> (Vec<u8>, String) {
        let mut p = Payload::default();
        let mut width = 0;
        match &self.model {
            Model::Popularity(m) => p.f32s("counts", &m.counts),
            Model::ItemKnn(m) => {
                let mut offsets = vec![0u32];
                let (mut ids, mut sims) = (Vec::new(), Vec::new());
                for n in &m.neighbors {
                    ids.extend(n.iter().map(|x| x.0));
                    sims.extend(n.iter().map(|x| x.1));
                    offsets.push(ids.len() as u32);
                }
                p.u32s("neighbor_offsets", &offsets);
                p.u32s("neighbor_ids", &ids);
                p.f32s("neighbor_similarities", &sims);
            }
            Model::Als(m) => {
                width = m.factors;
                p.f32s("user_factors", &m.user_factors);
                p.f32s("item_factors", &m.item_factors);
            }
            Model::Bpr(m) => {
                width = m.width;
                p.f32s("user_factors", &m.user_factors);
                p.f32s("item_factors", &m.item_factors);
            }
        }
        p.strings("user_ids", &self.users);
        p.strings("item_ids", &self.items);
        for (prefix, m) in [
            ("interactions", &self.interactions),
            ("skipped", &self.skipped),
        ] {
            if let Some(m) = m {
                let indptr: Vec<u32> = m.indptr.iter().map(|&x| x as u32).collect();
                p.u32s(&format!("{prefix}_indptr"), &indptr);
                p.u32s(&format!("{prefix}_items"), &m.indices);
                p.f32s(&format!("{prefix}_plays"), &m.values);
            }
        }
        let header = Header {
            config: self.config.clone(),
            users: self.users.len() as u64,
            items: self.items.len() as u64,
            width: width as u64,
            sections: p.sections,
            metadata: self.metadata.clone(),
        };
        let mut json = serde_json::to_vec(&header).unwrap_or_default();
        json.resize(json.len().next_multiple_of(ALIGN), b' ');
        let mut hasher = Sha256::new();
        hasher.update(&json);
        hasher.update(&p.bytes);
        let digest: [u8; 32] = hasher.finalize().into();
        let mut out = Vec::with_capacity(ALIGN + json.len() + p.bytes.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&kind_code(&self.model).to_le_bytes());
        out.extend_from_slice(&(json.len() as u64).to_le_bytes());
        out.extend_from_slice(&(p.bytes.len() as u64).to_le_bytes());
        out.extend_from_slice(&digest);
        out.extend_from_slice(&json);
        out.extend_from_slice(&p.bytes);
        (out, hex(&digest))
    }

    /// Writes the artifact to `path` (atomically: a temporary file, synced, then renamed) and
    /// returns its checksum.
    pub fn save(&self, path: &Path) -> Result<String, ArtifactError> {
        let (bytes, sum) = self.to_bytes();
        write_atomic(path, &bytes)?;
        Ok(sum)
    }

    /// Stores the artifact content-addressed in `dir` as `<sha256>.encore` (created if needed);
    /// returns the path, the checksum and the size in bytes.
    pub fn store(&self, dir: &Path) -> Result<(PathBuf, String, u64), ArtifactError> {
        std::fs::create_dir_all(dir).map_err(|e| ArtifactError::Io {
            path: dir.to_path_buf(),
            message: e.to_string(),
        })?;
        let (bytes, sum) = self.to_bytes();
        let path = dir.join(format!("{sum}.encore"));
        if !path.exists() {
            write_atomic(&path, &bytes)?;
        }
        Ok((path, sum, bytes.len() as u64))
    }

    pub fn load(path: &Path) -> Result<Artifact, ArtifactError> {
        let bytes = std::fs::read(path).map_err(|e| ArtifactError::Io {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        Artifact::from_bytes(&bytes, path)
    }

    /// Parses and verifies an artifact; `path` names it in errors.
    pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<Artifact, ArtifactError> {
        let invalid = |message: String| ArtifactError::Invalid {
            path: path.to_path_buf(),
            message,
        };
        if bytes.len() < ALIGN || &bytes[..8] != MAGIC {
            return Err(invalid("no ENCOREMD preamble".into()));
        }
        let u32_at =
            |o: usize| u32::from_le_bytes([bytes[o], bytes[o + 1], bytes[o + 2], bytes[o + 3]]);
        let u64_at = |o: usize| u64::from(u32_at(o)) | (u64::from(u32_at(o + 4)) << 32);
        let version = u32_at(8);
        if version == 0 || version > FORMAT_VERSION {
            return Err(ArtifactError::Version {
                path: path.to_path_buf(),
                found: version,
            });
        }
        let kind = u32_at(12);
        let (header_len, payload_len) = (u64_at(16), u64_at(24));
        let expected_len = (ALIGN as u64)
            .checked_add(header_len)
            .and_then(|n| n.checked_add(payload_len));
        if expected_len != Some(bytes.len() as u64) {
            return Err(invalid(format!(
                "{} bytes, the preamble says {} (truncated or extended)",
                bytes.len(),
                expected_len.map_or("more than 2^64".into(), |n| n.to_string())
            )));
        }
        let body = &bytes[ALIGN..];
        let actual: [u8; 32] = Sha256::digest(body).into();
        if actual[..] != bytes[32..64] {
            return Err(ArtifactError::Checksum {
                path: path.to_path_buf(),
                expected: hex(&bytes[32..64]),
                actual: hex(&actual),
            });
        }
        let (json, payload) = body.split_at(header_len as usize);
        let header: Header =
            serde_json::from_slice(json).map_err(|e| invalid(format!("bad header: {e}")))?;
        let view = View {
            payload,
            sections: &header.sections,
            path,
        };
        let users = view.strings("user_ids")?;
        let items = view.strings("item_ids")?;
        let (nu, ni, w) = (users.len(), items.len(), header.width as usize);
        let factors = |name: &str, rows: usize| -> Result<Vec<f32>, ArtifactError> {
            let v = view.f32s(name)?;
            if v.len() != rows * w || w == 0 {
                return Err(invalid(format!(
                    "section {name} has {} values, expected {rows} x {w}",
                    v.len()
                )));
            }
            Ok(v)
        };
        let model = match (kind, &header.config) {
            (1, ModelConfig::Popularity(_)) => Model::Popularity(Popularity {
                counts: view.f32s("counts")?,
            }),
            (2, ModelConfig::ItemKnn(c)) => {
                let offsets = view.u32s("neighbor_offsets")?;
                let ids = view.u32s("neighbor_ids")?;
                let sims = view.f32s("neighbor_similarities")?;
                if offsets.len() != ni + 1
                    || ids.len() != sims.len()
                    || offsets.windows(2).any(|p| p[0] > p[1])
                    || offsets.last().is_some_and(|&e| e as usize != ids.len())
                    || ids.iter().any(|&j| j as usize >= ni)
                {
                    return Err(invalid("inconsistent neighbour lists".into()));
                }
                let neighbors = offsets
                    .windows(2)
                    .map(|p| {
                        let r = p[0] as usize..p[1] as usize;
                        ids[r.clone()]
                            .iter()
                            .copied()
                            .zip(sims[r].iter().copied())
                            .collect()
                    })
                    .collect();
                Model::ItemKnn(ItemKnn {
                    neighbors,
                    confidence: c.confidence,
                })
            }
            (3, ModelConfig::Als(_)) => Model::Als(AlsModel {
                factors: w,
                user_factors: factors("user_factors", nu)?,
                item_factors: factors("item_factors", ni)?,
            }),
            (4, ModelConfig::Bpr(_)) => Model::Bpr(BprModel {
                width: w,
                user_factors: factors("user_factors", nu)?,
                item_factors: factors("item_factors", ni)?,
            }),
            (k, c) => {
                return Err(invalid(format!(
                    "model kind {k} does not match its configuration ({})",
                    c.kind()
                )));
            }
        };
        let interactions = sparse(&view, &header, "interactions", nu, ni)?;
        let skipped = sparse(&view, &header, "skipped", nu, ni)?;
        if model.n_items() != ni {
            return Err(invalid(format!(
                "the model has {} items, the id list {ni}",
                model.n_items()
            )));
        }
        Ok(Artifact {
            config: header.config,
            model,
            users,
            items,
            metadata: header.metadata,
            interactions,
            skipped,
        })
    }
}

/// The users x items matrix stored as `{prefix}_indptr`, `{prefix}_items` and `{prefix}_plays`,
/// when the artifact has it, checked for consistency.
fn sparse(
    view: &View<'_>,
    header: &Header,
    prefix: &str,
    nu: usize,
    ni: usize,
) -> Result<Option<Csr>, ArtifactError> {
    let name = |part: &str| format!("{prefix}_{part}");
    if !header.sections.iter().any(|s| s.name == name("indptr")) {
        return Ok(None);
    }
    let indptr = view.u32s(&name("indptr"))?;
    let indices = view.u32s(&name("items"))?;
    let values = view.f32s(&name("plays"))?;
    let ok = indptr.len() == nu + 1
        && indices.len() == values.len()
        && indptr.first() == Some(&0)
        && indptr.windows(2).all(|p| p[0] <= p[1])
        && indptr.last().is_some_and(|&e| e as usize == indices.len())
        && indices.iter().all(|&i| (i as usize) < ni);
    if !ok {
        return Err(ArtifactError::Invalid {
            path: view.path.to_path_buf(),
            message: format!("inconsistent {prefix}"),
        });
    }
    Ok(Some(Csr {
        n_rows: nu,
        n_cols: ni,
        indptr: indptr.into_iter().map(|x| x as usize).collect(),
        indices,
        values,
    }))
}

struct View<'a> {
    payload: &'a [u8],
    sections: &'a [Section],
    path: &'a Path,
}

impl View<'_> {
    fn bytes(&self, name: &str, dtype: &str, size: u64) -> Result<&[u8], ArtifactError> {
        let invalid = |message: String| ArtifactError::Invalid {
            path: self.path.to_path_buf(),
            message,
        };
        let s = self
            .sections
            .iter()
            .find(|s| s.name == name)
            .ok_or_else(|| invalid(format!("no section {name}")))?;
        if s.dtype != dtype {
            return Err(invalid(format!(
                "section {name} is {}, expected {dtype}",
                s.dtype
            )));
        }
        let end = s
            .len
            .checked_mul(size)
            .and_then(|n| n.checked_add(s.offset));
        match end {
            Some(end) if end <= self.payload.len() as u64 => {
                Ok(&self.payload[s.offset as usize..end as usize])
            }
            _ => Err(invalid(format!(
                "section {name} runs past the end of the file"
            ))),
        }
    }

    fn f32s(&self, name: &str) -> Result<Vec<f32>, ArtifactError> {
        let b = self.bytes(name, "f32", 4)?;
        Ok(b.chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }

    fn u32s(&self, name: &str) -> Result<Vec<u32>, ArtifactError> {
        let b = self.bytes(name, "u32", 4)?;
        Ok(b.chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }

    fn strings(&self, name: &str) -> Result<Vec<String>, ArtifactError> {
        let offsets = self.u32s(&format!("{name}_offsets"))?;
        let bytes = self.bytes(&format!("{name}_bytes"), "u8", 1)?;
        let bad = || ArtifactError::Invalid {
            path: self.path.to_path_buf(),
            message: format!("section {name} has bad string offsets or UTF-8"),
        };
        offsets
            .windows(2)
            .map(|p| {
                let s = bytes.get(p[0] as usize..p[1] as usize).ok_or_else(bad)?;
                String::from_utf8(s.to_vec()).map_err(|_| bad())
            })
            .collect()
    }
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ArtifactError> {
    use std::io::Write;
    let io = |e: std::io::Error| ArtifactError::Io {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp).map_err(io)?;
    f.write_all(bytes).map_err(io)?;
    f.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Csr;
    use crate::model::ModelConfig;

    fn plays() -> Csr {
        Csr::from_entries(
            3,
            4,
            vec![
                (0, 0, 2.0),
                (0, 1, 1.0),
                (1, 1, 5.0),
                (1, 2, 1.0),
                (2, 3, 1.0),
                (2, 0, 3.0),
            ],
        )
    }

    fn artifact(config: ModelConfig) -> Artifact {
        let model = Model::fit(&config, &plays(), false, &mut |_| {});
        Artifact {
            config,
            model,
            users: vec!["u1".into(), "ü2".into(), "u3".into()],
            items: (0..4).map(|i| format!("track-{i}")).collect(),
            metadata: serde_json::json!({"note": "test"}),
            interactions: Some(plays()),
            skipped: None,
        }
    }

    #[test]
    fn every_model_round_trips() {
        let configs: Vec<ModelConfig> = vec![
            serde_json::from_str(r#"{"model":"popularity"}"#).unwrap(),
            serde_json::from_str(r#"{"model":"itemknn","neighbors":2,"similarity":{"kind":"bm25","k1":1.2,"b":0.75}}"#).unwrap(),
            ModelConfig::Als(crate::als::AlsConfig {
                factors: 3,
                iterations: 2,
                ..Default::default()
            }),
            ModelConfig::Bpr(crate::bpr::BprConfig {
                factors: 3,
                epochs: 2,
                ..Default::default()
            }),
        ];
        for config in configs {
            let a = artifact(config);
            let (bytes, sum) = a.to_bytes();
            let b = Artifact::from_bytes(&bytes, Path::new("m.encore")).unwrap();
            assert_eq!(b.config, a.config);
            assert_eq!(
                (b.users.clone(), b.items.clone()),
                (a.users.clone(), a.items.clone())
            );
            assert_eq!(b.metadata, a.metadata);
            let (bi, ai) = (
                b.interactions.as_ref().unwrap(),
                a.interactions.as_ref().unwrap(),
            );
            assert_eq!(
                (&bi.indptr, &bi.indices, &bi.values),
                (&ai.indptr, &ai.indices, &ai.values)
            );
            assert_eq!(
                b.model.recommend_all(&plays(), 2),
                a.model.recommend_all(&plays(), 2)
            );
            assert_eq!(b.model.item_vectors(), a.model.item_vectors());
            assert_eq!(b.to_bytes().1, sum, "re-encoding is byte-stable");
        }
    }

    #[test]
    fn corruption_and_truncation_are_named_errors() {
        let (bytes, _) = artifact(ModelConfig::Als(crate::als::AlsConfig {
            factors: 3,
            iterations: 1,
            ..Default::default()
        }))
        .to_bytes();
        let path = Path::new("/models/m.encore");
        for at in [70, bytes.len() / 2, bytes.len() - 1] {
            let mut b = bytes.clone();
            b[at] ^= 0x10;
            let err = Artifact::from_bytes(&b, path).unwrap_err().to_string();
            assert!(
                err.contains("/models/m.encore") && err.contains("checksum"),
                "{err}"
            );
        }
        for cut in [0, 10, 64, bytes.len() - 64, bytes.len() - 1] {
            let err = Artifact::from_bytes(&bytes[..cut], path)
                .unwrap_err()
                .to_string();
            assert!(err.contains("/models/m.encore"), "{err}");
        }
        let mut b = bytes;
        b[8] = 9;
        let err = Artifact::from_bytes(&b, path).unwrap_err().to_string();
        assert!(err.contains("format version 9"), "{err}");
    }
}
