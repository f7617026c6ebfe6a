//! The generic remote model: everything a call does except the provider's
//! wire format, which a [`Provider`] supplies.

use crate::client::HttpClient;
use crate::error::invalid_json_response;
use crate::images::{self, Image};
use crate::messages::images_of;
use clemhost_plugin_sdk::serde_json::{Map, Value};
use clemhost_plugin_sdk::{
    BackendError, Ctx, GenArgs, GenerateRequest, Generation, ModelConfig, Timings, Usage,
};
use clemhost_pyfacts::messages::ensure_alternating_roles;
use clemhost_pyfacts::{record, time};
use std::time::Instant;

/// How a provider wants images.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageMode {
    /// URLs (web or data URLs); local files are inlined as data URLs.
    Url,
    /// Bytes inline; web URLs are downloaded first.
    Inline,
}

/// One preprocessed message with its images resolved.
#[derive(Clone, Debug, PartialEq)]
pub struct Turn {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The text.
    pub content: String,
    /// Images, in order.
    pub images: Vec<Image>,
}

/// What a provider read from an answer.
#[derive(Clone, Debug, PartialEq)]
pub struct Answer {
    /// The text the game sees (stripped or not, as clemcore does per provider).
    pub text: String,
    /// Token counts, when the provider reports them.
    pub usage: Option<Usage>,
}

/// A provider's wire format: where to send, what to send, how to read.
pub trait Provider: Send + Sync + 'static {
    /// How images are passed.
    const IMAGES: ImageMode;

    /// The path appended to the base URL (e.g. `/chat/completions`).
    fn path(&self) -> String;

    /// The JSON body for a conversation and generation arguments.
    fn body(&self, turns: &[Turn], gen_args: &GenArgs) -> Result<Value, BackendError>;

    /// Reads the answer text and usage out of the provider's JSON.
    fn answer(&self, response: &Value) -> Result<Answer, BackendError>;
}

/// The registry entry's `model_id`, which every remote backend needs.
pub fn model_id(config: &ModelConfig) -> Result<String, BackendError> {
    match config.spec.get("model_id") {
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.clone()),
        _ => Err(BackendError::invalid_request(format!(
            "registry entry {:?} has no `model_id`; add the provider's model name, e.g. \"model_id\": \"gpt-4o-mini\"",
            config.model_name()
        ))),
    }
}

/// A remote model: one HTTP client and one provider format.
pub struct RemoteModel<P: Provider> {
    client: HttpClient,
    provider: P,
    model_name: String,
    model_id: String,
    model_config: Map<String, Value>,
    gen_args: GenArgs,
}

impl<P: Provider> RemoteModel<P> {
    /// A model for `config`, talking through `client` in `provider`'s format.
    pub fn new(
        config: &ModelConfig,
        client: HttpClient,
        provider: P,
    ) -> Result<Self, BackendError> {
        Ok(RemoteModel {
            client,
            provider,
            model_name: config.model_name().to_string(),
            model_id: model_id(config)?,
            model_config: config.model_config().clone(),
            gen_args: config.gen_args.clone(),
        })
    }

    /// The provider format.
    pub fn provider(&self) -> &P {
        &self.provider
    }

    /// Preprocesses the messages and resolves their images.
    async fn turns(
        &self,
        request: &GenerateRequest,
        ctx: &Ctx<'_>,
    ) -> Result<Vec<Turn>, BackendError> {
        let messages = ensure_alternating_roles(&request.messages)?;
        let mut turns = Vec::with_capacity(messages.len());
        for message in messages {
            let refs = images_of(&message)?;
            images::check_allowed(&self.model_config, &self.model_id, refs.len())?;
            let mut resolved = Vec::with_capacity(refs.len());
            for r in &refs {
                resolved.push(match P::IMAGES {
                    ImageMode::Url => images::as_url_image(r)?,
                    ImageMode::Inline => images::as_inline_image(r, &self.client, ctx).await?,
                });
            }
            turns.push(Turn {
                role: message.role,
                content: message.content,
                images: resolved,
            });
        }
        Ok(turns)
    }

    /// One call: preprocess, send once, read the answer, record it.
    pub fn generate(
        &self,
        request: GenerateRequest,
        ctx: &Ctx<'_>,
    ) -> Result<Generation, BackendError> {
        clemhost_plugin_sdk::runtime().block_on(self.generate_async(request, ctx))
    }

    async fn generate_async(
        &self,
        request: GenerateRequest,
        ctx: &Ctx<'_>,
    ) -> Result<Generation, BackendError> {
        let start = time::now();
        let started = Instant::now();
        let gen_args = request.gen_args.as_ref().unwrap_or(&self.gen_args);
        let turns = self.turns(&request, ctx).await?;
        let body = self.provider.body(&turns, gen_args)?;
        let path = self.provider.path();
        log::debug!(
            "{} request {} for {}: POST {path}",
            self.client.endpoint().provider,
            request.request_id,
            self.model_id
        );
        let answer = self.client.post_json(&path, &body, ctx).await?;
        let Answer { text, usage } = self.provider.answer(&answer.json)?;
        let duration = started.elapsed();
        let mut response = match answer.json {
            Value::Object(map) => map,
            other => {
                return Err(invalid_json_response(
                    self.client.endpoint().provider,
                    "not a JSON object",
                    &other,
                ))
            }
        };
        response.insert(
            "clem_player".to_string(),
            record::clem_player(&start, duration, &text, &self.model_name),
        );
        Ok(Generation {
            prompt: body,
            response: Value::Object(response),
            text,
            usage,
            timings: Some(Timings {
                total_ms: Some(duration.as_secs_f64() * 1000.0),
                ..Timings::default()
            }),
        })
    }
}

/// `model_config.<field>` is present (any value, as clemcore checks it).
pub fn has_flag(config: &ModelConfig, field: &str) -> bool {
    config.model_config().contains_key(field)
}

/// Reads a `u64` from a JSON path such as `["usage", "prompt_tokens"]`.
pub fn u64_at(value: &Value, path: &[&str]) -> Option<u64> {
    let mut v = value;
    for key in path {
        v = v.get(*key)?;
    }
    v.as_u64()
}
