//! Reading a GGUF file's metadata (not its tensors), enough to find the chat
//! template and the BOS/EOS token strings the way clemcore's llamacpp
//! backend does: `tokenizer.chat_template`, and the texts of the tokens
//! `tokenizer.ggml.bos_token_id` / `eos_token_id` in `tokenizer.ggml.tokens`.
//!
//! The format: magic `GGUF`, a little-endian `u32` version (1, 2 or 3), the
//! tensor count and the key/value count (`u32` in version 1, `u64` later),
//! then the key/value pairs. Reading stops there.

use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

/// Why a GGUF file's metadata could not be read.
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    /// The file could not be opened or ended early.
    #[error("{}: cannot read GGUF metadata: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The bytes are not a GGUF file this reader understands.
    #[error("{}: not a usable GGUF file: {message}", path.display())]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// One metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum GgufValue {
    /// Any unsigned integer type.
    Uint(u64),
    /// Any signed integer type.
    Int(i64),
    /// `f32` or `f64`.
    Float(f64),
    /// `bool`.
    Bool(bool),
    /// A UTF-8 string (invalid bytes replaced).
    String(String),
    /// An array of values.
    Array(Vec<GgufValue>),
}

impl GgufValue {
    /// The value as a string, if it is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            GgufValue::String(s) => Some(s),
            _ => None,
        }
    }

    /// The value as a non-negative integer, if it is one.
    pub fn as_u64(&self) -> Option<u64> {
        match self {
            GgufValue::Uint(n) => Some(*n),
            GgufValue::Int(n) => u64::try_from(*n).ok(),
            _ => None,
        }
    }
}

/// The key/value metadata of a GGUF file, in file order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GgufMetadata {
    /// The GGUF format version.
    pub version: u32,
    /// The pairs, in file order.
    pub entries: Vec<(String, GgufValue)>,
}

impl GgufMetadata {
    /// Reads the metadata of the file at `path`.
    pub fn read(path: &Path) -> Result<GgufMetadata, GgufError> {
        let file = std::fs::File::open(path).map_err(|source| GgufError::Io {
            path: path.to_owned(),
            source,
        })?;
        let mut r = Reader {
            inner: BufReader::new(file),
            path,
            wide: true,
        };
        let mut magic = [0u8; 4];
        r.bytes(&mut magic)?;
        if &magic != b"GGUF" {
            return Err(r.format("the file does not start with the GGUF magic bytes"));
        }
        let version = r.u32()?;
        if !(1..=3).contains(&version) {
            return Err(r.format(&format!("unsupported GGUF version {version}")));
        }
        r.wide = version >= 2;
        let _tensors = r.len()?;
        let count = r.len()?;
        let mut entries = Vec::new();
        for _ in 0..count {
            let key = r.string()?;
            let kind = r.u32()?;
            let value = r.value(kind, 0)?;
            entries.push((key, value));
        }
        Ok(GgufMetadata { version, entries })
    }

    /// The value of a key.
    pub fn get(&self, key: &str) -> Option<&GgufValue> {
        self.entries.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// `tokenizer.chat_template`, if present.
    pub fn chat_template(&self) -> Option<&str> {
        self.get("tokenizer.chat_template")
            .and_then(GgufValue::as_str)
    }

    /// The text of token `id` in `tokenizer.ggml.tokens`.
    pub fn token_text(&self, id: u64) -> Option<&str> {
        match self.get("tokenizer.ggml.tokens") {
            Some(GgufValue::Array(tokens)) => usize::try_from(id)
                .ok()
                .and_then(|i| tokens.get(i))
                .and_then(GgufValue::as_str),
            _ => None,
        }
    }

    /// The text of the token whose id the key holds
    /// (`tokenizer.ggml.bos_token_id`, ...).
    pub fn special_token(&self, id_key: &str) -> Option<&str> {
        let id = self.get(id_key)?.as_u64()?;
        self.token_text(id)
    }
}

struct Reader<'p, R> {
    inner: R,
    path: &'p Path,
    /// Lengths and counts are u64 (version 2 and later) rather than u32.
    wide: bool,
}

/// Nesting deeper than this is treated as a corrupt file.
const MAX_DEPTH: u32 = 8;

