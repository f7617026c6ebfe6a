//! Images attached to messages: checking the entry allows them and turning
//! references (URLs, data URLs, local files) into what a provider accepts.

use crate::client::HttpClient;
use base64::Engine as _;
use clemhost_plugin_sdk::serde_json::{Map, Value};
use clemhost_plugin_sdk::{BackendError, Ctx};

/// An image ready to send.
#[derive(Clone, Debug, PartialEq)]
pub enum Image {
    /// A URL the provider fetches itself (`http(s)://` or `data:image/...`).
    Url(String),
    /// Bytes sent inline, base64-encoded.
    Inline {
        /// e.g. `image/png`.
        media_type: String,
        /// Base64 of the bytes.
        data: String,
    },
}

impl Image {
    /// As a URL: inline images become `data:<type>;base64,<data>`.
    pub fn to_url(&self) -> String {
        match self {
            Image::Url(u) => u.clone(),
            Image::Inline { media_type, data } => format!("data:{media_type};base64,{data}"),
        }
    }
}

/// Checks the registry entry's `model_config.multimodality` against a
/// message's images, with clemcore's rules: any image needs `multimodality`,
/// more than one in a message needs `multimodality.multiple_images`.
pub fn check_allowed(
    model_config: &Map<String, Value>,
    model_id: &str,
    count: usize,
) -> Result<(), BackendError> {
    if count == 0 {
        return Ok(());
    }
    let multimodality = model_config.get("multimodality");
    let truthy = match multimodality {
        None | Some(Value::Null) | Some(Value::Bool(false)) => false,
        Some(Value::Object(m)) => !m.is_empty(),
        Some(_) => true,
    };
    if !truthy {
        return Err(BackendError::invalid_request(format!(
            "model {model_id} got an image but its registry entry declares no `model_config.multimodality`"
        )));
    }
    let multiple = multimodality
        .and_then(|m| m.get("multiple_images"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    if count > 1 && !multiple {
        return Err(BackendError::invalid_request(format!(
            "model {model_id} got {count} images in one message but its entry does not set `model_config.multimodality.multiple_images`"
        )));
    }
    Ok(())
}

/// The media type of image bytes, from their first bytes.
pub fn sniff_media_type(bytes: &[u8]) -> Option<&'static str> {
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("image/png")
    } else if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some("image/jpeg")
    } else if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
        Some("image/gif")
    } else if bytes.len() >= 12 && &bytes[0..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        Some("image/webp")
    } else {
        None
    }
}

fn inline_from_bytes(
    bytes: &[u8],
    declared: Option<&str>,
    origin: &str,
) -> Result<Image, BackendError> {
    let media_type = sniff_media_type(bytes)
        .map(str::to_string)
        .or_else(|| {
            declared
                .filter(|t| t.starts_with("image/"))
                .map(str::to_string)
        })
        .ok_or_else(|| {
            BackendError::invalid_request(format!("{origin} is not a PNG, JPEG, GIF or WebP image"))
        })?;
    Ok(Image::Inline {
        media_type,
        data: base64::engine::general_purpose::STANDARD.encode(bytes),
    })
}

fn parse_data_url(url: &str) -> Result<Image, BackendError> {
    let rest = url.strip_prefix("data:").unwrap_or(url);
    let (meta, data) = rest.split_once(',').ok_or_else(|| {
        BackendError::invalid_request("an image data URL has no `,` before its data")
    })?;
    let media_type = meta.strip_suffix(";base64").ok_or_else(|| {
        BackendError::invalid_request(
            "an image data URL must be base64 (`data:image/...;base64,...`)",
        )
    })?;
    Ok(Image::Inline {
        media_type: media_type.to_string(),
        data: data.to_string(),
    })
}

fn read_file(path: &str) -> Result<Image, BackendError> {
    let bytes = std::fs::read(path).map_err(|e| {
        BackendError::invalid_request(format!("cannot read image file {path}: {e}"))
    })?;
    inline_from_bytes(&bytes, None, &format!("image file {path}"))
}

/// Resolves a reference for providers that take URLs (OpenAI style): web and
/// data URLs pass unchanged, local files are inlined.
pub fn as_url_image(reference: &str) -> Result<Image, BackendError> {
    if reference.starts_with("http") || reference.starts_with("data:image/") {
        Ok(Image::Url(reference.to_string()))
    } else {
        read_file(reference)
    }
}

/// Resolves a reference for providers that need the bytes (Anthropic,
/// Google): web URLs are downloaded with the model's client.
pub async fn as_inline_image(
    reference: &str,
    client: &HttpClient,
    ctx: &Ctx<'_>,
) -> Result<Image, BackendError> {
    if reference.starts_with("data:") {
        parse_data_url(reference)
    } else if reference.starts_with("http://") || reference.starts_with("https://") {
        let (bytes, content_type) = client.get_bytes(reference, ctx).await?;
        inline_from_bytes(
            &bytes,
            content_type.as_deref(),
            &format!("image URL {reference}"),
        )
    } else {
        read_file(reference)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clemhost_plugin_sdk::serde_json::json;

    #[test]
    fn multimodality_rules() {
        let none = Map::new();
        assert!(check_allowed(&none, "m", 0).is_ok());
        assert!(check_allowed(&none, "m", 1).is_err());
        let single = json!({"multimodality": {"single_image": true}});
        let single = single.as_object().unwrap();
        assert!(check_allowed(single, "m", 1).is_ok());
        assert!(check_allowed(single, "m", 2).is_err());
        let multi = json!({"multimodality": {"single_image": true, "multiple_images": true}});
        assert!(check_allowed(multi.as_object().unwrap(), "m", 3).is_ok());
    }

    #[test]
    fn files_are_inlined_and_urls_kept() {
        let dir = std::env::temp_dir().join(format!("remote-common-img-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("dot.png");
        std::fs::write(&path, b"\x89PNG\r\n\x1a\nrest").unwrap();
        let img = as_url_image(path.to_str().unwrap()).unwrap();
        assert!(img.to_url().starts_with("data:image/png;base64,iVBORw0KGg"));
        assert_eq!(
            as_url_image("https://x/y.jpg").unwrap(),
            Image::Url("https://x/y.jpg".into())
        );
        let bad = dir.join("note.txt");
        std::fs::write(&bad, b"hello").unwrap();
        assert!(as_url_image(bad.to_str().unwrap()).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn data_urls_split_into_type_and_data() {
        assert_eq!(
            parse_data_url("data:image/gif;base64,R0lG").unwrap(),
            Image::Inline {
                media_type: "image/gif".into(),
                data: "R0lG".into()
            }
        );
        assert!(parse_data_url("data:image/gif,raw").is_err());
    }
}
