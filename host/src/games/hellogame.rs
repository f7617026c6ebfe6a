//! hellogame: a greeter (the model under test) must welcome a named guest.
//!
//! Rules, as in clembench: the greeter's answer must start with `GREET:`
//! (otherwise the episode is aborted) and must contain `hello`, `welcome`
//! and the guest's name (case-insensitive, ASCII punctuation ignored;
//! otherwise the greeting failed and the missing words are logged). The
//! answer is passed to the greeted player, who always answers with a
//! scripted line, and the game ends after this one round.

use super::{EpisodeError, EpisodeScores, Game, PlayerModel};
use crate::results::NAN_MARKER;
use serde_json::{json, Map, Value};

/// The game (registered as `hellogame`).
pub struct HelloGame;

/// What the scripted greeter (`-m mock`) says, as clemcore's does.
pub const MOCK_GREETING: &str = "GREET: Hello Ted!";

/// The outcome of checking a greeting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The answer does not start with `GREET:`.
    Aborted,
    /// Every required word is there.
    Success,
    /// Words are missing (lower-cased, in the order hello, welcome, name).
    Missing(Vec<String>),
}

/// Checks a greeting for `target_name`.
pub fn judge(answer: &str, target_name: &str) -> Verdict {
    if !answer.starts_with("GREET:") {
        return Verdict::Aborted;
    }
    let cleaned: String = answer
        .to_lowercase()
        .chars()
        .filter(|c| !c.is_ascii_punctuation())
        .collect();
    let name = target_name.to_lowercase();
    let missing: Vec<String> = ["hello", "welcome", name.as_str()]
        .iter()
        .filter(|w| !cleaned.contains(*w))
        .map(|w| w.to_string())
        .collect();
    if missing.is_empty() {
        Verdict::Success
    } else {
        Verdict::Missing(missing)
    }
}

fn field<'a>(instance: &'a Map<String, Value>, key: &str) -> Result<&'a str, EpisodeError> {
    instance.get(key).and_then(Value::as_str).ok_or_else(|| {
        EpisodeError::Game(format!(
            "hellogame instance {} has no string \"{key}\"; every instance needs \"prompt\" and \"target_name\"",
            instance.get("game_id").cloned().unwrap_or(Value::Null)
        ))
    })
}

impl Game for HelloGame {
    fn name(&self) -> &'static str {
        "hellogame"
    }

    fn description(&self) -> &'static str {
        "A greeter welcomes a named guest; the guest answers programmatically"
    }

    fn model_players(&self) -> usize {
        1
    }

    fn shipped_instances(&self) -> &'static str {
        include_str!("../../../games/hellogame/in/instances.json")
    }

    fn play(
        &self,
        instance: &Map<String, Value>,
        models: &[PlayerModel],
        episode: &mut super::Episode,
    ) -> Result<(), EpisodeError> {
        let prompt = field(instance, "prompt")?;
        let target = field(instance, "target_name")?.to_string();
        let greeter_model = models.first().cloned().ok_or_else(|| {
            EpisodeError::Game("hellogame needs one model for the greeter".into())
        })?;
        let greeter = episode.add_player("Greeter", greeter_model);
        let greeted = episode.add_player("Greeted", PlayerModel::programmatic());

        let greeting = episode.ask(greeter, prompt, || MOCK_GREETING.to_string())?;
        let verdict = judge(&greeting, &target);
        episode.ask(greeted, &greeting, || {
            format!("{target}: Hi, thanks for having me!")
        })?;
        match verdict {
            Verdict::Aborted => {
                episode.log_event("invalid format", "abort game");
                episode.log_event("greeting failed", "missing words=[]");
            }
            Verdict::Success => episode.log_event("greeting successful", "end game"),
            Verdict::Missing(words) => episode.log_event(
                "greeting failed",
                &format!("missing words=[{}]", words.join(",")),
            ),
        }
        Ok(())
    }

    fn score(&self, interactions: &Value) -> Result<EpisodeScores, String> {
        let rounds = interactions
            .get("turns")
            .and_then(Value::as_array)
            .ok_or("interactions.json has no \"turns\" list")?;
        let mut round_scores = Map::new();
        let (mut requests, mut parsed, mut violated) = (0u64, 0u64, 0u64);
        let (mut aborted, mut success) = (false, false);
        for (i, round) in rounds.iter().enumerate() {
            let events = round
                .as_array()
                .ok_or_else(|| format!("turns[{i}] is not a list"))?;
            let mut r_requests = 0u64;
            let mut r_aborted = false;
            for e in events {
                let from = e.get("from").and_then(Value::as_str).unwrap_or("");
                let to = e.get("to").and_then(Value::as_str).unwrap_or("");
                let kind = e
                    .pointer("/action/type")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                if from == "Player 1" && kind == "get message" {
                    r_requests += 1;
                }
                if from == "GM" && to == "GM" {
                    match kind {
                        "invalid format" => r_aborted = true,
                        "greeting successful" => success = true,
                        _ => {}
                    }
                }
            }
            let r_violated = if r_aborted { r_requests.min(1) } else { 0 };
            let r_parsed = r_requests - r_violated;
            aborted |= r_aborted;
            requests += r_requests;
            parsed += r_parsed;
            violated += r_violated;
            round_scores.insert(
                i.to_string(),
                json!({
                    "Request Count": r_requests,
                    "Violated Request Count": r_violated,
                    "Parsed Request Count": r_parsed,
                    "Request Success Ratio": ratio(r_parsed, r_requests),
                }),
            );
        }
        let success = success && !aborted;
        let lose = !success && !aborted;
        let main_score = if aborted {
            Value::String(NAN_MARKER.into())
        } else if success {
            json!(100.0)
        } else {
            json!(0.0)
        };
        let episode_scores = json!({
            "Request Count": requests,
            "Violated Request Count": violated,
            "Parsed Request Count": parsed,
            "Request Success Ratio": ratio(parsed, requests),
            "Aborted": u8::from(aborted),
            "Lose": u8::from(lose),
            "Success": u8::from(success),
            "Main Score": main_score,
        });
        Ok(EpisodeScores {
            round_scores,
            episode_scores: episode_scores
                .as_object()
                .expect("a json! object literal is an object")
                .clone(),
        })
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn judge_follows_the_rules() {
        assert_eq!(judge("Hello Peter, welcome", "Peter"), Verdict::Aborted);
        assert_eq!(
            judge("GREET: Hello Peter, welcome!", "Peter"),
            Verdict::Success
        );
        assert_eq!(
            judge(MOCK_GREETING, "Peter"),
            Verdict::Missing(vec!["welcome".into(), "peter".into()])
        );
    }
}