impl<R: Read> Reader<'_, R> {
    fn format(&self, message: &str) -> GgufError {
        GgufError::Format {
            path: self.path.to_owned(),
            message: message.to_owned(),
        }
    }

    fn bytes(&mut self, buf: &mut [u8]) -> Result<(), GgufError> {
        self.inner.read_exact(buf).map_err(|source| GgufError::Io {
            path: self.path.to_owned(),
            source,
        })
    }

    fn u32(&mut self) -> Result<u32, GgufError> {
        let mut b = [0u8; 4];
        self.bytes(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    fn u64(&mut self) -> Result<u64, GgufError> {
        let mut b = [0u8; 8];
        self.bytes(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    fn len(&mut self) -> Result<u64, GgufError> {
        if self.wide {
            self.u64()
        } else {
            self.u32().map(u64::from)
        }
    }

    fn string(&mut self) -> Result<String, GgufError> {
        let n = self.len()?;
        // Strings in metadata are names, templates and token texts; a
        // gigabyte-long one means a corrupt length.
        if n > (1 << 30) {
            return Err(self.format(&format!("a metadata string claims {n} bytes")));
        }
        let n = usize::try_from(n).map_err(|_| self.format("string length overflows"))?;
        let mut buf = vec![0u8; n];
        self.bytes(&mut buf)?;
        Ok(String::from_utf8_lossy(&buf).into_owned())
    }

    fn value(&mut self, kind: u32, depth: u32) -> Result<GgufValue, GgufError> {
        let mut b1 = [0u8; 1];
        let mut b2 = [0u8; 2];
        let mut b4 = [0u8; 4];
        let mut b8 = [0u8; 8];
        Ok(match kind {
            0 => {
                self.bytes(&mut b1)?;
                GgufValue::Uint(u64::from(b1[0]))
            }
            1 => {
                self.bytes(&mut b1)?;
                GgufValue::Int(i64::from(i8::from_le_bytes(b1)))
            }
            2 => {
                self.bytes(&mut b2)?;
                GgufValue::Uint(u64::from(u16::from_le_bytes(b2)))
            }
            3 => {
                self.bytes(&mut b2)?;
                GgufValue::Int(i64::from(i16::from_le_bytes(b2)))
            }
            4 => GgufValue::Uint(u64::from(self.u32()?)),
            5 => {
                self.bytes(&mut b4)?;
                GgufValue::Int(i64::from(i32::from_le_bytes(b4)))
            }
            6 => {
                self.bytes(&mut b4)?;
                GgufValue::Float(f64::from(f32::from_le_bytes(b4)))
            }
            7 => {
                self.bytes(&mut b1)?;
                GgufValue::Bool(b1[0] != 0)
            }
            8 => GgufValue::String(self.string()?),
            9 => {
                if depth >= MAX_DEPTH {
                    return Err(self.format("metadata arrays are nested too deeply"));
                }
                let item_kind = self.u32()?;
                let n = self.len()?;
                let mut items = Vec::with_capacity(usize::try_from(n.min(1 << 20)).unwrap_or(0));
                for _ in 0..n {
                    items.push(self.value(item_kind, depth + 1)?);
                }
                GgufValue::Array(items)
            }
            10 => GgufValue::Uint(self.u64()?),
            11 => {
                self.bytes(&mut b8)?;
                GgufValue::Int(i64::from_le_bytes(b8))
            }
            12 => {
                self.bytes(&mut b8)?;
                GgufValue::Float(f64::from_le_bytes(b8))
            }
            other => return Err(self.format(&format!("unknown metadata value type {other}"))),
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Writes a small GGUF v3 file with string, u32 and string-array values.
    pub(crate) fn write_gguf(path: &Path, template: &str, tokens: &[&str], bos: u32, eos: u32) {
        fn s(out: &mut Vec<u8>, text: &str) {
            out.extend_from_slice(&(text.len() as u64).to_le_bytes());
            out.extend_from_slice(text.as_bytes());
        }
        let mut out = Vec::new();
        out.extend_from_slice(b"GGUF");
        out.extend_from_slice(&3u32.to_le_bytes());
        out.extend_from_slice(&0u64.to_le_bytes());
        out.extend_from_slice(&5u64.to_le_bytes());
        s(&mut out, "general.architecture");
        out.extend_from_slice(&8u32.to_le_bytes());
        s(&mut out, "llama");
        s(&mut out, "tokenizer.chat_template");
        out.extend_from_slice(&8u32.to_le_bytes());
        s(&mut out, template);
        s(&mut out, "tokenizer.ggml.tokens");
        out.extend_from_slice(&9u32.to_le_bytes());
        out.extend_from_slice(&8u32.to_le_bytes());
        out.extend_from_slice(&(tokens.len() as u64).to_le_bytes());
        for t in tokens {
            s(&mut out, t);
        }
        s(&mut out, "tokenizer.ggml.bos_token_id");
        out.extend_from_slice(&4u32.to_le_bytes());
        out.extend_from_slice(&bos.to_le_bytes());
        s(&mut out, "tokenizer.ggml.eos_token_id");
        out.extend_from_slice(&4u32.to_le_bytes());
        out.extend_from_slice(&eos.to_le_bytes());
        std::fs::write(path, out).expect("write test gguf");
    }

    #[test]
    fn reads_template_and_special_tokens() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("m.gguf");
        write_gguf(&p, "{{ bos_token }}", &["<unk>", "<s>", "</s>"], 1, 2);
        let m = GgufMetadata::read(&p).unwrap();
        assert_eq!(m.version, 3);
        assert_eq!(m.chat_template(), Some("{{ bos_token }}"));
        assert_eq!(m.special_token("tokenizer.ggml.bos_token_id"), Some("<s>"));
        assert_eq!(m.special_token("tokenizer.ggml.eos_token_id"), Some("</s>"));
        assert_eq!(
            m.get("general.architecture").and_then(GgufValue::as_str),
            Some("llama")
        );
    }

    #[test]
    fn rejects_other_files_and_truncation() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x.gguf");
        std::fs::write(&p, b"PK\x03\x04 not gguf").unwrap();
        let err = GgufMetadata::read(&p).unwrap_err().to_string();
        assert!(err.contains("magic"), "{err}");
        write_gguf(&p, "t", &["a"], 0, 0);
        let bytes = std::fs::read(&p).unwrap();
        std::fs::write(&p, &bytes[..bytes.len() - 3]).unwrap();
        assert!(GgufMetadata::read(&p).is_err());
    }
}
